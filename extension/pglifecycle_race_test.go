package extension_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// waitForLockWaiter waits until a statement on the database waits for a row lock.
func waitForLockWaiter(t *testing.T, s *extension.Store) {
	t.Helper()
	for range 500 {
		var n int
		if err := s.SQLDB().QueryRowContext(t.Context(),
			`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the delivery never waited for the instance's row")
}

// A token lease taken while a delivery waits for the instance's row must not survive a
// delivery that makes the shared token useless: on the one-statement path the forget
// once read the sessions and tokens as they were when the statement began (found by
// review).
func TestPostgresLeaseBesideWaitingDelivery(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   func(id string) extension.LifecycleEvent
	}{
		{"rotation (one statement)", func(id string) extension.LifecycleEvent {
			return rotatedEvent(id, at(2), extension.Secret("rotated-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf"))
		}},
		{"disable (transaction path)", func(id string) extension.LifecycleEvent {
			return updatedEvent(id, at(2), false, "v2", "project:write")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := extensiontest.NewStore(t, extension.Postgres)
			ctx := t.Context()
			id := "i-lease-beside"
			if r, err := s.ApplyLifecycle(ctx, addedEvent(id, at(1), extension.Secret("first-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf"))); err != nil || r.Outcome != extension.OutcomeApplied {
				t.Fatalf("install: %+v %v", r, err)
			}
			locker, err := s.SQLDB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer locker.Rollback()
			if _, err := locker.ExecContext(ctx, `SELECT 1 FROM instances WHERE id = $1 FOR NO KEY UPDATE`, id); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.ApplyLifecycle(context.Background(), tc.ev(id))
				done <- err
			}()
			waitForLockWaiter(t, s)
			won, err := s.LeaseSharedToken(ctx, id, "replica-b", time.Minute)
			if err != nil || !won {
				t.Fatalf("lease: %v %v", won, err)
			}
			if err := locker.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			stored, err := s.PutSharedToken(ctx, id, "replica-b", extension.Secret("token-minted-with-the-old-secret"), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if stored {
				t.Errorf("a token minted under a lease taken while the %s waited was stored after it committed", tc.name)
			}
		})
	}
}

// A retry under a later request id ties with the event it repeats and wins: among
// concurrent deliveries committed in one batch it must not fail the others, and it must
// end with its own secret (the tie is settled on the transaction path).
func TestPostgresTieAmongConcurrentDeliveries(t *testing.T) {
	kr := extensiontest.Keyring(t)
	s := extensiontest.Open(t, extensiontest.URL(t, extension.Postgres), extension.Options{Keys: kr})
	ctx := t.Context()
	tied := "i-tie-batch"
	first := rotatedEvent(tied, at(2), extension.Secret("rotated-a-Qx7mT2vLp9RkW4sNz8bYc3Hf"))
	first.RequestID = "req-a"
	for _, ev := range []extension.LifecycleEvent{addedEvent(tied, at(1), extension.Secret("install-Qx7mT2vLp9RkW4sNz8bYc3Hf")), first} {
		if _, err := s.ApplyLifecycle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	second := rotatedEvent(tied, at(2), extension.Secret("rotated-b-Qx7mT2vLp9RkW4sNz8bYc3Hf"))
	second.RequestID = "req-b"
	for round := range 5 {
		events := []extension.LifecycleEvent{second}
		for i := range 31 {
			events = append(events, addedEvent(fmt.Sprintf("i-tie-batch-%d-%d", round, i), at(1), extension.Secret("batch-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf")))
		}
		results := make([]extension.Result, len(events))
		errs := make([]error, len(events))
		var wg sync.WaitGroup
		for i, ev := range events {
			wg.Go(func() { results[i], errs[i] = s.ApplyLifecycle(ctx, ev) })
		}
		wg.Wait()
		for i := range events {
			if errs[i] != nil {
				t.Fatalf("round %d, delivery %d: %v", round, i, errs[i])
			}
			if i > 0 && results[i].Outcome != extension.OutcomeApplied {
				t.Errorf("round %d, install %d: %+v", round, i, results[i])
			}
		}
		// The first time it changes the secret (the context it carries is the same
		// already: partly applied); then it is the same retry again.
		if changed := results[0].Changed(); changed != (round == 0) || round > 0 && results[0].Outcome != extension.OutcomeDuplicate {
			t.Errorf("round %d, the tie: %+v, changed %v", round, results[0], changed)
		}
	}
	if got := stateOf(t, s, kr, tied); got.Secret != second.Secret.Reveal() {
		t.Errorf("secret %q, want the tie's winner %q", got.Secret, second.Secret.Reveal())
	}
}
