package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// pingArgs is a job kind of the tests: it counts its runs and calls the platform.
type pingArgs struct {
	For
	Note string `json:"note"`
}

func (pingArgs) Kind() string { return "ping" }

// pings registers the ping kind and counts the runs of its handler.
type pings struct {
	runs  atomic.Int64
	names atomic.Value // the last context name it read
}

func (p *pings) register(j *Jobs) {
	Register(j, func(ctx context.Context, in *extension.Instance, api InstanceAPI, args pingArgs) error {
		token, err := api.Token(ctx)
		if err != nil {
			return err
		}
		name, err := api.Client.ContextName(ctx, token, in.ContextKind, in.ContextID)
		if err != nil {
			return err
		}
		p.names.Store(name)
		p.runs.Add(1)
		return nil
	})
}

func TestRemovedInstanceJobsDoNotRun(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var p pings
			en := newEnv(t, d, envOptions{workers: 4, noStart: true, register: p.register})
			ctx := context.Background()
			id := en.install(t, mstudiotest.CallRequest{})
			if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{id}, Note: "before removal"}); err != nil {
				t.Fatal(err)
			}
			en.trigger(t, mstudiotest.CallInstanceRemovedFromContext, mstudiotest.CallRequest{ExtensionInstanceID: id})
			if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{id}, Note: "after removal"}); err != nil {
				t.Fatal(err)
			}
			if err := en.Jobs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			en.waitFinished(t, id)
			got := en.jobsOf(t, id)
			if len(got) != 3 {
				t.Errorf("got %d jobs, want the post-install job and two pings", len(got))
			}
			for _, j := range got {
				// Cancelled at its first attempt, not retried.
				if j.State != "cancelled" || j.Attempts != 1 {
					t.Errorf("job %s: state %s after %d attempts, want cancelled after 1", j.Kind, j.State, j.Attempts)
				}
			}
			if n := p.runs.Load(); n != 0 {
				t.Errorf("the handler ran %d times for a removed instance", n)
			}
			if in := en.instance(t, id); in.ContextNameAt != nil {
				t.Errorf("a removed instance got a context name: %q", in.ContextName)
			}
		})
	}
}

func TestDisabledInstanceJobWaits(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var p pings
			en := newEnv(t, d, envOptions{workers: 4, register: p.register})
			ctx := context.Background()
			id := en.install(t, mstudiotest.CallRequest{})
			en.waitFinished(t, id)
			disabled := true
			en.trigger(t, mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: id, ExtensionInstanceDisabled: &disabled})
			if en.instance(t, id).Enabled {
				t.Fatal("the instance is still enabled")
			}
			if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{id}}); err != nil {
				t.Fatal(err)
			}
			// DisabledWait is 100 ms: the job looks several times and is put off each time.
			waitFor(t, "the job to be put off three times", 10*time.Second, func() bool {
				for _, j := range en.jobsOf(t, id) {
					if j.Kind == "ping" && j.Snoozes >= 3 {
						return true
					}
				}
				return false
			})
			if n := p.runs.Load(); n != 0 {
				t.Fatalf("the handler ran %d times while the instance was disabled", n)
			}

			enabled := false
			en.trigger(t, mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: id, ExtensionInstanceDisabled: &enabled})
			en.waitFinished(t, id)
			if n := p.runs.Load(); n != 1 {
				t.Errorf("the handler ran %d times once enabled, want 1", n)
			}
			for _, j := range en.jobsOf(t, id) {
				if j.Kind == "ping" && (j.State != "completed" || j.Attempts != 1 || len(j.Errors) != 0) {
					// Putting a job off does not spend its attempts.
					t.Errorf("ping job: %+v, want completed at its first attempt", j)
				}
			}
		})
	}
}

// TestJobErrorsRetry: a handler's error retries the job with backoff, and its
// instance's removal reported by the token source cancels it.
func TestJobErrorsRetry(t *testing.T) {
	var fails atomic.Int64
	fails.Store(2)
	var runs atomic.Int64
	en := newEnv(t, extension.SQLite, envOptions{workers: 2, register: func(j *Jobs) {
		Register(j, func(ctx context.Context, in *extension.Instance, api InstanceAPI, args pingArgs) error {
			runs.Add(1)
			if args.Note == "removed" {
				return extension.ErrRemoved
			}
			if fails.Add(-1) >= 0 {
				return errors.New("platform unavailable")
			}
			return nil
		})
	}})
	ctx := context.Background()
	id := en.install(t, mstudiotest.CallRequest{})
	en.waitFinished(t, id)
	for _, note := range []string{"flaky", "removed"} {
		if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{id}, Note: note}); err != nil {
			t.Fatal(err)
		}
	}
	en.waitFinished(t, id)
	var flaky, removed *JobInfo
	for _, j := range en.jobsOf(t, id) {
		switch {
		case j.Kind != "ping":
		case j.State == "completed":
			flaky = &j
		case j.State == "cancelled":
			removed = &j
		default:
			t.Errorf("ping job in state %s", j.State)
		}
	}
	if flaky == nil || flaky.Attempts != 3 || len(flaky.Errors) != 2 {
		t.Errorf("flaky job: %+v, want completed at the third attempt after two errors", flaky)
	}
	if removed == nil || removed.Attempts != 1 {
		t.Errorf("job whose instance was reported removed: %+v, want cancelled at its first attempt", removed)
	}
}

func TestRegisterLateOrTwicePanics(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{noStart: true, register: func(j *Jobs) {
		Register(j, func(context.Context, *extension.Instance, InstanceAPI, pingArgs) error { return nil })
	}})
	mustPanic := func(what string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", what)
			}
		}()
		f()
	}
	mustPanic("twice", func() {
		Register(en.Jobs, func(context.Context, *extension.Instance, InstanceAPI, pingArgs) error { return nil })
	})
	if err := en.Jobs.Enqueue(context.Background(), pingArgs{}); !errors.Is(err, ErrNoInstance) {
		t.Errorf("enqueue without instance: %v, want ErrNoInstance", err)
	}
	mustPanic("after enqueue", func() {
		Register(en.Jobs, func(context.Context, *extension.Instance, InstanceAPI, otherArgs) error { return nil })
	})
}

type otherArgs struct{ For }

func (otherArgs) Kind() string { return "other" }
