package jobs

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"
)

// TestPacerHoldsJobsWhileDeliveriesCome: while deliveries come in, one job starts per
// pace and the next waits; once they stop, it starts at once. With no deliveries, jobs
// start without waiting.
func TestPacerHoldsJobsWhileDeliveriesCome(t *testing.T) {
	var active atomic.Bool
	p := &pacer{active: active.Load, pace: time.Hour}
	ctx := context.Background()
	for range 3 {
		if err := p.wait(ctx); err != nil { // no deliveries: no turn taken
			t.Fatal(err)
		}
	}
	active.Store(true)
	if err := p.wait(ctx); err != nil { // the first turn is free
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- p.wait(ctx) }()
	select {
	case err := <-started:
		t.Fatalf("a second job started within the pace while deliveries came in (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	active.Store(false)
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job still waits after the deliveries stopped")
	}
}

// TestPacerGivesUpWithItsJob: a job that waits for its turn ends with its context.
func TestPacerGivesUpWithItsJob(t *testing.T) {
	p := &pacer{active: func() bool { return true }, pace: time.Hour}
	if err := p.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("wait: %v, want context.Canceled", err)
	}
}

// TestPacerWaitsNotBeforeFirst: a job that may not start yet waits that out without
// taking a turn, then takes its turn like any other.
func TestPacerWaitsNotBeforeFirst(t *testing.T) {
	const hold = 200 * time.Millisecond
	p := &pacer{active: func() bool { return true }, pace: time.Hour,
		notBefore: func(job *rivertype.JobRow) time.Duration {
			if job.Kind == KindPostInstall {
				return hold
			}
			return 0
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ranAt time.Time
	start := time.Now()
	if err := p.Work(ctx, &rivertype.JobRow{Kind: KindPostInstall}, func(context.Context) error { ranAt = time.Now(); return nil }); err != nil {
		t.Fatal(err)
	}
	if took := ranAt.Sub(start); took < hold {
		t.Errorf("the job started after %v, want at least %v", took, hold)
	}
	// Its turn was the first and free; the next job waits for the pace.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := p.Work(ctx2, &rivertype.JobRow{Kind: "noop"}, func(context.Context) error { return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the next job: %v, want it to wait for its turn", err)
	}
	// A wait ends with the job's context.
	ctx3, cancel3 := context.WithCancel(context.Background())
	cancel3()
	if err := p.Work(ctx3, &rivertype.JobRow{Kind: KindPostInstall}, func(context.Context) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled wait: %v, want context.Canceled", err)
	}
}
