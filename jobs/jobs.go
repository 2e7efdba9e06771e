// Package jobs owns durable background jobs on River: jobs that belong to an extension
// instance and call the platform with its token, the post-install job that fetches the
// name of the instance's context, the periodic jobs that refresh those names and repair
// an enqueue lost between a webhook's commit and its enqueue, and River's own schema.
//
// On SQLite River has a connection of its own on the store's file (Store.QueueDB,
// riversqlite), whose writes wait while lifecycle deliveries are queued, and jobs start
// at a slow pace while deliveries come in (pacer): deliveries commit first, jobs run
// later. On PostgreSQL it has a pgx pool of its own on the same database (riverpgxv5).
// River cannot join the store's transactions, so work that follows a webhook is enqueued
// after its commit (AfterApply) and every job is idempotent.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
	"riverqueue.com/riverui"
	"riverqueue.com/riverui/uiendpoints"
)

// TokenSource hands out a valid access token of an instance: the instance token broker.
type TokenSource interface {
	Token(ctx context.Context, instanceID string) (mstudio.InstanceToken, error)
}

// The broker is the token source of production.
var _ TokenSource = (*mstudio.Broker)(nil)

// Config is what New needs. Zero durations take their defaults.
type Config struct {
	Store       *extension.Store
	DatabaseURL string          // PostgreSQL: River's own pool connects here; unused on SQLite
	Tokens      TokenSource     // the token broker; required when Workers > 0
	Client      *mstudio.Client // the platform client jobs call with; required when Workers > 0
	// Workers is how many jobs this process works at once, and a quarter of it (at least
	// one) post-install jobs besides, in a queue of their own. 0 makes an insert-only
	// queue (enqueue and list), so web and worker processes can be split.
	Workers int
	Logger  *slog.Logger

	PostInstallDelay time.Duration // how long after the install the post-install job runs; default 3 s; <0: at once
	RetryWait        time.Duration // wait before the first retry, doubling per attempt up to an hour; default 5 s
	DisabledWait     time.Duration // how long a job of a disabled instance waits before it looks again; default 10 min
	PollInterval     time.Duration // how often idle workers look for due jobs; default 1 s
	ReconcileEvery   time.Duration // how often lost post-install jobs are looked for; default 5 min
	RefreshSpread    time.Duration // the daily refresh jobs are spread over this window; default 1 h; <0: none

	// Platform compares our instances with the platform's (EXT_CONTRIBUTOR_TOKEN); nil:
	// the periodic reconciliation is not scheduled.
	Platform PlatformReconciler
	// PlatformReconcileEvery is how often Platform runs; default DefaultPlatformReconcileEvery.
	PlatformReconcileEvery time.Duration

	// Registerer receives extension_job_queue_oldest_seconds; nil: not exported.
	Registerer prometheus.Registerer

	// Mail sends the invitation and password-reset e-mails (EXT_SMTP_URL); nil: the Send
	// methods fail with ErrMailOff, and a mail job this process works fails and is retried.
	Mail *MailConfig
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PostInstallDelay, 3*time.Second)
	def(&c.RetryWait, 5*time.Second)
	def(&c.DisabledWait, 10*time.Minute)
	def(&c.PollInterval, time.Second)
	def(&c.ReconcileEvery, 5*time.Minute)
	def(&c.RefreshSpread, time.Hour)
	def(&c.PlatformReconcileEvery, DefaultPlatformReconcileEvery)
	c.PostInstallDelay = max(c.PostInstallDelay, 0)
	c.RefreshSpread = max(c.RefreshSpread, 0)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// fetchCooldown is the least time between two fetches of a queue while jobs keep
// coming (idle workers look every PollInterval, or when told of an insert). River's
// 100 ms default caps a process at Workers×10 jobs/s: 100 jobs/s with 10 workers in
// BenchmarkJobThroughput, where 10 ms gives ~900 (and 100 workers ~3.7k on SQLite).
const fetchCooldown = 10 * time.Millisecond

// hardStopWait bounds how long Stop waits for cancelled jobs to return.
const hardStopWait = 5 * time.Second

// Jobs is the job queue of one process.
type Jobs struct {
	cfg     Config
	store   *extension.Store
	logger  *slog.Logger
	workers *river.Workers
	queue   queue
	pool    *pgxpool.Pool // PostgreSQL only

	// pageReads lists jobs for pages: on SQLite a River client that is never started,
	// on the store's read pool, so a dashboard does not queue for the writer's one
	// connection; on PostgreSQL the queue itself.
	pageReads interface {
		JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	}

	// newUI builds River's UI endpoints on the queue's typed client.
	newUI func() uiendpoints.Bundle

	sealed      atomic.Bool // set by the first Start or Enqueue: no Register after it
	batcherOnce sync.Once
	batcher     *installBatcher // AfterApply's; nil until used, and after Stop

	mu       sync.Mutex
	started  bool
	stopped  bool
	stopOnce sync.Once
	stopErr  error
}

// queue is the part of River's generic client that Jobs uses; it hides the transaction
// type, which differs between the drivers.
type queue interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	InsertMany(ctx context.Context, params []river.InsertManyParams) ([]*rivertype.JobInsertResult, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	JobRetry(ctx context.Context, id int64) (*rivertype.JobRow, error)
}

// New builds the queue on the store's database. It does not start workers (see Start)
// and does not migrate River's tables (see Migrate).
func New(ctx context.Context, cfg Config) (*Jobs, error) {
	cfg.setDefaults()
	switch {
	case cfg.Store == nil:
		return nil, errors.New("jobs: no store")
	case cfg.Workers < 0 || cfg.Workers > 10_000:
		return nil, fmt.Errorf("jobs: %d workers: want 0 to 10000", cfg.Workers)
	case cfg.Workers > 0 && (cfg.Tokens == nil || cfg.Client == nil):
		return nil, errors.New("jobs: workers need a token source and a platform client")
	}
	j := &Jobs{cfg: cfg, store: cfg.Store, logger: cfg.Logger, workers: river.NewWorkers()}
	j.registerBuiltins()
	j.registerActions()
	j.registerMail()
	j.registerPlatformReconcile()
	rc := &river.Config{
		Logger:            cfg.Logger,
		Workers:           j.workers,
		RetryPolicy:       backoff{first: cfg.RetryWait, limit: time.Hour},
		ErrorHandler:      failureLog{cfg.Logger},
		FetchPollInterval: cfg.PollInterval,
		FetchCooldown:     min(fetchCooldown, cfg.PollInterval),
		// Jobs call the platform through a client with its own deadlines; the broker may
		// wait out a secret's activation for up to its grace window.
		JobTimeout: 2 * time.Minute,
	}
	if cfg.Workers > 0 {
		rc.Queues = map[string]river.QueueConfig{
			river.QueueDefault: {MaxWorkers: cfg.Workers},
			queuePostInstall:   {MaxWorkers: postInstallWorkers(cfg.Workers)},
		}
		rc.PeriodicJobs = j.periodicJobs()
		rc.Middleware = []rivertype.Middleware{&pacer{active: cfg.Store.DeliveriesActive, pace: jobPace,
			notBefore: func(job *rivertype.JobRow) time.Duration {
				return postInstallWait(job, cfg.PostInstallDelay, time.Now())
			}}}
	}
	var err error
	switch cfg.Store.Dialect() {
	case extension.SQLite:
		var c *river.Client[*sql.Tx]
		if c, err = river.NewClient[*sql.Tx](newCappedSQLiteDriver(cfg.Store.QueueDB()), rc); err == nil {
			j.queue = c
			j.newUI = func() uiendpoints.Bundle { return riverui.NewEndpoints(c, nil) }
			j.pageReads, err = river.NewClient[*sql.Tx](riversqlite.New(cfg.Store.ReadDB()), &river.Config{Logger: rc.Logger, Schema: rc.Schema})
		}
	case extension.Postgres:
		if j.pool, err = newPool(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
		var c *river.Client[pgx.Tx]
		if c, err = river.NewClient[pgx.Tx](riverpgxv5.New(j.pool), rc); err == nil {
			j.queue, j.pageReads = c, c
			j.newUI = func() uiendpoints.Bundle { return riverui.NewEndpoints(c, nil) }
		}
	default:
		err = fmt.Errorf("dialect %q", cfg.Store.Dialect())
	}
	if err != nil {
		if j.pool != nil {
			j.pool.Close()
		}
		return nil, fmt.Errorf("jobs: %w", err)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newQueueAge(j)); err != nil {
			if j.pool != nil {
				j.pool.Close()
			}
			return nil, fmt.Errorf("jobs: metrics: %w", err)
		}
	}
	return j, nil
}

// newPool connects River's own pool to a PostgreSQL database URL.
func newPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	dialect, _, err := extension.ParseDatabaseURL(databaseURL)
	if err != nil || dialect != extension.Postgres {
		return nil, errors.New("jobs: PostgreSQL needs the database URL for River's pool")
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("jobs: connect River's pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("jobs: connect River's pool: %w", err)
	}
	return pool, nil
}

// Start starts the workers and the periodic jobs; with Workers 0 it does nothing. They
// run until Stop, whatever becomes of ctx: a shutdown signal should let running jobs
// finish, which is Stop's job.
func (j *Jobs) Start(ctx context.Context) error {
	j.sealed.Store(true)
	if j.cfg.Workers == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	switch {
	case j.started:
		return errors.New("jobs: started twice")
	case j.stopped:
		return ErrStopped
	}
	if err := j.queue.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	j.started = true
	return nil
}

// Stop lets running jobs finish (until ctx ends, then cancels them), stops the workers
// and releases River's pool. Call it once Jobs is no longer needed, started or not.
func (j *Jobs) Stop(ctx context.Context) error {
	j.stopOnce.Do(func() {
		j.mu.Lock()
		started, batcher := j.started, j.batcher
		j.stopped = true
		j.mu.Unlock()
		if batcher != nil {
			batcher.stop()
		}
		if started {
			if err := j.queue.Stop(ctx); err != nil {
				// Out of patience: cancel the jobs still running and wait a little for
				// them to return (a cancelled job is retried later).
				cctx, cancel := context.WithTimeout(context.Background(), hardStopWait)
				defer cancel()
				j.stopErr = errors.Join(fmt.Errorf("jobs: stop: %w", err), j.queue.StopAndCancel(cctx))
			}
		}
		if j.pool != nil {
			j.pool.Close()
		}
	})
	return j.stopErr
}
