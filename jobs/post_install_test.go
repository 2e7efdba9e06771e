package jobs

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
	"github.com/riverqueue/river/rivertype"
)

// wantName is the name the simulator gives a project or customer.
func wantName(kind, contextID string) string {
	if kind == extension.ContextCustomer {
		return "Organisation " + contextID[:8]
	}
	return "Project " + contextID[:8]
}

func TestPostInstallStoresContextName(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		for _, kind := range []string{extension.ContextProject, extension.ContextCustomer} {
			t.Run(fmt.Sprintf("%s/%s", d, kind), func(t *testing.T) {
				t.Parallel()
				en := newEnv(t, d, envOptions{workers: 4})
				contextID := uuid.NewString()
				id := en.install(t, mstudiotest.CallRequest{Context: kind, ContextAggregateID: contextID})
				en.waitFinished(t, id)
				in := en.instance(t, id)
				if want := wantName(kind, contextID); in.ContextName != want {
					t.Errorf("context name = %q, want %q", in.ContextName, want)
				}
				got := en.jobsOf(t, id)
				// The secret works only 150 ms after the install's answer and the job ran
				// at once: the broker waited that out within its grace.
				if len(got) != 1 || got[0].Kind != KindPostInstall || got[0].State != "completed" || got[0].Attempts != 1 {
					t.Fatalf("jobs of the instance = %+v, want one %s job completed at its first attempt", got, KindPostInstall)
				}
			})
		}
	}
}

// TestPostInstallRetriesRefusedSecret: past the broker's grace, a secret the platform
// refuses fails the attempt, and the job is retried until the secret works.
func TestPostInstallRetriesRefusedSecret(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 2, grace: -1, activation: 300 * time.Millisecond})
	id := en.install(t, mstudiotest.CallRequest{})
	en.waitFinished(t, id)
	got := en.jobsOf(t, id)
	if len(got) != 1 || got[0].State != "completed" || got[0].Attempts < 2 {
		t.Fatalf("jobs %+v, want one completed after retries", got)
	}
	for _, e := range got[0].Errors {
		if !strings.Contains(e, "not active yet") {
			t.Errorf("attempt error %q, want the platform's refusal of a secret not active yet", e)
		}
	}
	if in := en.instance(t, id); in.ContextNameAt == nil {
		t.Error("no context name stored")
	}
}

// TestPostInstallOncePerInstall delivers the install twice, and calls the hook twice more
// as if the store had not noticed the duplicate: one post-install job runs.
func TestPostInstallOncePerInstall(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 4, noStart: true})
			contextID := uuid.NewString()
			id := en.install(t, mstudiotest.CallRequest{ContextAggregateID: contextID})
			if status := en.redeliver(t, 0); status != http.StatusNoContent {
				t.Fatalf("second delivery: status %d, want %d", status, http.StatusNoContent)
			}
			rows, err := en.Store.Deliveries(context.Background(), id, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 2 || rows[0].Outcome != extension.OutcomeDuplicate {
				t.Fatalf("journal = %+v, want the second delivery journaled as a duplicate", rows)
			}
			ev := extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: id}
			en.Jobs.AfterApply(context.Background(), ev)
			en.Jobs.AfterApply(context.Background(), ev)
			if got := en.jobsOf(t, id); len(got) != 1 {
				t.Fatalf("before start: %d jobs %+v, want 1", len(got), got)
			}

			if err := en.Jobs.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			en.waitFinished(t, id)
			if got := en.instance(t, id).ContextName; got != wantName(extension.ContextProject, contextID) {
				t.Errorf("context name = %q", got)
			}
			got := en.jobsOf(t, id)
			if len(got) != 1 || got[0].State != "completed" {
				t.Errorf("after the run: jobs %+v, want one completed", got)
			}
		})
	}
}

// TestPostInstallWaitsItsDelay: the job is enqueued available, never scheduled (River's
// scheduler would make a burst of them available in one long transaction on the one
// SQLite writer), and it is held back until the install's delay has passed, so the
// instance's new secret is active by its first token mint: no mint is refused.
func TestPostInstallWaitsItsDelay(t *testing.T) {
	const delay = 1500 * time.Millisecond
	en := newEnv(t, extension.SQLite, envOptions{workers: 2, activation: 700 * time.Millisecond,
		config: func(c *Config) { c.PostInstallDelay = delay }})
	id := en.install(t, mstudiotest.CallRequest{})
	got := en.jobsOf(t, id)
	if len(got) != 1 || (got[0].State != "available" && got[0].State != "running") {
		t.Fatalf("jobs right after the install %+v, want one available or running, none scheduled", got)
	}
	waitFor(t, "the post-install job to complete", 15*time.Second, func() bool {
		got = en.jobsOf(t, id)
		return len(got) == 1 && got[0].State == "completed"
	})
	if took := got[0].FinalizedAt.Sub(got[0].CreatedAt); took < delay {
		t.Errorf("the job completed %v after it was enqueued, want at least the delay %v", took, delay)
	}
	if got[0].Attempts != 1 {
		t.Errorf("%d attempts, want 1: waiting takes none", got[0].Attempts)
	}
	mints := en.SimRequests("POST /v2/extension-instances/{id}/tokens")
	if len(mints) == 0 {
		t.Fatal("no token mint reached the simulator")
	}
	for _, m := range mints {
		if m.Status/100 != 2 {
			t.Errorf("a token mint answered %d: the job asked before the secret was active", m.Status)
		}
	}
}

// TestPostInstallWaitHoldsNoWorker: post-install jobs waiting out their delay, in their
// own queue, leave the workers of the other kinds to them: with more fresh installs than
// workers, another job runs at once.
func TestPostInstallWaitHoldsNoWorker(t *testing.T) {
	var ranAt atomic.Int64
	en := newEnv(t, extension.SQLite, envOptions{workers: 2,
		config: func(c *Config) { c.PostInstallDelay = 3 * time.Second },
		register: func(j *Jobs) {
			Register(j, func(context.Context, *extension.Instance, InstanceAPI, noopArgs) error {
				ranAt.Store(time.Now().UnixNano())
				return nil
			})
		}})
	a := en.install(t, mstudiotest.CallRequest{})
	for range 3 {
		en.install(t, mstudiotest.CallRequest{})
	}
	time.Sleep(300 * time.Millisecond) // the post-install jobs taken up
	at := time.Now()
	if err := en.Jobs.Enqueue(context.Background(), noopArgs{For{a}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other job", 15*time.Second, func() bool { return ranAt.Load() != 0 })
	if took := time.Unix(0, ranAt.Load()).Sub(at); took > 2*time.Second {
		t.Errorf("another job waited %v for a worker while post-install jobs waited out their delay", took)
	}
}

// TestPostInstallLongDelayScheduled: a delay longer than a snooze can wait out in the
// available state is scheduled at the enqueue, and no worker holds the job meanwhile:
// Stop returns at once.
func TestPostInstallLongDelayScheduled(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 1, config: func(c *Config) { c.PostInstallDelay = time.Hour }})
	id := en.install(t, mstudiotest.CallRequest{})
	if got := en.jobsOf(t, id); len(got) != 1 || got[0].State != "scheduled" || got[0].ScheduledAt.Before(time.Now().Add(59*time.Minute)) {
		t.Fatalf("jobs %+v, want one scheduled an hour ahead", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := en.Jobs.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestPostInstallWait: how long a post-install job has yet to wait.
func TestPostInstallWait(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	row := func(kind string, attempt int, created time.Time) *rivertype.JobRow {
		return &rivertype.JobRow{Kind: kind, Attempt: attempt, CreatedAt: created}
	}
	for _, tc := range []struct {
		name  string
		job   *rivertype.JobRow
		delay time.Duration
		want  time.Duration
	}{
		{"the rest of the delay", row(KindPostInstall, 1, now.Add(-time.Second)), 3 * time.Second, 2 * time.Second},
		{"before its first attempt", row(KindPostInstall, 0, now.Add(-time.Second)), 3 * time.Second, 2 * time.Second},
		{"past the delay", row(KindPostInstall, 1, now.Add(-4*time.Second)), 3 * time.Second, 0},
		{"almost past", row(KindPostInstall, 1, now.Add(-2990*time.Millisecond)), 3 * time.Second, 10 * time.Millisecond},
		{"a retry", row(KindPostInstall, 2, now), 3 * time.Second, 0},
		{"another kind", row(KindRefreshContextName, 1, now), 3 * time.Second, 0},
		{"a clock behind the database's: at most the delay", row(KindPostInstall, 1, now.Add(time.Minute)), 3 * time.Second, 3 * time.Second},
		{"at most sleepMax", row(KindPostInstall, 1, now), time.Minute, sleepMax},
		{"no delay", row(KindPostInstall, 1, now), 0, 0},
	} {
		if got := postInstallWait(tc.job, tc.delay, now); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestPostInstallForbiddenIsCancelled: an instance whose scopes do not let it read its
// project cannot learn the name by trying again.
func TestPostInstallForbiddenIsCancelled(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 2})
	id := en.install(t, mstudiotest.CallRequest{ConsentedScopes: []string{"customer:read"}})
	waitFor(t, "the job to end", 15*time.Second, func() bool {
		got := en.jobsOf(t, id)
		return len(got) == 1 && got[0].State == "cancelled"
	})
	if in := en.instance(t, id); in.ContextNameAt != nil {
		t.Errorf("context name stored: %q", in.ContextName)
	}
}

// TestAfterApplyConcurrent: installs arriving together are enqueued in batches, an
// instance named twice in a batch once. AfterApply does not wait for the insert, so the
// test waits for the jobs to appear.
func TestAfterApplyConcurrent(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{noStart: true})
			ids := make([]string, 50)
			for i := range ids {
				ids[i] = uuid.NewString()
			}
			var wg sync.WaitGroup
			for i := range 2 * len(ids) {
				wg.Go(func() {
					en.Jobs.AfterApply(context.Background(), extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: ids[i%len(ids)]})
				})
			}
			wg.Wait()
			got := map[string]int{}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(got) < len(ids); time.Sleep(20 * time.Millisecond) {
				all, err := en.Jobs.List(context.Background(), 0)
				if err != nil {
					t.Fatal(err)
				}
				clear(got)
				for _, j := range all {
					if j.Kind == KindPostInstall {
						got[j.InstanceID]++
					}
				}
			}
			for _, id := range ids {
				if got[id] != 1 {
					t.Errorf("instance %s: %d post-install jobs, want 1", id, got[id])
				}
			}
			if len(got) != len(ids) {
				t.Errorf("post-install jobs for %d instances, want %d", len(got), len(ids))
			}
		})
	}
}
