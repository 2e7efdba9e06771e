package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// EnqueueOption changes how a job is enqueued.
type EnqueueOption func(*river.InsertOpts)

// After runs the job no earlier than d from now. A job due later than a few seconds
// ahead waits in state scheduled and is made available by River's scheduler, which
// looks every 5 s.
func After(d time.Duration) EnqueueOption {
	return func(o *river.InsertOpts) {
		if d > 0 {
			o.ScheduledAt = time.Now().Add(d)
		}
	}
}

// Unique skips the enqueue when a job of the same kind and arguments is still waiting
// or running (a finished one does not count).
func Unique() EnqueueOption {
	return func(o *river.InsertOpts) { o.UniqueOpts = uniqueWhilePending }
}

// uniqueWhilePending makes a job unique by kind and arguments among the jobs not yet
// finished. River takes its fast path (a unique index) only when these four states are
// among them.
var uniqueWhilePending = river.UniqueOpts{ByArgs: true, ByState: []rivertype.JobState{
	rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
	rivertype.JobStateRunning, rivertype.JobStateScheduled,
}}

// ErrNoInstance is returned for a job whose arguments name no instance.
var ErrNoInstance = errors.New("jobs: job names no instance")

// Enqueue adds a job for its instance. It is durable once Enqueue returns; River cannot
// join the store's transactions, so enqueue after the commit of what the job follows.
func (j *Jobs) Enqueue(ctx context.Context, args JobArgs, opts ...EnqueueOption) error {
	_, err := j.enqueue(ctx, args, opts...)
	return err
}

// enqueue reports whether a job was added (not skipped as a duplicate).
func (j *Jobs) enqueue(ctx context.Context, args JobArgs, opts ...EnqueueOption) (bool, error) {
	j.sealed.Store(true)
	if args.instance() == "" {
		return false, fmt.Errorf("enqueue %s: %w", args.Kind(), ErrNoInstance)
	}
	o := &river.InsertOpts{}
	for _, opt := range opts {
		opt(o)
	}
	res, err := j.queue.Insert(ctx, args, o)
	if err != nil {
		return false, fmt.Errorf("enqueue %s for instance %s: %w", args.Kind(), args.instance(), err)
	}
	return !res.UniqueSkippedAsDuplicate, nil
}

// afterApplyTimeout bounds the enqueue that follows a webhook. It is detached from the
// request: a platform that hung up must not cost the job, the event being committed.
const afterApplyTimeout = 5 * time.Second

// AfterApply is the webhook path's Applied hook: it enqueues the work that follows a
// committed lifecycle event. An install enqueues the post-install job, once per instance
// while it waits. It hands the job to a batcher and does not wait for the insert, so the
// webhook is answered without it. A failure is logged, not returned: the event is
// committed, and the reconciler repairs a lost post-install job.
func (j *Jobs) AfterApply(ctx context.Context, ev extension.LifecycleEvent) {
	if ev.Kind != extension.EventAdded {
		return
	}
	j.sealed.Store(true)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterApplyTimeout)
	defer cancel()
	err := ErrStopped
	if b := j.installs(); b != nil {
		err = b.submit(ctx, ev.InstanceID)
	}
	if err != nil {
		j.logger.Warn("enqueue post-install job", "instance_id", ev.InstanceID, "error", err.Error())
	}
}
