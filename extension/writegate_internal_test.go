package extension

import (
	"context"
	"errors"
	"testing"
	"time"
)

// gateState reads the gate's waiters under its lock.
func gateState(g *writeGate) (held bool, urgent, other int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.urgentWaiting, g.otherWaiting
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestWriteGateGroupWriterFirst: when the gate comes free, the group writer goes before
// another writer that has waited longer.
func TestWriteGateGroupWriterFirst(t *testing.T) {
	ctx := context.Background()
	g := newWriteGate(time.Hour)
	if err := g.acquire(ctx, false); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	enter := func(who string, urgent bool) {
		if err := g.acquire(ctx, urgent); err != nil {
			t.Error(err)
			return
		}
		order <- who
		g.release()
	}
	go enter("other", false)
	waitUntil(t, "the other writer to wait", func() bool { _, _, o := gateState(g); return o == 1 })
	go enter("group writer", true)
	waitUntil(t, "the group writer to wait", func() bool { _, u, _ := gateState(g); return u == 1 })
	g.release()
	if first, second := <-order, <-order; first != "group writer" || second != "other" {
		t.Errorf("order %s, %s; want the group writer, then the other", first, second)
	}
}

// TestWriteGateYieldsWhileDeliveriesQueue: a free gate does not let another writer in
// while a delivery is queued; once none is, it does.
func TestWriteGateYieldsWhileDeliveriesQueue(t *testing.T) {
	g := newWriteGate(time.Hour)
	g.deliveryQueued()
	entered := make(chan error, 1)
	go func() { entered <- g.acquire(context.Background(), false) }()
	waitUntil(t, "the writer to yield", func() bool { return g.yielded.Load() == 1 })
	if held, _, other := gateState(g); held || other != 1 {
		t.Fatalf("held %v, %d waiting; want a free gate and the writer waiting", held, other)
	}
	g.deliveryDone()
	select {
	case err := <-entered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer is still waiting after the delivery was answered")
	}
	if held, _, other := gateState(g); !held || other != 0 {
		t.Errorf("held %v, %d waiting; want the writer in", held, other)
	}
}

// TestWriteGateYieldIsBounded: under a delivery that never ends, another writer still
// gets in once its yield is over.
func TestWriteGateYieldIsBounded(t *testing.T) {
	g := newWriteGate(20 * time.Millisecond)
	g.deliveryQueued()
	entered := make(chan error, 1)
	go func() { entered <- g.acquire(context.Background(), false) }()
	select {
	case err := <-entered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the writer never got in")
	}
	if g.yielded.Load() != 1 {
		t.Errorf("%d writes yielded, want 1", g.yielded.Load())
	}
}

// TestWriteGateGroupWriterGivesUp: a group writer whose context ends leaves the queue
// and no longer holds the others back.
func TestWriteGateGroupWriterGivesUp(t *testing.T) {
	g := newWriteGate(time.Hour)
	if err := g.acquire(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- g.acquire(ctx, true) }()
	waitUntil(t, "the group writer to wait", func() bool { _, u, _ := gateState(g); return u == 1 })
	entered := make(chan error, 1)
	go func() { entered <- g.acquire(context.Background(), false) }()
	waitUntil(t, "the other writer to wait", func() bool { _, _, o := gateState(g); return o == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("group writer: %v, want context.Canceled", err)
	}
	g.release()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	if held, urgent, other := gateState(g); !held || urgent != 0 || other != 0 {
		t.Errorf("held %v, %d group writers and %d others waiting; want the other writer in alone", held, urgent, other)
	}
}
