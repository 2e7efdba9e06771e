package webhooks_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

// The Applied hook (the token broker's drop and the post-install job) hears of exactly
// the deliveries that changed what the backend sees: applied wholly or in part on a live
// instance, a removal, an install that lifts one. Not of a duplicate, a stale event, or
// fields kept on a removed instance for a re-install.
func TestAppliedHook(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			var (
				mu    sync.Mutex
				heard []string
			)
			env := newTestEnv(t, d, func(o *handlerOptions) {
				o.Applied = func(_ context.Context, ev extension.LifecycleEvent) {
					mu.Lock()
					defer mu.Unlock()
					heard = append(heard, ev.RequestID)
				}
			})
			id := uuid.NewString()
			update := newPayload(extension.EventUpdated, id, at(20))
			update.VariantKey = "pro"
			install := newPayload(extension.EventAdded, id, at(10))
			retry := install
			retry.RequestID = newRequestID()
			removal := newPayload(extension.EventRemoved, id, at(30))
			kept := newPayload(extension.EventUpdated, id, at(40))
			reinstall := newPayload(extension.EventAdded, id, at(35))
			steps := []struct {
				name    string
				p       testPayload
				outcome extension.Outcome
				heard   bool
			}{
				{"an update that overtook the install", update, extension.OutcomeApplied, true},
				{"the install after it: its secret", install, extension.OutcomePartlyApplied, true},
				{"the install retried", retry, extension.OutcomeDuplicate, false},
				{"an older rotation", newPayload(extension.EventSecretRotated, id, at(5)), extension.OutcomeStale, false},
				{"the removal", removal, extension.OutcomeApplied, true},
				{"an update after the removal", kept, extension.OutcomeApplied, false},
				{"the re-install the update belongs to", reinstall, extension.OutcomePartlyApplied, true},
			}
			var want []string
			for _, st := range steps {
				env.mustDeliver(t, st.p, http.StatusNoContent)
				checkOutcome(t, env.Store, st.outcome)
				if st.heard {
					want = append(want, st.p.RequestID)
				}
				mu.Lock()
				got := append([]string(nil), heard...)
				mu.Unlock()
				if len(got) != len(want) || (len(want) > 0 && got[len(got)-1] != want[len(want)-1]) {
					t.Errorf("after %s: the hook heard %d deliveries, want %d (this one: %v)", st.name, len(got), len(want), st.heard)
				}
			}
			checkSecret(t, env.Store, id, reinstall.Secret)
		})
	}
}
