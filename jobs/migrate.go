package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// Migration is one of River's migrations applied by Migrate.
type Migration struct {
	Version  int
	Name     string
	Duration time.Duration
}

// migrateLock is the PostgreSQL advisory lock key under which one replica at a time
// runs River's migrations (rivermigrate takes no lock itself); goose's key differs.
const migrateLock int64 = 0x72697665725f6d67 // "river_mg"

// sqliteMigrate serialises Migrate on SQLite within the process; SQLite serves one
// process, which migrates at its start.
var sqliteMigrate sync.Mutex

// Migrate applies River's pending migrations (its tables river_job, river_leader, …)
// to the store's database, the latest of River v0.49.0 included, and returns those it
// applied. Run it beside migrations.Up: at `migrate up` and at `serve` unless
// --no-migrate. On PostgreSQL it connects to databaseURL, and replicas starting together
// take turns.
func Migrate(ctx context.Context, store *extension.Store, databaseURL string) ([]Migration, error) {
	var (
		res *rivermigrate.MigrateResult
		err error
	)
	switch store.Dialect() {
	case extension.SQLite:
		// rivermigrate reads the applied versions and then applies the rest, each in a
		// transaction of its own: two callers at once would both apply the first.
		sqliteMigrate.Lock()
		defer sqliteMigrate.Unlock()
		var m *rivermigrate.Migrator[*sql.Tx]
		if m, err = rivermigrate.New(riversqlite.New(store.SQLDB()), migrateConfig()); err == nil {
			res, err = m.Migrate(ctx, rivermigrate.DirectionUp, nil)
		}
	case extension.Postgres:
		res, err = migratePostgres(ctx, databaseURL)
	default:
		err = fmt.Errorf("dialect %q", store.Dialect())
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	var out []Migration
	for _, v := range res.Versions {
		out = append(out, Migration{Version: v.Version, Name: v.Name, Duration: v.Duration})
	}
	return out, nil
}

func migratePostgres(ctx context.Context, databaseURL string) (*rivermigrate.MigrateResult, error) {
	pool, err := newPool(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	m, err := rivermigrate.New(riverpgxv5.New(pool), migrateConfig())
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	defer func() {
		// The lock dies with the session; a failed unlock (ctx gone) closes it instead.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrateLock); err != nil {
			conn.Conn().Close(context.Background()) //nolint:errcheck // closing is the fallback
		}
	}()
	return m.Migrate(ctx, rivermigrate.DirectionUp, nil)
}

// migrateConfig keeps rivermigrate quiet; Migrate returns what it applied.
func migrateConfig() *rivermigrate.Config {
	return &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)}
}

// ErrNotMigrated is returned by RequireMigrated when River's migrations are pending.
var ErrNotMigrated = errors.New("jobs: River's migrations are pending")

// RequireMigrated fails with ErrNotMigrated when River's tables are missing or behind
// this binary: for `serve --no-migrate` and the tool commands.
func RequireMigrated(ctx context.Context, store *extension.Store, databaseURL string) error {
	var (
		res *rivermigrate.ValidateResult
		err error
	)
	switch store.Dialect() {
	case extension.SQLite:
		var m *rivermigrate.Migrator[*sql.Tx]
		if m, err = rivermigrate.New(riversqlite.New(store.SQLDB()), migrateConfig()); err == nil {
			res, err = m.Validate(ctx, nil)
		}
	case extension.Postgres:
		pool, perr := newPool(ctx, databaseURL)
		if perr != nil {
			return perr
		}
		defer pool.Close()
		var m *rivermigrate.Migrator[pgx.Tx]
		if m, err = rivermigrate.New(riverpgxv5.New(pool), migrateConfig()); err == nil {
			res, err = m.Validate(ctx, nil)
		}
	default:
		err = fmt.Errorf("dialect %q", store.Dialect())
	}
	if err != nil {
		return fmt.Errorf("jobs: check migrations: %w", err)
	}
	if !res.OK {
		return fmt.Errorf("%w (%s): run extension-backend migrate up", ErrNotMigrated, strings.Join(res.Messages, "; "))
	}
	return nil
}
