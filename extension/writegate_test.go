package extension_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

// TestWritesWaitForQueuedDeliveries: on SQLite, a write on another connection than the
// deliveries' that asks before them runs after them. A transaction holds the writes back
// while the other write and then the deliveries line up; when it ends, every queued
// delivery commits before the other write, which counts them from the journal.
func TestWritesWaitForQueuedDeliveries(t *testing.T) {
	ctx := context.Background()
	s := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{Keys: extensiontest.Keyring(t), WriteYield: time.Minute})
	if _, err := s.SQLDB().ExecContext(ctx, `CREATE TABLE probe (deliveries INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if s.DeliveriesActive() {
		t.Error("DeliveriesActive before any delivery")
	}
	hold, err := s.SQLDB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := s.QueueDB().ExecContext(ctx, `INSERT INTO probe SELECT COUNT(*) FROM webhook_deliveries`)
		wrote <- err
	}()
	waitUntilTrue(t, "the other write to wait", func() bool { return s.QueueDB().Stats().InUse == 1 })

	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if res, err := s.ApplyLifecycle(ctx, installOf(uuid.NewString())); err != nil || res.Outcome != extension.OutcomeApplied {
				t.Errorf("install: %+v, %v", res, err)
			}
		})
	}
	waitUntilTrue(t, "the deliveries to queue", func() bool { return s.QueuedDeliveries() == n })
	if !s.DeliveriesActive() {
		t.Error("deliveries are queued, but DeliveriesActive says none come in")
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if got := probeDeliveries(t, s.SQLDB()); got != n {
		t.Errorf("the other write ran after %d of the %d queued deliveries, want after all", got, n)
	}
}

// TestWritesGoOnUnderDeliveries: a stream of deliveries that never pauses holds the
// other writes back, but does not stop them.
func TestWritesGoOnUnderDeliveries(t *testing.T) {
	ctx := context.Background()
	s := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{Keys: extensiontest.Keyring(t)})
	if _, err := s.SQLDB().ExecContext(ctx, `CREATE TABLE probe (deliveries INTEGER)`); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ApplyLifecycle(ctx, installOf(uuid.NewString())); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitUntilTrue(t, "the deliveries to start", func() bool { return probeCount(t, s.SQLDB(), `SELECT COUNT(*) FROM webhook_deliveries`) > 0 })
	for _, db := range []*sql.DB{s.SQLDB(), s.QueueDB(), s.SQLDB(), s.QueueDB()} {
		if _, err := db.ExecContext(ctx, `INSERT INTO probe SELECT COUNT(*) FROM webhook_deliveries`); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if n := probeCount(t, s.SQLDB(), `SELECT COUNT(*) FROM probe`); n != 4 {
		t.Errorf("%d writes, want 4", n)
	}
}

func installOf(id string) extension.LifecycleEvent {
	enabled := true
	return extension.LifecycleEvent{
		Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: time.Now(), InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Enabled: &enabled, Secret: "secret",
	}
}

func probeDeliveries(t *testing.T, db *sql.DB) int {
	t.Helper()
	return probeCount(t, db, `SELECT deliveries FROM probe`)
}

func probeCount(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitUntilTrue(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
