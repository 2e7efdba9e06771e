package extension

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// defaultWriteYield is how long, at most, a write other than the deliveries' waits while
// deliveries are queued (Options.WriteYield). Under deliveries that keep the group writer
// busy, each of the other connections (GORM's, the job queue's) still gets a write (a
// statement or a transaction) through per defaultWriteYield, and each delays the group
// commit after it by its own length only.
const defaultWriteYield = 10 * time.Millisecond

// deliveriesRecent is how long after the last delivery was handed to the group writer
// deliveries count as coming in (DeliveriesActive): under a stream of them the writer's
// queue empties with every group commit while the next ones are still being verified.
const deliveriesRecent = 50 * time.Millisecond

// writeGate orders the writes of one process on a SQLite file, so that lifecycle
// deliveries never wait behind job bookkeeping. SQLite takes one writer at a time; the
// store's group writer and the other writers (GORM, the job queue) hold connections of
// their own, and each takes the gate before it writes. The group writer goes first
// whenever the gate comes free; while deliveries are queued for it, every other write
// waits, up to yield. Waiting here, rather than in SQLite's busy handler
// (which sleeps 1, 2, 5, 10 … ms between tries), hands the lock over the moment it is
// free.
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
	changed       chan struct{} // closed and replaced when a waiter should look again

	queued     atomic.Int64 // deliveries handed to the group writer and not yet answered
	lastQueued atomic.Int64 // when the last one was handed over, as time since epoch
	yielded    atomic.Int64 // other writes that yielded to deliveries
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
// it is free; another writer when it is free, no group writer waits, and either no
// delivery is queued or yield has passed since it asked.
func (g *writeGate) acquire(ctx context.Context, urgent bool) error {
	asked := time.Now()
	yielding := false
	var timer *time.Timer // ends a yield
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	g.mu.Lock()
	g.waiting(urgent, 1)
	for {
		free := !g.held && (urgent || g.urgentWaiting == 0)
		var yieldEnd <-chan time.Time
		if free && !urgent && g.queued.Load() > 0 {
			if left := g.yield - time.Since(asked); left > 0 {
				free = false
				if !yielding {
					yielding = true
					g.yielded.Add(1)
					timer = time.NewTimer(left)
				}
				yieldEnd = timer.C
			}
		}
		if free {
			g.held = true
			g.waiting(urgent, -1)
			g.mu.Unlock()
			return nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-yieldEnd:
		case <-ctx.Done():
			g.mu.Lock()
			g.waiting(urgent, -1)
			if urgent {
				g.broadcastLocked() // it may have held the others back
			}
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
}

// waiting counts a waiter in (n = 1) or out (-1); g.mu is held.
func (g *writeGate) waiting(urgent bool, n int) {
	if urgent {
		g.urgentWaiting += n
	} else {
		g.otherWaiting += n
	}
}

// release ends a write that acquire let in.
func (g *writeGate) release() {
	g.mu.Lock()
	g.held = false
	g.broadcastLocked()
	g.mu.Unlock()
}

// broadcastLocked wakes every waiter to look again; g.mu is held.
func (g *writeGate) broadcastLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}
