package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// The kinds this package registers itself.
const (
	KindPostInstall        = "post_install"           // fetch the context name of a new instance
	KindRefreshContextName = "refresh_context_name"   // fetch it again (daily)
	KindRefreshAll         = "refresh_context_names"  // periodic: a refresh job per live instance
	KindReconcile          = "reconcile_post_install" // periodic: repair lost post-install jobs
)

// refreshAt is when, past midnight UTC, the daily refresh runs. A fixed time of day
// survives restarts; an interval counted from the start would be put off by each deploy.
const refreshAt = 3 * time.Hour

type postInstallArgs struct{ For }

func (postInstallArgs) Kind() string { return KindPostInstall }

type refreshArgs struct{ For }

func (refreshArgs) Kind() string { return KindRefreshContextName }

type refreshAllArgs struct{}

func (refreshAllArgs) Kind() string { return KindRefreshAll }

type reconcileArgs struct{}

func (reconcileArgs) Kind() string { return KindReconcile }

func (j *Jobs) registerBuiltins() {
	river.AddWorker(j.workers, &instanceWorker[postInstallArgs]{j: j, handle: argsUnused[postInstallArgs](j.fetchContextName)})
	river.AddWorker(j.workers, &instanceWorker[refreshArgs]{j: j, handle: argsUnused[refreshArgs](j.fetchContextName)})
	river.AddWorker(j.workers, river.WorkFunc(func(ctx context.Context, _ *river.Job[refreshAllArgs]) error {
		n, err := j.RefreshNames(ctx)
		j.logger.Info("context name refresh enqueued", "jobs", n)
		return err
	}))
	river.AddWorker(j.workers, river.WorkFunc(func(ctx context.Context, _ *river.Job[reconcileArgs]) error {
		n, err := j.Reconcile(ctx)
		if n > 0 {
			j.logger.Warn("re-enqueued lost post-install jobs", "jobs", n)
		}
		return err
	}))
}

// argsUnused makes a handler of a kind whose arguments say nothing but the instance.
func argsUnused[A JobArgs](f func(context.Context, *extension.Instance, InstanceAPI) error) Handler[A] {
	return func(ctx context.Context, in *extension.Instance, api InstanceAPI, _ A) error { return f(ctx, in, api) }
}

// periodicJobs are run by the elected leader among the processes with workers.
func (j *Jobs) periodicJobs() []*river.PeriodicJob {
	return append([]*river.PeriodicJob{
		river.NewPeriodicJob(dailyAt(refreshAt), func() (river.JobArgs, *river.InsertOpts) {
			return refreshAllArgs{}, &river.InsertOpts{UniqueOpts: uniqueWhilePending}
		}, &river.PeriodicJobOpts{ID: KindRefreshAll}),
		river.NewPeriodicJob(river.PeriodicInterval(j.cfg.ReconcileEvery), func() (river.JobArgs, *river.InsertOpts) {
			return reconcileArgs{}, &river.InsertOpts{UniqueOpts: uniqueWhilePending}
		}, &river.PeriodicJobOpts{ID: KindReconcile, RunOnStart: true}),
	}, j.platformReconcileJobs()...)
}

// dailyAt is a schedule at a fixed time past midnight UTC.
type dailyAt time.Duration

func (d dailyAt) Next(t time.Time) time.Time {
	t = t.UTC()
	next := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Add(time.Duration(d))
	if !next.After(t) {
		next = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC).Add(time.Duration(d))
	}
	return next
}

// fetchContextName is the post-install and refresh job: it reads the name of the
// instance's project or customer with the instance token and stores it. A new secret
// works only a few seconds after our webhook answered; the broker waits that out within
// its grace window, and past it the job is retried. Running it twice is harmless: a
// fetch older than the stored one changes nothing.
func (j *Jobs) fetchContextName(ctx context.Context, in *extension.Instance, api InstanceAPI) error {
	token, err := api.Token(ctx)
	if err != nil {
		return err
	}
	at := time.Now()
	name, err := api.Client.ContextName(ctx, token, in.ContextKind, in.ContextID)
	if err != nil {
		if permanent(err) {
			return Cancel(err)
		}
		return err
	}
	return j.store.SetContextName(ctx, in.ID, name, at)
}

// permanent reports whether retrying a platform call cannot help: the request is
// invalid, or the instance may not read its context (its scopes lack it).
func permanent(err error) bool {
	var apiErr *mstudio.Error
	if errors.As(err, &apiErr) {
		switch apiErr.Status {
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
			return true
		}
	}
	return errors.Is(err, mstudio.ErrInvalidArgument)
}

// A post-install job is enqueued available, not scheduled PostInstallDelay ahead, when the
// delay is short (sleepMax), in a queue of its own: the pacer holds it until the delay
// after its enqueue has passed (postInstallWait), in one of that queue's few workers,
// so waiting post-install jobs never keep a worker from the other kinds. River makes
// scheduled jobs available in one transaction per pass every 5 s, checking each unique
// job for a collision in it; on SQLite that transaction held the one writer for about
// half a second after a burst of 1,000 installs, and every delivery in flight waited
// for it. Snoozing them instead cost each job a second fetch and state change, 2,000
// writes beside the deliveries after such a burst (0.66x the prototype against 0.85x in
// BenchmarkServeDeliveries). A longer delay (a test's, a benchmark's) is scheduled.
func (j *Jobs) enqueuePostInstall(ctx context.Context, instanceID string) error {
	_, err := j.enqueue(ctx, postInstallArgs{For{instanceID}}, j.postInstallOptions()...)
	return err
}

// queuePostInstall is the River queue of the post-install jobs.
const queuePostInstall = "post_install"

// postInstallWorkers is how many post-install jobs a process with workers works at once,
// beside its workers of every other kind.
func postInstallWorkers(workers int) int { return max(1, workers/4) }

// postInstallOptions are the enqueue options of a post-install job. The enqueuing
// process's PostInstallDelay decides between scheduled and available, the working
// process's how long the job waits: both are serve's default unless a test sets them.
func (j *Jobs) postInstallOptions() []EnqueueOption {
	opts := []EnqueueOption{Unique(), func(o *river.InsertOpts) { o.Queue = queuePostInstall }}
	if j.cfg.PostInstallDelay > sleepMax {
		opts = append(opts, After(j.cfg.PostInstallDelay))
	}
	return opts
}

// postInstallParams is enqueuePostInstall's job for InsertMany.
func (j *Jobs) postInstallParams(instanceID string) river.InsertManyParams {
	o := &river.InsertOpts{}
	for _, opt := range j.postInstallOptions() {
		opt(o)
	}
	return river.InsertManyParams{Args: postInstallArgs{For{instanceID}}, InsertOpts: o}
}

// sleepMax is the longest post-install delay a job waits out in its queue (holding one of
// the queue's workers); a longer one is scheduled at the enqueue.
const sleepMax = 5 * time.Second

// postInstallWait is how long a post-install job has yet to wait at now before it may
// start: the rest of the delay after it was enqueued, on its first attempt only, and
// never longer than the delay (a replica's clock behind the database's must not make it
// longer) or than sleepMax.
func postInstallWait(job *rivertype.JobRow, delay time.Duration, now time.Time) time.Duration {
	if job.Kind != KindPostInstall || job.Attempt > 1 {
		return 0
	}
	return max(0, min(job.CreatedAt.Add(delay).Sub(now), delay, sleepMax))
}

// insertBatch bounds how many jobs one InsertMany writes.
const insertBatch = 500

// RefreshNames enqueues a refresh of the context name of every live, enabled instance
// (one job each, none for an instance whose refresh still waits) and returns how many
// it enqueued. The daily periodic job calls it.
func (j *Jobs) RefreshNames(ctx context.Context) (int, error) {
	j.sealed.Store(true)
	list, err := j.store.Instances(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("refresh context names: %w", err)
	}
	var params []river.InsertManyParams
	now := time.Now()
	for _, in := range list {
		if in.Enabled && in.HasSecret() {
			// Spread over an hour, so the platform does not get every instance's mint and
			// read at the same second.
			at := now
			if j.cfg.RefreshSpread > 0 {
				at = now.Add(rand.N(j.cfg.RefreshSpread))
			}
			params = append(params, river.InsertManyParams{Args: refreshArgs{For{in.ID}}, InsertOpts: &river.InsertOpts{UniqueOpts: uniqueWhilePending, ScheduledAt: at}})
		}
	}
	n := 0
	for len(params) > 0 {
		batch := params[:min(insertBatch, len(params))]
		params = params[len(batch):]
		res, err := j.queue.InsertMany(ctx, batch)
		if err != nil {
			return n, fmt.Errorf("refresh context names: %w", err)
		}
		for _, r := range res {
			if !r.UniqueSkippedAsDuplicate {
				n++
			}
		}
	}
	return n, nil
}

// Reconcile repairs post-install jobs lost to a crash between a webhook's commit and
// its enqueue: it enqueues the job for every live, enabled instance that has no context
// name yet and no post-install job in River's table (waiting, running, or finished
// within River's retention), and returns how many it enqueued. The periodic reconciler
// calls it. A race with AfterApply is harmless: the job is unique while it waits.
func (j *Jobs) Reconcile(ctx context.Context) (int, error) {
	j.sealed.Store(true)
	list, err := j.store.Instances(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	var missing []string
	for _, in := range list {
		if in.Enabled && in.HasSecret() && in.ContextNameAt == nil {
			missing = append(missing, in.ID)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	have, err := j.instancesWithJobs(ctx, KindPostInstall)
	if err != nil {
		return 0, fmt.Errorf("reconcile: %w", err)
	}
	n := 0
	for _, id := range missing {
		if have[id] {
			continue
		}
		// Unique, so a reconcile racing a fresh install's enqueue leaves one job; like
		// the install's, it starts no sooner than the install's delay after the enqueue.
		added, err := j.enqueue(ctx, postInstallArgs{For{id}}, j.postInstallOptions()...)
		if err != nil {
			return n, fmt.Errorf("reconcile: %w", err)
		}
		if added {
			n++
		}
	}
	return n, nil
}
