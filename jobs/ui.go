package jobs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"riverqueue.com/riverui"
)

// UI is River's own web UI (riverui) on this queue's database, served under a path
// prefix: jobs by kind, queue and state, each job's arguments, errors and attempts.
// riverui supports both of our databases (riverpgxv5 and riversqlite). Only the operator's
// console mounts it.
type UI struct {
	h *riverui.Handler
}

// NewUI builds River's UI for the queue, to be served under prefix (such as "/jobs").
// Start it before serving; it stops when Start's context ends.
func (j *Jobs) NewUI(prefix string, logger *slog.Logger) (*UI, error) {
	if j.newUI == nil {
		return nil, errors.New("jobs: no UI for this database")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: j.newUI(),
		// The list leaves out job arguments (an e-mail address of a mail job, say);
		// a job's own page shows them.
		JobListHideArgsByDefault: true,
		Logger:                   logger,
		Prefix:                   prefix,
	})
	if err != nil {
		return nil, err
	}
	return &UI{h: h}, nil
}

// Start starts the UI's background counting until ctx ends.
func (u *UI) Start(ctx context.Context) error { return u.h.Start(ctx) }

// ServeHTTP serves River's UI and its JSON API.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) { u.h.ServeHTTP(w, r) }

// Retry makes a job that failed, was cancelled or is waiting for a retry run again
// as soon as a worker is free, as River's JobRetry does (the console's "retry job").
func (j *Jobs) Retry(ctx context.Context, id int64) error {
	if _, err := j.queue.JobRetry(ctx, id); err != nil {
		if errors.Is(err, river.ErrNotFound) {
			return ErrNoJob
		}
		return err
	}
	return nil
}

// ErrNoJob says a job id names no job.
var ErrNoJob = errors.New("jobs: no such job")

// queueAge is extension_job_queue_oldest_seconds: how long the oldest job that is due has
// waited for a worker, whether it is available already or still scheduled or waiting to
// be retried while its time has come (on SQLite River's scheduler makes at most
// scheduleCap of those available per pass: a backlog there shows here). It reads at
// scrape time, with one query, and sends nothing when the database does not answer (a
// failed scrape would hide every other metric).
type queueAge struct {
	j    *Jobs
	desc *prometheus.Desc
}

func newQueueAge(j *Jobs) *queueAge {
	return &queueAge{j: j, desc: prometheus.NewDesc("extension_job_queue_oldest_seconds",
		"Seconds the oldest job that is due (available, or scheduled or retryable past its time) has waited to start; 0 when none waits.", nil, nil)}
}

func (q *queueAge) Describe(ch chan<- *prometheus.Desc) { ch <- q.desc }

func (q *queueAge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := q.j.pageReads.JobList(ctx, river.NewJobListParams().
		States(rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRetryable).
		OrderBy(river.JobListOrderByScheduledAt, river.SortOrderAsc).First(1))
	if err != nil {
		q.j.logger.Debug("job queue age not read", "error", err.Error())
		return
	}
	age := 0.0
	if len(res.Jobs) > 0 {
		age = max(time.Since(res.Jobs[0].ScheduledAt).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(q.desc, prometheus.GaugeValue, age)
}
