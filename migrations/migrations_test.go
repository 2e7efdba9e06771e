package migrations_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/migrations"
	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"
)

// sqlFiles lists the migration files of a dialect's folder, sorted. The folders are the
// ones embedded (migrations.go embeds sqlite/*.sql and postgres/*.sql).
func sqlFiles(t *testing.T, dialect string) []string {
	t.Helper()
	entries, err := os.ReadDir(dialect)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".sql") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		t.Fatalf("no migrations in %s/", dialect)
	}
	return names
}

// fileVersions returns the goose version numbers of the files, in order.
func fileVersions(t *testing.T, names []string) []int64 {
	t.Helper()
	var vs []int64
	for _, n := range names {
		v, err := goose.NumericComponent(n)
		if err != nil {
			t.Fatalf("file %s: %v", n, err)
		}
		vs = append(vs, v)
	}
	return vs
}

func openStore(t *testing.T, databaseURL string) *extension.Store {
	t.Helper()
	s, err := extension.Open(context.Background(), databaseURL, extension.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func resultVersions(res []*migrations.Result) []int64 {
	var vs []int64
	for _, r := range res {
		vs = append(vs, r.Source.Version)
	}
	return vs
}

func resultFiles(res []*migrations.Result) []string {
	var ns []string
	for _, r := range res {
		ns = append(ns, path.Base(r.Source.Path))
	}
	return ns
}

// versionRows returns how many rows goose's version table holds per version id.
func versionRows(t *testing.T, db *sql.DB) map[int64]int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(),
		`SELECT version_id, COUNT(*) FROM `+goose.DefaultTablename+` GROUP BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[int64]int{}
	for rows.Next() {
		var v int64
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			t.Fatal(err)
		}
		got[v] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// wantVersionRows is the content of goose's version table once every file is applied:
// goose's initial row 0 and one row per migration.
func wantVersionRows(versions []int64) map[int64]int {
	want := map[int64]int{0: 1}
	for _, v := range versions {
		want[v] = 1
	}
	return want
}

func TestDialectsHaveSameFiles(t *testing.T) {
	sqlite := sqlFiles(t, "sqlite")
	postgres := sqlFiles(t, "postgres")
	if diff := cmp.Diff(sqlite, postgres); diff != "" {
		t.Errorf("migration files of sqlite/ (-) and postgres/ (+) differ:\n%s", diff)
	}
	// Same numbers as well as same names, and no number used twice.
	for _, names := range [][]string{sqlite, postgres} {
		vs := fileVersions(t, names)
		if !slices.IsSorted(vs) || len(slices.Compact(slices.Clone(vs))) != len(vs) {
			t.Errorf("versions %v: want strictly increasing", vs)
		}
	}
}

// TestEmbeddedFilesAreTheFolders checks that List sees exactly the files of sqlite/, so
// the folder the other tests read is the one the binary carries.
func TestEmbeddedFilesAreTheFolders(t *testing.T) {
	s := openStore(t, extensiontest.SQLiteURL(t))
	st, err := migrations.List(t.Context(), s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range st {
		got = append(got, path.Base(m.Source.Path))
		if m.State != goose.StatePending {
			t.Errorf("fresh database: %s is %s, want %s", m.Source.Path, m.State, goose.StatePending)
		}
	}
	if diff := cmp.Diff(sqlFiles(t, "sqlite"), got); diff != "" {
		t.Errorf("listed migrations (-files +listed):\n%s", diff)
	}
}

func TestUpSQLite(t *testing.T) {
	files := sqlFiles(t, "sqlite")
	s := openStore(t, extensiontest.SQLiteURL(t))
	ctx := t.Context()

	res, err := migrations.Up(ctx, s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatalf("first Up: %v", err)
	}
	if diff := cmp.Diff(files, resultFiles(res)); diff != "" {
		t.Errorf("first Up applied (-want +got):\n%s", diff)
	}
	for _, r := range res {
		if r.Error != nil {
			t.Errorf("first Up: %s: %v", r.Source.Path, r.Error)
		}
		if r.Direction != "up" {
			t.Errorf("first Up: %s direction = %q, want %q", r.Source.Path, r.Direction, "up")
		}
	}

	st, err := migrations.List(ctx, s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var listed []string
	for _, m := range st {
		listed = append(listed, path.Base(m.Source.Path))
		if m.State != goose.StateApplied {
			t.Errorf("after Up: %s is %s, want %s", m.Source.Path, m.State, goose.StateApplied)
		}
		if m.AppliedAt.IsZero() {
			t.Errorf("after Up: %s has no time of application", m.Source.Path)
		}
	}
	if diff := cmp.Diff(files, listed); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	again, err := migrations.Up(ctx, s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second Up applied %v, want nothing", resultFiles(again))
	}
	if diff := cmp.Diff(wantVersionRows(fileVersions(t, files)), versionRows(t, s.SQLDB())); diff != "" {
		t.Errorf("version table rows by version (-want +got):\n%s", diff)
	}
}

// TestUpSQLiteReopen checks that a database migrated once stays migrated when opened again
// (as by a restart of the process).
func TestUpSQLiteReopen(t *testing.T) {
	url := extensiontest.SQLiteURL(t)
	first, err := extension.Open(t.Context(), url, extension.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Up(t.Context(), first.SQLDB(), "sqlite"); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, url)
	res, err := migrations.Up(t.Context(), s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatalf("Up after reopen: %v", err)
	}
	if len(res) != 0 {
		t.Errorf("Up after reopen applied %v, want nothing", resultFiles(res))
	}
}

func TestUpPostgres(t *testing.T) {
	files := sqlFiles(t, "postgres")
	s := openStore(t, extensiontest.PostgresURL(t))
	res, err := migrations.Up(t.Context(), s.SQLDB(), "postgres")
	if err != nil {
		t.Fatalf("first Up: %v", err)
	}
	if diff := cmp.Diff(files, resultFiles(res)); diff != "" {
		t.Errorf("first Up applied (-want +got):\n%s", diff)
	}
	st, err := migrations.List(t.Context(), s.SQLDB(), "postgres")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, m := range st {
		if m.State != goose.StateApplied {
			t.Errorf("after Up: %s is %s, want %s", m.Source.Path, m.State, goose.StateApplied)
		}
	}
	if len(st) != len(files) {
		t.Errorf("List has %d migrations, want %d", len(st), len(files))
	}
	again, err := migrations.Up(t.Context(), s.SQLDB(), "postgres")
	if err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if len(again) != 0 {
		t.Errorf("second Up applied %v, want nothing", resultFiles(again))
	}
}

// TestUpPostgresConcurrentReplicas starts two replicas on one fresh schema at once, several
// times over: each migration is applied exactly once, by one of them.
func TestUpPostgresConcurrentReplicas(t *testing.T) {
	extensiontest.PostgresURL(t) // skips without a server
	files := sqlFiles(t, "postgres")
	versions := fileVersions(t, files)
	const rounds = 5
	const replicas = 2
	for round := range rounds {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			url := extensiontest.PostgresURL(t)
			stores := make([]*extension.Store, replicas)
			for i := range stores {
				stores[i] = openStore(t, url)
			}
			results := make([][]*migrations.Result, replicas)
			errs := make([]error, replicas)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, s := range stores {
				wg.Go(func() {
					<-start
					results[i], errs[i] = migrations.Up(t.Context(), s.SQLDB(), "postgres")
				})
			}
			close(start)
			wg.Wait()

			t.Logf("applied per replica: %d, %d", len(results[0]), len(results[1]))
			var applied []int64
			for i := range replicas {
				if errs[i] != nil {
					t.Errorf("round %d: replica %d: Up: %v", round, i, errs[i])
				}
				applied = append(applied, resultVersions(results[i])...)
			}
			if len(applied) != len(files) {
				t.Errorf("round %d: replicas applied %d migrations in total, want %d", round, len(applied), len(files))
			}
			slices.Sort(applied)
			if diff := cmp.Diff(versions, applied); diff != "" {
				t.Errorf("round %d: versions applied by both replicas together (-want +got):\n%s", round, diff)
			}
			if diff := cmp.Diff(wantVersionRows(versions), versionRows(t, stores[0].SQLDB())); diff != "" {
				t.Errorf("round %d: version table rows by version (-want +got):\n%s", round, diff)
			}
			for i, s := range stores {
				st, err := migrations.List(t.Context(), s.SQLDB(), "postgres")
				if err != nil {
					t.Errorf("round %d: replica %d: List: %v", round, i, err)
					continue
				}
				for _, m := range st {
					if m.State != goose.StateApplied {
						t.Errorf("round %d: replica %d: %s is %s, want %s", round, i, m.Source.Path, m.State, goose.StateApplied)
					}
				}
			}
		})
	}
}

func TestUnknownDialect(t *testing.T) {
	s := openStore(t, extensiontest.SQLiteURL(t))
	tests := []struct {
		name    string
		dialect string
	}{
		{"empty", ""},
		{"mysql", "mysql"},
		{"upper case", "SQLite"},
		{"goose name", "sqlite3"},
		{"path", "../migrations/sqlite"},
		{"postgresql", "postgresql"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := migrations.Up(t.Context(), s.SQLDB(), tc.dialect)
			if err == nil {
				t.Errorf("Up(%q) = %v, nil; want an error", tc.dialect, resultFiles(res))
			}
			st, err := migrations.List(t.Context(), s.SQLDB(), tc.dialect)
			if err == nil {
				t.Errorf("List(%q) = %d migrations, nil; want an error", tc.dialect, len(st))
			}
		})
	}
	// Nothing was applied by the refused calls.
	st, err := migrations.List(t.Context(), s.SQLDB(), "sqlite")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if m.State != goose.StatePending {
			t.Errorf("%s is %s after refused calls, want %s", m.Source.Path, m.State, goose.StatePending)
		}
	}
}
