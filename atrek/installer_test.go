package atrek_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// installer puts instances into the simulator and, as their install webhook would, into
// the store; every event it applies is dated after the one before, on the test's clock.
type installer struct {
	sim   *mstudiotest.Server
	store *extension.Store
	now   func() time.Time

	mu     sync.Mutex
	events int
}

// install creates an instance at the simulator and applies its ExtensionAddedToContext.
func (i *installer) install(t testing.TB, spec mstudiotest.InstanceSpec) mstudiotest.Instance {
	t.Helper()
	in, err := i.sim.CreateInstance(spec)
	if err != nil {
		t.Fatal(err)
	}
	variant := in.VariantKey
	i.apply(t, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: in.ID,
		ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.Scopes, Enabled: new(true),
		VariantKey: &variant, Secret: extension.Secret(in.PendingSecret)})
	return in
}

// apply applies a lifecycle event, newer than every one before, to the store.
func (i *installer) apply(t testing.TB, ev extension.LifecycleEvent) {
	t.Helper()
	i.mu.Lock()
	i.events++
	ev.CreatedAt = i.now().Add(time.Duration(i.events) * time.Millisecond)
	i.mu.Unlock()
	ev.RequestID = uuid.NewString()
	if res, err := i.store.ApplyLifecycle(context.Background(), ev); err != nil || res.Outcome != extension.OutcomeApplied {
		t.Fatalf("apply %s: %+v, %v", ev.Kind, res, err)
	}
}
