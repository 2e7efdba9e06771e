package jobs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
)

// ErrStopped is returned for an enqueue after Stop.
var ErrStopped = errors.New("jobs: stopped")

// maxInstallBatch bounds how many post-install jobs one InsertMany writes.
const maxInstallBatch = 64

// installBacklog is how many installs may wait for their enqueue before AfterApply
// waits for room. On SQLite the inserts yield to the deliveries (Store.QueueDB): a burst
// of installs is enqueued behind it, 64 at a time, and with room for only 4 batches the
// webhooks of a burst of 1,000 installs waited for the inserts. A waiting install costs
// a few bytes; one lost in a crash is the reconciler's to repair.
const installBacklog = 4096

// installBatcher enqueues the post-install jobs of concurrent webhooks together, in one
// River transaction per batch: the store commits lifecycle events in groups, and one
// River insert transaction per install cut SQLite's install throughput from ~38k to
// ~3.5k per second in BenchmarkApplyBesideJobs (batches: ~10k). submit returns at once.
type installBatcher struct {
	j       *Jobs
	queue   chan installRequest
	quit    chan struct{} // closed by stop: take no more work
	exited  chan struct{} // closed when run has returned
	pending atomic.Int64  // requests handed over and not yet answered, for Flush
}

type installRequest struct {
	instanceID string
}

// newInstallBatcher starts a batcher with inserters goroutines, each of which collects
// and inserts batches of its own.
func newInstallBatcher(j *Jobs, inserters int) *installBatcher {
	b := &installBatcher{j: j, queue: make(chan installRequest, installBacklog), quit: make(chan struct{}), exited: make(chan struct{})}
	var wg sync.WaitGroup
	for range inserters {
		wg.Go(b.run)
	}
	go func() {
		wg.Wait()
		close(b.exited)
	}()
	return b
}

// submit hands an install to the batcher and returns without waiting for the insert: a
// failure is logged by the batcher. The webhook's answer need not wait for it, as waiting
// would not make the enqueue safer: the event is committed either way, and a lost enqueue
// is the reconciler's to repair.
func (b *installBatcher) submit(ctx context.Context, instanceID string) error {
	return b.handOver(ctx, installRequest{instanceID})
}

// handOver queues r; once it returns nil, r is answered exactly once.
func (b *installBatcher) handOver(ctx context.Context, r installRequest) error {
	select {
	case <-b.quit: // checked first: a send into the buffer would succeed after stop too
		return ErrStopped
	default:
	}
	b.pending.Add(1)
	select {
	case b.queue <- r:
		return nil
	case <-b.quit:
	case <-ctx.Done():
	}
	b.pending.Add(-1)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrStopped
}

// reply ends a request: nobody waits for it, so a failure is logged.
func (r installRequest) reply(b *installBatcher, err error) {
	defer b.pending.Add(-1)
	if err != nil {
		b.j.logger.Warn("enqueue post-install job", "instance_id", r.instanceID, "error", err.Error())
	}
}

func (b *installBatcher) run() {
	for {
		select {
		case <-b.quit:
			// What was handed over belongs to webhooks already acknowledged: insert it
			// before leaving rather than leave it to the reconciler.
			for {
				var batch []installRequest
			rest:
				for len(batch) < maxInstallBatch {
					select {
					case r := <-b.queue:
						batch = append(batch, r)
					default:
						break rest
					}
				}
				if len(batch) == 0 {
					return
				}
				b.insert(batch)
			}
		case first := <-b.queue:
			batch := []installRequest{first}
		collect:
			for len(batch) < maxInstallBatch {
				select {
				case r := <-b.queue:
					batch = append(batch, r)
				default:
					break collect
				}
			}
			b.insert(batch)
		}
	}
}

// insert enqueues a batch in one transaction. An instance named twice is enqueued once
// (River fails a batch holding one unique job twice). If the batch fails, each job is
// enqueued on its own, so one bad job fails alone.
func (b *installBatcher) insert(batch []installRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), afterApplyTimeout)
	defer cancel()
	seen := map[string]bool{}
	var params []river.InsertManyParams
	for _, r := range batch {
		if !seen[r.instanceID] {
			seen[r.instanceID] = true
			params = append(params, b.j.postInstallParams(r.instanceID))
		}
	}
	if len(params) > 1 {
		if _, err := b.j.queue.InsertMany(ctx, params); err == nil {
			for _, r := range batch {
				r.reply(b, nil)
			}
			return
		}
	}
	for _, r := range batch {
		r.reply(b, b.j.enqueuePostInstall(ctx, r.instanceID))
	}
}

func (b *installBatcher) stop() {
	close(b.quit)
	<-b.exited
}

// installs returns the batcher, started on first use.
func (j *Jobs) installs() *installBatcher {
	j.batcherOnce.Do(func() {
		j.mu.Lock()
		defer j.mu.Unlock()
		if !j.stopped {
			// River has one connection on SQLite: one batch at a time. PostgreSQL commits in
			// parallel: in BenchmarkDeliveriesWithJobs one inserter gave 1.75k
			// deliveries/s, an insert per delivery 2.5k, one inserter per connection
			// of River's pool (4 on 2 cores) 2.6k.
			inserters := 1
			if j.pool != nil {
				inserters = int(j.pool.Config().MaxConns)
			}
			j.batcher = newInstallBatcher(j, inserters)
		}
	})
	return j.batcher
}

// Flush waits until every post-install job handed over by AfterApply is inserted (or
// failed and logged), or ctx ends. Tests use it; so does anyone who must see the job.
func (j *Jobs) Flush(ctx context.Context) error {
	j.mu.Lock()
	b := j.batcher
	j.mu.Unlock()
	if b == nil {
		return nil
	}
	// A counter polled briefly rather than a WaitGroup: Flush may run while webhooks
	// keep handing jobs over, which a WaitGroup does not allow.
	for b.pending.Load() > 0 {
		select {
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
