package extension_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// t0 has nanoseconds, as the platform's request.createdAt does.
var t0 = time.Date(2025, 3, 14, 11, 36, 24, 249313263, time.UTC)

// at is the n-th event time after t0, one minute apart.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

var requestSeq atomic.Int64

func strp(s string) *string { return &s }

func newRequestID() string { return fmt.Sprintf("req-%04d", requestSeq.Add(1)) }

func addedEvent(id string, createdAt time.Time, secret extension.Secret) extension.LifecycleEvent {
	enabled := true
	return extension.LifecycleEvent{
		Kind: extension.EventAdded, RequestID: newRequestID(), CreatedAt: createdAt, InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: "p-1",
		Scopes: []string{"project:read"}, Enabled: &enabled, VariantKey: strp("default"), Secret: secret,
	}
}

func updatedEvent(id string, createdAt time.Time, enabled bool, variant string, scopes ...string) extension.LifecycleEvent {
	return extension.LifecycleEvent{
		Kind: extension.EventUpdated, RequestID: newRequestID(), CreatedAt: createdAt, InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: "p-1",
		Scopes: append([]string{}, scopes...), Enabled: &enabled, VariantKey: strp(variant),
	}
}

// rotatedEvent carries neither scopes nor state, as the platform's SecretRotated does.
func rotatedEvent(id string, createdAt time.Time, secret extension.Secret) extension.LifecycleEvent {
	return extension.LifecycleEvent{
		Kind: extension.EventSecretRotated, RequestID: newRequestID(), CreatedAt: createdAt, InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: "p-1", Secret: secret,
	}
}

func removedEvent(id string, createdAt time.Time) extension.LifecycleEvent {
	enabled := false
	return extension.LifecycleEvent{
		Kind: extension.EventRemoved, RequestID: newRequestID(), CreatedAt: createdAt, InstanceID: id,
		ContextKind: extension.ContextProject, ContextID: "p-1",
		Scopes: []string{"project:read"}, Enabled: &enabled,
	}
}

// mustApply applies ev, checks its outcome and that it wrote exactly one journal row
// describing it.
func mustApply(t *testing.T, s *extension.Store, ev extension.LifecycleEvent, want extension.Outcome) {
	t.Helper()
	ctx := context.Background()
	before := deliveriesOf(t, s, ev.InstanceID)
	res, err := s.ApplyLifecycle(ctx, ev)
	if err != nil {
		t.Fatalf("ApplyLifecycle(%s %s at %v): %v", ev.Kind, ev.InstanceID, ev.CreatedAt, err)
	}
	if res.Outcome != want {
		t.Errorf("ApplyLifecycle(%s %s at %v) got outcome %q (%s), want %q", ev.Kind, ev.InstanceID, ev.CreatedAt, res.Outcome, res.Reason, want)
	}
	after := deliveriesOf(t, s, ev.InstanceID)
	if len(after) != len(before)+1 {
		t.Fatalf("journal rows of %s: got %d after one delivery, want %d", ev.InstanceID, len(after), len(before)+1)
	}
	checkDelivery(t, after[0], ev, res)
}

func deliveriesOf(t *testing.T, s *extension.Store, instanceID string) []extension.Delivery {
	t.Helper()
	ds, err := s.Deliveries(context.Background(), instanceID, 10000)
	if err != nil {
		t.Fatalf("Deliveries(%s): %v", instanceID, err)
	}
	return ds
}

// checkDelivery compares a journal row with the event and result it records. PostgreSQL
// keeps microseconds, so event times are compared at that precision.
func checkDelivery(t *testing.T, got extension.Delivery, ev extension.LifecycleEvent, res extension.Result) {
	t.Helper()
	want := extension.Delivery{
		RequestID: ev.RequestID, Kind: string(ev.Kind), InstanceID: ev.InstanceID,
		Outcome: res.Outcome, Reason: res.Reason,
	}
	if !ev.CreatedAt.IsZero() {
		c := ev.CreatedAt
		want.EventCreatedAt = &c
	}
	opts := cmp.Options{
		cmpopts.IgnoreFields(extension.Delivery{}, "ID", "ReceivedAt"),
		cmp.Comparer(func(a, b time.Time) bool {
			return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond))
		}),
	}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("journal row mismatch (-want +got):\n%s", diff)
	}
	if got.ReceivedAt.IsZero() {
		t.Errorf("journal row ReceivedAt got zero, want the time of receipt")
	}
}

// instanceView is what a lifecycle event may change, in comparable form.
type instanceView struct {
	ContextKind string
	ContextID   string
	Scopes      []string
	Enabled     bool
	VariantKey  string
	HasSecret   bool
	Removed     bool
	LastEventAt time.Time
}

func viewOf(in *extension.Instance) instanceView {
	return instanceView{
		ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.ConsentedScopes,
		Enabled: in.Enabled, VariantKey: in.VariantKey, HasSecret: in.HasSecret(),
		Removed: in.Removed(), LastEventAt: in.LastEventAt(),
	}
}

// checkInstance compares the stored instance with want; LastEventAt must match to the
// nanosecond.
func checkInstance(t *testing.T, s *extension.Store, id string, want instanceView) {
	t.Helper()
	in, err := s.InstanceByID(context.Background(), id)
	if err != nil {
		t.Fatalf("InstanceByID(%s): %v", id, err)
	}
	got := viewOf(in)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("instance %s mismatch (-want +got):\n%s", id, diff)
	}
	if got.LastEventAt.UnixNano() != want.LastEventAt.UnixNano() {
		t.Errorf("instance %s LastEventAt got %d ns, want %d ns", id, got.LastEventAt.UnixNano(), want.LastEventAt.UnixNano())
	}
	if in.ID != id {
		t.Errorf("instance ID got %q, want %q", in.ID, id)
	}
}

// checkCredentials calls InstanceCredentials and compares the secret or the error.
func checkCredentials(t *testing.T, s *extension.Store, id string, wantSecret extension.Secret, wantErr error) {
	t.Helper()
	in, got, err := s.InstanceCredentials(context.Background(), id)
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Errorf("InstanceCredentials(%s) got (instance: %v, secret set: %v, error: %v), want error %v",
				id, in != nil, !got.IsZero(), err, wantErr)
		} else if in != nil || !got.IsZero() {
			t.Errorf("InstanceCredentials(%s) got an instance or a secret with error %v, want neither", id, err)
		}
		return
	}
	if err != nil {
		t.Errorf("InstanceCredentials(%s) got error %v, want secret", id, err)
		return
	}
	if got.Reveal() != wantSecret.Reveal() {
		t.Errorf("InstanceCredentials(%s) got secret %q, want %q", id, got.Reveal(), wantSecret.Reveal())
	}
	if in == nil || in.ID != id {
		t.Errorf("InstanceCredentials(%s) got instance %+v, want instance %s", id, in, id)
	}
}

func TestLifecycleSequence(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		const (
			id      = "b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
			secret1 = extension.Secret("first-secret-Qx7mT2vLp9RkW4sNz8bYc3Hf")
			secret2 = extension.Secret("second-secret-J6dGa1EoUiVtX5yKqZr0aB")
		)
		clock := extensiontest.NewClock(time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC))
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clock.Now})

		checkCredentials(t, s, id, "", extension.ErrNotFound)

		customer := updatedEvent(id, at(5), true, "", "customer:read")
		customer.ContextKind, customer.ContextID = extension.ContextCustomer, "c-1"
		steps := []struct {
			name       string
			ev         extension.LifecycleEvent
			want       instanceView
			wantSecret extension.Secret
			wantErr    error
		}{
			{
				name:       "added",
				ev:         addedEvent(id, at(1), secret1),
				want:       instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(1)},
				wantSecret: secret1,
			},
			{
				name:       "updated scopes and variant",
				ev:         updatedEvent(id, at(2), true, "pro", "project:read", "project:write"),
				want:       instanceView{"project", "p-1", []string{"project:read", "project:write"}, true, "pro", true, false, at(2)},
				wantSecret: secret1,
			},
			{
				name:       "secret rotated",
				ev:         rotatedEvent(id, at(3), secret2),
				want:       instanceView{"project", "p-1", []string{"project:read", "project:write"}, true, "pro", true, false, at(3)},
				wantSecret: secret2,
			},
			{
				name:    "disabled",
				ev:      updatedEvent(id, at(4), false, "pro", "project:read", "project:write"),
				want:    instanceView{"project", "p-1", []string{"project:read", "project:write"}, false, "pro", true, false, at(4)},
				wantErr: extension.ErrDisabled,
			},
			{
				name:       "enabled in another context, variant dropped",
				ev:         customer,
				want:       instanceView{"customer", "c-1", []string{"customer:read"}, true, "", true, false, at(5)},
				wantSecret: secret2,
			},
			{
				name:    "removed",
				ev:      removedEvent(id, at(6)),
				want:    instanceView{"project", "p-1", []string{"project:read"}, false, "", false, true, at(6)},
				wantErr: extension.ErrRemoved,
			},
		}
		var createdAt time.Time
		for i, step := range steps {
			clock.Set(time.Date(2025, 3, 14, 12, i, 0, 0, time.UTC))
			t.Run(step.name, func(t *testing.T) {
				mustApply(t, s, step.ev, extension.OutcomeApplied)
				checkInstance(t, s, id, step.want)
				checkCredentials(t, s, id, step.wantSecret, step.wantErr)
				in, err := s.InstanceByID(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					createdAt = in.CreatedAt
				}
				if !in.CreatedAt.Equal(createdAt) {
					t.Errorf("CreatedAt got %v, want %v (unchanged since the install)", in.CreatedAt, createdAt)
				}
				if step.ev.Kind == extension.EventRemoved && (in.RemovedAt == nil || !in.RemovedAt.Equal(clock.Now())) {
					t.Errorf("RemovedAt got %v, want %v (the store's clock)", in.RemovedAt, clock.Now())
				}
			})
		}
		if got := len(deliveriesOf(t, s, id)); got != len(steps) {
			t.Errorf("journal rows got %d, want %d (one per delivery)", got, len(steps))
		}
		checkNoPlaintext(t, s, secret1, secret2)
	})
}

// TestLifecycleStampsStoreClock: the store takes its clock from Options.Now, so created_at
// and updated_at must come from it, on insert and on update alike.
func TestLifecycleStampsStoreClock(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		clock := extensiontest.NewClock(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clock.Now})
		const id = "i-clock"
		events := []struct {
			name string
			ev   extension.LifecycleEvent
		}{
			{"added", addedEvent(id, at(1), "secret-for-the-clock-test")},
			{"updated", updatedEvent(id, at(2), true, "pro")},
			{"rotated", rotatedEvent(id, at(3), "secret-for-the-clock-test-2")},
		}
		created := clock.Now()
		for i, e := range events {
			now := created.Add(time.Duration(i) * time.Hour)
			clock.Set(now)
			mustApply(t, s, e.ev, extension.OutcomeApplied)
			in, err := s.InstanceByID(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if !in.UpdatedAt.Equal(now) {
				t.Errorf("after %s: UpdatedAt got %v, want %v (the store's clock)", e.name, in.UpdatedAt, now)
			}
			if !in.CreatedAt.Equal(created) {
				t.Errorf("after %s: CreatedAt got %v, want %v (the store's clock at install)", e.name, in.CreatedAt, created)
			}
		}
	})
}

func TestLifecycleReplay(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		const secret = extension.Secret("replayed-secret-Qx7mT2vLp9RkW4sNz8bYc")
		const id = "i-replay"
		added := addedEvent(id, at(1), secret)
		mustApply(t, s, added, extension.OutcomeApplied)
		before, err := s.InstanceByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}

		sameRequestOtherSecret := added
		sameRequestOtherSecret.Secret = "attacker-secret-should-not-be-stored"
		sameRequestOtherSecret.Scopes = []string{"everything"}
		retry := added
		retry.RequestID = newRequestID()
		retryLater := retry
		retryLater.RequestID = newRequestID()
		retryLater.VariantKey = strp("changed")
		retryLater.CreatedAt = at(1).Add(-time.Nanosecond)
		tests := []struct {
			name string
			ev   extension.LifecycleEvent
			want extension.Outcome
		}{
			{"same request", added, extension.OutcomeDuplicate},
			{"same request id, other content", sameRequestOtherSecret, extension.OutcomeDuplicate},
			{"retry with new request id, same createdAt", retry, extension.OutcomeDuplicate},
			{"retry again", retry, extension.OutcomeDuplicate},
			{"1 ns older, new request id", retryLater, extension.OutcomeStale},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				mustApply(t, s, tt.ev, tt.want)
				after, err := s.InstanceByID(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("instance changed by a %s delivery (-before +after):\n%s", tt.want, diff)
				}
				checkCredentials(t, s, id, secret, nil)
			})
		}

		// A replay of the install after a later event changes nothing either. Whether it is
		// journaled as a duplicate or as stale is the store's choice.
		mustApply(t, s, updatedEvent(id, at(2), true, "pro", "project:read"), extension.OutcomeApplied)
		mid, err := s.InstanceByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.ApplyLifecycle(ctx, added)
		if err != nil {
			t.Fatalf("replay after an update: %v", err)
		}
		if res.Outcome != extension.OutcomeDuplicate && res.Outcome != extension.OutcomeStale {
			t.Errorf("replay after an update got outcome %q, want %q or %q", res.Outcome, extension.OutcomeDuplicate, extension.OutcomeStale)
		}
		if ds := deliveriesOf(t, s, id); len(ds) == 0 {
			t.Errorf("journal is empty, want a row for the replay")
		} else {
			checkDelivery(t, ds[0], added, res)
		}
		after, err := s.InstanceByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(mid, after); diff != "" {
			t.Errorf("instance changed by a replay after an update (-before +after):\n%s", diff)
		}
		checkNoPlaintext(t, s, secret, sameRequestOtherSecret.Secret)
	})
}

// step is one delivery and the outcome it must have.
type step struct {
	ev   extension.LifecycleEvent
	want extension.Outcome
}

func TestLifecycleOrdering(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const (
			secret1 = extension.Secret("ordering-secret-one-Qx7mT2vLp9RkW4sN")
			secret2 = extension.Secret("ordering-secret-two-z8bYc3HfJ6dGa1Eo")
			secret3 = extension.Secret("ordering-secret-three-UiVtX5yKqZr0aB")
		)
		// A removal destroys the secret and disables; it keeps the booked variant. Fields a
		// removal does not send follow the newest event that does, removed or not: that
		// is what makes every order end in the same state.
		tombstone := func(variant string, last time.Time) instanceView {
			return instanceView{"project", "p-1", []string{"project:read"}, false, variant, false, true, last}
		}
		tests := []struct {
			name       string
			steps      func(id string) []step
			want       func() instanceView
			wantSecret extension.Secret
			wantErr    error
		}{
			{
				name: "older update after a newer one",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{updatedEvent(id, at(3), true, "new", "project:read", "project:write"), extension.OutcomeApplied},
						{updatedEvent(id, at(2), false, "old", "project:read"), extension.OutcomeStale},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:read", "project:write"}, true, "new", true, false, at(3)}
				},
				wantSecret: secret1,
			},
			{
				name: "events one nanosecond apart, newer first",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{updatedEvent(id, at(2).Add(time.Nanosecond), true, "newer"), extension.OutcomeApplied},
						{updatedEvent(id, at(2), true, "older"), extension.OutcomeStale},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{}, true, "newer", true, false, at(2).Add(time.Nanosecond)}
				},
				wantSecret: secret1,
			},
			{
				name: "events one nanosecond apart, older first",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{updatedEvent(id, at(2), true, "older"), extension.OutcomeApplied},
						{updatedEvent(id, at(2).Add(time.Nanosecond), true, "newer"), extension.OutcomeApplied},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{}, true, "newer", true, false, at(2).Add(time.Nanosecond)}
				},
				wantSecret: secret1,
			},
			{
				name: "older rotation after a newer one",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{rotatedEvent(id, at(3), secret3), extension.OutcomeApplied},
						{rotatedEvent(id, at(2), secret2), extension.OutcomeStale},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(3)}
				},
				wantSecret: secret3,
			},
			{
				name: "older added after an update",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{updatedEvent(id, at(2), false, "pro", "project:write"), extension.OutcomeApplied},
						{addedEvent(id, at(1).Add(-time.Second), secret2), extension.OutcomeStale},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:write"}, false, "pro", true, false, at(2)}
				},
				wantErr: extension.ErrDisabled,
			},
			{
				name: "late older added after removal",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{removedEvent(id, at(3)), extension.OutcomeApplied},
						// It sets the variant, which the removal leaves alone, to what it was.
						{addedEvent(id, at(2), secret2), extension.OutcomePartlyApplied},
					}
				},
				want:    func() instanceView { return tombstone("default", at(3)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "late older update after removal",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{removedEvent(id, at(3)), extension.OutcomeApplied},
						// Newer than the install, so its variant stands; the rest is the removal's.
						{updatedEvent(id, at(2), true, "pro", "project:write"), extension.OutcomePartlyApplied},
					}
				},
				want:    func() instanceView { return tombstone("pro", at(3)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "late older rotation after removal",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{removedEvent(id, at(3)), extension.OutcomeApplied},
						{rotatedEvent(id, at(2), secret2), extension.OutcomeStale},
					}
				},
				want:    func() instanceView { return tombstone("default", at(3)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "newer update after removal",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{removedEvent(id, at(2)), extension.OutcomeApplied},
						// Kept for the re-install it belongs to, which may still arrive; the
						// instance stays removed until then.
						{updatedEvent(id, at(3), true, "pro", "project:write"), extension.OutcomeApplied},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:write"}, true, "pro", false, true, at(3)}
				},
				wantErr: extension.ErrRemoved,
			},
			{
				name: "newer rotation after removal",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{removedEvent(id, at(2)), extension.OutcomeApplied},
						// A secret newer than the removal is kept for the re-install; nothing
						// mints with it while the instance is removed.
						{rotatedEvent(id, at(3), secret2), extension.OutcomeApplied},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:read"}, false, "default", true, true, at(3)}
				},
				wantErr: extension.ErrRemoved,
			},
			{
				name: "removal delivered twice",
				steps: func(id string) []step {
					r := removedEvent(id, at(2))
					retry := r
					retry.RequestID = newRequestID()
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{r, extension.OutcomeApplied},
						{retry, extension.OutcomeDuplicate},
						{r, extension.OutcomeDuplicate},
					}
				},
				want:    func() instanceView { return tombstone("default", at(2)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "newer added revives",
				steps: func(id string) []step {
					return []step{
						{addedEvent(id, at(1), secret1), extension.OutcomeApplied},
						{updatedEvent(id, at(2), true, "pro", "project:write"), extension.OutcomeApplied},
						{removedEvent(id, at(3)), extension.OutcomeApplied},
						{addedEvent(id, at(4), secret2), extension.OutcomeApplied},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(4)}
				},
				wantSecret: secret2,
			},
			{
				name: "removal of an unknown instance",
				steps: func(id string) []step {
					return []step{{removedEvent(id, at(2)), extension.OutcomeApplied}}
				},
				want:    func() instanceView { return tombstone("", at(2)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "tombstone of an unknown instance stops an older added",
				steps: func(id string) []step {
					return []step{
						{removedEvent(id, at(2)), extension.OutcomeApplied},
						// Only its variant, which the removal does not send.
						{addedEvent(id, at(1), secret1), extension.OutcomePartlyApplied},
					}
				},
				want:    func() instanceView { return tombstone("default", at(2)) },
				wantErr: extension.ErrRemoved,
			},
			{
				name: "tombstone of an unknown instance, then a newer added",
				steps: func(id string) []step {
					return []step{
						{removedEvent(id, at(2)), extension.OutcomeApplied},
						{addedEvent(id, at(3), secret3), extension.OutcomeApplied},
					}
				},
				want: func() instanceView {
					return instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(3)}
				},
				wantSecret: secret3,
			},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id := fmt.Sprintf("i-order-%02d", i)
				steps := tt.steps(id)
				for _, st := range steps {
					mustApply(t, s, st.ev, st.want)
				}
				checkInstance(t, s, id, tt.want())
				checkCredentials(t, s, id, tt.wantSecret, tt.wantErr)
				ds := deliveriesOf(t, s, id)
				if len(ds) != len(steps) {
					t.Errorf("journal rows got %d, want %d", len(ds), len(steps))
				}
				for j, st := range steps { // the journal lists the newest first
					if k := len(ds) - 1 - j; k >= 0 && ds[k].Outcome != st.want {
						t.Errorf("journal row %d got outcome %q, want %q", j, ds[k].Outcome, st.want)
					}
				}
			})
		}
		checkNoPlaintext(t, s, secret1, secret2, secret3)
	})
}

func TestLifecycleTwoInstancesInOneContext(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		const secretA, secretB = extension.Secret("secret-of-a-Qx7mT2vLp9RkW4sNz8"), extension.Secret("secret-of-b-bYc3HfJ6dGa1EoUiVt")
		mustApply(t, s, addedEvent("i-a", at(1), secretA), extension.OutcomeApplied)
		mustApply(t, s, addedEvent("i-b", at(2), secretB), extension.OutcomeApplied)
		checkCredentials(t, s, "i-a", secretA, nil)
		checkCredentials(t, s, "i-b", secretB, nil)

		mustApply(t, s, removedEvent("i-a", at(3)), extension.OutcomeApplied)
		checkCredentials(t, s, "i-a", "", extension.ErrRemoved)
		checkCredentials(t, s, "i-b", secretB, nil)
		checkInstance(t, s, "i-b", instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(2)})

		ids := func(includeRemoved bool) []string {
			ins, err := s.Instances(ctx, includeRemoved)
			if err != nil {
				t.Fatalf("Instances(%v): %v", includeRemoved, err)
			}
			var out []string
			for _, in := range ins {
				out = append(out, in.ID)
			}
			return out
		}
		if diff := cmp.Diff([]string{"i-b"}, ids(false)); diff != "" {
			t.Errorf("Instances(false) mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"i-a", "i-b"}, ids(true)); diff != "" {
			t.Errorf("Instances(true) mismatch (-want +got):\n%s", diff)
		}
		checkNoPlaintext(t, s, secretA, secretB)
	})
}

// TestLifecycleConcurrentSameEvent delivers one event from many goroutines at once: on
// PostgreSQL several transactions see no row and insert, and the losers must retry.
func TestLifecycleConcurrentSameEvent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		tests := []struct {
			name            string
			freshRequestIDs bool // platform retries carry a new request id
		}{
			{"same request id", false},
			{"new request id each", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s := extensiontest.NewStore(t, d)
				const secret = extension.Secret("concurrent-secret-Qx7mT2vLp9RkW4sNz8")
				ev := addedEvent("i-race", at(1), secret)
				outcomes := applyConcurrently(t, s, 20, func(int) extension.LifecycleEvent {
					e := ev
					if tt.freshRequestIDs {
						e.RequestID = newRequestID()
					}
					return e
				})
				want := map[extension.Outcome]int{extension.OutcomeApplied: 1, extension.OutcomeDuplicate: 19}
				if diff := cmp.Diff(want, outcomes); diff != "" {
					t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
				}
				checkJournalCounts(t, s, "i-race", want)
				checkInstance(t, s, "i-race", instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(1)})
				checkCredentials(t, s, "i-race", secret, nil)
				checkNoPlaintext(t, s, secret)
			})
		}
	})
}

func TestLifecycleConcurrentUpdates(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-updates"
		const secret = extension.Secret("updates-secret-Qx7mT2vLp9RkW4sNz8bY")
		mustApply(t, s, addedEvent(id, at(0), secret), extension.OutcomeApplied)

		const n = 20
		order := rand.Perm(n) // start the goroutines in a random order of event times
		events := make([]extension.LifecycleEvent, n)
		newest := 0
		for i, k := range order {
			events[i] = updatedEvent(id, at(k+1), k%2 == 0, fmt.Sprintf("variant-%02d", k+1), fmt.Sprintf("scope:%02d", k+1))
			if events[i].CreatedAt.After(events[newest].CreatedAt) {
				newest = i
			}
		}
		outcomes := applyConcurrently(t, s, n, func(i int) extension.LifecycleEvent { return events[i] })
		if outcomes[extension.OutcomeApplied] < 1 || outcomes[extension.OutcomeApplied]+outcomes[extension.OutcomeStale] != n {
			t.Errorf("outcomes got %v, want %d in all, at least one applied, the rest stale", outcomes, n)
		}
		w := events[newest]
		checkInstance(t, s, id, instanceView{"project", "p-1", w.Scopes, *w.Enabled, *w.VariantKey, true, false, w.CreatedAt})
		checkJournalCounts(t, s, id, map[extension.Outcome]int{
			extension.OutcomeApplied: outcomes[extension.OutcomeApplied] + 1, // and the install
			extension.OutcomeStale:   outcomes[extension.OutcomeStale],
		})
	})
}

// TestLifecycleTwoStoresOneDatabase runs two stores on one database, as two replicas (or
// the server and a CLI command) do.
func TestLifecycleTwoStoresOneDatabase(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		const secret = extension.Secret("replica-secret-Qx7mT2vLp9RkW4sNz8bY")
		ev := addedEvent("i-replicas", at(1), secret)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			outcomes = map[extension.Outcome]int{}
		)
		for i := range 20 {
			wg.Go(func() {
				e := ev
				e.RequestID = newRequestID()
				res, err := stores[i%2].ApplyLifecycle(context.Background(), e)
				if err != nil {
					t.Errorf("store %d: ApplyLifecycle: %v", i%2, err)
					return
				}
				mu.Lock()
				outcomes[res.Outcome]++
				mu.Unlock()
			})
		}
		wg.Wait()
		want := map[extension.Outcome]int{extension.OutcomeApplied: 1, extension.OutcomeDuplicate: 19}
		if diff := cmp.Diff(want, outcomes); diff != "" {
			t.Errorf("outcomes mismatch (-want +got):\n%s", diff)
		}
		for i, s := range stores {
			t.Run(fmt.Sprintf("store %d", i), func(t *testing.T) {
				checkCredentials(t, s, "i-replicas", secret, nil)
			})
		}
	})
}

// applyConcurrently applies n events at once and counts the outcomes; errors fail the test.
func applyConcurrently(t *testing.T, s *extension.Store, n int, event func(i int) extension.LifecycleEvent) map[extension.Outcome]int {
	t.Helper()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		start    = make(chan struct{})
		outcomes = map[extension.Outcome]int{}
	)
	for i := range n {
		ev := event(i)
		wg.Go(func() {
			<-start
			res, err := s.ApplyLifecycle(context.Background(), ev)
			if err != nil {
				t.Errorf("ApplyLifecycle(%s at %v): %v", ev.Kind, ev.CreatedAt, err)
				return
			}
			mu.Lock()
			outcomes[res.Outcome]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return outcomes
}

func checkJournalCounts(t *testing.T, s *extension.Store, id string, want map[extension.Outcome]int) {
	t.Helper()
	got := map[extension.Outcome]int{}
	for _, dl := range deliveriesOf(t, s, id) {
		got[dl.Outcome]++
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreMapEntries(func(_ extension.Outcome, v int) bool { return v == 0 })); diff != "" {
		t.Errorf("journal outcomes of %s mismatch (-want +got):\n%s", id, diff)
	}
}

func TestInstanceCredentialsErrors(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		mustApply(t, s, updatedEvent("i-no-secret", at(1), true, "default", "project:read"), extension.OutcomeApplied)
		mustApply(t, s, addedEvent("i-disabled", at(1), "disabled-secret-Qx7mT2vLp9RkW4s"), extension.OutcomeApplied)
		mustApply(t, s, updatedEvent("i-disabled", at(2), false, "default"), extension.OutcomeApplied)
		mustApply(t, s, removedEvent("i-removed", at(1)), extension.OutcomeApplied)
		// The webhook handler refuses these payloads; the store must still not hand out an
		// empty secret as if it were one. After a rotation the old secret is void.
		mustApply(t, s, addedEvent("i-added-without-secret", at(1), ""), extension.OutcomeApplied)
		mustApply(t, s, addedEvent("i-rotated-without-secret", at(1), "void-after-rotation-Qx7mT2vLp9RkW"), extension.OutcomeApplied)
		mustApply(t, s, rotatedEvent("i-rotated-without-secret", at(2), ""), extension.OutcomeApplied)
		tests := []struct {
			id   string
			want error
		}{
			{"i-unknown", extension.ErrNotFound},
			{"", extension.ErrNotFound},
			{"i-no-secret", extension.ErrNoSecret},
			{"i-disabled", extension.ErrDisabled},
			{"i-removed", extension.ErrRemoved},
			{"i-added-without-secret", extension.ErrNoSecret},
			{"i-rotated-without-secret", extension.ErrNoSecret},
		}
		for _, tt := range tests {
			t.Run(tt.id, func(t *testing.T) {
				checkCredentials(t, s, tt.id, "", tt.want)
			})
		}
		if in, err := s.InstanceByID(ctx, "i-unknown"); !errors.Is(err, extension.ErrNotFound) || in != nil {
			t.Errorf("InstanceByID(unknown) got (%v, %v), want (nil, %v)", in, err, extension.ErrNotFound)
		}
	})
}

func TestApplyLifecycleWithoutKeys(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{})
		const secret = "no-keys-secret-Qx7mT2vLp9RkW4sNz8bYc"
		_, err := s.ApplyLifecycle(context.Background(), addedEvent("i-1", at(1), secret))
		if !errors.Is(err, extension.ErrNoKeys) {
			t.Errorf("ApplyLifecycle without keys got %v, want %v", err, extension.ErrNoKeys)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("got error %q, which contains the secret", err)
		}
		if _, err := s.InstanceByID(context.Background(), "i-1"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("InstanceByID after a failed delivery got %v, want %v", err, extension.ErrNotFound)
		}
		if ds := deliveriesOf(t, s, "i-1"); len(ds) != 0 {
			t.Errorf("journal rows after a failed delivery got %d, want 0 (nothing committed)", len(ds))
		}
		// An event without a secret needs no key.
		mustApply(t, s, removedEvent("i-2", at(1)), extension.OutcomeApplied)
	})
}

// TestApplyLifecycleAfterClose: a delivery that reaches a closed store (a request still in
// flight at shutdown) must fail at once, not wait for its context to end.
func TestApplyLifecycleAfterClose(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		for i := range 10 { // the close races with the delivery, so try more than once
			s := extensiontest.NewStore(t, d)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			res, err := s.ApplyLifecycle(ctx, addedEvent(fmt.Sprintf("i-closed-%d", i), at(1), "closed-secret-Qx7mT2vLp9RkW4sNz8b"))
			cancel()
			if err == nil {
				t.Errorf("attempt %d: ApplyLifecycle after Close got (%v, nil), want an error", i, res)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("attempt %d: ApplyLifecycle after Close got %v: it waited for its context instead of failing", i, err)
			}
		}
	})
}

func TestApplyLifecycleCanceledContext(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.ApplyLifecycle(ctx, addedEvent("i-canceled", at(1), "canceled-secret-Qx7mT2vLp9RkW4sNz"))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ApplyLifecycle with a canceled context got %v, want %v", err, context.Canceled)
		}
		if _, err := s.InstanceByID(context.Background(), "i-canceled"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("InstanceByID after a canceled delivery got %v, want %v", err, extension.ErrNotFound)
		}
		if ds := deliveriesOf(t, s, "i-canceled"); len(ds) != 0 {
			t.Errorf("journal rows after a canceled delivery got %d, want 0", len(ds))
		}
	})
}

// TestApplyLifecycleUnknownKind: the webhook handler journals unknown kinds itself; if one
// reaches the store anyway, it must change nothing.
func TestApplyLifecycleUnknownKind(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		const id = "i-unknown-kind"
		mustApply(t, s, addedEvent(id, at(1), "unknown-kind-secret-Qx7mT2vLp9RkW4"), extension.OutcomeApplied)
		before, err := s.InstanceByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		journal := deliveriesOf(t, s, id)

		odd := updatedEvent(id, at(2), false, "odd", "everything")
		odd.Kind = "ExtensionInstanceExploded"
		odd.Secret = "unknown-kind-other-secret-sNz8bYc3"
		res, err := s.ApplyLifecycle(ctx, odd)
		switch {
		case err == nil && res.Outcome != extension.OutcomeIgnored:
			t.Errorf("ApplyLifecycle(unknown kind) got outcome %q, want an error or %q", res.Outcome, extension.OutcomeIgnored)
		case err == nil && len(deliveriesOf(t, s, id)) != len(journal)+1:
			t.Errorf("ApplyLifecycle(unknown kind) answered %q without a journal row", res.Outcome)
		case err != nil && len(deliveriesOf(t, s, id)) != len(journal):
			t.Errorf("ApplyLifecycle(unknown kind) failed (%v) but journaled a row", err)
		}
		after, err := s.InstanceByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("instance changed by an unknown kind (-before +after):\n%s", diff)
		}
	})
}

// An update or rotation for an instance whose install we never received creates its
// record: the platform is the source of truth, and a lost install must not block the rest.
func TestLifecycleUnseenInstance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)

		mustApply(t, s, updatedEvent("i-unseen-update", at(1), false, "pro", "project:read"), extension.OutcomeApplied)
		checkInstance(t, s, "i-unseen-update", instanceView{
			ContextKind: extension.ContextProject, ContextID: "p-1", Scopes: []string{"project:read"},
			Enabled: false, VariantKey: "pro", LastEventAt: at(1),
		})
		checkCredentials(t, s, "i-unseen-update", "", extension.ErrDisabled)

		mustApply(t, s, rotatedEvent("i-unseen-rotate", at(1), "rotated-secret"), extension.OutcomeApplied)
		checkInstance(t, s, "i-unseen-rotate", instanceView{
			ContextKind: extension.ContextProject, ContextID: "p-1", Scopes: []string{},
			Enabled: true, HasSecret: true, LastEventAt: at(1),
		})
		checkCredentials(t, s, "i-unseen-rotate", "rotated-secret", nil)
	})
}

// Review findings: ties in time between different kinds, fields a payload leaves out, and
// an install that arrives after an update already created the record.
func TestLifecycleEdgeCases(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)

		// A rotation in the same second as the update before it still counts.
		mustApply(t, s, addedEvent("i-tie", at(1), "first-secret"), extension.OutcomeApplied)
		mustApply(t, s, updatedEvent("i-tie", at(2), true, "default", "project:read"), extension.OutcomeApplied)
		mustApply(t, s, rotatedEvent("i-tie", at(2), "second-secret"), extension.OutcomeApplied)
		checkCredentials(t, s, "i-tie", "second-secret", nil)
		// The same rotation again is a duplicate.
		mustApply(t, s, rotatedEvent("i-tie", at(2), "second-secret"), extension.OutcomeDuplicate)

		// An update that leaves out scopes, state, variant and context keeps them: it has
		// nothing to change.
		mustApply(t, s, addedEvent("i-keep", at(1), "s"), extension.OutcomeApplied)
		mustApply(t, s, extension.LifecycleEvent{
			Kind: extension.EventUpdated, RequestID: newRequestID(), CreatedAt: at(2), InstanceID: "i-keep",
		}, extension.OutcomeIgnored)
		checkInstance(t, s, "i-keep", instanceView{
			ContextKind: extension.ContextProject, ContextID: "p-1", Scopes: []string{"project:read"},
			Enabled: true, VariantKey: "default", HasSecret: true, LastEventAt: at(1),
		})

		// An install that arrives after an update created the record still brings its secret:
		// the update set every other field.
		mustApply(t, s, updatedEvent("i-late-install", at(2), true, "pro", "project:read"), extension.OutcomeApplied)
		mustApply(t, s, addedEvent("i-late-install", at(1), "install-secret"), extension.OutcomePartlyApplied)
		checkCredentials(t, s, "i-late-install", "install-secret", nil)
		checkInstance(t, s, "i-late-install", instanceView{
			ContextKind: extension.ContextProject, ContextID: "p-1", Scopes: []string{"project:read"},
			Enabled: true, VariantKey: "pro", HasSecret: true, LastEventAt: at(2),
		})
		// Once a secret is there, an older install changes nothing.
		mustApply(t, s, addedEvent("i-late-install", at(0), "older-secret"), extension.OutcomeStale)
		checkCredentials(t, s, "i-late-install", "install-secret", nil)
	})
}

// A rotation, an update or a removal deletes the instance's shared token in the same
// transaction, so no replica reuses a token minted with an old secret or for a disabled
// instance.
func TestLifecycleForgetsSharedToken(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		ctx := context.Background()
		share := func(id string) {
			t.Helper()
			if ok, err := s.LeaseSharedToken(ctx, id, "me", time.Minute); err != nil || !ok {
				t.Fatalf("lease: %v, %v", ok, err)
			}
			if ok, err := s.PutSharedToken(ctx, id, "me", extension.Secret("tok-"+id), time.Now().Add(time.Hour)); err != nil || !ok {
				t.Fatalf("put: %v, %v", ok, err)
			}
		}
		shared := func(id string) bool {
			t.Helper()
			_, err := s.SharedToken(ctx, id)
			if err != nil && !errors.Is(err, extension.ErrNotFound) {
				t.Fatal(err)
			}
			return err == nil
		}
		mustApply(t, s, addedEvent("i-shared", at(1), "s1"), extension.OutcomeApplied)
		for i, ev := range []extension.LifecycleEvent{
			rotatedEvent("i-shared", at(2), "s2"),
			updatedEvent("i-shared", at(3), false, "default", "project:read"),
			removedEvent("i-shared", at(4)),
		} {
			share("i-shared")
			mustApply(t, s, ev, extension.OutcomeApplied)
			if shared("i-shared") {
				t.Errorf("event %d (%s): the shared token survived", i, ev.Kind)
			}
		}
		// A stale event changes nothing, the shared token included.
		mustApply(t, s, addedEvent("i-kept", at(5), "s"), extension.OutcomeApplied)
		share("i-kept")
		mustApply(t, s, rotatedEvent("i-kept", at(1), "old"), extension.OutcomeStale)
		if !shared("i-kept") {
			t.Error("a stale rotation deleted the shared token")
		}
	})
}

// A removal or a disable signs every user out of the instance: sessions and user tokens
// go in the event's transaction. An update that keeps it enabled changes neither.
func TestLifecycleSignsOutOnDisableAndRemoval(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		ctx := context.Background()
		signedIn := func(id string, cookie extension.Secret) (session, token bool) {
			t.Helper()
			_, serr := s.SessionByID(ctx, cookie, time.Hour, time.Hour)
			_, terr := s.UserToken(ctx, signedInUser, id)
			return serr == nil, terr == nil
		}

		mustApply(t, s, addedEvent("i-signout", at(1), "s"), extension.OutcomeApplied)
		cookie := signInUser(t, s, "i-signout")
		mustApply(t, s, updatedEvent("i-signout", at(2), true, "default", "project:read"), extension.OutcomeApplied)
		if sess, tok := signedIn("i-signout", cookie); !sess || !tok {
			t.Errorf("after an update that keeps it enabled: session %v, token %v; want both kept", sess, tok)
		}
		mustApply(t, s, updatedEvent("i-signout", at(3), false, "default", "project:read"), extension.OutcomeApplied)
		if sess, tok := signedIn("i-signout", cookie); sess || tok {
			t.Errorf("after a disable: session %v, token %v; want both gone", sess, tok)
		}
		mustApply(t, s, updatedEvent("i-signout", at(4), true, "default", "project:read"), extension.OutcomeApplied)
		cookie = signInUser(t, s, "i-signout")
		mustApply(t, s, removedEvent("i-signout", at(5)), extension.OutcomeApplied)
		if sess, tok := signedIn("i-signout", cookie); sess || tok {
			t.Errorf("after a removal: session %v, token %v; want both gone", sess, tok)
		}
	})
}
