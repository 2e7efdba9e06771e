package extension_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// TestInstancePage pages through instances by id with search and state filters, on both
// databases, and counts them by state.
func TestInstancePage(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			s := extensiontest.NewStore(t, d)
			ctx := context.Background()
			at := time.Now().Add(-time.Hour)
			var ids []string
			for i := range 7 {
				id := fmt.Sprintf("a%07d-0000-4000-8000-000000000000", i)
				ids = append(ids, id)
				mustApply(t, s, addedEvent(id, at, "s3cret-instance-value"), extension.OutcomeApplied)
			}
			mustApply(t, s, updatedEvent(ids[1], at.Add(time.Minute), false, "default", "project:read"), extension.OutcomeApplied)
			mustApply(t, s, removedEvent(ids[2], at.Add(time.Minute)), extension.OutcomeApplied)
			if err := s.SetContextName(ctx, ids[3], "Shop 100% Ready_", time.Now()); err != nil {
				t.Fatal(err)
			}

			all := func(q extension.InstanceQuery) []string {
				t.Helper()
				var got []string
				for pages := 0; pages < 20; pages++ {
					page, next, err := s.InstancePage(ctx, q)
					if err != nil {
						t.Fatalf("InstancePage(%+v): %v", q, err)
					}
					for _, in := range page {
						got = append(got, in.ID)
					}
					if next == "" {
						return got
					}
					q.After = next
				}
				t.Fatal("more than 20 pages")
				return nil
			}
			for _, tc := range []struct {
				name string
				q    extension.InstanceQuery
				want []string
			}{
				{"live, pages of 2", extension.InstanceQuery{Limit: 2}, []string{ids[0], ids[1], ids[3], ids[4], ids[5], ids[6]}},
				{"enabled", extension.InstanceQuery{State: extension.StateEnabled, Limit: 3}, []string{ids[0], ids[3], ids[4], ids[5], ids[6]}},
				{"disabled", extension.InstanceQuery{State: extension.StateDisabled, Limit: 3}, []string{ids[1]}},
				{"removed", extension.InstanceQuery{State: extension.StateRemoved, Limit: 3}, []string{ids[2]}},
				{"all", extension.InstanceQuery{State: extension.StateAll, Limit: 500}, ids},
				{"id prefix", extension.InstanceQuery{Search: "A000000", State: extension.StateAll, Limit: 5}, ids},
				{"id prefix of one", extension.InstanceQuery{Search: ids[4][:8], Limit: 5}, []string{ids[4]}},
				{"context id", extension.InstanceQuery{Search: "p-1", Limit: 5}, []string{ids[0], ids[1], ids[3], ids[4], ids[5], ids[6]}},
				{"name, any case", extension.InstanceQuery{Search: "shop", Limit: 5}, []string{ids[3]}},
				{"wildcards match themselves", extension.InstanceQuery{Search: "100% ready_", Limit: 5}, []string{ids[3]}},
				{"a wildcard alone matches no other", extension.InstanceQuery{Search: "%", Limit: 5}, []string{ids[3]}},
				{"nothing", extension.InstanceQuery{Search: "zzz", Limit: 5}, nil},
			} {
				if got := all(tc.q); fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
				}
			}
			for _, q := range []extension.InstanceQuery{{Limit: 0}, {Limit: 501}, {State: "gone", Limit: 5}} {
				if _, _, err := s.InstancePage(ctx, q); err == nil {
					t.Errorf("InstancePage(%+v) = nil error, want one", q)
				}
			}
			c, err := s.CountInstances(ctx)
			if want := (extension.InstanceCounts{Enabled: 5, Disabled: 1, Removed: 1}); err != nil || c != want {
				t.Errorf("CountInstances = %+v, %v; want %+v", c, err, want)
			}
		})
	}
}

// TestTokenHealth records mints and failures and reads them back, on both databases: the
// last failure outlives the shared token row, and a later mint clears "failing".
func TestTokenHealth(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			s := extensiontest.NewStore(t, d)
			ctx := context.Background()
			id := "b0000000-0000-4000-8000-000000000001"
			now := time.Now().UTC().Truncate(time.Second)
			mustApply(t, s, addedEvent(id, now.Add(-time.Hour), "s3cret-instance-value"), extension.OutcomeApplied)

			if h, err := s.InstanceTokenHealth(ctx, id, now); err != nil || h != (extension.TokenHealth{}) {
				t.Errorf("health before anything = %+v, %v; want zero", h, err)
			}
			if err := s.RecordMintFailure(ctx, id, "secret_refused", 403, now.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordMintFailure(ctx, id, "", 0, now); err == nil {
				t.Error("RecordMintFailure without a kind = nil, want an error")
			}
			h, err := s.InstanceTokenHealth(ctx, id, now)
			if err != nil || !h.Failing() || h.LastError != "secret_refused" || h.LastErrorStatus != 403 || !h.LastErrorAt.Equal(now.Add(-time.Minute)) || h.Cached {
				t.Errorf("health after a failure = %+v, %v", h, err)
			}
			if n, err := s.FailingTokenCount(ctx); err != nil || n != 1 {
				t.Errorf("FailingTokenCount = %d, %v; want 1", n, err)
			}
			if err := s.RecordMint(ctx, id, now); err != nil {
				t.Fatal(err)
			}
			if _, err := s.LeaseSharedToken(ctx, id, "me", time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutSharedToken(ctx, id, "me", "tok-value", now.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			h, err = s.InstanceTokenHealth(ctx, id, now)
			if err != nil || h.Failing() || !h.Cached || !h.ExpiresAt.Equal(now.Add(time.Hour)) || !h.LastMintedAt.Equal(now) || h.LastError != "secret_refused" {
				t.Errorf("health after a mint = %+v, %v", h, err)
			}
			if n, err := s.FailingTokenCount(ctx); err != nil || n != 0 {
				t.Errorf("FailingTokenCount after a mint = %d, %v; want 0", n, err)
			}
			// A rotation drops the shared token; the record of mints stays.
			mustApply(t, s, rotatedEvent(id, now.Add(-time.Minute), "another-secret"), extension.OutcomeApplied)
			h, err = s.InstanceTokenHealth(ctx, id, now)
			if err != nil || h.Cached || !h.LastMintedAt.Equal(now) {
				t.Errorf("health after a rotation = %+v, %v; want not cached, the mint kept", h, err)
			}
		})
	}
}
