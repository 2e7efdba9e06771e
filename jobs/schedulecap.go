package jobs

import (
	"context"
	"database/sql"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// scheduleCap bounds how many due jobs one pass of River's scheduler makes available on
// SQLite. River moves every due job (scheduled, or retryable after a failure) in one
// transaction per pass, every 5 s, up to 10,000 of them, and River exposes no setting for
// it. On SQLite that transaction holds the one writer, and every webhook delivery in
// flight waits for it: about half a second per thousand jobs on the benchmark machine, as
// after a burst of failures retried together. With the cap, a pass holds the writer for
// some 100 ms at most; the rest waits for the next pass, so at most 40 jobs a second leave
// the scheduled and retryable states (the daily name refresh of 100,000 instances, spread
// over an hour, needs 28).
const scheduleCap = 200

// cappedSQLiteDriver is River's SQLite driver with scheduleCap applied to the
// scheduler's passes. Everything else is the driver's own.
type cappedSQLiteDriver struct {
	*riversqlite.Driver
}

func newCappedSQLiteDriver(db *sql.DB) cappedSQLiteDriver {
	return cappedSQLiteDriver{riversqlite.New(db)}
}

func (d cappedSQLiteDriver) GetExecutor() riverdriver.Executor {
	return cappedExecutor{d.Driver.GetExecutor()}
}

func (d cappedSQLiteDriver) UnwrapExecutor(tx *sql.Tx) riverdriver.ExecutorTx {
	return cappedExecutorTx{d.Driver.UnwrapExecutor(tx)}
}

// UnwrapTx takes the wrapper off before the driver looks at its own type.
func (d cappedSQLiteDriver) UnwrapTx(execTx riverdriver.ExecutorTx) *sql.Tx {
	if c, ok := execTx.(cappedExecutorTx); ok {
		execTx = c.ExecutorTx
	}
	return d.Driver.UnwrapTx(execTx)
}

// cappedExecutor and cappedExecutorTx cap JobSchedule and wrap the transactions they
// begin, which is where River's scheduler calls it.
type cappedExecutor struct{ riverdriver.Executor }

func (e cappedExecutor) Begin(ctx context.Context) (riverdriver.ExecutorTx, error) {
	return beginCapped(ctx, e.Executor)
}

func (e cappedExecutor) JobSchedule(ctx context.Context, params *riverdriver.JobScheduleParams) ([]*riverdriver.JobScheduleResult, error) {
	return e.Executor.JobSchedule(ctx, capSchedule(params))
}

type cappedExecutorTx struct{ riverdriver.ExecutorTx }

func (t cappedExecutorTx) Begin(ctx context.Context) (riverdriver.ExecutorTx, error) {
	return beginCapped(ctx, t.ExecutorTx)
}

func (t cappedExecutorTx) JobSchedule(ctx context.Context, params *riverdriver.JobScheduleParams) ([]*riverdriver.JobScheduleResult, error) {
	return t.ExecutorTx.JobSchedule(ctx, capSchedule(params))
}

func beginCapped(ctx context.Context, e riverdriver.Executor) (riverdriver.ExecutorTx, error) {
	tx, err := e.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return cappedExecutorTx{tx}, nil
}

// capSchedule returns params with Max at most scheduleCap. River's scheduler reads a pass
// that moved fewer jobs than it asked for as the end of the due ones and waits for its
// next pass.
func capSchedule(params *riverdriver.JobScheduleParams) *riverdriver.JobScheduleParams {
	if params.Max > 0 && params.Max <= scheduleCap {
		return params
	}
	p := *params
	p.Max = scheduleCap
	return &p
}
