package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
)

// TestReconcileRepairsLostEnqueue: the install is committed but its post-install job
// never enqueued (the process died in between); the reconciler enqueues it, once.
func TestReconcileRepairsLostEnqueue(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 4, noStart: true, noHook: true})
			ctx := context.Background()
			contextID := uuid.NewString()
			lost := en.install(t, mstudiotest.CallRequest{ContextAggregateID: contextID})
			removed := en.install(t, mstudiotest.CallRequest{})
			en.trigger(t, mstudiotest.CallInstanceRemovedFromContext, mstudiotest.CallRequest{ExtensionInstanceID: removed})
			disabled := true
			off := en.install(t, mstudiotest.CallRequest{ExtensionInstanceDisabled: &disabled})
			if got := en.jobsOf(t, lost); len(got) != 0 {
				t.Fatalf("jobs before reconciling: %+v, want none", got)
			}

			n, err := en.Jobs.Reconcile(ctx)
			if err != nil || n != 1 {
				t.Fatalf("Reconcile = %d, %v; want 1 job (none for the removed and the disabled instance)", n, err)
			}
			if n, err := en.Jobs.Reconcile(ctx); err != nil || n != 0 {
				t.Errorf("second Reconcile while the job waits = %d, %v; want 0", n, err)
			}
			// The hook arriving late (the race the reconciler can lose) adds nothing.
			en.Jobs.AfterApply(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: lost})
			if got := en.jobsOf(t, lost); len(got) != 1 {
				t.Errorf("jobs after the late hook: %+v, want 1", got)
			}
			for _, id := range []string{removed, off} {
				if got := en.jobsOf(t, id); len(got) != 0 {
					t.Errorf("instance %s got jobs: %+v", id, got)
				}
			}

			if err := en.Jobs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			en.waitFinished(t, lost)
			if got := en.instance(t, lost).ContextName; got != wantName(extension.ContextProject, contextID) {
				t.Errorf("context name = %q, want %q", got, wantName(extension.ContextProject, contextID))
			}
			if n, err := en.Jobs.Reconcile(ctx); err != nil || n != 0 {
				t.Errorf("Reconcile once the name is stored = %d, %v; want 0", n, err)
			}
		})
	}
}

// TestPeriodicReconcilerRuns: without a call, the leader's periodic reconciler repairs
// the lost job.
func TestPeriodicReconcilerRuns(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 2, noHook: true, config: func(c *Config) { c.ReconcileEvery = 200 * time.Millisecond }})
			id := en.install(t, mstudiotest.CallRequest{})
			// River staggers the start of its maintenance services by a few seconds.
			waitFor(t, "the context name", 30*time.Second, func() bool { return en.instance(t, id).ContextNameAt != nil })
		})
	}
}

func TestRefreshNames(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 4})
			ctx := context.Background()
			live := en.install(t, mstudiotest.CallRequest{Context: extension.ContextCustomer})
			removed := en.install(t, mstudiotest.CallRequest{})
			en.waitFinished(t, live)
			en.waitFinished(t, removed)
			en.trigger(t, mstudiotest.CallInstanceRemovedFromContext, mstudiotest.CallRequest{ExtensionInstanceID: removed})
			first := *en.instance(t, live).ContextNameAt

			n, err := en.Jobs.RefreshNames(ctx)
			if err != nil || n != 1 {
				t.Fatalf("RefreshNames = %d, %v; want 1 job, for the live instance", n, err)
			}
			waitFor(t, "a newer context name", 15*time.Second, func() bool {
				at := en.instance(t, live).ContextNameAt
				return at != nil && at.After(first)
			})
			en.waitFinished(t, live)
			var kinds []string
			for _, j := range en.jobsOf(t, live) {
				kinds = append(kinds, j.Kind+" "+j.State)
			}
			if len(kinds) != 2 || kinds[1] != KindRefreshContextName+" completed" {
				t.Errorf("jobs of the live instance: %q", kinds)
			}
			if got := en.jobsOf(t, removed); len(got) != 1 {
				t.Errorf("jobs of the removed instance: %+v, want only its post-install job", got)
			}
		})
	}
}

func TestDailyAt(t *testing.T) {
	s := dailyAt(3 * time.Hour)
	tests := []struct{ now, want string }{
		{"2025-03-14T01:00:00Z", "2025-03-14T03:00:00Z"},
		{"2025-03-14T03:00:00Z", "2025-03-15T03:00:00Z"},
		{"2025-03-14T23:59:59Z", "2025-03-15T03:00:00Z"},
		{"2025-03-31T05:00:00+02:00", "2025-04-01T03:00:00Z"}, // 03:00Z that day has passed
		{"2025-12-31T04:00:00Z", "2026-01-01T03:00:00Z"},
	}
	for _, tc := range tests {
		now, _ := time.Parse(time.RFC3339, tc.now)
		want, _ := time.Parse(time.RFC3339, tc.want)
		if got := s.Next(now); !got.Equal(want) {
			t.Errorf("Next(%s) = %s, want %s", tc.now, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{first: time.Second, limit: time.Hour}
	tests := []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {5, 16 * time.Second}, {13, time.Hour}, {25, time.Hour}, {100, time.Hour}}
	for _, tc := range tests {
		for range 20 {
			got := time.Until(b.NextRetry(&rivertype.JobRow{Attempt: tc.attempt}))
			lo, hi := time.Duration(float64(tc.want)*0.8)-time.Second/10, time.Duration(float64(tc.want)*1.2)
			if got < lo || got > hi {
				t.Errorf("attempt %d: wait %v, want %v ± 20 %%", tc.attempt, got, tc.want)
				break
			}
		}
	}
}
