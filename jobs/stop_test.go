package jobs

import (
	"context"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/google/uuid"
)

// TestStopInsertsHandedOverJobs: post-install jobs handed over by AfterApply but not yet
// inserted when Stop comes belong to webhooks already acknowledged; Stop inserts them.
func TestStopInsertsHandedOverJobs(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{noStart: true})
	ctx := context.Background()
	const n = 200
	for range n {
		en.Jobs.AfterApply(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: uuid.NewString()})
	}
	if err := en.Jobs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// A fresh insert-only queue on the same store reads what reached River.
	again, err := New(ctx, Config{Store: en.Store})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop(ctx)
	list, err := again.List(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, j := range list {
		if j.Kind == KindPostInstall {
			got++
		}
	}
	if got != n {
		t.Errorf("post-install jobs after Stop: got %d, want %d", got, n)
	}
}
