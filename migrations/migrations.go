// Package migrations owns the database schema: versioned SQL files for each dialect,
// embedded in the binary and applied in order by goose. The files in sqlite/ and
// postgres/ carry the same numbers; only their SQL differs.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sqlite/*.sql postgres/*.sql
var files embed.FS

// Status is one migration and whether it is applied.
type Status = goose.MigrationStatus

// Result is one migration applied by Up.
type Result = goose.MigrationResult

func provider(db *sql.DB, dialect string) (*goose.Provider, error) {
	var (
		gd   goose.Dialect
		opts []goose.ProviderOption
	)
	switch dialect {
	case "sqlite":
		gd = goose.DialectSQLite3
	case "postgres":
		gd = goose.DialectPostgres
		// Replicas starting together queue on a PostgreSQL advisory lock held for the
		// session, so exactly one applies each migration and the others find it done.
		// The lock is tried every second (goose's default is every 5 s) for the same
		// 5 minutes: a replica that finds it taken starts a second after the other's
		// migrations, not up to five.
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
		if err != nil {
			return nil, fmt.Errorf("migrations: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	default:
		return nil, fmt.Errorf("migrations: unknown dialect %q", dialect)
	}
	sub, err := fs.Sub(files, dialect)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(gd, db, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and returns those it applied.
func Up(ctx context.Context, db *sql.DB, dialect string) ([]*Result, error) {
	p, err := provider(db, dialect)
	if err != nil {
		return nil, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return res, fmt.Errorf("migrations: up: %w", err)
	}
	return res, nil
}

// List returns every known migration and whether it is applied.
func List(ctx context.Context, db *sql.DB, dialect string) ([]*Status, error) {
	p, err := provider(db, dialect)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrations: status: %w", err)
	}
	return st, nil
}
