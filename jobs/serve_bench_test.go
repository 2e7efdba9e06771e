package jobs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/prometheus/client_golang/prometheus"
)

// serveWorkers is serve's default --workers (cmd/extension-backend: defaultWorkers).
const serveWorkers = 32

// The shape of the load: as `extension-backend bench webhooks` sends it by default, 32
// senders over 1,000 instances, each sender installing its own instances first and then
// updating them in order.
const (
	benchSenders   = 32
	benchInstances = 1000
)

// BenchmarkServeDeliveries sends b.N signed lifecycle deliveries over HTTP from 32
// senders to (path=serve) the webhook handler wired as `serve` wires it on SQLite, job
// workers on (32; the post-install job of every install enqueued at once and worked
// after serve's 3 s delay, calling the simulator over HTTP for a token and the context
// name), and to (path=prototype) a bare
// handler that verifies the signature, parses the body and upserts one row on the same
// SQLite settings: the baseline of webhooks' BenchmarkDeliveries (copied: test code of
// another package), over HTTP and with updates. (path=web-only) is serve with --workers
// 0, for reference. It reports deliveries/s, p50 and p99 latency, non-2xx answers and
// the process's CPU time per delivery (senders included; steadier than the rate on a
// shared machine); serve also reports how many post-install jobs completed during the
// run and how long the rest took after it, and fails unless every install's job
// completed and stored the context name within two minutes.
//
//	go test ./jobs -run '^$' -bench ServeDeliveries -benchtime 20000x -count 3
func BenchmarkServeDeliveries(b *testing.B) {
	b.Run("path=prototype", func(b *testing.B) { benchServe(b, -1, false) })
	b.Run("path=serve", func(b *testing.B) { benchServe(b, serveWorkers, false) })
	b.Run("path=web-only", func(b *testing.B) { benchServe(b, 0, false) })
	// serve with EXT_CAPTURE_DELIVERIES set: every delivery captured, sealed, written in
	// the background.
	b.Run("path=serve-capture", func(b *testing.B) { benchServe(b, serveWorkers, true) })
}

// benchServe runs the load against the prototype (workers < 0) or serve with workers,
// capturing every delivery when capture is set.
func benchServe(b *testing.B, workers int, capture bool) {
	// serve's log: JSON at info, a line per request (discarded here, not kept in memory).
	logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	app := apptest.New(b, apptest.Options{Clock: extensiontest.WallClock(), Front: func(o *httpfront.Options) {
		o.Logger = logger
		o.LogAttrs = []string{webhooks.LogKeyInstanceID, webhooks.LogKeyEventKind, webhooks.LogKeyRequestID, webhooks.LogKeyOutcome}
	}})
	sim := app.Sim
	var target string
	var captures *extension.CaptureRecorder
	if workers < 0 {
		srv := httptest.NewServer(newPrototype(b, sim.WebhookKey().Public()))
		b.Cleanup(srv.Close)
		target = srv.URL + "/mstudio/webhooks"
	} else {
		captures = newServeJobs(b, app, logger, workers, capture)
		target = app.URL(b) + "/mstudio/webhooks"
	}
	instances := min(benchInstances, b.N)
	plans := planDeliveries(b, sim, target, b.N, instances)
	client := &http.Client{Timeout: 6 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: benchSenders, MaxConnsPerHost: benchSenders}}
	b.Cleanup(client.CloseIdleConnections)

	latencies := make([][]time.Duration, len(plans))
	var failed atomic.Int64
	var wg sync.WaitGroup
	cpu0 := processCPU()
	b.ResetTimer()
	start := time.Now()
	for w, plan := range plans {
		wg.Go(func() {
			for _, d := range plan {
				t0 := time.Now()
				status, err := d.send(client, target)
				latencies[w] = append(latencies[w], time.Since(t0))
				if err != nil || status/100 != 2 {
					if failed.Add(1) <= 3 {
						b.Errorf("delivery: status %d, %v", status, err)
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if cpu := processCPU() - cpu0; cpu > 0 {
		// What the process spent per delivery, senders included: on a shared machine a
		// steadier measure of cost than the rate.
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/delivery")
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(failed.Load()), "non-2xx")
	if captures != nil {
		b.ReportMetric(float64(captures.Dropped()), "captures-dropped")
	}
	if workers > 0 {
		b.ReportMetric(float64(postInstallsCompleted(b, app.Store)), "jobs-in-run")
		b.ReportMetric(waitPostInstalls(b, app.Store, instances).Seconds(), "jobs-after-s")
	}
}

// newServeJobs wires the queue and the webhook handler as serve does: the broker and the
// platform client on the simulator, the queue with workers, AfterApply behind the
// broker's Applied hook, the handler on the production front.
func newServeJobs(b *testing.B, app *apptest.App, logger *slog.Logger, workers int, capture bool) *extension.CaptureRecorder {
	ctx := context.Background()
	if _, err := Migrate(ctx, app.Store, app.DatabaseURL); err != nil {
		b.Fatal(err)
	}
	broker := mstudio.NewBroker(app.Store, app.Client, mstudio.BrokerOptions{Logger: testLogger(b)})
	j, err := New(ctx, Config{
		Store: app.Store, DatabaseURL: app.DatabaseURL, Tokens: broker, Client: app.Client,
		Workers: workers, Logger: testLogger(b),
		// serve's default delay (3 s): the jobs are enqueued available at once and snoozed
		// until then, so the first of them run while the deliveries come in.
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := j.Stop(sctx); err != nil {
			b.Errorf("stop jobs: %v", err)
		}
	})
	var captures *extension.CaptureRecorder
	if capture {
		captures = app.Store.NewCaptureRecorder(logger)
		b.Cleanup(captures.Close)
	}
	h := webhooks.New(webhooks.Config{
		Captures:      captures,
		Store:         app.Store,
		Keys:          mstudio.NewKeyCache(app.Client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID:   app.Sim.ExtensionID(),
		ContributorID: app.Sim.ContributorID(),
		Logger:        logger,
		Registerer:    prometheus.NewRegistry(),
		Applied: func(ctx context.Context, ev extension.LifecycleEvent) {
			broker.Applied(ctx, ev)
			j.AfterApply(ctx, ev)
		},
	})
	app.Front.POST("/mstudio/webhooks", h.Receive)
	if err := j.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return captures
}

// signedBody is one delivery, signed.
type signedBody struct {
	body   []byte
	header http.Header
}

func (d signedBody) send(client *http.Client, to string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, to, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header = d.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// planDeliveries creates the instances at the simulator with working secrets and signs
// n deliveries for them, split over the senders: each sender owns every 32nd instance,
// installs each first, then updates them in turn, each event newer than the one before.
func planDeliveries(b *testing.B, sim *mstudiotest.Server, target string, n, instances int) [][]signedBody {
	b.Helper()
	key := sim.WebhookKey()
	ids := make([]mstudiotest.Instance, instances)
	for i := range ids {
		in, err := sim.CreateInstance(mstudiotest.InstanceSpec{})
		if err != nil {
			b.Fatal(err)
		}
		// As if the install had been delivered by the simulator: its secret works.
		if ids[i], err = sim.UpdateInstance(in.ID, func(in *mstudiotest.Instance) {
			in.Secret, in.PendingSecret, in.SecretUsableAt = in.PendingSecret, "", time.Now()
		}); err != nil {
			b.Fatal(err)
		}
	}
	plans := make([][]signedBody, benchSenders)
	at := time.Now()
	for w := range plans {
		var own []mstudiotest.Instance
		for i := w; i < len(ids); i += benchSenders {
			own = append(own, ids[i])
		}
		count := n / benchSenders
		if w < n%benchSenders {
			count++
		}
		for k := range count {
			if len(own) == 0 {
				break
			}
			in := own[k%len(own)]
			spec := mstudiotest.PayloadSpec{
				Kind: "InstanceUpdated", InstanceID: in.ID, ExtensionID: sim.ExtensionID(), ContributorID: sim.ContributorID(),
				ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.Scopes, Enabled: true, VariantKey: "default",
				CreatedAt: at.Add(time.Duration(k) * time.Millisecond), TargetURL: target,
			}
			if k < len(own) {
				spec.Kind, spec.Secret = "ExtensionAddedToContext", in.Secret
			}
			body, err := mstudiotest.BuildPayload(spec)
			if err != nil {
				b.Fatal(err)
			}
			h := http.Header{"Content-Type": {"application/json"}}
			mstudio.Sign(h, key.Serial, key.Private, body)
			plans[w] = append(plans[w], signedBody{body, h})
		}
	}
	return plans
}

// newPrototype is the bare baseline: ed25519 verify, JSON parse, one upsert on SQLite
// with the store's settings and one connection. It verifies with crypto/ed25519, as a
// receiver written by hand does; serve's faster verification is part of what is measured.
func newPrototype(b *testing.B, pub ed25519.PublicKey) http.Handler {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "base.db")+
		"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=on")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE instances (id TEXT PRIMARY KEY, context_kind TEXT, context_id TEXT, consented_scopes TEXT, enabled BOOLEAN, variant_key TEXT, secret TEXT, last_event_ns INTEGER)`); err != nil {
		b.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sig, err := base64.StdEncoding.DecodeString(r.Header.Get(mstudio.HeaderSignature))
		if err != nil || !ed25519.Verify(pub, body, sig) {
			http.Error(w, "verify failed", http.StatusUnauthorized)
			return
		}
		var p webhooks.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		scopes, _ := json.Marshal(p.ConsentedScopes)
		if _, err = db.Exec(`INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET
			consented_scopes = excluded.consented_scopes, enabled = excluded.enabled, last_event_ns = excluded.last_event_ns`,
			p.ID, p.Context.Kind, p.Context.ID, string(scopes), *p.State.Enabled, *p.VariantKey, p.Secret.Reveal(), time.Now().UnixNano()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// postInstallsCompleted counts the post-install jobs River has marked completed.
func postInstallsCompleted(b *testing.B, store *extension.Store) int {
	var n int
	if err := store.ReadDB().QueryRow(`SELECT COUNT(*) FROM river_job WHERE kind = ? AND state = 'completed'`, KindPostInstall).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// waitPostInstalls waits until the post-install job of every installed instance has
// completed and stored its context name, and returns how long that took; it fails the
// benchmark after two minutes.
func waitPostInstalls(b *testing.B, store *extension.Store, instances int) time.Duration {
	start := time.Now()
	for {
		var named int
		if err := store.ReadDB().QueryRow(`SELECT COUNT(*) FROM instances WHERE context_name_at IS NOT NULL`).Scan(&named); err != nil {
			b.Fatal(err)
		}
		done := postInstallsCompleted(b, store)
		if done == instances && named == instances {
			return time.Since(start)
		}
		if time.Since(start) > 2*time.Minute {
			b.Fatalf("after 2 min: %d of %d post-install jobs completed, %d context names stored", done, instances, named)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processCPU is the CPU time (user and system) the process has used so far, from
// /proc/self/stat; 0 where there is none.
func processCPU() time.Duration {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The fields after the command's closing parenthesis start with the state (field
	// 3); utime and stime are fields 14 and 15, in clock ticks of 10 ms.
	_, rest, ok := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if !ok || len(fields) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
