package extension

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// defaultWriteYield is how long a write other than the deliveries' gives way to them
// (Options.WriteYield). After that it is overdue and goes before the next group commit,
// so under deliveries that keep the group writer busy each of the other connections
// (GORM's, the job queue's) still gets a write (a statement or a transaction) through
// per defaultWriteYield plus the writes ahead of it, and each delays the group commit
// after it by its own length only.
const defaultWriteYield = 10 * time.Millisecond

// deliveriesRecent is how long after the last delivery was handed to the group writer
// deliveries count as coming in (DeliveriesActive): under a stream of them the writer's
// queue empties with every group commit while the next ones are still being verified.
const deliveriesRecent = 50 * time.Millisecond

// writeGate orders the writes of one process on a SQLite file, so that lifecycle
// deliveries never wait behind job bookkeeping. SQLite takes one writer at a time; the
// store's group writer and the other writers (GORM, the job queue) hold connections of
// their own, and each takes the gate before it writes. The group writer goes first
// whenever the gate comes free; while deliveries are queued for it or it waits, every
// other write gives way, for up to yield. A write that has waited that long is overdue:
// it goes before the group writer, and overdue writes go in the order they became so.
// Without that bound, group commits back to back (the group writer asks again before
// its last commit has ended) held the other writes back for as long as deliveries came
// in. Waiting here, rather than in SQLite's busy handler (which sleeps 1, 2, 5, 10 … ms
// between tries), hands the lock over the moment it is free.
//
// Only a connection of its own may wait for the gate: one that waits while holding a
// connection the group writer needs would never be let in.
type writeGate struct {
	yield time.Duration
	epoch time.Time // lastQueued counts from here, on the monotonic clock

	mu            sync.Mutex
	held          bool
	urgentWaiting int           // group writers waiting for the gate
	otherWaiting  int           // other writers waiting for the gate
	overdue       []uint64      // tickets of the other writers past their yield, oldest first
	lastTicket    uint64        // the last ticket handed to an overdue writer
	changed       chan struct{} // closed and replaced when a waiter should look again

	queued     atomic.Int64 // deliveries handed to the group writer and not yet answered
	lastQueued atomic.Int64 // when the last one was handed over, as time since epoch
	yielded    atomic.Int64 // other writes that found the gate free and gave way to deliveries
	overtook   atomic.Int64 // other writes let in before a waiting group writer: overdue
}

func newWriteGate(yield time.Duration) *writeGate {
	g := &writeGate{yield: yield, epoch: time.Now(), changed: make(chan struct{})}
	g.lastQueued.Store(-int64(time.Hour)) // none yet
	return g
}

// deliveryQueued counts a delivery handed to the group writer; call deliveryDone when
// it is answered. A nil gate (an in-memory database, one connection) counts nothing.
func (g *writeGate) deliveryQueued() {
	if g != nil {
		g.queued.Add(1)
		g.lastQueued.Store(int64(time.Since(g.epoch)))
	}
}

func (g *writeGate) deliveryDone() {
	if g != nil && g.queued.Add(-1) == 0 {
		g.mu.Lock()
		if g.otherWaiting > 0 {
			g.broadcastLocked()
		}
		g.mu.Unlock()
	}
}

// deliveriesActive reports whether deliveries are queued or were a moment ago.
func (g *writeGate) deliveriesActive() bool {
	return g.queued.Load() > 0 || time.Since(g.epoch)-time.Duration(g.lastQueued.Load()) < deliveriesRecent
}

// acquire takes the gate for one write. The group writer (urgent) takes it as soon as
// it is free and no overdue writer waits. Another writer takes it when it is free and
// either it is the oldest overdue writer, or no writer is overdue, no group writer waits
// and no delivery is queued.
func (g *writeGate) acquire(ctx context.Context, urgent bool) error {
	g.mu.Lock()
	if urgent {
		if !g.held && len(g.overdue) == 0 { // the hot path: one lock, no clock
			g.held = true
			g.mu.Unlock()
			return nil
		}
		return g.waitUrgent(ctx)
	}
	return g.waitOther(ctx)
}

// waitUrgent waits for the gate as the group writer; g.mu is held and is released.
func (g *writeGate) waitUrgent(ctx context.Context) error {
	g.urgentWaiting++
	for {
		if !g.held && len(g.overdue) == 0 {
			g.held = true
			g.urgentWaiting--
			g.mu.Unlock()
			return nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			g.mu.Lock()
			g.urgentWaiting--
			g.broadcastLocked() // it may have held the others back
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
}

// waitOther waits for the gate as a writer other than the group writer; g.mu is held
// and is released.
func (g *writeGate) waitOther(ctx context.Context) error {
	asked := time.Now()
	var ticket uint64     // non-zero once overdue
	var timer *time.Timer // ends the yield
	counted := false      // in yielded
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	g.otherWaiting++
	for {
		if ticket == 0 && time.Since(asked) >= g.yield {
			g.lastTicket++
			ticket = g.lastTicket
			g.overdue = append(g.overdue, ticket)
		}
		var free bool
		if ticket != 0 {
			free = !g.held && g.overdue[0] == ticket
		} else {
			free = !g.held && len(g.overdue) == 0 && g.urgentWaiting == 0 && g.queued.Load() == 0
		}
		if free {
			if ticket != 0 {
				g.overdue = g.overdue[1:]
				if g.urgentWaiting > 0 {
					g.overtook.Add(1)
				}
			}
			g.held = true
			g.otherWaiting--
			g.mu.Unlock()
			return nil
		}
		var yieldEnd <-chan time.Time
		if ticket == 0 {
			if !g.held && !counted { // free, but deliveries go first
				counted = true
				g.yielded.Add(1)
			}
			if timer == nil {
				timer = time.NewTimer(g.yield - time.Since(asked))
			}
			yieldEnd = timer.C
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-yieldEnd:
		case <-ctx.Done():
			g.mu.Lock()
			g.otherWaiting--
			if ticket != 0 {
				g.overdue = slices.DeleteFunc(g.overdue, func(t uint64) bool { return t == ticket })
				g.broadcastLocked() // it may have held the others back
			}
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
}

// release ends a write that acquire let in.
func (g *writeGate) release() {
	g.mu.Lock()
	g.held = false
	if g.urgentWaiting+g.otherWaiting > 0 { // a waiter counts itself before it looks
		g.broadcastLocked()
	}
	g.mu.Unlock()
}

// broadcastLocked wakes every waiter to look again; g.mu is held.
func (g *writeGate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}
