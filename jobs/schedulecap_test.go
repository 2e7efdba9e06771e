package jobs

import (
	"context"
	"database/sql"
	"strconv"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// countStates counts River's jobs of a kind by state.
func countStates(t *testing.T, db *sql.DB, kind string) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT state, COUNT(*) FROM river_job WHERE kind = ? GROUP BY state`, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var state string
		var n int
		if err := rows.Scan(&state, &n); err != nil {
			t.Fatal(err)
		}
		out[state] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// insertDue inserts n ping jobs of instanceID that fall due at due, in one InsertMany.
func insertDue(t *testing.T, client *river.Client[*sql.Tx], instanceID string, n int, due time.Time) {
	t.Helper()
	params := make([]river.InsertManyParams, n)
	for i := range params {
		params[i] = river.InsertManyParams{Args: pingArgs{For: For{instanceID}, Note: strconv.Itoa(i)}, InsertOpts: &river.InsertOpts{ScheduledAt: due}}
	}
	if _, err := client.InsertMany(context.Background(), params); err != nil {
		t.Fatal(err)
	}
}

// TestScheduleCapBoundsAPass: the scheduler's call through the capped driver, in a
// transaction as River makes it, makes at most scheduleCap due jobs available however
// many it asks for; the next call takes the rest.
func TestScheduleCapBoundsAPass(t *testing.T) {
	ctx := context.Background()
	url := extensiontest.SQLiteURL(t)
	store := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
	if _, err := Migrate(ctx, store, url); err != nil {
		t.Fatal(err)
	}
	inserter, err := river.NewClient[*sql.Tx](riversqlite.New(store.QueueDB()), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(200 * time.Millisecond)
	insertDue(t, inserter, "i-1", scheduleCap+scheduleCap/2, due)
	time.Sleep(time.Until(due) + 50*time.Millisecond)

	exec := newCappedSQLiteDriver(store.QueueDB()).GetExecutor()
	pass := func() int {
		tx, err := exec.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		res, err := tx.JobSchedule(ctx, &riverdriver.JobScheduleParams{Max: 10_000, Now: &now})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return len(res)
	}
	if n := pass(); n != scheduleCap {
		t.Fatalf("first pass made %d jobs available, want the cap %d", n, scheduleCap)
	}
	if got := countStates(t, store.ReadDB(), "ping"); got["available"] != scheduleCap || got["scheduled"] != scheduleCap/2 {
		t.Fatalf("after the first pass: %v, want %d available and %d scheduled", got, scheduleCap, scheduleCap/2)
	}
	if n := pass(); n != scheduleCap/2 {
		t.Fatalf("second pass made %d available, want the remaining %d", n, scheduleCap/2)
	}
}

// TestSchedulerPassesAreCapped: River's own scheduler, in the queue as New builds it on
// SQLite, makes at most scheduleCap jobs available per pass (every 5 s), and every job
// still runs.
func TestSchedulerPassesAreCapped(t *testing.T) {
	var p pings
	en := newEnv(t, extension.SQLite, envOptions{workers: 4, noStart: true, register: p.register})
	id := en.install(t, mstudiotest.CallRequest{})
	inserter, err := river.NewClient[*sql.Tx](riversqlite.New(en.Store.QueueDB()), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	total := scheduleCap + scheduleCap/2
	due := time.Now().Add(200 * time.Millisecond)
	insertDue(t, inserter, id, total, due)
	time.Sleep(time.Until(due) + 50*time.Millisecond)
	if err := en.Jobs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	moved := func() int {
		got := countStates(t, en.Store.ReadDB(), "ping")
		return total - got["scheduled"]
	}
	waitFor(t, "the scheduler's first pass", 15*time.Second, func() bool { return moved() > 0 })
	// The next pass comes 5 s after the first: well after this look.
	time.Sleep(2 * time.Second)
	if n := moved(); n != scheduleCap {
		t.Fatalf("the first pass made %d of %d due jobs available, want the cap %d", n, total, scheduleCap)
	}
	waitFor(t, "every ping to run", 30*time.Second, func() bool { return p.runs.Load() == int64(total) })
}
