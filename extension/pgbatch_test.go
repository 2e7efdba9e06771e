package extension_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// Every set of carried groups has a one-statement delivery that PostgreSQL accepts.
func TestPostgresLifecycleStatementsPrepare(t *testing.T) {
	s := extensiontest.NewStore(t, extension.Postgres)
	n, err := s.PreparePostgresStatements(t.Context())
	if err != nil {
		t.Fatalf("after %d statements: %v", n, err)
	}
	if n != 63 {
		t.Errorf("prepared %d statements, want 63 (one for every non-empty set of 6 groups)", n)
	}
}

// A statement that fails on the server fails its own delivery only: the rest of its
// batch is applied and journaled, and the failed one leaves no trace.
func TestPostgresBatchFailsOnlyItsOwn(t *testing.T) {
	s := extensiontest.NewStore(t, extension.Postgres)
	ctx := t.Context()
	var events []extension.LifecycleEvent
	for i := range 6 {
		events = append(events, addedEvent(fmt.Sprintf("i-batch-%d", i), at(1), extension.Secret("batch-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf")))
	}
	// PostgreSQL refuses a NUL byte in a text: the statement fails on the server.
	events[3].ContextID = "p-\x00"
	events = append(events, updatedEvent("i-batch-0", at(2), false, "v2", "project:write"))
	results, errs, err := s.WritePostgresBatch(ctx, events)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range events {
		if i == 3 {
			if errs[i] == nil {
				t.Errorf("delivery %d (a NUL byte in its context id) succeeded, want an error", i)
			}
			if _, err := s.InstanceByID(ctx, ev.InstanceID); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("InstanceByID(%s) of the failed delivery: %v, want ErrNotFound", ev.InstanceID, err)
			}
			if ds := deliveriesOf(t, s, ev.InstanceID); len(ds) != 0 {
				t.Errorf("the failed delivery left %d journal rows, want none", len(ds))
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("delivery %d (%s %s): %v, want it applied", i, ev.Kind, ev.InstanceID, errs[i])
			continue
		}
		if results[i].Outcome != extension.OutcomeApplied {
			t.Errorf("delivery %d (%s %s): outcome %q (%s), want applied", i, ev.Kind, ev.InstanceID, results[i].Outcome, results[i].Reason)
		}
	}
	// The update of i-batch-0 came after its install in the same batch.
	checkInstance(t, s, "i-batch-0", instanceView{ContextKind: extension.ContextProject, ContextID: "p-1",
		Scopes: []string{"project:write"}, Enabled: false, VariantKey: "v2", HasSecret: true, LastEventAt: at(2)})
	ds := deliveriesOf(t, s, "i-batch-0")
	if len(ds) != 2 {
		t.Fatalf("journal rows of i-batch-0: %d, want 2", len(ds))
	}
	checkDelivery(t, ds[0], events[6], results[6])
	checkDelivery(t, ds[1], events[0], results[0])
}

// Many concurrent deliveries, committed in groups, each get the outcome of their own
// event, journaled as they were answered: installs are applied, their replays under new
// request ids are duplicates, older updates are stale, newer ones applied.
func TestPostgresConcurrentDeliveriesOwnOutcome(t *testing.T) {
	s := extensiontest.NewStore(t, extension.Postgres)
	const instances = 150
	id := func(i int) string { return fmt.Sprintf("i-group-%03d", i) }
	type delivery struct {
		ev   extension.LifecycleEvent
		want extension.Outcome
	}
	run := func(ds []delivery) {
		t.Helper()
		results := make([]extension.Result, len(ds))
		var wg sync.WaitGroup
		for i, d := range ds {
			wg.Go(func() {
				res, err := s.ApplyLifecycle(context.Background(), d.ev)
				if err != nil {
					t.Errorf("ApplyLifecycle(%s %s): %v", d.ev.Kind, d.ev.InstanceID, err)
				}
				results[i] = res
			})
		}
		wg.Wait()
		for i, d := range ds {
			if results[i].Outcome != d.want {
				t.Errorf("%s %s at %v: outcome %q (%s), want %q", d.ev.Kind, d.ev.InstanceID, d.ev.CreatedAt, results[i].Outcome, results[i].Reason, d.want)
			}
		}
		journal, err := s.Deliveries(context.Background(), "", 100000)
		if err != nil {
			t.Fatal(err)
		}
		byRequest := map[string]extension.Delivery{}
		for _, row := range journal {
			byRequest[row.RequestID] = row
		}
		for i, d := range ds {
			row, ok := byRequest[d.ev.RequestID]
			if !ok {
				t.Errorf("no journal row for %s %s", d.ev.Kind, d.ev.InstanceID)
				continue
			}
			checkDelivery(t, row, d.ev, results[i])
		}
	}
	installs := make([]extension.LifecycleEvent, instances)
	var first []delivery
	for i := range instances {
		installs[i] = addedEvent(id(i), at(10), extension.Secret("group-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf"))
		first = append(first, delivery{installs[i], extension.OutcomeApplied})
	}
	run(first)
	var second []delivery
	for i := range instances {
		replay := installs[i]
		replay.RequestID = newRequestID()
		second = append(second, delivery{replay, extension.OutcomeDuplicate})
		second = append(second, delivery{updatedEvent(id(i), at(5), false, "old"), extension.OutcomeStale})
		second = append(second, delivery{updatedEvent(id(i), at(20+i%3), i%2 == 0, fmt.Sprintf("v%d", i), "project:write"), extension.OutcomeApplied})
	}
	run(second)
	for i := range instances {
		checkInstance(t, s, id(i), instanceView{ContextKind: extension.ContextProject, ContextID: "p-1",
			Scopes: []string{"project:write"}, Enabled: i%2 == 0, VariantKey: fmt.Sprintf("v%d", i), HasSecret: true, LastEventAt: at(20 + i%3)})
	}
}

// On PostgreSQL, DeliveriesActive says whether deliveries are coming in, so that
// background jobs give the webhooks the CPU: true during and just after one, false once
// they have stopped for a moment.
func TestPostgresDeliveriesActive(t *testing.T) {
	s := extensiontest.NewStore(t, extension.Postgres)
	if s.DeliveriesActive() {
		t.Fatal("DeliveriesActive before any delivery")
	}
	if _, err := s.ApplyLifecycle(t.Context(), addedEvent("i-active", at(1), extension.Secret("active-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf"))); err != nil {
		t.Fatal(err)
	}
	if !s.DeliveriesActive() {
		t.Error("DeliveriesActive false right after a delivery")
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.DeliveriesActive() {
		if time.Now().After(deadline) {
			t.Fatal("DeliveriesActive still true 5 s after the last delivery")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
