package extension

import "time"

// JobHealth sums up an instance's background jobs for its dashboard: what waits, what
// failed and will be tried again, and what failed for good, among its recent jobs.
type JobHealth struct {
	Waiting  int // queued, scheduled or running
	Retrying int // failed, and will run again
	Failed   int // failed for good (River's discarded)
	Done     int // completed recently
	// LastFailureKind and LastFailureAt name the most recent failed attempt, if any.
	LastFailureKind string
	LastFailureAt   time.Time
}
