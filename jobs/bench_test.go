package jobs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
)

type noopArgs struct{ For }

func (noopArgs) Kind() string { return "noop" }

// noTokens is the token source of the benchmark, whose jobs call nowhere.
type noTokens struct{}

func (noTokens) Token(context.Context, string) (mstudio.InstanceToken, error) {
	return mstudio.InstanceToken{}, extension.ErrNoSecret
}

// BenchmarkJobThroughput inserts b.N no-op jobs of one instance, then starts the
// workers and waits until River has marked every job completed. Each job goes the whole
// way: fetched, its instance loaded from the store, worked, completed. It reports
// jobs/s worked (from the start of the workers to the last completion) and inserts/s.
//
//	go test -run '^$' -bench JobThroughput -benchtime 5000x ./jobs/
func BenchmarkJobThroughput(b *testing.B) {
	for _, d := range extensiontest.Dialects() {
		for _, workers := range []int{10, 100} {
			b.Run(fmt.Sprintf("%s/workers=%d", d, workers), func(b *testing.B) {
				benchThroughput(b, d, workers)
			})
		}
	}
}

func benchThroughput(b *testing.B, d extension.Dialect, workers int) {
	ctx := context.Background()
	url := extensiontest.URL(b, d)
	store := extensiontest.Open(b, url, extension.Options{Keys: extensiontest.Keyring(b)})
	if _, err := Migrate(ctx, store, url); err != nil {
		b.Fatal(err)
	}
	client, err := mstudio.New("http://127.0.0.1:1", mstudio.Options{})
	if err != nil {
		b.Fatal(err)
	}
	j, err := New(ctx, Config{Store: store, DatabaseURL: url, Tokens: noTokens{}, Client: client, Workers: workers, Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := j.Stop(ctx); err != nil {
			b.Error(err)
		}
	})
	var worked atomic.Int64
	Register(j, func(context.Context, *extension.Instance, InstanceAPI, noopArgs) error {
		worked.Add(1)
		return nil
	})
	id := uuid.NewString()
	enabled := true
	if _, err := store.ApplyLifecycle(ctx, extension.LifecycleEvent{
		Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: time.Now(), InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Enabled: &enabled, Secret: "s",
	}); err != nil {
		b.Fatal(err)
	}
	// A name, so that the reconciler run at start leaves the instance alone.
	if err := store.SetContextName(ctx, id, "bench", time.Now()); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	insertStart := time.Now()
	params := make([]river.InsertManyParams, 0, insertBatch)
	for i := range b.N {
		params = append(params, river.InsertManyParams{Args: noopArgs{For{id}}})
		if len(params) == insertBatch || i == b.N-1 {
			if _, err := j.queue.InsertMany(ctx, params); err != nil {
				b.Fatal(err)
			}
			params = params[:0]
		}
	}
	inserted := time.Since(insertStart)

	start := time.Now()
	if err := j.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for worked.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	for completed(b, store) < b.N {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(float64(b.N)/inserted.Seconds(), "inserts/s")
}

// completed counts the jobs River has marked completed.
func completed(b *testing.B, store *extension.Store) int {
	var n int
	if err := store.SQLDB().QueryRow(`SELECT COUNT(*) FROM river_job WHERE state = 'completed'`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkApplyBesideJobs measures what River costs the webhook path on SQLite, where
// both write to one file (River on a connection of its own that yields to deliveries):
// 32 senders apply ExtensionAddedToContext events for new instances, (store) alone,
// (enqueue) each followed by AfterApply's enqueue of the post-install job as the webhook
// hook does, and (enqueue+workers) the same while 10 workers run a stream of no-op jobs;
// (store+idle-workers) is the store alone beside 10 started workers with nothing to do
// (River's pollers, notifier and leader election). It reports deliveries/s, latency
// percentiles, and how often and how long River waited for its connection.
//
//	go test -run '^$' -bench ApplyBesideJobs -benchtime 5000x ./jobs/
func BenchmarkApplyBesideJobs(b *testing.B) {
	for _, mode := range []string{"store", "store+idle-workers", "enqueue", "enqueue+workers"} {
		b.Run(mode, func(b *testing.B) { benchApplyBesideJobs(b, mode) })
	}
}

func benchApplyBesideJobs(b *testing.B, mode string) {
	ctx := context.Background()
	url := extensiontest.URL(b, extension.SQLite)
	store := extensiontest.Open(b, url, extension.Options{Keys: extensiontest.Keyring(b)})
	if _, err := Migrate(ctx, store, url); err != nil {
		b.Fatal(err)
	}
	client, err := mstudio.New("http://127.0.0.1:1", mstudio.Options{})
	if err != nil {
		b.Fatal(err)
	}
	workers := 0
	if mode == "enqueue+workers" || mode == "store+idle-workers" {
		workers = 10
	}
	// The post-install jobs wait an hour: the benchmark measures their enqueue.
	j, err := New(ctx, Config{Store: store, DatabaseURL: url, Tokens: noTokens{}, Client: client, Workers: workers,
		Logger: testLogger(b), PostInstallDelay: time.Hour, ReconcileEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := j.Stop(ctx); err != nil {
			b.Error(err)
		}
	})
	Register(j, func(context.Context, *extension.Instance, InstanceAPI, noopArgs) error { return nil })
	stop := make(chan struct{})
	streamed := make(chan int)
	id := uuid.NewString() // the instance of the no-op jobs
	if workers > 0 {
		enabled := true
		if _, err := store.ApplyLifecycle(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: uuid.NewString(),
			CreatedAt: time.Now(), InstanceID: id, ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Enabled: &enabled, Secret: "s"}); err != nil {
			b.Fatal(err)
		}
		if err := j.Start(ctx); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // elected, pollers running
	}
	if mode == "enqueue+workers" {
		go func() { // ~1000 jobs/s: 20 every 20 ms
			n := 0
			t := time.NewTicker(20 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					streamed <- n
					return
				case <-t.C:
				}
				params := make([]river.InsertManyParams, 20)
				for i := range params {
					params[i] = river.InsertManyParams{Args: noopArgs{For{id}}}
				}
				if _, err := j.queue.InsertMany(ctx, params); err != nil {
					b.Error(err)
				}
				n += len(params)
			}
		}()
	}
	events := make([]extension.LifecycleEvent, b.N)
	enabled := true
	for i := range events {
		events[i] = extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: time.Now(),
			InstanceID: uuid.NewString(), ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Enabled: &enabled, Secret: "s"}
	}
	var next atomic.Int64
	latencies := make([]time.Duration, b.N)
	before := store.QueueDB().Stats()
	b.SetParallelism(16) // 32 senders on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			t0 := time.Now()
			if _, err := store.ApplyLifecycle(ctx, events[i]); err != nil {
				b.Error(err)
				return
			}
			if strings.HasPrefix(mode, "enqueue") {
				j.AfterApply(ctx, events[i])
			}
			latencies[i] = time.Since(t0)
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after := store.QueueDB().Stats()
	if mode == "enqueue+workers" {
		close(stop)
		b.ReportMetric(float64(<-streamed)/elapsed.Seconds(), "jobs-inserted/s")
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(latencies[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(after.WaitCount-before.WaitCount)/float64(b.N), "river-conn-waits/op")
	b.ReportMetric(float64((after.WaitDuration-before.WaitDuration).Microseconds())/1000/float64(b.N), "river-conn-wait-ms/op")
	if after.MaxOpenConnections != 1 {
		b.Errorf("River has %d connections, want 1", after.MaxOpenConnections)
	}
}

// BenchmarkDeliveriesWithJobs is the webhooks package's full-path delivery benchmark
// (32 senders, signed ExtensionAddedToContext deliveries for new instances, through the
// Echo handler) with and without AfterApply as the Applied hook, so the cost of the
// post-install enqueue shows against the same baseline.
//
//	go test -run '^$' -bench DeliveriesWithJobs -benchtime 20000x ./jobs/
func BenchmarkDeliveriesWithJobs(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(crand.Reader)
	serial := uuid.NewString()
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"serial": serial, "algorithm": "Ed25519", "key": base64.StdEncoding.EncodeToString(pub)})
	}))
	defer keys.Close()
	for _, d := range extensiontest.Dialects() {
		for _, hook := range []string{"none", "jobs"} {
			b.Run(fmt.Sprintf("%s/hook=%s", d, hook), func(b *testing.B) {
				benchDeliveriesWithJobs(b, d, hook == "jobs", keys.URL, serial, priv)
			})
		}
	}
}

func benchDeliveriesWithJobs(b *testing.B, d extension.Dialect, withJobs bool, keysURL, serial string, priv ed25519.PrivateKey) {
	const extensionID = "3f1e6c2a-8b4d-4e59-9a7c-2d5b8e1f4a60"
	ctx := context.Background()
	url := extensiontest.URL(b, d)
	store := extensiontest.Open(b, url, extension.Options{Keys: extensiontest.Keyring(b)})
	if _, err := Migrate(ctx, store, url); err != nil {
		b.Fatal(err)
	}
	client, err := mstudio.New(keysURL, mstudio.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var hook func(context.Context, extension.LifecycleEvent)
	if withJobs {
		// A web process: enqueue only. The jobs wait an hour, out of the way.
		j, err := New(ctx, Config{Store: store, DatabaseURL: url, Logger: testLogger(b), PostInstallDelay: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { j.Stop(ctx) })
		hook = j.AfterApply
	}
	e := echo.New()
	e.POST("/mstudio/webhooks", webhooks.New(webhooks.Config{
		Store: store, Keys: mstudio.NewKeyCache(client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID: extensionID, Applied: hook,
	}).Receive)
	type signed struct {
		body   []byte
		header http.Header
	}
	deliveries := make([]signed, b.N)
	now := time.Now()
	for i := range deliveries {
		body := fmt.Appendf(nil, `{"apiVersion":"v1","id":%q,"kind":"ExtensionAddedToContext","request":{"id":%q,"createdAt":%q,"target":{"method":"POST","url":"https://ext.example/mstudio/webhooks"}},"context":{"id":%q,"kind":"project"},"consentedScopes":["project:read"],"state":{"enabled":true},"meta":{"extensionId":%q,"contributorId":"7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17"},"secret":%q,"variantKey":"default"}`,
			uuid.NewString(), uuid.NewString(), now.Add(time.Duration(i)).UTC().Format(time.RFC3339Nano), uuid.NewString(), extensionID, crand.Text())
		h := http.Header{"Content-Type": {"application/json"}}
		mstudio.Sign(h, serial, priv, body)
		deliveries[i] = signed{body, h}
	}
	var next atomic.Int64
	latencies := make([]time.Duration, b.N)
	b.SetParallelism(16) // 32 senders on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			start := time.Now()
			req := httptest.NewRequest(http.MethodPost, "/mstudio/webhooks", bytes.NewReader(deliveries[i].body))
			req.Header = deliveries[i].header.Clone()
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				b.Errorf("status %d: %s", rec.Code, rec.Body)
				return
			}
			latencies[i] = time.Since(start)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[b.N*99/100].Microseconds())/1000, "p99-ms")
}
