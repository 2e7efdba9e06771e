package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/prometheus/client_golang/prometheus"
)

type flakyArgs struct {
	For
}

func (flakyArgs) Kind() string { return "flaky" }

// TestUIRetriesJob has River's UI, as the ops console mounts it, retry a cancelled job:
// on both databases the job runs again and completes.
func TestUIRetriesJob(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var runs atomic.Int64
			en := newEnv(t, d, envOptions{workers: 2, register: func(j *Jobs) {
				Register(j, func(ctx context.Context, in *extension.Instance, api InstanceAPI, args flakyArgs) error {
					if runs.Add(1) == 1 {
						return Cancel(errors.New("first run fails for good"))
					}
					return nil
				})
			}})
			ctx := context.Background()
			id := en.install(t, mstudiotest.CallRequest{})
			en.waitFinished(t, id)
			if err := en.Jobs.Enqueue(ctx, flakyArgs{For{id}}); err != nil {
				t.Fatal(err)
			}
			job := waitJob(t, en, id, "flaky", "cancelled")

			srv := startUI(t, en)
			resp, err := http.Post(srv.URL+"/jobs/api/jobs/retry", "application/json", strings.NewReader(fmt.Sprintf(`{"ids":["%d"]}`, job.ID)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("retry answered %d, want 200", resp.StatusCode)
			}
			waitJob(t, en, id, "flaky", "completed")
			if got := runs.Load(); got != 2 {
				t.Errorf("the job ran %d times, want 2", got)
			}
			// Its page renders (the single-page app's shell) under the prefix.
			page, err := http.Get(srv.URL + "/jobs/")
			if err != nil {
				t.Fatal(err)
			}
			page.Body.Close()
			if page.StatusCode != http.StatusOK {
				t.Errorf("GET /jobs/ = %d, want 200", page.StatusCode)
			}
			// Retry through the package's own method too: a job id that names nothing.
			if err := en.Jobs.Retry(ctx, 1<<40); !errors.Is(err, ErrNoJob) {
				t.Errorf("Retry(unknown) = %v, want ErrNoJob", err)
			}
		})
	}
}

// waitJob waits until the instance's job of kind is in state, and returns it.
func waitJob(t *testing.T, en *env, instanceID, kind, state string) JobInfo {
	t.Helper()
	var found JobInfo
	waitFor(t, kind+" job "+state, 20*time.Second, func() bool {
		for _, j := range en.jobsOf(t, instanceID) {
			if j.Kind == kind && j.State == state {
				found = j
				return true
			}
		}
		return false
	})
	return found
}

// startUI starts River's UI on the env's queue under /jobs and serves it until the test
// ends.
func startUI(t *testing.T, en *env) *httptest.Server {
	t.Helper()
	ui, err := en.Jobs.NewUI("/jobs", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := ui.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ui)
	t.Cleanup(srv.Close)
	return srv
}

// TestQueueAgeMetric checks extension_job_queue_oldest_seconds: 0 with nothing due, and
// the wait of the oldest due job otherwise.
func TestQueueAgeMetric(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			var p pings
			en := newEnv(t, d, envOptions{workers: 1, noStart: true, noHook: true, register: p.register,
				config: func(c *Config) { c.Registerer = reg }})
			if got := queueAgeNow(t, en.Jobs); got != 0 {
				t.Errorf("age with no job = %v, want 0", got)
			}
			id := en.install(t, mstudiotest.CallRequest{})
			if err := en.Jobs.Enqueue(context.Background(), pingArgs{For: For{id}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // the job must have waited a little
			if got := queueAgeNow(t, en.Jobs); got <= 0 || got > 60 {
				t.Errorf("age with one waiting job = %v, want a few milliseconds", got)
			}
			// A job scheduled in the future is not due: it does not count.
			if err := en.Jobs.Enqueue(context.Background(), pingArgs{For: For{id}, Note: "later"}, After(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if got := queueAgeNow(t, en.Jobs); got <= 0 || got > 60 {
				t.Errorf("age with a job scheduled an hour ahead besides = %v, want the waiting one's", got)
			}
			mfs, err := reg.Gather()
			if err != nil || len(mfs) != 1 || mfs[0].GetName() != "extension_job_queue_oldest_seconds" {
				t.Errorf("registry gathers %v, %v; want the queue age alone", mfs, err)
			}
		})
	}
}

// TestQueueAgeCountsDueScheduledJobs: a job still scheduled after its time has come
// (River's scheduler has not made it available yet) counts as waiting, so a scheduler
// that falls behind shows in the gauge.
func TestQueueAgeCountsDueScheduledJobs(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var p pings
			en := newEnv(t, d, envOptions{workers: 1, noStart: true, noHook: true, register: p.register})
			id := en.install(t, mstudiotest.CallRequest{})
			if err := en.Jobs.Enqueue(context.Background(), pingArgs{For: For{id}}, After(300*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			if got := queueAgeNow(t, en.Jobs); got != 0 {
				t.Errorf("age with a job not due yet = %v, want 0", got)
			}
			time.Sleep(time.Second) // due, and no scheduler runs: the queue is not started
			if got := queueAgeNow(t, en.Jobs); got < 0.5 || got > 60 {
				t.Errorf("age with a job due 0.7 s ago and still scheduled = %v, want about 0.7", got)
			}
		})
	}
}

// queueAgeNow reads the queue age gauge once.
func queueAgeNow(t *testing.T, j *Jobs) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(newQueueAge(j))
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].Metric) != 1 {
		t.Fatalf("gather queue age: %v, %v", mfs, err)
	}
	return mfs[0].Metric[0].GetGauge().GetValue()
}
