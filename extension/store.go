// Package extension owns the domain of an extension backend: the installed extension
// instances and their sealed secrets, the journal of lifecycle deliveries, the accounts of
// an instance (platform users and local users) with their roles, sessions, invitations,
// password resets and lock-out, the instances' sign-in settings and audit log, the hashing
// of local users' passwords, the export of an instance's data and its erasure after a
// removal's grace period, and the Store that keeps all of it in SQLite or PostgreSQL
// through GORM. Callers see this package's sentinel errors, never GORM's.
package extension

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/driver/postgres"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
	glogger "gorm.io/gorm/logger"
)

var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("extension: not found")
	// ErrConflict is returned when a write collides with an existing record.
	ErrConflict = errors.New("extension: conflict")
	// ErrRemoved is returned for an instance that was removed from its context.
	ErrRemoved = errors.New("extension: instance removed")
	// ErrDisabled is returned for an instance that is disabled.
	ErrDisabled = errors.New("extension: instance disabled")
	// ErrNoSecret is returned for an instance whose secret we never received.
	ErrNoSecret = errors.New("extension: no secret stored for instance")
)

// Dialect names the SQL dialect of a Store.
type Dialect string

// The supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Store keeps instances and the delivery journal.
type Store struct {
	db *gorm.DB
	// sqlDB takes the lifecycle writes, and a sign-in's and a retrieval-key claim's
	// (prepared, s.prepared). On SQLite it is the group writer's connection: those two
	// take turns with the group commits on it and go through the gate as they do; on
	// PostgreSQL it is shared.
	sqlDB *sql.DB
	// shared serves GORM and migrations (SQLDB). On SQLite its one connection's writes
	// give way to queued deliveries (gate); on PostgreSQL it is sqlDB.
	shared *sql.DB
	// queue is the job queue's (QueueDB): on SQLite a connection of its own, whose
	// writes give way to deliveries like shared's; on PostgreSQL shared.
	queue   *sql.DB
	gate    *writeGate // SQLite: orders the writes of sqlDB, shared and queue
	dialect Dialect
	keys    *Keyring
	now     func() time.Time
	writer  *groupWriter  // SQLite only: serialises lifecycle writes with group commit
	ckpt    *checkpointer // SQLite file only: checkpoints the write-ahead log in the background
	pgGroup pgGroup       // PostgreSQL only: group commit of lifecycle writes (pgbatch.go)
	stmts   sync.Map      // SQL text → *sql.Stmt, prepared once for the hot path

	// reads serves the pages' read-only statements. On SQLite it is a pool of its own
	// beside the one writer connection: WAL lets readers run while the writer commits,
	// and with every read queued on the writer's single connection (which database/sql
	// hands to a random waiter) a page's p99 under 32 concurrent views was 25–30 ms. On
	// PostgreSQL it is the same pool as sqlDB.
	reads     *sql.DB
	readStmts sync.Map // SQL text → *sql.Stmt on reads

	// operator are the operator's OpenID Connect providers (SetOperatorProviders).
	operator atomic.Pointer[[]OperatorProvider]
}

// Options tunes Open. The zero value is valid: no keys (sealing fails with ErrNoKeys), no
// logging, the wall clock.
type Options struct {
	Keys   *Keyring
	Logger *slog.Logger
	Now    func() time.Time
	// WriteYield bounds, on SQLite, how long a write other than a lifecycle delivery's
	// (the job queue's, a page's) gives way to deliveries before it goes first; 0: 10 ms.
	WriteYield time.Duration

	checkpoint checkpointSettings // SQLite: the background checkpoints (tests)
}

// ParseDatabaseURL splits a database URL of the forms "sqlite:PATH" and "postgres://…"
// (or "postgresql://…") into its dialect and the driver's data source name.
func ParseDatabaseURL(raw string) (Dialect, string, error) {
	switch {
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite:"), "//")
		if path == "" || strings.ContainsAny(path, "?#") {
			return "", "", errors.New(`want "sqlite:PATH" with a file path and no query`)
		}
		return SQLite, path, nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return "", "", errors.New(`want "postgres://USER@HOST:PORT/DATABASE"`)
		}
		return Postgres, raw, nil
	default:
		return "", "", errors.New(`want "sqlite:PATH" or "postgres://…"`)
	}
}

// Open connects to the database named by a URL accepted by ParseDatabaseURL. For SQLite
// it creates the folder and sets the pragmas the store relies on. It does not migrate.
func Open(ctx context.Context, databaseURL string, opts Options) (*Store, error) {
	dialect, dsn, err := ParseDatabaseURL(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	var dialector gorm.Dialector
	var shared, writes, queue *sql.DB // SQLite: the connections opened here
	var gate *writeGate
	switch dialect {
	case SQLite:
		if dir := filepath.Dir(dsn); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("create database folder: %w", err)
			}
		}
		if dsn == ":memory:" {
			// An in-memory database is private to its connection: one for everything.
			dialector = sqlite.Open(sqliteURI(dsn, sqliteWriterParams))
			break
		}
		// Three connections that write, ordered by a gate: the group writer's, GORM's and
		// the job queue's. On one shared connection, which database/sql hands to a random
		// waiter, a group commit waited behind the job queue's writes: with 32 workers
		// BenchmarkServeDeliveries ran at 0.52x the bare prototype with p99 40 ms, beside
		// 0.72x and 14 ms without workers; with the gate (and the jobs' pacer) 0.71x, 13 ms.
		yield := opts.WriteYield
		if yield <= 0 {
			yield = defaultWriteYield
		}
		gate = newWriteGate(yield)
		uri := sqliteURI(dsn, sqliteWriterParams)
		writes = sql.OpenDB(newGatedConnector(uri, gate, true))
		shared = sql.OpenDB(newGatedConnector(uri, gate, false))
		queue = sql.OpenDB(newGatedConnector(uri, gate, false))
		dialector = sqlite.New(sqlite.Config{Conn: shared})
	case Postgres:
		dialector = postgres.Open(dsn)
	}
	closeOpened := func() {
		for _, c := range []*sql.DB{shared, writes, queue} {
			if c != nil {
				c.Close()
			}
		}
	}
	gl := glogger.Discard
	if opts.Logger != nil {
		gl = glogger.NewSlogLogger(opts.Logger, glogger.Config{
			SlowThreshold:             200 * time.Millisecond,
			LogLevel:                  glogger.Warn,
			IgnoreRecordNotFoundError: true,
			ParameterizedQueries:      true, // never put values (sealed or not) in a log line
		})
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		// Silent while opening: GORM logs a failed open itself, through a format string
		// that the slog adapter does not expand (a garbled "%v" line before our error).
		// The connection is tried below, with the caller's context.
		Logger:                 glogger.Discard,
		DisableAutomaticPing:   true,
		TranslateError:         true,
		SkipDefaultTransaction: true, // every write we make is already in an explicit transaction or a single statement
		NowFunc:                func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		closeOpened()
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	db.Logger = gl
	if shared, err = db.DB(); err != nil {
		closeOpened()
		return nil, fmt.Errorf("open %s database: %w", dialect, err)
	}
	if writes == nil {
		writes, queue = shared, shared
	}
	if dialect == SQLite {
		// One connection each: SQLite has one writer anyway, and a pool of writers queued
		// on busy_timeout made p99 latency under 32 concurrent deliveries climb from ~11 ms
		// to 600–900 ms on a 2-core machine.
		for _, c := range []*sql.DB{shared, writes, queue} {
			c.SetMaxOpenConns(1)
			c.SetConnMaxIdleTime(0)
		}
	} else {
		shared.SetMaxOpenConns(16)
		shared.SetMaxIdleConns(8)
		shared.SetConnMaxIdleTime(5 * time.Minute)
	}
	for _, c := range []*sql.DB{shared, writes, queue} {
		if err := c.PingContext(ctx); err != nil {
			closeOpened()
			return nil, fmt.Errorf("connect to %s database: %w", dialect, oneLine{err})
		}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Store{db: db, sqlDB: writes, shared: shared, queue: queue, gate: gate, reads: shared, dialect: dialect, keys: opts.Keys, now: now}
	if dialect == SQLite {
		// An in-memory database is private to its connection: a read pool would see
		// another, empty one.
		if dsn != ":memory:" {
			if s.reads, err = openSQLiteReads(ctx, dsn); err != nil {
				closeOpened()
				return nil, err
			}
			if s.ckpt, err = newCheckpointer(ctx, dsn, gate, opts.Logger, opts.checkpoint); err != nil {
				s.reads.Close()
				closeOpened()
				return nil, err
			}
		}
		s.writer = newGroupWriter(s)
	}
	return s, nil
}

// sqliteParams are the connection parameters of every SQLite connection: WAL lets readers
// run beside the writer; busy_timeout waits instead of failing at once.
const sqliteParams = "_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_foreign_keys=on"

// The parameters of the writer's connection and of the read pool's. The writer's
// transactions take the write lock at BEGIN (immediate), so two never both read and then
// fail to upgrade (SQLITE_BUSY mid-transaction). The readers refuse writes (query_only)
// and begin deferred: an immediate BEGIN asks for the write lock they may not take.
const (
	sqliteWriterParams = "&_txlock=immediate"
	sqliteReaderParams = "&_txlock=deferred&_query_only=true"
)

// sqliteURI is the driver's name for the database file at path. The driver reads "file:"
// names as URIs: a literal % must be escaped.
func sqliteURI(path, params string) string {
	return "file:" + strings.ReplaceAll(path, "%", "%25") + "?" + sqliteParams + params
}

// openSQLiteReads opens the read pool of a SQLite database: connections that refuse
// writes (query_only), a few more than CPUs so that a page never waits for another's
// read while a CPU is idle.
func openSQLiteReads(ctx context.Context, path string) (*sql.DB, error) {
	reads, err := sql.Open("sqlite3", sqliteURI(path, sqliteReaderParams))
	if err != nil {
		return nil, fmt.Errorf("open sqlite read pool: %w", err)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	reads.SetMaxOpenConns(n)
	reads.SetMaxIdleConns(n)
	if err := reads.PingContext(ctx); err != nil {
		reads.Close()
		return nil, fmt.Errorf("connect to sqlite read pool: %w", err)
	}
	return reads, nil
}

// oneLine shows an error on one line. pgx reports each connection attempt on a line of its
// own (with sslmode=prefer, one with TLS and one without, often the same words), which
// would break the one-line failure that every command promises.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	var parts []string
	for _, l := range strings.Split(e.err.Error(), "\n") {
		if l = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(l), ":")); l != "" && !slices.Contains(parts, l) {
			parts = append(parts, l)
		}
	}
	if len(parts) < 2 {
		return strings.Join(parts, "")
	}
	return parts[0] + ": " + strings.Join(parts[1:], "; ") // what failed: each attempt
}

func (e oneLine) Unwrap() error { return e.err }

// Close stops the store's writer and closes the database; on SQLite it leaves the
// write-ahead log empty.
func (s *Store) Close() error {
	if s.writer != nil {
		s.writer.close()
	}
	s.pgGroup.close()
	var ckptErr error
	if s.ckpt != nil {
		ckptErr = s.ckpt.close()
	}
	for _, stmts := range []*sync.Map{&s.stmts, &s.readStmts} {
		stmts.Range(func(_, st any) bool {
			st.(*sql.Stmt).Close()
			return true
		})
	}
	errs := []error{ckptErr, s.shared.Close()}
	for _, db := range []*sql.DB{s.reads, s.sqlDB, s.queue} {
		if db != s.shared {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}

// ReadDB returns the handle for read-only statements of pages: on SQLite a pool of its
// own that refuses writes, on PostgreSQL the same as SQLDB.
func (s *Store) ReadDB() *sql.DB { return s.reads }

// SQLDB returns the database handle for migrations, on which the store's other
// statements run too. On SQLite its writes give way to the lifecycle deliveries queued
// in this store.
func (s *Store) SQLDB() *sql.DB { return s.shared }

// QueueDB returns the handle for a job queue on the store's database. On SQLite it is a
// connection of its own whose writes give way to the lifecycle deliveries queued in this
// store, so that a queue's bookkeeping neither delays a delivery's commit nor holds up
// the store's other statements while it waits; on PostgreSQL it is SQLDB.
func (s *Store) QueueDB() *sql.DB { return s.queue }

// Dialect reports the store's SQL dialect.
func (s *Store) Dialect() Dialect { return s.dialect }

// Keys returns the keyring the store seals with (nil when none is configured).
func (s *Store) Keys() *Keyring { return s.keys }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ping database: %w", err)
	}
	return nil
}

// translate maps GORM's errors onto ours.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gorm.ErrRecordNotFound):
		return ErrNotFound
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return ErrConflict
	}
	return err
}
