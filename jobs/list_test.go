package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/go-cmp/cmp"
)

// listed is what a test compares of a JobInfo.
type listed struct {
	Kind, InstanceID, State string
	Attempts                int
}

// listNow lists the jobs of instances, leaving out the periodic ones, which the leader
// enqueues when it pleases.
func listNow(t *testing.T, j *Jobs) []listed {
	t.Helper()
	all, err := j.List(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []listed
	for _, j := range all {
		if j.InstanceID != "" {
			out = append(out, listed{j.Kind, j.InstanceID, j.State, j.Attempts})
		}
	}
	return out
}

func TestListShowsJobs(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var p pings
			en := newEnv(t, d, envOptions{workers: 4, noStart: true, register: p.register})
			ctx := context.Background()
			a := en.install(t, mstudiotest.CallRequest{})
			b := en.install(t, mstudiotest.CallRequest{Context: extension.ContextCustomer})
			if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{b}}, After(time.Hour)); err != nil {
				t.Fatal(err)
			}
			// Newest first.
			want := []listed{
				{"ping", b, "scheduled", 0},
				{KindPostInstall, b, "available", 0},
				{KindPostInstall, a, "available", 0},
			}
			if diff := cmp.Diff(want, listNow(t, en.Jobs)); diff != "" {
				t.Errorf("before start (-want +got):\n%s", diff)
			}
			before := time.Now()
			if err := en.Jobs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			en.waitFinished(t, a)
			waitFor(t, "the post-install job of b", 15*time.Second, func() bool { return listNow(t, en.Jobs)[1].State == "completed" })
			got := listNow(t, en.Jobs)
			for i := range got {
				got[i].Attempts = 0 // the first mint may be refused: the secret is not active yet
			}
			want[1].State, want[2].State = "completed", "completed"
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after the run (-want +got):\n%s", diff)
			}
			if one, err := en.Jobs.List(ctx, 1); err != nil || len(one) != 1 {
				t.Fatalf("List(1) = %d jobs, %v; want 1", len(one), err)
			}
			all, err := en.Jobs.List(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range all {
				if j.Kind == "ping" && (j.ScheduledAt.Before(before.Add(59*time.Minute)) || j.CreatedAt.After(before) || j.MaxAttempts != 25 || j.FinalizedAt != nil) {
					t.Errorf("scheduled job: %+v", j)
				}
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	store := extensiontest.NewStore(t, extension.SQLite)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no store", Config{}},
		{"negative workers", Config{Store: store, Workers: -1}},
		{"workers without tokens", Config{Store: store, Workers: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if j, err := New(context.Background(), tc.cfg); err == nil {
				j.Stop(context.Background())
				t.Error("New succeeded")
			}
		})
	}
	t.Run("postgres without url", func(t *testing.T) {
		pg := extensiontest.NewStore(t, extension.Postgres)
		if j, err := New(context.Background(), Config{Store: pg, DatabaseURL: extensiontest.SQLiteURL(t)}); err == nil {
			j.Stop(context.Background())
			t.Error("New succeeded")
		}
	})
}

func TestMigrate(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := extensiontest.URL(t, d)
			store := extensiontest.Open(t, url, extension.Options{})
			if err := RequireMigrated(ctx, store, url); !errors.Is(err, ErrNotMigrated) {
				t.Errorf("RequireMigrated before Migrate: %v, want ErrNotMigrated", err)
			}
			// Two replicas at once: each migration is applied once.
			results := make([][]Migration, 2)
			errs := make([]error, 2)
			done := make(chan int)
			for i := range results {
				go func() {
					results[i], errs[i] = Migrate(ctx, store, url)
					done <- i
				}()
			}
			<-done
			<-done
			var versions []int
			for i := range results {
				if errs[i] != nil {
					t.Errorf("replica %d: %v", i, errs[i])
				}
				for _, m := range results[i] {
					versions = append(versions, m.Version)
				}
			}
			if len(versions) != 8 {
				t.Errorf("applied versions %v, want River's 8 once", versions)
			}
			if err := RequireMigrated(ctx, store, url); err != nil {
				t.Errorf("RequireMigrated after Migrate: %v", err)
			}
			again, err := Migrate(ctx, store, url)
			if err != nil || len(again) != 0 {
				t.Errorf("Migrate again = %v, %v; want nothing", again, err)
			}
		})
	}
}

// TestAfterStop: once stopped, the hook returns at once and Start refuses.
func TestAfterStop(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 1, noStart: true})
	ctx := context.Background()
	en.Jobs.AfterApply(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: "a"}) // starts the batcher
	if err := en.Jobs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		en.Jobs.AfterApply(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: "b"})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterApply after Stop hangs")
	}
	if err := en.Jobs.Start(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("Start after Stop: %v, want ErrStopped", err)
	}
	if err := en.Jobs.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestInstanceJobHealth: an instance's health counts its own jobs only, on both dialects
// (the filter on the job's arguments is raw SQL).
func TestInstanceJobHealth(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			var p pings
			en := newEnv(t, d, envOptions{workers: 2, noStart: true, register: p.register})
			ctx := context.Background()
			a := en.install(t, mstudiotest.CallRequest{})
			b := en.install(t, mstudiotest.CallRequest{})
			if err := en.Jobs.Enqueue(ctx, pingArgs{For: For{a}}, After(time.Hour)); err != nil {
				t.Fatal(err)
			}
			for id, want := range map[string]extension.JobHealth{a: {Waiting: 2}, b: {Waiting: 1}, "00000000-0000-4000-8000-000000000000": {}} {
				if got, err := en.Jobs.InstanceJobHealth(ctx, id); err != nil || got != want {
					t.Errorf("health of %s before start = %+v, %v; want %+v", id, got, err, want)
				}
			}
			if err := en.Jobs.Start(ctx); err != nil {
				t.Fatal(err)
			}
			en.waitFinished(t, b)
			if got, err := en.Jobs.InstanceJobHealth(ctx, b); err != nil || got.Done != 1 || got.Waiting+got.Retrying+got.Failed != 0 {
				t.Errorf("health of b after its post-install job = %+v, %v; want one done", got, err)
			}
		})
	}
}
