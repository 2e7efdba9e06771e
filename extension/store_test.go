package extension_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// forEachDialect runs fn as a subtest per dialect: SQLite always, PostgreSQL when
// EXT_TEST_POSTGRES_URL is set.
func forEachDialect(t *testing.T, fn func(t *testing.T, d extension.Dialect)) {
	t.Helper()
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, d) })
	}
}

// rawCells reads every cell of a table as text, straight through database/sql.
func rawCells(t *testing.T, s *extension.Store, table string) []string {
	t.Helper()
	rows, err := s.SQLDB().Query("SELECT * FROM " + table)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	var out []string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		for i, v := range vals {
			var cell string
			switch v := v.(type) {
			case []byte:
				cell = string(v)
			case nil:
				cell = ""
			default:
				cell = fmt.Sprint(v)
			}
			out = append(out, cols[i]+"="+cell)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}

// checkNoPlaintext fails the test if any stored cell of the instances or the journal
// contains one of the secrets in clear.
func checkNoPlaintext(t *testing.T, s *extension.Store, secrets ...extension.Secret) {
	t.Helper()
	for _, table := range []string{"instances", "webhook_deliveries"} {
		cells := rawCells(t, s, table)
		if len(cells) == 0 {
			t.Errorf("table %s is empty: nothing to check", table)
		}
		for _, cell := range cells {
			for _, secret := range secrets {
				if strings.Contains(cell, secret.Reveal()) {
					t.Errorf("table %s: cell %q contains a plaintext secret", table, cell)
				}
			}
		}
	}
}

func TestParseDatabaseURL(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		wantDialect extension.Dialect
		wantDSN     string
		wantErr     bool
	}{
		{name: "sqlite relative", raw: "sqlite:data/extension.db", wantDialect: extension.SQLite, wantDSN: "data/extension.db"},
		{name: "sqlite bare file", raw: "sqlite:extension.db", wantDialect: extension.SQLite, wantDSN: "extension.db"},
		{name: "sqlite absolute", raw: "sqlite:/var/lib/ext/extension.db", wantDialect: extension.SQLite, wantDSN: "/var/lib/ext/extension.db"},
		{name: "sqlite URL absolute", raw: "sqlite:///var/lib/ext/extension.db", wantDialect: extension.SQLite, wantDSN: "/var/lib/ext/extension.db"},
		{name: "sqlite URL relative", raw: "sqlite://data/extension.db", wantDialect: extension.SQLite, wantDSN: "data/extension.db"},
		{
			name: "postgres", raw: "postgres://ext:pw@db.internal:5432/ext?sslmode=require",
			wantDialect: extension.Postgres, wantDSN: "postgres://ext:pw@db.internal:5432/ext?sslmode=require",
		},
		{name: "postgresql", raw: "postgresql://ext@localhost/ext", wantDialect: extension.Postgres, wantDSN: "postgresql://ext@localhost/ext"},
		{name: "empty", raw: "", wantErr: true},
		{name: "mysql", raw: "mysql://x", wantErr: true},
		{name: "no scheme", raw: "data/extension.db", wantErr: true},
		{name: "sqlite without path", raw: "sqlite:", wantErr: true},
		{name: "sqlite URL without path", raw: "sqlite://", wantErr: true},
		{name: "sqlite with query", raw: "sqlite:a?b", wantErr: true},
		{name: "sqlite with pragma query", raw: "sqlite:a.db?_journal_mode=DELETE", wantErr: true},
		{name: "sqlite with fragment", raw: "sqlite:a#b", wantErr: true},
		{name: "postgres without host", raw: "postgres://", wantErr: true},
		{name: "postgres with only a database", raw: "postgres:///ext", wantErr: true},
		{name: "postgres with bad port", raw: "postgres://ext:pw@db:notaport/ext", wantErr: true},
		{name: "postgres without slashes", raw: "postgres:ext", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, dsn, err := extension.ParseDatabaseURL(tt.raw)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("ParseDatabaseURL(%q) got error %v, want error: %v", tt.raw, err, tt.wantErr)
			}
			if err != nil {
				if strings.Contains(tt.raw, "pw") && strings.Contains(err.Error(), "pw") {
					t.Errorf("got error %q, which repeats the password", err)
				}
				return
			}
			if d != tt.wantDialect || dsn != tt.wantDSN {
				t.Errorf("ParseDatabaseURL(%q) got (%q, %q), want (%q, %q)", tt.raw, d, dsn, tt.wantDialect, tt.wantDSN)
			}
		})
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"empty", ""},
		{"mysql", "mysql://x"},
		{"sqlite with query", "sqlite:a.db?mode=memory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := extension.Open(context.Background(), tt.url, extension.Options{})
			if err == nil {
				s.Close()
				t.Errorf("Open(%q) got nil error, want one", tt.url)
			}
		})
	}
}

// TestOpenUnreachablePostgres needs no server: nothing listens on port 1. The failure is
// one clean line, and nothing is logged beside it (GORM used to log a garbled "%v" line).
func TestOpenUnreachablePostgres(t *testing.T) {
	const password = "hunter2-Qx7mT2vLp9Rk"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// sslmode=prefer (the default) tries twice, with TLS and without: pgx reports each
	// attempt on a line of its own.
	for _, query := range []string{"?sslmode=disable&connect_timeout=5", "?connect_timeout=5"} {
		var logged extensiontest.LogBuffer
		s, err := extension.Open(ctx, "postgres://ext:"+password+"@127.0.0.1:1/ext"+query,
			extension.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
		if err == nil {
			s.Close()
			t.Fatal("Open of an unreachable server got nil error, want one")
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("got error %q, which contains the password", err)
		}
		if !strings.HasPrefix(err.Error(), "connect to postgres database: ") || strings.ContainsAny(err.Error(), "\n\t") {
			t.Errorf("%s: got error %q, want one line starting with what failed", query, err)
		}
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: got error %q, want the cause", query, err)
		}
		if logged.String() != "" {
			t.Errorf("Open logged %q beside its error, want nothing", logged.String())
		}
	}
}

func TestOpenSQLiteCreatesFolder(t *testing.T) {
	tests := []struct {
		name string
		rel  []string // path below a temporary folder
	}{
		{"nested", []string{"a", "b", "c", "extension.db"}},
		{"space in name", []string{"my data", "extension db.db"}},
		{"percent in name", []string{"100%", "ext%41.db"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(append([]string{root}, tt.rel...)...)
			s, err := extension.Open(context.Background(), "sqlite:"+path, extension.Options{})
			if err != nil {
				t.Fatalf("Open(sqlite:%s): %v", path, err)
			}
			defer s.Close()
			if err := s.Ping(context.Background()); err != nil {
				t.Errorf("Ping: %v", err)
			}
			if _, err := s.SQLDB().Exec("CREATE TABLE probe (x INTEGER)"); err != nil {
				t.Errorf("write to the database: %v", err)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("database file at %s: got %v, want it to exist", path, err)
			}
			fi, err := os.Stat(filepath.Dir(path))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got&0o077 != 0 {
				t.Errorf("created folder mode got %v, want no access for group and others", got)
			}
			if got := s.Dialect(); got != extension.SQLite {
				t.Errorf("Dialect() got %q, want %q", got, extension.SQLite)
			}
		})
	}
}

func TestOpenSQLitePragmas(t *testing.T) {
	s := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{})
	tests := []struct {
		pragma string
		check  func(string) bool
		want   string
	}{
		{"journal_mode", func(v string) bool { return strings.EqualFold(v, "wal") }, "wal"},
		{"synchronous", func(v string) bool { return v == "1" }, "1 (NORMAL)"},
		{"foreign_keys", func(v string) bool { return v == "1" }, "1 (on)"},
		{"busy_timeout", func(v string) bool {
			var ms int
			_, err := fmt.Sscan(v, &ms)
			return err == nil && ms >= 1000
		}, "at least 1000 (ms)"},
	}
	for _, tt := range tests {
		t.Run(tt.pragma, func(t *testing.T) {
			// Ask several times: with a pool, each connection would need the pragma.
			for range 3 {
				var got string
				if err := s.SQLDB().QueryRow("PRAGMA " + tt.pragma).Scan(&got); err != nil {
					t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
				}
				if !tt.check(got) {
					t.Errorf("PRAGMA %s got %s, want %s", tt.pragma, got, tt.want)
				}
			}
		})
	}
	if got := s.SQLDB().Stats().MaxOpenConnections; got != 1 {
		t.Errorf("MaxOpenConnections got %d, want 1", got)
	}
}

func TestStorePing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		if err := s.Ping(context.Background()); err != nil {
			t.Errorf("Ping got %v, want nil", err)
		}
		if got := s.Dialect(); got != d {
			t.Errorf("Dialect() got %q, want %q", got, d)
		}
		if s.Keys() == nil {
			t.Errorf("Keys() got nil, want the keyring passed to Open")
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close got %v, want nil", err)
		}
		if err := s.Ping(context.Background()); err == nil {
			t.Errorf("Ping after Close got nil, want an error")
		}
	})
}

// TestSQLiteReadPool checks the pool the pages read through on SQLite: it refuses writes,
// it has the pragmas of the writer's connection, and a read does not wait for a write
// transaction that holds the writer's only connection.
func TestSQLiteReadPool(t *testing.T) {
	s := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{})
	reads := s.ReadDB()
	if reads == s.SQLDB() {
		t.Fatal("the read pool is the writer's pool, want a pool of its own on SQLite")
	}
	if got := reads.Stats().MaxOpenConnections; got < 2 {
		t.Errorf("read pool MaxOpenConnections got %d, want at least 2", got)
	}
	for pragma, want := range map[string]string{"query_only": "1", "foreign_keys": "1", "journal_mode": "wal"} {
		var got string
		if err := reads.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", pragma, err)
		}
		if !strings.EqualFold(got, want) {
			t.Errorf("read pool PRAGMA %s got %s, want %s", pragma, got, want)
		}
	}
	if _, err := reads.Exec("CREATE TABLE probe (x INTEGER)"); err == nil {
		t.Error("a write through the read pool succeeded, want it refused")
	}
	// A read transaction must be possible: deferred, not the writer's immediate one.
	if rtx, err := reads.Begin(); err != nil {
		t.Errorf("read transaction on the read pool: %v", err)
	} else if err := rtx.QueryRow("SELECT COUNT(*) FROM webhook_deliveries").Scan(new(int)); err != nil {
		t.Errorf("read in a read transaction: %v", err)
	} else {
		rtx.Rollback()
	}

	// Hold the writer's only connection in a write transaction, with a row not yet
	// committed; a page's read must neither wait for it nor see the row.
	tx, err := s.SQLDB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO webhook_deliveries (request_id, kind, instance_id, received_at, outcome, reason)
VALUES ('r-uncommitted', 'InstanceCreated', 'inst-1', CURRENT_TIMESTAMP, 'applied', '')`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got, err := s.RecentDeliveries(ctx, "inst-1", 5, 100)
	if err != nil {
		t.Fatalf("RecentDeliveries while a write transaction is open: %v, want an answer without waiting", err)
	}
	if len(got) != 0 {
		t.Errorf("RecentDeliveries got %d rows while the insert is uncommitted, want 0", len(got))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err = s.RecentDeliveries(ctx, "inst-1", 5, 100)
	if err != nil || len(got) != 1 || got[0].RequestID != "r-uncommitted" {
		t.Errorf("RecentDeliveries after commit got %v, %v, want the committed row", got, err)
	}
}

// TestSQLiteInMemory checks that an in-memory database, private to its one connection,
// reads what it wrote: it has no read pool of its own.
func TestSQLiteInMemory(t *testing.T) {
	s := extensiontest.Open(t, "sqlite::memory:", extension.Options{})
	if s.ReadDB() != s.SQLDB() {
		t.Error("an in-memory database got a read pool of its own, which would see another, empty database")
	}
	if _, err := s.RecentDeliveries(t.Context(), "inst-1", 5, 100); err != nil {
		t.Errorf("RecentDeliveries on an in-memory database: %v", err)
	}
}
