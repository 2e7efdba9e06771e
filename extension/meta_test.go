package extension_test

import (
	"context"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// MarkSimulatedIfEmpty marks only a database without instances, and keeps an earlier mark.
func TestMarkSimulatedIfEmpty(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		mark := func(s *extension.Store) string {
			t.Helper()
			sim, err := s.SimulatorURL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return sim
		}

		empty := extensiontest.NewStore(t, d)
		if got := mark(empty); got != "" {
			t.Fatalf("a new database: got mark %q, want none", got)
		}
		if ok, err := empty.MarkSimulatedIfEmpty(ctx, "http://127.0.0.1:8081"); err != nil || !ok {
			t.Fatalf("mark an empty database: got %v, %v; want marked", ok, err)
		}
		if ok, err := empty.MarkSimulatedIfEmpty(ctx, "http://127.0.0.1:9999"); err != nil || !ok {
			t.Fatalf("mark a marked database again: got %v, %v; want marked", ok, err)
		}
		if got := mark(empty); got != "http://127.0.0.1:8081" {
			t.Errorf("after a second MarkSimulatedIfEmpty: got mark %q, want the first one kept", got)
		}

		// An instance, even a removed one, keeps an unmarked database unmarked.
		removed := extensiontest.NewStore(t, d)
		mustApply(t, removed, addedEvent("i-gone", at(1), "secret"), extension.OutcomeApplied)
		mustApply(t, removed, removedEvent("i-gone", at(2)), extension.OutcomeApplied)
		if ok, err := removed.MarkSimulatedIfEmpty(ctx, "http://127.0.0.1:8081"); err != nil || ok {
			t.Fatalf("mark a database with a removed instance: got %v, %v; want unmarked", ok, err)
		}
		if got := mark(removed); got != "" {
			t.Errorf("a database with a removed instance: got mark %q, want none", got)
		}
	})
}
