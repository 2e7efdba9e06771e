package extension

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// pgGroup commits the lifecycle statements of concurrent deliveries together on
// PostgreSQL: a few writers, each on a connection of its own, take every statement that
// is waiting, send them in one pipelined batch (one round trip) and commit them in one
// implicit transaction, so a commit's WAL flush serves the whole batch. Each delivery
// gets its own row back and is answered only after the batch committed.
//
// If a statement of a batch fails on the server, PostgreSQL rolls the whole batch back;
// the writer then runs each statement of it alone, so that only the failing delivery
// fails. A batch that fails on the connection (which may or may not have committed) fails
// all its deliveries, as a lost COMMIT would: the platform retries them, and a retry of
// an applied event is a duplicate.
type pgGroup struct {
	once    sync.Once
	stopped sync.Once
	queue   chan *pgWrite // unbuffered: a writer takes every sender waiting at once
	quit    chan struct{}
	wg      sync.WaitGroup

	// For DeliveriesActive: writes handed over and not yet answered, and when the last
	// one was handed over (Unix nanoseconds).
	inFlight atomic.Int64
	lastSent atomic.Int64
}

// pgWriters is how many batches can be in flight at once. One writer alone leaves the
// database idle while its batch travels back and is answered; more spread the deliveries
// thin, with a round trip and a commit for fewer each.
const pgWriters = 2

// pgMaxBatch bounds the statements of one batch.
const pgMaxBatch = 128

// pgBatchTimeout bounds one batch on the server. A batch does not run under any one
// delivery's context; each delivery still stops waiting when its own context ends.
const pgBatchTimeout = time.Minute

// errStoreClosed is returned for a write after Close.
var errStoreClosed = errors.New("extension: store closed")

// pgWrite is one delivery's statement, waiting to be written.
type pgWrite struct {
	ctx        context.Context
	instanceID string // batches write in the order of instances, so that two never deadlock
	query      string
	args       []any
	forgets    bool // the shared token goes after it (pgForgetStatement)
	// The event's version, time and time of receipt, and its sealed secret: for the
	// statement that journals a delivery that wrote nothing, or the transaction path of a
	// tie (pgUnchanged).
	version      string
	eventCreated *time.Time
	now          time.Time
	sealed       string
	done         chan pgWritten // buffered: the writer never waits for the delivery
}

type pgWritten struct {
	row pgRow
	err error
}

// write hands w to a writer and waits until its batch committed.
func (g *pgGroup) write(ctx context.Context, s *Store, w *pgWrite) (pgRow, error) {
	g.once.Do(func() { g.start(s.sqlDB) })
	w.ctx, w.done = ctx, make(chan pgWritten, 1)
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	g.lastSent.Store(time.Now().UnixNano())
	select {
	case g.queue <- w:
	case <-g.quit:
		return pgRow{}, errStoreClosed
	case <-ctx.Done():
		return pgRow{}, ctx.Err()
	}
	select {
	case r := <-w.done:
		return r.row, r.err
	case <-ctx.Done():
		// The batch may still commit it: the delivery's answer is a failure, and the
		// platform's retry of it is journaled as a duplicate.
		return pgRow{}, ctx.Err()
	}
}

// active reports whether deliveries are being written, or were a moment ago
// (deliveriesRecent): under a stream of them, the moments between two are spent
// verifying the next ones.
func (g *pgGroup) active() bool {
	return g.inFlight.Load() > 0 || time.Now().UnixNano()-g.lastSent.Load() < int64(deliveriesRecent)
}

func (g *pgGroup) start(db *sql.DB) {
	g.queue, g.quit = make(chan *pgWrite), make(chan struct{})
	for range pgWriters {
		g.wg.Go(func() { g.run(db) })
	}
}

// close stops the writers once their batches are answered.
func (g *pgGroup) close() {
	g.stopped.Do(func() {
		// Never started: no writers, and a write after Close finds quit closed.
		g.once.Do(func() { g.queue, g.quit = make(chan *pgWrite), make(chan struct{}) })
		close(g.quit)
		g.wg.Wait()
	})
}

// run is one writer: it collects every write waiting, writes them, and answers them.
func (g *pgGroup) run(db *sql.DB) {
	var conn *sql.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	batch := make([]*pgWrite, 0, pgMaxBatch)
	for {
		batch = batch[:0]
		select {
		case w := <-g.queue:
			batch = append(batch, w)
		case <-g.quit:
			return
		}
	collect:
		for len(batch) < pgMaxBatch {
			select {
			case w := <-g.queue:
				batch = append(batch, w)
			default:
				break collect
			}
		}
		// A delivery that stopped waiting is not written: it was answered with an error.
		batch = slices.DeleteFunc(batch, func(w *pgWrite) bool {
			if err := w.ctx.Err(); err != nil {
				w.done <- pgWritten{err: err}
				return true
			}
			return false
		})
		if len(batch) == 0 {
			continue
		}
		// Stable: two events of one instance keep the order in which they came.
		slices.SortStableFunc(batch, func(a, b *pgWrite) int { return cmp.Compare(a.instanceID, b.instanceID) })
		var err error
		if conn == nil {
			if conn, err = db.Conn(context.Background()); err != nil {
				conn = nil
				for _, w := range batch {
					w.done <- pgWritten{err: err}
				}
				continue
			}
		}
		if broken := writeBatch(conn, batch); broken {
			conn.Close()
			conn = nil
		}
	}
}

// writeBatch writes a batch on conn and answers each of its writes. It reports whether
// conn is broken and must not be used again.
func writeBatch(conn *sql.Conn, batch []*pgWrite) (broken bool) {
	ctx, cancel := context.WithTimeout(context.Background(), pgBatchTimeout)
	defer cancel()
	rows := make([]pgRow, len(batch))
	err := conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("extension: the PostgreSQL connection is not pgx's")
		}
		pc := sc.Conn()
		err := sendBatch(ctx, pc, batch, rows)
		var pgErr *pgconn.PgError
		if err != nil && errors.As(err, &pgErr) && len(batch) > 1 {
			// The server rolled the batch back: each alone, so that only the failing one
			// fails.
			for i, w := range batch {
				err := sendBatch(ctx, pc, batch[i:i+1], rows[i:i+1])
				if errors.As(err, &pgErr) || err == nil {
					w.done <- pgWritten{row: rows[i], err: err}
					batch[i] = nil
					continue
				}
				return connFailed(pc, err)
			}
			return nil
		}
		if err != nil {
			return connFailed(pc, err)
		}
		for i, w := range batch {
			w.done <- pgWritten{row: rows[i]}
			batch[i] = nil
		}
		return nil
	})
	for _, w := range batch {
		if w != nil {
			w.done <- pgWritten{err: err}
		}
	}
	return errors.Is(err, driver.ErrBadConn) || err != nil && conn.PingContext(ctx) != nil
}

// connFailed is err, marked for database/sql to drop the connection if it is closed.
func connFailed(pc *pgx.Conn, err error) error {
	if pc.IsClosed() {
		return errors.Join(err, driver.ErrBadConn)
	}
	return err
}

// sendBatch sends the writes' statements in one pipelined batch, committed together at
// its end, and reads back their rows.
func sendBatch(ctx context.Context, pc *pgx.Conn, batch []*pgWrite, rows []pgRow) error {
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(batch))}
	for _, w := range batch {
		b.Queue(w.query, w.args...)
		if w.forgets {
			b.Queue(pgForgetStatement, w.instanceID, w.version)
		}
	}
	br := pc.SendBatch(ctx, b)
	var err error
	for i := range batch {
		r := &rows[i]
		var enabled bool // returned for the statements' common shape, not needed here
		e := br.QueryRow().Scan(&r.bits, &enabled, &r.removed)
		if errors.Is(e, pgx.ErrNoRows) {
			r.none, e = true, nil
		}
		if e != nil && err == nil {
			err = e
		}
		if batch[i].forgets {
			if _, e := br.Exec(); e != nil && err == nil {
				err = e
			}
		}
	}
	// Close reports the batch's first error again: keep one of them.
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
