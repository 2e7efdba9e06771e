package extension_test

import (
	"context"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// TestReviewOneFailedErasureDoesNotBlockTheRest: an instance whose erasure fails (here a
// trigger refuses to delete its accounts) must not keep every instance after it in the
// batch from being erased, run after run; the failure is still reported.
func TestReviewOneFailedErasureDoesNotBlockTheRest(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
		for _, id := range []string{"i-aa-bad", "i-bb-good"} {
			seedEverything(t, s, id, id+".example", at(1))
			mustApply(t, s, removedEvent(id, at(2)), extension.OutcomeApplied)
		}
		ddl := []string{`CREATE TRIGGER keep_bad BEFORE DELETE ON accounts WHEN OLD.instance_id = 'i-aa-bad'
			BEGIN SELECT RAISE(ABORT, 'kept by the test'); END`}
		if d == extension.Postgres {
			ddl = []string{`CREATE OR REPLACE FUNCTION keep_bad() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF OLD.instance_id = 'i-aa-bad' THEN RAISE EXCEPTION 'kept by the test'; END IF; RETURN OLD; END $$`,
				`CREATE TRIGGER keep_bad BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION keep_bad()`}
		}
		for _, q := range ddl {
			if _, err := s.SQLDB().Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		grace := extension.DefaultRetentionAfterRemoval
		clk.Advance(grace + time.Minute)
		got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace))
		if err == nil {
			t.Error("the failed erasure was not reported")
		}
		if len(got) != 1 || got[0].InstanceID != "i-bb-good" {
			t.Errorf("erased %+v; want i-bb-good, past the one that failed", got)
		}
		if n := rowsOf(t, s, "accounts", "i-bb-good"); n != 0 {
			t.Errorf("i-bb-good still has %d accounts after its grace period", n)
		}
	})
}
