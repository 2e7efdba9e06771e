package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// JobInfo is one job as `jobs` shows it.
type JobInfo struct {
	ID         int64  `json:"id"`
	Kind       string `json:"kind"`
	InstanceID string `json:"instanceId,omitempty"` // empty for the periodic jobs
	// State is River's: available, scheduled (waiting for its time), running, retryable
	// (failed, will run again), completed, cancelled, discarded (failed for good), pending.
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	MaxAttempts int        `json:"maxAttempts"`
	Snoozes     int        `json:"snoozes"` // times it was put off, such as for a disabled instance
	Errors      []string   `json:"errors"`  // the error of each failed attempt, oldest first
	CreatedAt   time.Time  `json:"createdAt"`
	ScheduledAt time.Time  `json:"scheduledAt"`
	FinalizedAt *time.Time `json:"finalizedAt,omitempty"`
}

// ListLimit is how many jobs List returns at most.
const ListLimit = 10_000

// List returns up to limit jobs (ListLimit when limit ≤ 0), newest first: those waiting
// or running, and those finished within River's retention (completed and cancelled for
// a day, discarded for a week).
func (j *Jobs) List(ctx context.Context, limit int) ([]JobInfo, error) {
	if limit <= 0 || limit > ListLimit {
		limit = ListLimit
	}
	res, err := j.queue.JobList(ctx, river.NewJobListParams().OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(limit))
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make([]JobInfo, len(res.Jobs))
	for i, r := range res.Jobs {
		out[i] = jobInfo(r)
	}
	return out, nil
}

func jobInfo(r *rivertype.JobRow) JobInfo {
	var args For
	_ = json.Unmarshal(r.EncodedArgs, &args) // periodic jobs name no instance
	var meta struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(r.Metadata, &meta)
	info := JobInfo{
		ID: r.ID, Kind: r.Kind, InstanceID: args.InstanceID, State: string(r.State),
		Attempts: r.Attempt, MaxAttempts: r.MaxAttempts, Snoozes: meta.Snoozes, Errors: []string{},
		CreatedAt: r.CreatedAt.UTC(), ScheduledAt: r.ScheduledAt.UTC(),
	}
	for _, e := range r.Errors {
		info.Errors = append(info.Errors, e.Error)
	}
	if r.FinalizedAt != nil {
		at := r.FinalizedAt.UTC()
		info.FinalizedAt = &at
	}
	return info
}

// instancesWithJobs returns the instances that have a job of the kind in River's table,
// in any state.
func (j *Jobs) instancesWithJobs(ctx context.Context, kind string) (map[string]bool, error) {
	have := map[string]bool{}
	params := river.NewJobListParams().Kinds(kind).First(1000)
	for {
		res, err := j.queue.JobList(ctx, params)
		if err != nil {
			return nil, fmt.Errorf("list %s jobs: %w", kind, err)
		}
		for _, r := range res.Jobs {
			var args For
			if json.Unmarshal(r.EncodedArgs, &args) == nil && args.InstanceID != "" {
				have[args.InstanceID] = true
			}
		}
		if len(res.Jobs) < 1000 {
			return have, nil
		}
		params = params.After(res.LastCursor)
	}
}

// healthWindow bounds how many of an instance's jobs InstanceJobHealth reads: the newest
// ones tell how it is going, and a dashboard must not read a long history.
const healthWindow = 100

// InstanceJobHealth sums up the instance's newest jobs (River keeps finished jobs for a
// day, failed ones for a week). River has no index on a job's arguments, so this reads
// its table; the table holds only those retained jobs.
func (j *Jobs) InstanceJobHealth(ctx context.Context, instanceID string) (extension.JobHealth, error) {
	// args ->> 'instance_id' reads the field on PostgreSQL and on SQLite alike (SQLite
	// takes a plain label as the path $.label).
	params := river.NewJobListParams().
		Where("args ->> 'instance_id' = @instance_id", river.NamedArgs{"instance_id": instanceID}).
		OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(healthWindow)
	res, err := j.pageReads.JobList(ctx, params)
	if err != nil {
		return extension.JobHealth{}, fmt.Errorf("instance job health: %w", err)
	}
	var h extension.JobHealth
	for _, r := range res.Jobs {
		switch r.State {
		case rivertype.JobStateAvailable, rivertype.JobStateScheduled, rivertype.JobStateRunning, rivertype.JobStatePending:
			h.Waiting++
		case rivertype.JobStateRetryable:
			h.Retrying++
		case rivertype.JobStateDiscarded:
			h.Failed++
		case rivertype.JobStateCompleted:
			h.Done++
		}
		if n := len(r.Errors); n > 0 && r.Errors[n-1].At.After(h.LastFailureAt) {
			h.LastFailureAt, h.LastFailureKind = r.Errors[n-1].At.UTC(), r.Kind
		}
	}
	return h, nil
}
