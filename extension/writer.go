package extension

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
)

// ErrClosed is returned for work handed to a store that is closing.
var ErrClosed = errors.New("extension: store closed")

// maxBatch bounds how many deliveries share one SQLite transaction.
const maxBatch = 64

// batchTimeout bounds one group transaction; it is detached from any one caller, so a
// caller that gives up cannot roll back the others' work.
const batchTimeout = 5 * time.Second

// groupWriter applies lifecycle events on SQLite through a single goroutine that commits
// whatever has queued up in one transaction (group commit). SQLite has one writer: with
// a transaction per delivery the connection is held across BEGIN, four statements and
// COMMIT while 30 other requests verify signatures, and throughput fell to a third of a
// bare INSERT's. Each caller still gets its answer only after its event is committed.
//
// The writer's connection is the store's sqlDB, which it shares only with sign-ins and
// retrieval-key claims (a short transaction or a statement each, prepared before they
// take it). While deliveries are queued here the store's other writes (GORM's and the
// job queue's) give way at the store's writeGate for up to its yield, so a group commit
// waits for the sign-ins and claims ahead of it on the connection and, at most, one
// write of each of the other two connections, one that has given way for its yield.
type groupWriter struct {
	store  *Store
	queue  chan *applyRequest
	quit   chan struct{} // closed by close: take no more work
	exited chan struct{} // closed when run has returned
	once   sync.Once
}

type applyRequest struct {
	ctx    context.Context
	ev     LifecycleEvent
	sealed string
	out    chan applyResult // buffered: the writer never blocks on a caller
}

type applyResult struct {
	res Result
	err error
}

func newGroupWriter(s *Store) *groupWriter {
	w := &groupWriter{store: s, queue: make(chan *applyRequest, 4*maxBatch), quit: make(chan struct{}), exited: make(chan struct{})}
	go w.run()
	return w
}

func (w *groupWriter) apply(ctx context.Context, ev LifecycleEvent, sealed string) (Result, error) {
	r := &applyRequest{ctx: ctx, ev: ev, sealed: sealed, out: make(chan applyResult, 1)}
	select {
	case <-w.quit: // checked first: a send into the buffer would succeed after close too
		return Result{}, ErrClosed
	default:
	}
	// From here until it is answered, the delivery holds the store's other writes back.
	w.store.gate.deliveryQueued()
	defer w.store.gate.deliveryDone()
	select {
	case w.queue <- r:
	case <-w.quit:
		return Result{}, ErrClosed
	case <-ctx.Done():
		return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, ctx.Err())
	}
	select {
	case out := <-r.out:
		return out.res, out.err
	case <-w.exited:
		// The writer drained the queue on its way out; the answer is there unless the
		// request slipped in after the drain.
		select {
		case out := <-r.out:
			return out.res, out.err
		default:
			return Result{}, ErrClosed
		}
	case <-ctx.Done():
		// The event may still be committed; the platform's retry will then be a duplicate.
		return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, ctx.Err())
	}
}

func (w *groupWriter) run() {
	defer close(w.exited)
	for {
		select {
		case <-w.quit:
			for {
				select {
				case r := <-w.queue:
					r.out <- applyResult{err: ErrClosed}
				default:
					return
				}
			}
		case first := <-w.queue:
			batch := w.collect([]*applyRequest{first})
			// Let the goroutines that are running go on before committing: under load they
			// are the next deliveries' signature checks, and a group commit that takes
			// them along costs a fraction of one commit each. When nothing else is
			// runnable, as with a lone delivery, Gosched returns at once.
			for range lingerYields {
				if len(batch) == maxBatch {
					break
				}
				runtime.Gosched()
				batch = w.collect(batch)
			}
			w.commit(batch)
		}
	}
}

// lingerYields is how often the writer yields to runnable goroutines before a commit.
// With 32 senders on two cores, deliveries reach the writer one by one as their
// signatures are checked, and it committed batches of 1.5 on average: a commit (BEGIN,
// COMMIT, the journal's page, the log's write) was then ~40% of the writer's time per
// delivery. Two yields made batches of ~5.
const lingerYields = 2

// collect adds what has queued up to batch, up to maxBatch.
func (w *groupWriter) collect(batch []*applyRequest) []*applyRequest {
	for len(batch) < maxBatch {
		select {
		case r := <-w.queue:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// commit applies a batch in one transaction. If the transaction fails, each event is
// applied again on its own, so one bad event fails alone.
func (w *groupWriter) commit(batch []*applyRequest) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.out <- applyResult{err: err} // the caller is gone and was told so
			continue
		}
		live = append(live, r)
	}
	if len(live) > 1 {
		events := make([]pendingEvent, len(live))
		for i, r := range live {
			events[i] = pendingEvent{ev: r.ev, sealed: r.sealed}
		}
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		results, err := w.store.applyBatch(ctx, events)
		cancel()
		if err == nil {
			for i, r := range live {
				r.out <- applyResult{res: results[i]}
			}
			return
		}
	}
	for _, r := range live {
		res, err := w.store.applyInTx(r.ctx, r.ev, r.sealed)
		r.out <- applyResult{res, err}
	}
}

func (w *groupWriter) close() {
	w.once.Do(func() { close(w.quit) })
	<-w.exited
}

// QueuedDeliveries reports how many lifecycle deliveries wait in the group writer for
// their commit (on PostgreSQL, which has none, 0). While there are any, the store's
// other writes on SQLite wait (Options.WriteYield).
func (s *Store) QueuedDeliveries() int {
	if s.gate == nil {
		return 0
	}
	return int(s.gate.queued.Load())
}

// DeliveriesActive reports whether lifecycle deliveries are coming in: one is queued for
// its commit, or one was a moment ago (50 ms). Work that can wait, such as background
// jobs, waits while they are: on SQLite for the one writer, on PostgreSQL for the CPU
// (and the batches' commits) that the jobs would take from the webhooks.
func (s *Store) DeliveriesActive() bool {
	return s.gate != nil && s.gate.deliveriesActive() || s.dialect == Postgres && s.pgGroup.active()
}
