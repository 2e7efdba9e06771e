package jobs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// newPriorityQueue is a SQLite store and a queue with workers that runs no-op jobs,
// counting them; the workers are not started.
func newPriorityQueue(t *testing.T, opts extension.Options) (*extension.Store, *Jobs, *atomic.Int64) {
	t.Helper()
	ctx := context.Background()
	url := extensiontest.SQLiteURL(t)
	opts.Keys = extensiontest.Keyring(t)
	store := extensiontest.Open(t, url, opts)
	if _, err := Migrate(ctx, store, url); err != nil {
		t.Fatal(err)
	}
	client, err := mstudio.New("http://127.0.0.1:1", mstudio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(ctx, Config{Store: store, DatabaseURL: url, Tokens: noTokens{}, Client: client, Workers: 4,
		Logger: testLogger(t), PollInterval: 50 * time.Millisecond, ReconcileEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := j.Stop(sctx); err != nil {
			t.Errorf("stop jobs: %v", err)
		}
	})
	var ran atomic.Int64
	Register(j, func(context.Context, *extension.Instance, InstanceAPI, noopArgs) error {
		ran.Add(1)
		return nil
	})
	return store, j, &ran
}

// install applies an install of a new instance and returns its id.
func installNew(t *testing.T, store *extension.Store) string {
	t.Helper()
	id := uuid.NewString()
	enabled := true
	res, err := store.ApplyLifecycle(context.Background(), extension.LifecycleEvent{
		Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: time.Now(), InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Enabled: &enabled, Secret: "secret",
	})
	if err != nil || res.Outcome != extension.OutcomeApplied {
		t.Errorf("install: %+v, %v", res, err)
	}
	return id
}

// TestQueueWaitsForQueuedDeliveries: on SQLite, River's insert of a job that asks before
// a group of deliveries is written after all of them, and the job then runs. A
// transaction holds the writes back while the insert and then the deliveries line up; a
// trigger on River's table records how many deliveries were committed when the job was.
func TestQueueWaitsForQueuedDeliveries(t *testing.T) {
	ctx := context.Background()
	store, j, ran := newPriorityQueue(t, extension.Options{WriteYield: time.Minute})
	id := installNew(t, store)
	for _, q := range []string{
		`CREATE TABLE probe (deliveries INTEGER)`,
		`CREATE TRIGGER probe_job AFTER INSERT ON river_job WHEN NEW.kind = 'noop'
			BEGIN INSERT INTO probe SELECT COUNT(*) FROM webhook_deliveries; END`,
	} {
		if _, err := store.SQLDB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	before := countRows(t, store, `SELECT COUNT(*) FROM webhook_deliveries`)

	hold, err := store.SQLDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	enqueued := make(chan error, 1)
	go func() { enqueued <- j.Enqueue(ctx, noopArgs{For{id}}) }()
	waitFor(t, "River's insert to wait", 10*time.Second, func() bool { return store.QueueDB().Stats().InUse == 1 })
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { installNew(t, store) })
	}
	waitFor(t, "the deliveries to queue", 10*time.Second, func() bool { return store.QueuedDeliveries() == n })
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-enqueued; err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, store, `SELECT deliveries FROM probe`) - before; got != n {
		t.Errorf("River wrote the job after %d of the %d queued deliveries, want after all", got, n)
	}

	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to complete", 15*time.Second, func() bool {
		return countRows(t, store, `SELECT COUNT(*) FROM river_job WHERE kind = 'noop' AND state = 'completed'`) == 1
	})
	if ran.Load() != 1 {
		t.Errorf("the job ran %d times, want 1", ran.Load())
	}
}

// TestJobsCompleteUnderDeliveries: while deliveries never pause, jobs are paced, not
// stopped: a batch of them completes while the deliveries go on.
func TestJobsCompleteUnderDeliveries(t *testing.T) {
	ctx := context.Background()
	store, j, ran := newPriorityQueue(t, extension.Options{})
	id := installNew(t, store)
	const jobs = 20
	for range jobs {
		if err := j.Enqueue(ctx, noopArgs{For{id}}); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				installNew(t, store)
				delivered.Add(1)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	waitFor(t, "the deliveries to start", 10*time.Second, func() bool { return delivered.Load() > 0 })
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	from := delivered.Load()
	waitFor(t, "the jobs to complete", 60*time.Second, func() bool {
		return countRows(t, store, `SELECT COUNT(*) FROM river_job WHERE kind = 'noop' AND state = 'completed'`) == jobs
	})
	if ran.Load() != jobs {
		t.Errorf("%d jobs ran, want %d", ran.Load(), jobs)
	}
	if delivered.Load() == from {
		t.Error("no delivery was applied while the jobs ran")
	}
}

func countRows(t *testing.T, store *extension.Store, query string) int {
	t.Helper()
	var n int
	if err := store.ReadDB().QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
