// Package extensiontest gives tests real, migrated stores: SQLite in a temporary folder,
// and PostgreSQL in a schema of its own when EXT_TEST_POSTGRES_URL is set.
package extensiontest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/migrations"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for schema set-up
)

// PostgresEnv names the variable that points the tests at a PostgreSQL server.
const PostgresEnv = "EXT_TEST_POSTGRES_URL"

// Keyring returns a keyring with one fresh random key.
func Keyring(t testing.TB) *extension.Keyring {
	t.Helper()
	kr, err := extension.NewKeyring([][]byte{Key(t)})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// Key returns a fresh random 32-byte key.
func Key(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, extension.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// SQLiteURL returns the database URL of a new SQLite file in a temporary folder.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "extension.db")
}

// PostgresURL returns the URL of a fresh, empty schema on the test PostgreSQL server,
// dropped when the test ends; it skips the test when EXT_TEST_POSTGRES_URL is not set.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip(PostgresEnv + " is not set: PostgreSQL tests skipped")
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", PostgresEnv, err)
	}
	defer db.Close()
	schema := fmt.Sprintf("t_%d_%x", time.Now().UnixNano(), Key(t)[:4])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			t.Errorf("drop schema: %v", err)
			return
		}
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema: %v", err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Dialects lists the dialects to run a test against: SQLite always, PostgreSQL when
// EXT_TEST_POSTGRES_URL is set.
func Dialects() []extension.Dialect {
	if os.Getenv(PostgresEnv) == "" {
		return []extension.Dialect{extension.SQLite}
	}
	return []extension.Dialect{extension.SQLite, extension.Postgres}
}

// URL returns a fresh database URL of the dialect.
func URL(t testing.TB, d extension.Dialect) string {
	t.Helper()
	if d == extension.Postgres {
		return PostgresURL(t)
	}
	return SQLiteURL(t)
}

// Open opens and migrates the database at url, closed when the test ends.
func Open(t testing.TB, databaseURL string, opts extension.Options) *extension.Store {
	t.Helper()
	s, err := extension.Open(context.Background(), databaseURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := migrations.Up(context.Background(), s.SQLDB(), string(s.Dialect())); err != nil {
		t.Fatal(err)
	}
	return s
}

// NewStore returns a migrated store of the dialect with a fresh keyring.
func NewStore(t testing.TB, d extension.Dialect) *extension.Store {
	t.Helper()
	return Open(t, URL(t, d), extension.Options{Keys: Keyring(t)})
}

// LogBuffer collects what a logger writes while the test reads it: safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Clock is a settable clock for every Now option (the store's, the simulator's, the
// client's), safe for concurrent use: one clock per test keeps them all in step. A clock
// from NewClock stands still until moved; one from WallClock runs with the wall clock,
// for tests whose parts wait in real time (River, a secret's activation delay), and is
// moved by Set and Advance all the same.
type Clock struct {
	running bool         // set at construction: the time is the wall clock's plus off
	off     atomic.Int64 // a running clock's lead over the wall clock, in ns: no lock on Now, which benchmarks call
	mu      sync.Mutex
	t       time.Time // a standing clock's time
}

// NewClock returns a clock that stands at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// WallClock returns a clock that runs with the wall clock.
func WallClock() *Clock { return &Clock{running: true} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	if c.running {
		return time.Now().Add(time.Duration(c.off.Load()))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	if c.running {
		c.off.Store(int64(time.Until(t)))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	if c.running {
		c.off.Add(int64(d))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
