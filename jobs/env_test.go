package jobs

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// env is a backend as cmd wires it, on the shared app (apptest, on the wall clock): the
// store, the job queue, the webhook handler behind the production front with the queue's
// AfterApply hook, and the platform simulator that delivers to it.
type env struct {
	*apptest.App
	Jobs *Jobs
	// Backend is the URL of the backend's webhook route.
	Backend string

	mu         sync.Mutex
	deliveries []delivery // every webhook the backend received, to replay one
}

type delivery struct {
	header http.Header
	body   []byte
}

type envOptions struct {
	workers    int
	activation time.Duration // the simulator's secret activation delay; 0: 150 ms
	config     func(*Config) // changes the queue's configuration
	noStart    bool          // do not start the workers
	ownStop    bool          // the test stops the queue itself: the cleanup's Stop repeats that stop's answer
	noHook     bool          // leave out AfterApply, as a crash between commit and enqueue would
	grace      time.Duration // the broker's grace for a secret not active yet; 0: its default, 15 s
	register   func(*Jobs)   // registers kinds before the queue is used
}

func newEnv(t testing.TB, d extension.Dialect, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	if o.activation == 0 {
		o.activation = 150 * time.Millisecond
	}
	en := &env{App: apptest.New(t, apptest.Options{Dialect: d, Clock: extensiontest.WallClock(), Sim: func(so *mstudiotest.Options) {
		so.RetryBase, so.RetryCap, so.SecretActivationDelay = 5*time.Millisecond, 50*time.Millisecond, o.activation
	}})}
	if _, err := Migrate(ctx, en.Store, en.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	broker := mstudio.NewBroker(en.Store, en.Client, mstudio.BrokerOptions{Grace: o.grace, Logger: testLogger(t)})
	cfg := Config{
		Store: en.Store, DatabaseURL: en.DatabaseURL, Tokens: broker, Client: en.Client,
		Workers: o.workers, Logger: testLogger(t),
		PostInstallDelay: -1, RetryWait: 50 * time.Millisecond, DisabledWait: 100 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, RefreshSpread: -1,
	}
	if o.config != nil {
		o.config(&cfg)
	}
	j, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the store's, so it runs before the store closes: River uses it.
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := j.Stop(sctx); err != nil && !o.ownStop {
			t.Errorf("stop jobs: %v", err)
		}
	})
	if o.register != nil {
		o.register(j)
	}
	en.Jobs = j
	// As cmd wires it: the broker forgets what an event makes stale, the queue enqueues.
	hook := func(ctx context.Context, ev extension.LifecycleEvent) {
		broker.Applied(ctx, ev)
		if !o.noHook {
			j.AfterApply(ctx, ev)
			// AfterApply does not wait for the insert; the tests want to see the job.
			if err := j.Flush(ctx); err != nil {
				t.Errorf("flush: %v", err)
			}
		}
	}
	h := webhooks.New(webhooks.Config{
		Store:         en.Store,
		Keys:          mstudio.NewKeyCache(en.Client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID:   en.Sim.ExtensionID(),
		ContributorID: en.Sim.ContributorID(),
		Registerer:    prometheus.NewRegistry(),
		Applied:       hook,
	})
	en.Front.POST("/mstudio/webhooks", h.Receive, en.recording)
	en.Backend = en.URL(t) + "/mstudio/webhooks"
	en.Sim.SetWebhookURL(en.Backend)
	if !o.noStart {
		if err := j.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return en
}

// recording keeps a copy of every delivery, so a test can deliver one again.
func (en *env) recording(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		en.mu.Lock()
		en.deliveries = append(en.deliveries, delivery{r.Header.Clone(), body})
		en.mu.Unlock()
		return next(c)
	}
}

// redeliver sends the nth delivery the backend received again, as the platform would
// after a lost answer, and returns the backend's status.
func (en *env) redeliver(t testing.TB, n int) int {
	t.Helper()
	en.mu.Lock()
	d := en.deliveries[n]
	en.mu.Unlock()
	req, err := http.NewRequest(http.MethodPost, en.Backend, bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = d.header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// install installs an instance through the real webhook path and returns its id.
func (en *env) install(t testing.TB, req mstudiotest.CallRequest) string {
	t.Helper()
	res, err := en.Sim.Trigger(context.Background(), mstudiotest.CallExtensionAddedToContext, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Successful {
		t.Fatalf("install: the backend answered %d %q", res.StatusCode, res.Body)
	}
	return res.InstanceID
}

// trigger sends another lifecycle event through the real webhook path.
func (en *env) trigger(t testing.TB, call string, req mstudiotest.CallRequest) {
	t.Helper()
	res, err := en.Sim.Trigger(context.Background(), call, req)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Successful {
		t.Fatalf("%s: the backend answered %d %q", call, res.StatusCode, res.Body)
	}
}

// jobsOf lists the jobs of an instance, oldest first.
func (en *env) jobsOf(t testing.TB, instanceID string) []JobInfo {
	t.Helper()
	all, err := en.Jobs.List(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []JobInfo
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].InstanceID == instanceID {
			out = append(out, all[i])
		}
	}
	return out
}

// waitFinished waits until the instance has jobs and all of them are finished.
func (en *env) waitFinished(t testing.TB, instanceID string) {
	t.Helper()
	waitFor(t, "the jobs of instance "+instanceID+" to finish", 15*time.Second, func() bool {
		got := en.jobsOf(t, instanceID)
		for _, j := range got {
			if j.FinalizedAt == nil {
				return false
			}
		}
		return len(got) > 0
	})
}

// instance loads an instance.
func (en *env) instance(t testing.TB, id string) *extension.Instance {
	t.Helper()
	in, err := en.Store.InstanceByID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogger sends River's and our log lines to the test log, warnings and up.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
