package extension_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cest is a zone other than UTC: the store must normalise times it is given.
var cest = time.FixedZone("CEST", 2*60*60)

// microsecondTimes compares times at PostgreSQL's precision.
var microsecondTimes = cmp.Comparer(func(a, b time.Time) bool {
	return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
})

func TestRecordDeliveryAndDeliveries(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clock := extensiontest.NewClock(time.Time{})
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clock.Now})

		records := []struct {
			receivedAt time.Time
			ev         extension.LifecycleEvent
			res        extension.Result
		}{
			{
				time.Date(2025, 3, 14, 13, 0, 0, 123456789, cest),
				extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: "req-dry", CreatedAt: at(1), InstanceID: "i-1"},
				extension.Result{Outcome: extension.OutcomeDryRun, Reason: "dry run"},
			},
			{
				time.Date(2025, 3, 14, 13, 0, 1, 0, cest),
				extension.LifecycleEvent{Kind: "Bogus", RequestID: "req-refused", InstanceID: "i-2"}, // no createdAt
				extension.Result{Outcome: extension.OutcomeRefused, Reason: "foreign extension"},
			},
			{
				time.Date(2025, 3, 14, 13, 0, 2, 5000, cest),
				extension.LifecycleEvent{Kind: "SomethingNew", RequestID: "req-ignored", CreatedAt: at(3), InstanceID: "i-1"},
				extension.Result{Outcome: extension.OutcomeIgnored, Reason: "unknown event kind"},
			},
		}
		var all []extension.Delivery // newest first
		for _, r := range records {
			clock.Set(r.receivedAt)
			if err := s.RecordDelivery(ctx, r.ev, r.res); err != nil {
				t.Fatalf("RecordDelivery(%s): %v", r.ev.RequestID, err)
			}
			want := extension.Delivery{
				RequestID: r.ev.RequestID, Kind: string(r.ev.Kind), InstanceID: r.ev.InstanceID,
				ReceivedAt: r.receivedAt.UTC(), Outcome: r.res.Outcome, Reason: r.res.Reason,
			}
			if !r.ev.CreatedAt.IsZero() {
				c := r.ev.CreatedAt.UTC()
				want.EventCreatedAt = &c
			}
			all = append([]extension.Delivery{want}, all...)
		}
		only := func(id string) []extension.Delivery {
			var out []extension.Delivery
			for _, dl := range all {
				if dl.InstanceID == id {
					out = append(out, dl)
				}
			}
			return out
		}
		tests := []struct {
			name       string
			instanceID string
			limit      int
			want       []extension.Delivery
		}{
			{"all", "", 10, all},
			{"all, limited", "", 2, all[:2]},
			{"instance i-1", "i-1", 10, only("i-1")},
			{"instance i-1, limited", "i-1", 1, only("i-1")[:1]},
			{"instance i-2", "i-2", 10, only("i-2")},
			{"instance without deliveries", "i-none", 10, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.Deliveries(ctx, tt.instanceID, tt.limit)
				if err != nil {
					t.Fatalf("Deliveries: %v", err)
				}
				opts := cmp.Options{cmpopts.IgnoreFields(extension.Delivery{}, "ID"), microsecondTimes, cmpopts.EquateEmpty()}
				if diff := cmp.Diff(tt.want, got, opts); diff != "" {
					t.Errorf("Deliveries(%q, %d) mismatch (-want +got):\n%s", tt.instanceID, tt.limit, diff)
				}
				if tt.instanceID != "" {
					// The dashboard's read gives the same rows within its window.
					recent, err := s.RecentDeliveries(ctx, tt.instanceID, tt.limit, 100)
					if err != nil {
						t.Fatalf("RecentDeliveries: %v", err)
					}
					if diff := cmp.Diff(tt.want, recent, opts); diff != "" {
						t.Errorf("RecentDeliveries(%q, %d) mismatch (-want +got):\n%s", tt.instanceID, tt.limit, diff)
					}
					// A window of the newest row alone holds only i-1's newest delivery.
					if narrow, err := s.RecentDeliveries(ctx, tt.instanceID, tt.limit, 1); err != nil || (tt.instanceID != "i-1" && len(narrow) != 0) || len(narrow) > 1 {
						t.Errorf("RecentDeliveries(%q) in a window of 1: %d rows, %v", tt.instanceID, len(narrow), err)
					}
				}
				for i := 1; i < len(got); i++ {
					if got[i].ID >= got[i-1].ID {
						t.Errorf("row %d has id %d after id %d, want newest (highest id) first", i, got[i].ID, got[i-1].ID)
					}
				}
			})
		}
		if _, err := s.InstanceByID(ctx, "i-1"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("InstanceByID after RecordDelivery got %v, want %v: journaling must not touch instances", err, extension.ErrNotFound)
		}
	})
}

// TestRecordDeliveryDoesNotShadowLaterDelivery: a dry run or a refused payload is journaled
// with the request id; the real delivery with that id must still be applied.
func TestRecordDeliveryDoesNotShadowLaterDelivery(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		tests := []struct {
			name    string
			outcome extension.Outcome
		}{
			{"dry run", extension.OutcomeDryRun},
			{"refused", extension.OutcomeRefused},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				ev := addedEvent("i-"+string(tt.outcome), at(1), "shadow-secret-Qx7mT2vLp9RkW4sNz8")
				if err := s.RecordDelivery(context.Background(), ev, extension.Result{Outcome: tt.outcome}); err != nil {
					t.Fatal(err)
				}
				mustApply(t, s, ev, extension.OutcomeApplied)
			})
		}
	})
}

func TestPruneDeliveries(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clock := extensiontest.NewClock(time.Time{})
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clock.Now})

		cutoff := time.Date(2025, 4, 1, 12, 0, 0, 500_000_000, time.UTC)
		received := []struct {
			name string
			at   time.Time
		}{
			{"a month before", cutoff.Add(-extension.DeliveryRetention)},
			{"an hour before", cutoff.Add(-time.Hour)},
			{"the whole second before", cutoff.Truncate(time.Second)},
			{"a microsecond before", cutoff.Add(-time.Microsecond)},
			{"at the cutoff", cutoff},
			{"at the cutoff, other zone", cutoff.In(cest)},
			{"a microsecond after", cutoff.Add(time.Microsecond)},
			{"the next whole second", cutoff.Truncate(time.Second).Add(time.Second)},
			{"a day after", cutoff.Add(24 * time.Hour)},
		}
		var wantKept []string
		wantPruned := 0
		for i, r := range received {
			clock.Set(r.at.In(cest))
			// Both ways into the journal: RecordDelivery and ApplyLifecycle.
			ev := updatedEvent(fmt.Sprintf("i-prune-%d", i), r.at, true, "")
			ev.RequestID = r.name
			if i%2 == 0 {
				if err := s.RecordDelivery(ctx, ev, extension.Result{Outcome: extension.OutcomeDryRun}); err != nil {
					t.Fatalf("RecordDelivery(%s): %v", r.name, err)
				}
			} else {
				mustApply(t, s, ev, extension.OutcomeApplied)
			}
			if r.at.Before(cutoff) {
				wantPruned++
			} else {
				wantKept = append([]string{r.name}, wantKept...) // newest first
			}
		}

		n, err := s.PruneDeliveries(ctx, cutoff.In(cest))
		if err != nil {
			t.Fatalf("PruneDeliveries: %v", err)
		}
		if n != int64(wantPruned) {
			t.Errorf("PruneDeliveries got %d rows, want %d", n, wantPruned)
		}
		kept := func() []string {
			ds := deliveriesOf(t, s, "")
			var out []string
			for _, dl := range ds {
				out = append(out, dl.RequestID)
			}
			return out
		}
		if diff := cmp.Diff(wantKept, kept()); diff != "" {
			t.Errorf("rows kept mismatch (-want +got):\n%s", diff)
		}

		if n, err := s.PruneDeliveries(ctx, cutoff); err != nil || n != 0 {
			t.Errorf("PruneDeliveries again got (%d, %v), want (0, nil)", n, err)
		}
		if diff := cmp.Diff(wantKept, kept()); diff != "" {
			t.Errorf("rows kept after a second prune mismatch (-want +got):\n%s", diff)
		}
		if n, err := s.PruneDeliveries(ctx, cutoff.Add(365*24*time.Hour)); err != nil || n != int64(len(wantKept)) {
			t.Errorf("PruneDeliveries of everything got (%d, %v), want (%d, nil)", n, err, len(wantKept))
		}
		if got := kept(); len(got) != 0 {
			t.Errorf("rows left after pruning everything: %v, want none", got)
		}
	})
}
