package extension_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// The reorderings issue 10 names, one by one: each ended in a wrong state before field
// groups kept their own versions.

// shareToken stores a shared instance token for id, as the token broker does.
func shareToken(t *testing.T, s *extension.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if ok, err := s.LeaseSharedToken(ctx, id, "me", time.Minute); err != nil || !ok {
		t.Fatalf("lease: %v, %v", ok, err)
	}
	if ok, err := s.PutSharedToken(ctx, id, "me", extension.Secret("tok-"+id), time.Now().Add(time.Hour)); err != nil || !ok {
		t.Fatalf("put: %v, %v", ok, err)
	}
}

// hasSharedToken reports whether a shared token is stored for id.
func hasSharedToken(t *testing.T, s *extension.Store, id string) bool {
	t.Helper()
	_, err := s.SharedToken(context.Background(), id)
	if err != nil && !errors.Is(err, extension.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// signedInUser is the platform user signInUser signs in.
const signedInUser = "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e02"

// signInUser makes a platform account in instance id with a session and a user token,
// and returns the session's cookie value.
func signInUser(t *testing.T, s *extension.Store, id string) extension.Secret {
	t.Helper()
	ctx := context.Background()
	user := signedInUser
	acc, _, err := s.EnsurePlatformAccount(ctx, id, user, "grace@example.test", "Grace", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutUserToken(ctx, user, id, "tok", "refresh", time.Now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	cookie, _, err := s.CreateSession(ctx, acc.ID, id, user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cookie
}

// hasSession reports whether the session of cookie is still there.
func hasSession(t *testing.T, s *extension.Store, cookie extension.Secret) bool {
	t.Helper()
	_, err := s.SessionByID(context.Background(), cookie, time.Hour, time.Hour)
	return err == nil
}

// applyResult applies ev and returns its result; it checks that the journal row says the
// same.
func applyResult(t *testing.T, s *extension.Store, ev extension.LifecycleEvent) extension.Result {
	t.Helper()
	res, err := s.ApplyLifecycle(context.Background(), ev)
	if err != nil {
		t.Fatalf("ApplyLifecycle(%s at %v): %v", ev.Kind, ev.CreatedAt, err)
	}
	if ds := deliveriesOf(t, s, ev.InstanceID); len(ds) == 0 {
		t.Errorf("no journal row for %s", ev.RequestID)
	} else {
		checkDelivery(t, ds[0], ev, res)
	}
	return res
}

// A disable that arrives after a newer rotation still disables: the rotation says nothing
// about the enabled state. Its users are signed out and the shared token goes.
func TestLifecycleLateOlderDisable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-late-disable"
		mustApply(t, s, addedEvent(id, at(1), "install-secret"), extension.OutcomeApplied)
		mustApply(t, s, rotatedEvent(id, at(3), "rotated-secret"), extension.OutcomeApplied)
		cookie := signInUser(t, s, id)
		shareToken(t, s, id)

		disable := updatedEvent(id, at(2), false, "default", "project:read")
		res := applyResult(t, s, disable)
		// Its context is older than the rotation's, which sent one too.
		if res.Outcome != extension.OutcomePartlyApplied || !res.Changed() {
			t.Errorf("late older disable: outcome %q (%s), changed %v; want %q, changed", res.Outcome, res.Reason, res.Changed(), extension.OutcomePartlyApplied)
		}
		checkInstance(t, s, id, instanceView{"project", "p-1", []string{"project:read"}, false, "default", true, false, at(3)})
		checkCredentials(t, s, id, "", extension.ErrDisabled)
		if hasSession(t, s, cookie) {
			t.Error("the session survived the disable")
		}
		if hasSharedToken(t, s, id) {
			t.Error("the shared token survived the disable")
		}
		// Enabled again by a newer update, the instance has the rotation's secret.
		mustApply(t, s, updatedEvent(id, at(4), true, "default", "project:read"), extension.OutcomeApplied)
		checkCredentials(t, s, id, "rotated-secret", nil)
	})
}

// A rotation that arrives after a newer update still replaces the secret: the update
// carried none. An older rotation after it does not.
func TestLifecycleLateOlderRotation(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-late-rotation"
		mustApply(t, s, addedEvent(id, at(1), "install-secret"), extension.OutcomeApplied)
		mustApply(t, s, updatedEvent(id, at(4), true, "pro", "project:read", "project:write"), extension.OutcomeApplied)
		shareToken(t, s, id)

		late := rotatedEvent(id, at(3), "third-secret")
		late.ContextID = "" // sends no context: the secret is all it carries
		if res := applyResult(t, s, late); res.Outcome != extension.OutcomeApplied || !res.Changed() {
			t.Errorf("late rotation: outcome %q (%s), changed %v; want %q, changed", res.Outcome, res.Reason, res.Changed(), extension.OutcomeApplied)
		}
		checkCredentials(t, s, id, "third-secret", nil)
		if hasSharedToken(t, s, id) {
			t.Error("the shared token minted with the replaced secret survived")
		}
		checkInstance(t, s, id, instanceView{"project", "p-1", []string{"project:read", "project:write"}, true, "pro", true, false, at(4)})

		shareToken(t, s, id)
		older := rotatedEvent(id, at(2), "second-secret")
		older.ContextID = ""
		if res := applyResult(t, s, older); res.Outcome != extension.OutcomeStale || res.Changed() {
			t.Errorf("older rotation: outcome %q (%s), changed %v; want %q, unchanged", res.Outcome, res.Reason, res.Changed(), extension.OutcomeStale)
		}
		checkCredentials(t, s, id, "third-secret", nil)
		if !hasSharedToken(t, s, id) {
			t.Error("a stale rotation deleted the shared token")
		}
	})
}

// An install and a removal with the same createdAt: the removal wins, in either order and
// however often both are replayed (under the same or new request ids).
func TestLifecycleInstallAndRemovalSameTime(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		kr := extensiontest.Keyring(t)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: kr})
		final := map[string]modelState{}
		for _, order := range []struct {
			id           string
			removalFirst bool
		}{{"i-tie-install-first", false}, {"i-tie-removal-first", true}} {
			t.Run(order.id, func(t *testing.T) {
				install := addedEvent(order.id, at(1), "tie-secret")
				removal := removedEvent(order.id, at(1))
				first, second := install, removal
				if order.removalFirst {
					first, second = removal, install
				}
				applyResult(t, s, first)
				if res := applyResult(t, s, second); res.Outcome == extension.OutcomeStale || res.Outcome == extension.OutcomeDuplicate {
					// The second is news to the groups only it carries.
					t.Errorf("second of the pair: outcome %q (%s), want it applied at least in part", res.Outcome, res.Reason)
				}
				for round := range 6 {
					for _, ev := range []extension.LifecycleEvent{first, second} {
						if round%2 == 1 {
							ev.RequestID = newRequestID()
						}
						if res := applyResult(t, s, ev); res.Outcome != extension.OutcomeDuplicate || res.Changed() {
							t.Errorf("replay %d of %s: outcome %q (%s), changed %v; want %q", round, ev.Kind, res.Outcome, res.Reason, res.Changed(), extension.OutcomeDuplicate)
						}
						in, err := s.InstanceByID(context.Background(), order.id)
						if err != nil {
							t.Fatal(err)
						}
						if !in.Removed() {
							t.Fatalf("replay %d of %s: the instance is installed again", round, ev.Kind)
						}
					}
				}
				checkCredentials(t, s, order.id, "", extension.ErrRemoved)
				st := stateOf(t, s, kr, order.id)
				st.LastEventNano -= at(1).UnixNano() // the same for both orders
				final[order.id] = st
			})
		}
		if diff := cmp.Diff(final["i-tie-install-first"], final["i-tie-removal-first"]); diff != "" {
			t.Errorf("the two orders end differently (-install first +removal first):\n%s", diff)
		}
	})
}

// A delivery that sets some of its fields is journaled as partly applied, and the reason
// names the fields in plain words: those it set and those newer events had set.
func TestLifecyclePartlyAppliedReason(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-partly"
		mustApply(t, s, addedEvent(id, at(1), "install-secret"), extension.OutcomeApplied)
		// Newer: the state and the variant only.
		enabled := false
		mustApply(t, s, extension.LifecycleEvent{Kind: extension.EventUpdated, RequestID: newRequestID(), CreatedAt: at(3),
			InstanceID: id, Enabled: &enabled, VariantKey: strp("pro")}, extension.OutcomeApplied)

		late := updatedEvent(id, at(2), true, "team", "project:read", "user:read")
		late.ContextKind, late.ContextID = extension.ContextCustomer, "c-9"
		res := applyResult(t, s, late)
		want := extension.Result{Outcome: extension.OutcomePartlyApplied, Reason: "applied: scopes, context; newer already: enabled state, variant"}
		if res.Outcome != want.Outcome || res.Reason != want.Reason {
			t.Errorf("got %q (%s), want %q (%s)", res.Outcome, res.Reason, want.Outcome, want.Reason)
		}
		checkInstance(t, s, id, instanceView{"customer", "c-9", []string{"project:read", "user:read"}, false, "pro", true, false, at(3)})

		// The same event again is a duplicate, under its own request id or a new one, and
		// changes nothing at all.
		before, err := s.InstanceByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		retry := late
		retry.RequestID = newRequestID()
		for _, ev := range []extension.LifecycleEvent{late, retry} {
			if res := applyResult(t, s, ev); res.Outcome != extension.OutcomeDuplicate || res.Changed() {
				t.Errorf("again: got %q (%s), changed %v; want %q", res.Outcome, res.Reason, res.Changed(), extension.OutcomeDuplicate)
			}
		}
		after, err := s.InstanceByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("a duplicate changed the instance (-before +after):\n%s", diff)
		}
	})
}

// A retry under a new request id whose id sorts after the original's takes the groups'
// versions (so that every order ends with the same versions) but is a duplicate: it
// re-seals no secret, touches no timestamp and forgets no shared token.
func TestLifecycleRetryWithLaterRequestID(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-retry-later-id"
		ctx := context.Background()
		for _, ev := range []extension.LifecycleEvent{
			addedEvent(id, at(1), "install-secret"),
			rotatedEvent(id, at(2), "rotated-secret"),
			updatedEvent(id, at(3), false, "pro", "project:read"),
			removedEvent(id, at(4)),
		} {
			ev.RequestID = "req-a"
			mustApply(t, s, ev, extension.OutcomeApplied)
			shareToken(t, s, id)
			before, err := s.InstanceByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			ev.RequestID = "req-z"
			if res := applyResult(t, s, ev); res.Outcome != extension.OutcomeDuplicate || res.Changed() {
				t.Errorf("%s retried: got %q (%s), changed %v; want %q", ev.Kind, res.Outcome, res.Reason, res.Changed(), extension.OutcomeDuplicate)
			}
			after, err := s.InstanceByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("%s retried changed the instance (-before +after):\n%s", ev.Kind, diff)
			}
			if !hasSharedToken(t, s, id) {
				t.Errorf("%s retried deleted the shared token", ev.Kind)
			}
			// The first request id again is older than the retry's now: still a duplicate.
			ev.RequestID = "req-a"
			mustApply(t, s, ev, extension.OutcomeDuplicate)
		}
	})
}

// Result.Changed tells the webhook path when follow-up work is due: not for fields set on
// a removed instance, which nobody sees until an install lifts the removal.
func TestLifecycleChangedOnTombstone(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		const id = "i-changed"
		steps := []struct {
			ev      extension.LifecycleEvent
			outcome extension.Outcome
			changed bool
		}{
			{addedEvent(id, at(1), "s1"), extension.OutcomeApplied, true},
			{removedEvent(id, at(3)), extension.OutcomeApplied, true},
			{updatedEvent(id, at(2), true, "pro", "project:write"), extension.OutcomePartlyApplied, false}, // the variant
			{rotatedEvent(id, at(5), "s5"), extension.OutcomeApplied, false},                               // for the re-install
			{addedEvent(id, at(4), "s4"), extension.OutcomePartlyApplied, true},                            // lifts the removal
		}
		for _, st := range steps {
			res := applyResult(t, s, st.ev)
			if res.Outcome != st.outcome || res.Changed() != st.changed {
				t.Errorf("%s at %v: got %q (%s), changed %v; want %q, changed %v", st.ev.Kind, st.ev.CreatedAt, res.Outcome, res.Reason, res.Changed(), st.outcome, st.changed)
			}
		}
		// The rotation that arrived before the install it followed is the secret.
		checkCredentials(t, s, id, "s5", nil)
		checkInstance(t, s, id, instanceView{"project", "p-1", []string{"project:read"}, true, "default", true, false, at(5)})
	})
}

// Two different events of the same kind with the same createdAt (or a retry under a new
// request id that carries other values) are ordered by request id, for every field group
// and the secret alike: both orders end in the state of the one with the higher request
// id. The delivery that changes something says so (outcome, Changed) and forgets the
// shared token when it changes the secret or the enabled state; the one that loses
// changes nothing and keeps the token. Before, the secret kept the first arrival's value,
// so two replicas receiving the pair in different orders ended with different secrets,
// and a tied disable was a duplicate that kept the shared token.
func TestLifecycleTiedEventsConverge(t *testing.T) {
	boolp := func(b bool) *bool { return &b }
	pairs := []struct {
		name   string
		before bool // an install at at(0) comes first
		a, b   extension.LifecycleEvent
	}{
		{"install", false,
			extension.LifecycleEvent{Kind: extension.EventAdded, ContextKind: extension.ContextProject, ContextID: "p-1",
				Scopes: []string{"project:read"}, Enabled: boolp(true), VariantKey: strp("default"), Secret: "secret-a"},
			extension.LifecycleEvent{Kind: extension.EventAdded, ContextKind: extension.ContextCustomer, ContextID: "c-2",
				Scopes: []string{"customer:read"}, Enabled: boolp(false), VariantKey: strp("pro"), Secret: "secret-b"}},
		{"rotation", true,
			extension.LifecycleEvent{Kind: extension.EventSecretRotated, Secret: "rotated-a"},
			extension.LifecycleEvent{Kind: extension.EventSecretRotated, Secret: "rotated-b"}},
		{"disable", true,
			extension.LifecycleEvent{Kind: extension.EventUpdated, Enabled: boolp(true)},
			extension.LifecycleEvent{Kind: extension.EventUpdated, Enabled: boolp(false)}},
		{"enable", true,
			extension.LifecycleEvent{Kind: extension.EventUpdated, Enabled: boolp(false)},
			extension.LifecycleEvent{Kind: extension.EventUpdated, Enabled: boolp(true)}},
	}
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		kr := extensiontest.Keyring(t)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: kr})
		for _, p := range pairs {
			t.Run(p.name, func(t *testing.T) {
				final := map[bool]modelState{}
				for _, bFirst := range []bool{false, true} {
					id := "i-tied-" + p.name + "-a-first"
					if bFirst {
						id = "i-tied-" + p.name + "-b-first"
					}
					if p.before {
						mustApply(t, s, addedEvent(id, at(0), "install-secret"), extension.OutcomeApplied)
					}
					a, b := p.a, p.b
					a.InstanceID, a.CreatedAt, a.RequestID = id, at(1), "req-tie-a"
					b.InstanceID, b.CreatedAt, b.RequestID = id, at(1), "req-tie-b"
					first, second := a, b
					if bFirst {
						first, second = b, a
					}
					applyResult(t, s, first)
					shareToken(t, s, id)
					var cookie extension.Secret
					disables := !bFirst && p.b.Enabled != nil && !*p.b.Enabled
					if disables {
						cookie = signInUser(t, s, id)
					}
					before, err := s.InstanceByID(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					res := applyResult(t, s, second)
					after, err := s.InstanceByID(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					if touched := !after.UpdatedAt.Equal(before.UpdatedAt); touched != res.Changed() {
						t.Errorf("second of the pair: changed %v, but updated_at moved %v", res.Changed(), touched)
					}
					if disables && hasSession(t, s, cookie) {
						t.Error("the session survived the tied disable")
					}
					if bFirst {
						// a sorts before b: it changes nothing.
						if res.Outcome != extension.OutcomeDuplicate || res.Changed() {
							t.Errorf("a after b: outcome %q (%s), changed %v; want %q, unchanged", res.Outcome, res.Reason, res.Changed(), extension.OutcomeDuplicate)
						}
						if !hasSharedToken(t, s, id) {
							t.Error("a after b deleted the shared token")
						}
					} else {
						// b sorts after a: its values replace a's.
						if res.Outcome != extension.OutcomeApplied && res.Outcome != extension.OutcomePartlyApplied || !res.Changed() {
							t.Errorf("b after a: outcome %q (%s), changed %v; want applied, changed", res.Outcome, res.Reason, res.Changed())
						}
						if hasSharedToken(t, s, id) {
							t.Error("b after a changed the secret or the enabled state, but the shared token survived")
						}
					}
					final[bFirst] = stateOf(t, s, kr, id)
				}
				if diff := cmp.Diff(final[false], final[true]); diff != "" {
					t.Errorf("the two orders end differently (-a first +b first):\n%s", diff)
				}
				got := final[true]
				if p.b.Secret != "" && got.Secret != p.b.Secret.Reveal() {
					t.Errorf("secret %q, want b's %q", got.Secret, p.b.Secret.Reveal())
				}
				if p.b.Enabled != nil && got.Enabled != *p.b.Enabled {
					t.Errorf("enabled %v, want b's %v", got.Enabled, *p.b.Enabled)
				}
				if p.b.VariantKey != nil && got.VariantKey != *p.b.VariantKey {
					t.Errorf("variant %q, want b's %q", got.VariantKey, *p.b.VariantKey)
				}
			})
		}
	})
}
