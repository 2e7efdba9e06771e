package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// jobPace is how often, at most, a job starts while lifecycle deliveries are coming in:
// 20 a second. A post-install job costs about 2 ms of CPU (the platform calls,
// sealing, River's bookkeeping); 32 workers at full speed took a third of the machine
// from the webhooks in BenchmarkServeDeliveries, 50 a second still 5 %. Jobs wait their
// turn, none is dropped, and they run at full speed once the deliveries pause.
const jobPace = 50 * time.Millisecond

// paceRecheck is how often a waiting job looks whether the deliveries have stopped.
const paceRecheck = 10 * time.Millisecond

// pacer is River worker middleware that holds job starts back while the store's
// deliveries are coming in (extension.Store.DeliveriesActive): one start per pace.
// Each job still takes the gate of the store's writes, which lets a queued group commit
// go first; the pacer also bounds the job work (platform calls, sealing) that competes
// with the webhooks for the CPU.
type pacer struct {
	river.MiddlewareDefaults
	active func() bool // whether deliveries are coming in
	pace   time.Duration
	// notBefore is how long a job has yet to wait before it may start at all (a
	// post-install job within its delay, see postInstallWait); nil: none. The job waits
	// that out first, then for its turn, so it starts at the pace of the moment it is due.
	notBefore func(*rivertype.JobRow) time.Duration

	mu   sync.Mutex
	next time.Time // when the next paced job may start
}

var _ rivertype.WorkerMiddleware = (*pacer)(nil)

func (p *pacer) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if p.notBefore != nil {
		if err := sleep(ctx, p.notBefore(job)); err != nil {
			return err
		}
	}
	if err := p.wait(ctx); err != nil {
		return err
	}
	return doInner(ctx)
}

// wait returns when the job may start: at once unless deliveries are coming in, else
// at its turn.
func (p *pacer) wait(ctx context.Context) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for p.active() {
		p.mu.Lock()
		now := time.Now()
		if !now.Before(p.next) {
			p.next = now.Add(p.pace)
			p.mu.Unlock()
			return nil
		}
		d := min(p.next.Sub(now), paceRecheck)
		p.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
