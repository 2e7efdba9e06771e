package extension

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
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

// TestWriteGateOtherWriterGetsInUnderGroupCommits: group commits back to back (a group
// writer asks again before the last commit has ended) while deliveries stay queued do
// not hold another writer back for longer than its yield: it gets in long before a
// stream of group commits ends. Before writes became overdue, it waited for all of them.
func TestWriteGateOtherWriterGetsInUnderGroupCommits(t *testing.T) {
	ctx := context.Background()
	g := newWriteGate(time.Millisecond)
	g.deliveryQueued() // deliveries keep coming in for the whole test
	const streamLength = 1_000_000
	var grants atomic.Int64 // group commits so far, counted while they hold the gate
	stop := make(chan struct{})
	var stream sync.WaitGroup
	for range 4 {
		stream.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := g.acquire(ctx, true); err != nil {
					t.Error(err)
					return
				}
				n := grants.Add(1)
				g.release()
				if n >= streamLength {
					return
				}
			}
		})
	}
	streamEnded := make(chan struct{})
	go func() { stream.Wait(); close(streamEnded) }()
	waitUntil(t, "the group commits to start", func() bool { return grants.Load() > 0 })

	entered := make(chan int64, 1) // group commits before the other writer got in
	go func() {
		if err := g.acquire(ctx, false); err != nil {
			t.Error(err)
			entered <- -1
			return
		}
		entered <- grants.Load()
		g.release()
	}()
	select {
	case n := <-entered:
		close(stop)
		<-streamEnded
		if n < 0 {
			return
		}
		if n >= streamLength {
			t.Errorf("the other writer got in after %d group commits, want before the stream of %d ended", n, streamLength)
		}
	case <-streamEnded:
		n := <-entered
		t.Errorf("the other writer waited through the whole stream of %d group commits (got in after %d)", streamLength, n)
	}
}

// TestWriteGateOverdueWritersGoFirstInTurn: writers whose yield is over go before the
// group writers waiting beside them, in the order their yields ended; then the group
// writers go.
func TestWriteGateOverdueWritersGoFirstInTurn(t *testing.T) {
	ctx := context.Background()
	g := newWriteGate(time.Millisecond)
	g.deliveryQueued()
	if err := g.acquire(ctx, true); err != nil { // a group commit under way
		t.Fatal(err)
	}
	order := make(chan string, 5)
	enter := func(who string, urgent bool) {
		if err := g.acquire(ctx, urgent); err != nil {
			t.Error(err)
			order <- "error"
			return
		}
		order <- who
		g.release()
	}
	go enter("first other", false)
	waitUntil(t, "the first other writer to be overdue", func() bool { return overdueWriters(g) == 1 })
	go enter("second other", false)
	waitUntil(t, "the second other writer to be overdue", func() bool { return overdueWriters(g) == 2 })
	for range 3 {
		go enter("group writer", true)
	}
	waitUntil(t, "the group writers to wait", func() bool { _, u, _ := gateState(g); return u == 3 })
	g.release()
	var got []string
	for range 5 {
		got = append(got, <-order)
	}
	want := []string{"first other", "second other", "group writer", "group writer", "group writer"}
	if !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
	if n := g.overtook.Load(); n != 2 {
		t.Errorf("%d writes overtook a group writer, want 2", n)
	}
}

// TestWriteGateOverdueWriterGivesUp: an overdue writer whose context ends leaves the
// queue and no longer holds the group writer back.
func TestWriteGateOverdueWriterGivesUp(t *testing.T) {
	g := newWriteGate(time.Millisecond)
	if err := g.acquire(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- g.acquire(ctx, false) }()
	waitUntil(t, "the other writer to be overdue", func() bool { return overdueWriters(g) == 1 })
	entered := make(chan error, 1)
	go func() { entered <- g.acquire(context.Background(), true) }()
	waitUntil(t, "the group writer to wait", func() bool { _, u, _ := gateState(g); return u == 1 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("other writer: %v, want context.Canceled", err)
	}
	g.release()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	if held, urgent, other := gateState(g); !held || urgent != 0 || other != 0 || overdueWriters(g) != 0 {
		t.Errorf("held %v, %d group writers, %d others and %d overdue waiting; want the group writer in alone", held, urgent, other, overdueWriters(g))
	}
}

func overdueWriters(g *writeGate) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.overdue)
}

// BenchmarkWriteGateGroupWriter: the group writer's way through a free gate, once per
// group commit.
func BenchmarkWriteGateGroupWriter(b *testing.B) {
	g := newWriteGate(defaultWriteYield)
	ctx := context.Background()
	for b.Loop() {
		if err := g.acquire(ctx, true); err != nil {
			b.Fatal(err)
		}
		g.release()
	}
}
