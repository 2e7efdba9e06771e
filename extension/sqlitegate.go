package extension

import (
	"context"
	"database/sql/driver"
	"fmt"
	"sync"

	"github.com/mattn/go-sqlite3"
)

// gatedConnector opens SQLite connections whose writes take a writeGate first: every
// transaction from BEGIN to its end, and every statement outside a transaction that may
// write. Reads outside a transaction pass at once: in WAL they take no lock a writer
// waits for.
type gatedConnector struct {
	dsn    string
	drv    *sqlite3.SQLiteDriver
	gate   *writeGate
	urgent bool // the group writer's connection

	readOnly   sync.Map // query text → whether SQLite reports it read-only
	readOnlyN  int      // entries in readOnly, under readOnlyMu
	readOnlyMu sync.Mutex
}

// maxClassified bounds the cache of read-only answers (GORM spells an IN list of every
// length anew); a query past it is asked again each time.
const maxClassified = 1024

func newGatedConnector(dsn string, gate *writeGate, urgent bool) *gatedConnector {
	return &gatedConnector{dsn: dsn, drv: &sqlite3.SQLiteDriver{}, gate: gate, urgent: urgent}
}

func (c *gatedConnector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	// The store's checkpointer moves the log into the file in the background
	// (checkpoint.go): no commit on these connections does it.
	if _, err := conn.(*sqlite3.SQLiteConn).Exec(sqliteWriterPragmas, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return &gatedConn{c: c, conn: conn.(*sqlite3.SQLiteConn)}, nil
}

func (c *gatedConnector) Driver() driver.Driver { return c.drv }

// sqliteWriterPragmas are run on every connection that writes: no checkpoint in a commit
// (the checkpointer does them), and a log that starts over is cut back to walSizeLimit.
var sqliteWriterPragmas = fmt.Sprintf("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = %d", walSizeLimit)

// gatedConn is one connection. database/sql never uses a connection from two goroutines
// at once, so holding needs no lock of its own.
type gatedConn struct {
	c       *gatedConnector
	conn    *sqlite3.SQLiteConn
	holding bool // the gate is ours: a transaction or a writing query's rows are open
}

var (
	_ driver.ConnBeginTx        = (*gatedConn)(nil)
	_ driver.ConnPrepareContext = (*gatedConn)(nil)
	_ driver.ExecerContext      = (*gatedConn)(nil)
	_ driver.QueryerContext     = (*gatedConn)(nil)
	_ driver.Pinger             = (*gatedConn)(nil)
)

// enter takes the gate for a statement outside a transaction; the returned release is
// a no-op inside one, where the transaction holds the gate already.
func (gc *gatedConn) enter(ctx context.Context) (release func(), err error) {
	if gc.holding {
		return func() {}, nil
	}
	if err := gc.c.gate.acquire(ctx, gc.c.urgent); err != nil {
		return nil, err
	}
	gc.holding = true
	return gc.leave, nil
}

func (gc *gatedConn) leave() {
	gc.holding = false
	gc.c.gate.release()
}

// readOnly reports whether SQLite would run query without writing. A query it cannot
// prepare counts as a write.
func (gc *gatedConn) readOnly(ctx context.Context, query string) bool {
	if ro, ok := gc.c.readOnly.Load(query); ok {
		return ro.(bool)
	}
	st, err := gc.conn.PrepareContext(ctx, query)
	if err != nil {
		return false
	}
	ro := st.(*sqlite3.SQLiteStmt).Readonly()
	st.Close()
	gc.c.readOnlyMu.Lock()
	if gc.c.readOnlyN < maxClassified {
		if _, loaded := gc.c.readOnly.LoadOrStore(query, ro); !loaded {
			gc.c.readOnlyN++
		}
	}
	gc.c.readOnlyMu.Unlock()
	return ro
}

func (gc *gatedConn) Prepare(query string) (driver.Stmt, error) {
	return gc.PrepareContext(context.Background(), query)
}

func (gc *gatedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := gc.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &gatedStmt{SQLiteStmt: st.(*sqlite3.SQLiteStmt), gc: gc}, nil
}

func (gc *gatedConn) Close() error {
	if gc.holding {
		gc.leave()
	}
	return gc.conn.Close()
}

func (gc *gatedConn) Begin() (driver.Tx, error) {
	return gc.BeginTx(context.Background(), driver.TxOptions{})
}

func (gc *gatedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	release, err := gc.enter(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := gc.conn.BeginTx(ctx, opts)
	if err != nil {
		release()
		return nil, err
	}
	return &gatedTx{tx: tx, release: release}, nil
}

func (gc *gatedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	release, err := gc.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return gc.conn.ExecContext(ctx, query, args)
}

func (gc *gatedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	if gc.holding || gc.readOnly(ctx, query) {
		return gc.conn.QueryContext(ctx, query, args)
	}
	release, err := gc.enter(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := gc.conn.QueryContext(ctx, query, args)
	return gatedRowsOf(rows, err, release)
}

func (gc *gatedConn) Ping(ctx context.Context) error { return gc.conn.Ping(ctx) }

// gatedTx holds the gate from BEGIN until it ends.
type gatedTx struct {
	tx      driver.Tx
	release func()
}

func (t *gatedTx) Commit() error {
	defer t.release()
	return t.tx.Commit()
}

func (t *gatedTx) Rollback() error {
	defer t.release()
	return t.tx.Rollback()
}

// gatedStmt is a prepared statement: it takes the gate like its connection would,
// knowing from SQLite whether it writes.
type gatedStmt struct {
	*sqlite3.SQLiteStmt
	gc *gatedConn
}

func (s *gatedStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), namedValues(args))
}

func (s *gatedStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), namedValues(args))
}

func (s *gatedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if s.gc.holding || s.Readonly() {
		return s.SQLiteStmt.ExecContext(ctx, args)
	}
	release, err := s.gc.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.SQLiteStmt.ExecContext(ctx, args)
}

func (s *gatedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	if s.gc.holding || s.Readonly() {
		return s.SQLiteStmt.QueryContext(ctx, args)
	}
	release, err := s.gc.enter(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.SQLiteStmt.QueryContext(ctx, args)
	return gatedRowsOf(rows, err, release)
}

func namedValues(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, v := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return out
}

// gatedRows are the rows of a writing query (INSERT … RETURNING): the write lasts until
// they are closed, and so does the gate.
type gatedRows struct {
	*sqlite3.SQLiteRows
	release func()
	once    sync.Once
}

func gatedRowsOf(rows driver.Rows, err error, release func()) (driver.Rows, error) {
	if err != nil {
		release()
		return nil, err
	}
	sr, ok := rows.(*sqlite3.SQLiteRows)
	if !ok { // not the driver we know: end the write now rather than hold the gate blind
		release()
		return rows, nil
	}
	return &gatedRows{SQLiteRows: sr, release: release}, nil
}

func (r *gatedRows) Close() error {
	err := r.SQLiteRows.Close()
	r.once.Do(r.release)
	return err
}
