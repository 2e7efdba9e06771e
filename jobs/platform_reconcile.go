package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/riverqueue/river"
)

// KindPlatformReconcile is the periodic reconciliation with the platform: the platform's
// instances and webhook execution log against ours (mstudio.Reconciler).
const KindPlatformReconcile = "reconcile_platform"

// PlatformReconciler runs one reconciliation with the platform and stores its findings:
// mstudio.Reconciler.
type PlatformReconciler interface {
	Reconcile(ctx context.Context) (mstudio.Report, error)
}

var _ PlatformReconciler = (*mstudio.Reconciler)(nil)

type platformReconcileArgs struct{}

func (platformReconcileArgs) Kind() string { return KindPlatformReconcile }

// registerPlatformReconcile registers the worker in every process, so a job that another
// replica's leader enqueued is worked wherever it lands; without a reconciler here (no
// contributor token) it is cancelled, as retrying would not give it one.
func (j *Jobs) registerPlatformReconcile() {
	river.AddWorker(j.workers, river.WorkFunc(func(ctx context.Context, _ *river.Job[platformReconcileArgs]) error {
		if j.cfg.Platform == nil {
			return Cancel(errors.New("this process has no contributor token (EXT_CONTRIBUTOR_TOKEN)"))
		}
		_, err := j.cfg.Platform.Reconcile(ctx)
		if errors.Is(err, mstudio.ErrContributorToken) {
			// Retrying does not mend a refused token; the next period tries again, and the
			// run counter and the log say why.
			return Cancel(err)
		}
		return err
	}))
}

// platformReconcileJobs schedules the reconciliation every PlatformReconcileEvery when a
// reconciler is configured. The elected leader alone enqueues periodic jobs, and the job
// is unique while pending, so it runs once across replicas.
func (j *Jobs) platformReconcileJobs() []*river.PeriodicJob {
	if j.cfg.Platform == nil {
		return nil
	}
	return []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(j.cfg.PlatformReconcileEvery),
		func() (river.JobArgs, *river.InsertOpts) {
			return platformReconcileArgs{}, &river.InsertOpts{UniqueOpts: uniqueWhilePending, MaxAttempts: 3}
		}, &river.PeriodicJobOpts{ID: KindPlatformReconcile, RunOnStart: true})}
}

// ReconcilePlatformNow enqueues a reconciliation at once (unless one waits already).
func (j *Jobs) ReconcilePlatformNow(ctx context.Context) error {
	j.sealed.Store(true)
	_, err := j.queue.Insert(ctx, platformReconcileArgs{}, &river.InsertOpts{UniqueOpts: uniqueWhilePending, MaxAttempts: 3})
	return err
}

// DefaultPlatformReconcileEvery is how often serve reconciles with the platform: often
// enough that a halted instance is noticed within the platform's retry cap of about ten
// minutes plus a little, rarely enough to cost the platform three list calls a quarter hour.
const DefaultPlatformReconcileEvery = 15 * time.Minute
