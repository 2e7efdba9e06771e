package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// TestPostInstallOldDefaultQueueJob: a post-install job an older version enqueued (queue
// default, scheduled) is unique against the new enqueue in queue post_install and against
// the reconciler, and a worker still works it.
func TestPostInstallOldDefaultQueueJob(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			en := newEnv(t, d, envOptions{workers: 2, noStart: true, noHook: true})
			id := en.install(t, mstudiotest.CallRequest{})
			// as the old version: default queue, scheduled, unique
			o := &river.InsertOpts{}
			Unique()(o)
			o.ScheduledAt = time.Now().Add(300 * time.Millisecond)
			if d == extension.SQLite {
				c, err := river.NewClient[*sql.Tx](riversqlite.New(en.Store.QueueDB()), &river.Config{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Insert(ctx, postInstallArgs{For{id}}, o); err != nil {
					t.Fatal(err)
				}
			} else {
				pool, err := pgxpool.New(ctx, en.DatabaseURL)
				if err != nil {
					t.Fatal(err)
				}
				defer pool.Close()
				c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Insert(ctx, postInstallArgs{For{id}}, o); err != nil {
					t.Fatal(err)
				}
			}
			// direct enqueue through the new path: unique across queues
			added, err := en.Jobs.enqueue(ctx, postInstallArgs{For{id}}, en.Jobs.postInstallOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			if added {
				t.Errorf("new-queue enqueue duplicated the old default-queue job")
			}
			n, err := en.Jobs.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("reconcile added %d", n)
			}
			if err := en.Jobs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "old job completes", 20*time.Second, func() bool {
				got := en.jobsOf(t, id)
				return len(got) == 1 && got[0].State == "completed"
			})
		})
	}
}

// TestUIThroughCappedDriver: River's UI reads and writes (jobs, queues, pause and resume
// of the post-install queue, cancel and delete) through the queue's driver, on SQLite the
// capped one.
func TestUIThroughCappedDriver(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			en := newEnv(t, d, envOptions{workers: 2, config: func(c *Config) { c.PostInstallDelay = time.Hour }})
			id := en.install(t, mstudiotest.CallRequest{})
			got := en.jobsOf(t, id)
			if len(got) != 1 {
				t.Fatalf("%+v", got)
			}
			srv := startUI(t, en)
			ids := fmt.Sprintf(`{"ids":["%d"]}`, got[0].ID)
			for _, c := range []struct{ method, path, body string }{
				{http.MethodGet, "/jobs/api/jobs?state=scheduled", ""},
				{http.MethodGet, "/jobs/api/queues", ""},
				{http.MethodGet, "/jobs/api/queues/post_install", ""},
				{http.MethodGet, "/jobs/api/states", ""},
				{http.MethodGet, "/jobs/api/autocomplete?facet=job_kind", ""},
				{http.MethodGet, "/jobs/api/autocomplete?facet=queue_name", ""},
				{http.MethodGet, fmt.Sprintf("/jobs/api/jobs/%d", got[0].ID), ""},
				{http.MethodGet, "/jobs/api/features", ""},
				{http.MethodPut, "/jobs/api/queues/post_install/pause", `{}`},
				{http.MethodPut, "/jobs/api/queues/post_install/resume", `{}`},
				{http.MethodPost, "/jobs/api/jobs/cancel", ids},
				{http.MethodPost, "/jobs/api/jobs/delete", ids},
			} {
				req, err := http.NewRequestWithContext(ctx, c.method, srv.URL+c.path, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				if c.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s: %d %s", c.method, c.path, resp.StatusCode, b)
				}
			}
		})
	}
}

// TestCappedDriverSubTransactions: transactions begun in transactions through the capped
// driver unwrap and commit.
func TestCappedDriverSubTransactions(t *testing.T) {
	ctx := context.Background()
	url := extensiontest.SQLiteURL(t)
	store := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
	if _, err := Migrate(ctx, store, url); err != nil {
		t.Fatal(err)
	}
	drv := newCappedSQLiteDriver(store.QueueDB())
	tx, err := drv.GetExecutor().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if drv.UnwrapTx(sub) == nil {
		t.Fatal("nil")
	}
	sub2, err := sub.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = drv.UnwrapTx(sub2)
	if err := sub2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sub.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestStopWhilePostInstallWaits: a stop that cancels the jobs while a post-install job
// waits out its delay puts it back available, with no attempt spent and no error (SQLite:
// on PostgreSQL Stop closes the pool the job list reads).
func TestStopWhilePostInstallWaits(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 2, ownStop: true, config: func(c *Config) { c.PostInstallDelay = 3 * time.Second }})
	id := en.install(t, mstudiotest.CallRequest{})
	waitFor(t, "the job to be taken up", 5*time.Second, func() bool {
		got := en.jobsOf(t, id)
		return len(got) == 1 && got[0].State == "running"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := en.Jobs.Stop(ctx); err == nil {
		t.Fatal("the stop ended within 100 ms, want its deadline to pass during the 3 s wait")
	}
	if got := en.jobsOf(t, id); len(got) != 1 || got[0].State != "available" || got[0].Attempts != 0 || len(got[0].Errors) != 0 {
		t.Errorf("after the stop: %+v, want the job available with no attempt and no error", got)
	}
}
