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

// TestPacerLetsSnoozesThrough: a job that will only snooze starts at once while
// deliveries come in, and takes no turn from the jobs that work.
func TestPacerLetsSnoozesThrough(t *testing.T) {
	p := &pacer{active: func() bool { return true }, pace: time.Hour,
		snoozes: func(job *rivertype.JobRow) bool { return job.Kind == KindPostInstall }}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ran := 0
	inner := func(context.Context) error { ran++; return nil }
	for range 3 {
		if err := p.Work(ctx, &rivertype.JobRow{Kind: KindPostInstall}, inner); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Work(ctx, &rivertype.JobRow{Kind: "noop"}, inner); err != nil { // the first turn is still free
		t.Fatal(err)
	}
	if ran != 4 {
		t.Fatalf("%d of 4 jobs ran", ran)
	}
}
