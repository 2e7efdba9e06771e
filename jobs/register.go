package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// JobArgs are the arguments of a job kind: a struct that embeds For, to name the
// instance the job belongs to, and has a Kind method that names the kind (in
// snake_case; it is stored with every job, so never rename it). River stores the
// arguments as JSON. A kind may also have River's InsertOpts method for defaults.
type JobArgs interface {
	Kind() string
	instance() string
}

// For names the instance a job belongs to; embed it in a kind's arguments.
type For struct {
	InstanceID string `json:"instance_id"`
}

func (f For) instance() string { return f.InstanceID }

// InstanceAPI calls the platform for the instance a job belongs to: the shared client,
// and the instance's access token from the broker, which keeps it valid.
type InstanceAPI struct {
	Client     *mstudio.Client
	InstanceID string
	tokens     TokenSource
}

// Token returns a valid access token of the instance. Use it for one call or a short
// series of calls, and ask again rather than keeping it.
func (a InstanceAPI) Token(ctx context.Context) (extension.Secret, error) {
	tok, err := a.tokens.Token(ctx, a.InstanceID)
	if err != nil {
		return "", err
	}
	return tok.Token, nil
}

// Handler works one job of a kind. It runs only while its instance is installed and
// enabled; it gets the instance as stored and a platform caller authorised for it.
// A returned error retries the job with backoff; return Cancel(err) for an error that
// retrying cannot mend. A job may run more than once (after a crash, or a
// retry after a partial success), so a handler must be idempotent.
type Handler[A JobArgs] func(ctx context.Context, in *extension.Instance, api InstanceAPI, args A) error

// Cancel wraps a handler's error that retrying cannot mend: the job ends, cancelled.
func Cancel(err error) error { return river.JobCancel(err) }

// Register adds a job kind. Call it while wiring, before Start and the first Enqueue;
// it panics when called later or twice for a kind, as http.HandleFunc does.
//
//	type SyncArgs struct {
//		jobs.For
//		Full bool `json:"full"`
//	}
//
//	func (SyncArgs) Kind() string { return "sync_domains" }
//
//	jobs.Register(j, func(ctx context.Context, in *extension.Instance, api jobs.InstanceAPI, args SyncArgs) error {
//		token, err := api.Token(ctx)
//		if err != nil {
//			return err
//		}
//		p, err := api.Client.Project(ctx, token, in.ContextID)
//		…
//	})
//	err := j.Enqueue(ctx, SyncArgs{For: jobs.For{InstanceID: id}, Full: true})
func Register[A JobArgs](j *Jobs, handle Handler[A]) {
	if j.sealed.Load() {
		panic("jobs: Register after Start or Enqueue")
	}
	river.AddWorker(j.workers, &instanceWorker[A]{j: j, handle: handle})
}

// instanceWorker runs a kind's handler for the job's instance, if it may run.
type instanceWorker[A JobArgs] struct {
	river.WorkerDefaults[A]
	j      *Jobs
	handle Handler[A]
}

func (w *instanceWorker[A]) Work(ctx context.Context, job *river.Job[A]) error {
	return w.j.forInstance(ctx, job.Args.instance(), func(in *extension.Instance, api InstanceAPI) error {
		return w.handle(ctx, in, api, job.Args)
	})
}

// forInstance loads the instance and runs work for it, or decides the job's fate: a
// removed (or unknown) instance cancels the job, a disabled one puts it off. The same
// holds when the broker reports the instance removed or disabled meanwhile.
func (j *Jobs) forInstance(ctx context.Context, id string, work func(*extension.Instance, InstanceAPI) error) error {
	in, err := j.store.InstanceByID(ctx, id)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return river.JobCancel(fmt.Errorf("instance %s: %w", id, err))
	case err != nil:
		return err
	case in.Removed():
		return river.JobCancel(fmt.Errorf("instance %s: %w", id, extension.ErrRemoved))
	case !in.Enabled:
		return river.JobSnooze(j.cfg.DisabledWait)
	}
	err = work(in, InstanceAPI{Client: j.cfg.Client, InstanceID: id, tokens: j.cfg.Tokens})
	switch {
	case errors.Is(err, extension.ErrRemoved):
		return river.JobCancel(err)
	case errors.Is(err, extension.ErrDisabled):
		return river.JobSnooze(j.cfg.DisabledWait)
	}
	return err
}

// backoff is the retry policy: the wait doubles per attempt from first up to limit,
// with ±20 % jitter so that jobs failed together do not return together. River's
// default grows as attempt⁴ seconds, which waits a day and more before the last tries.
type backoff struct{ first, limit time.Duration }

func (b backoff) NextRetry(job *rivertype.JobRow) time.Time {
	d := b.limit
	if n := max(job.Attempt, 1) - 1; n < 32 && b.first<<n > 0 && b.first<<n < b.limit {
		d = b.first << n
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return time.Now().Add(d)
}

// failureLog logs a job's failed attempts with the instance it belongs to; River logs
// them only at level info.
type failureLog struct{ logger *slog.Logger }

func (f failureLog) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	f.logger.WarnContext(ctx, "job attempt failed", f.attrs(job, "error", err.Error())...)
	return nil
}

func (f failureLog) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	f.logger.ErrorContext(ctx, "job panicked", f.attrs(job, "panic", fmt.Sprint(panicVal), "trace", trace)...)
	return nil
}

func (failureLog) attrs(job *rivertype.JobRow, more ...any) []any {
	info := jobInfo(job)
	return append([]any{"job_id", job.ID, "job_kind", job.Kind, "instance_id", info.InstanceID,
		"attempt", job.Attempt, "max_attempts", job.MaxAttempts}, more...)
}
