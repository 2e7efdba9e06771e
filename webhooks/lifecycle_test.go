package webhooks_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
)

// forEachDialect runs f against a fresh testEnv on SQLite, and on PostgreSQL when
// EXT_TEST_POSTGRES_URL is set.
func forEachDialect(t *testing.T, f func(t *testing.T, env *testEnv)) {
	t.Helper()
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { f(t, newTestEnv(t, d)) })
	}
}

// checkInstance compares the stored instance with want, leaving out the sealed secret,
// the row's own timestamps and RemovedAt (checked through Removed where it matters).
func checkInstance(t *testing.T, s *extension.Store, want extension.Instance) {
	t.Helper()
	got := instance(t, s, want.ID)
	ignore := cmpopts.IgnoreFields(extension.Instance{}, "SealedSecret", "CreatedAt", "UpdatedAt", "RemovedAt")
	if diff := cmp.Diff(want, *got, ignore); diff != "" {
		t.Errorf("instance %s (-want +got):\n%s", want.ID, diff)
	}
}

// checkSecret checks that the instance's credentials open to the secret.
func checkSecret(t *testing.T, s *extension.Store, id, want string) {
	t.Helper()
	_, secret, err := s.InstanceCredentials(context.Background(), id)
	if err != nil {
		t.Errorf("InstanceCredentials(%s): %v", id, err)
		return
	}
	if secret.Reveal() != want {
		t.Errorf("InstanceCredentials(%s): the secret is not the one last sent", id)
	}
}

// checkCredentialsErr checks that the instance's credentials are refused with want.
func checkCredentialsErr(t *testing.T, s *extension.Store, id string, want error) {
	t.Helper()
	if _, _, err := s.InstanceCredentials(context.Background(), id); !errors.Is(err, want) {
		t.Errorf("InstanceCredentials(%s) = %v, want %v", id, err, want)
	}
}

// checkOutcome checks the newest journal row's outcome.
func checkOutcome(t *testing.T, s *extension.Store, want extension.Outcome) {
	t.Helper()
	if d := lastDelivery(t, s); d.Outcome != want {
		t.Errorf("journal: outcome %q (%s), want %q", d.Outcome, d.Reason, want)
	}
}

func TestLifecycle(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()

		add := newPayload(extension.EventAdded, id, at(0))
		add.Scopes, add.VariantKey = []string{"project:read", "project:write", "user:read"}, "default"
		env.mustDeliver(t, add, http.StatusNoContent)
		want := extension.Instance{
			ID: id, ContextKind: extension.ContextProject, ContextID: testContextID,
			ConsentedScopes: add.Scopes, Enabled: true, VariantKey: "default", LastEventNano: at(0).UnixNano(),
		}
		checkInstance(t, env.Store, want)
		checkSecret(t, env.Store, id, add.Secret)

		upd := newPayload(extension.EventUpdated, id, at(10))
		upd.Scopes, upd.VariantKey = []string{"project:read"}, "pro"
		env.mustDeliver(t, upd, http.StatusNoContent)
		want.ConsentedScopes, want.VariantKey, want.LastEventNano = upd.Scopes, "pro", at(10).UnixNano()
		checkInstance(t, env.Store, want)
		checkSecret(t, env.Store, id, add.Secret)

		disable := newPayload(extension.EventUpdated, id, at(20))
		disable.Scopes, disable.VariantKey, disable.Enabled = upd.Scopes, "pro", false
		env.mustDeliver(t, disable, http.StatusNoContent)
		want.Enabled, want.LastEventNano = false, at(20).UnixNano()
		checkInstance(t, env.Store, want)
		checkCredentialsErr(t, env.Store, id, extension.ErrDisabled)

		enable := newPayload(extension.EventUpdated, id, at(30))
		enable.Scopes, enable.VariantKey = []string{}, "pro"
		env.mustDeliver(t, enable, http.StatusNoContent)
		want.Enabled, want.ConsentedScopes, want.LastEventNano = true, []string{}, at(30).UnixNano()
		checkInstance(t, env.Store, want)
		checkSecret(t, env.Store, id, add.Secret)

		rot := newPayload(extension.EventSecretRotated, id, at(40))
		env.mustDeliver(t, rot, http.StatusNoContent)
		want.LastEventNano = at(40).UnixNano() // scopes, state and variant stay
		checkInstance(t, env.Store, want)
		checkSecret(t, env.Store, id, rot.Secret)

		rem := newPayload(extension.EventRemoved, id, at(50))
		rem.Scopes = []string{}
		env.mustDeliver(t, rem, http.StatusNoContent)
		in := instance(t, env.Store, id)
		if !in.Removed() || in.HasSecret() || in.Enabled || in.LastEventNano != at(50).UnixNano() {
			t.Errorf("after removal: removed %v, has secret %v, enabled %v, last event %v; want a tombstone at %v",
				in.Removed(), in.HasSecret(), in.Enabled, in.LastEventAt(), at(50))
		}
		checkCredentialsErr(t, env.Store, id, extension.ErrRemoved)
		live, err := env.Store.Instances(context.Background(), false)
		if err != nil || len(live) != 0 {
			t.Errorf("live instances after removal: %v, %v; want none", live, err)
		}

		var got []string
		for _, d := range deliveries(t, env.Store) {
			if d.Outcome != extension.OutcomeApplied || d.InstanceID != id {
				t.Errorf("journal row %+v, want applied for %s", d, id)
			}
			got = append([]string{d.Kind}, got...)
		}
		wantKinds := []string{"ExtensionAddedToContext", "InstanceUpdated", "InstanceUpdated", "InstanceUpdated", "SecretRotated", "InstanceRemovedFromContext"}
		if diff := cmp.Diff(wantKinds, got); diff != "" {
			t.Errorf("journal kinds (-want +got):\n%s", diff)
		}
	})
}

func TestReplayedDeliveryChangesNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		add := newPayload(extension.EventAdded, id, at(0))
		env.mustDeliver(t, add, http.StatusNoContent)
		upd := newPayload(extension.EventUpdated, id, at(10))
		upd.Scopes = []string{"user:read"}
		updReq := signedRequest(webhookPath, env.Key, upd.JSON())
		captured := updReq.Clone(context.Background())
		body := upd.JSON()
		if rec := env.serve(updReq); rec.Code != http.StatusNoContent {
			t.Fatalf("update: status %d", rec.Code)
		}

		replays := []struct {
			name string
			p    testPayload
			want []extension.Outcome
		}{
			{"the same request again", upd, []extension.Outcome{extension.OutcomeDuplicate}},
			{"a rebuilt retry of the last event (new request id, same createdAt)", func() testPayload { p := upd; p.RequestID = newRequestID(); return p }(), []extension.Outcome{extension.OutcomeDuplicate}},
			// An earlier event's request: seen before, and older than the last event; the
			// journal may call it either, what matters is that nothing changes.
			{"the install's request again", add, []extension.Outcome{extension.OutcomeDuplicate, extension.OutcomeStale}},
		}
		for _, r := range replays {
			t.Run(r.name, func(t *testing.T) {
				before := instances(t, env.Store)
				env.mustDeliver(t, r.p, http.StatusNoContent)
				if diff := cmp.Diff(before, instances(t, env.Store)); diff != "" {
					t.Errorf("instances changed (-before +after):\n%s", diff)
				}
				if d := lastDelivery(t, env.Store); !slices.Contains(r.want, d.Outcome) {
					t.Errorf("journal: outcome %q (%s), want one of %q", d.Outcome, d.Reason, r.want)
				}
			})
		}
		// The captured bytes and headers, byte for byte.
		t.Run("the captured request byte for byte", func(t *testing.T) {
			before := instances(t, env.Store)
			captured.Body = io.NopCloser(bytes.NewReader(body))
			if rec := env.serve(captured); rec.Code != http.StatusNoContent {
				t.Errorf("status = %d, want 204", rec.Code)
			}
			if diff := cmp.Diff(before, instances(t, env.Store)); diff != "" {
				t.Errorf("instances changed (-before +after):\n%s", diff)
			}
			checkOutcome(t, env.Store, extension.OutcomeDuplicate)
		})
		checkSecret(t, env.Store, id, add.Secret)
	})
}

func TestOlderDeliveryIsStale(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		add := newPayload(extension.EventAdded, id, at(0))
		env.mustDeliver(t, add, http.StatusNoContent)

		newer := newPayload(extension.EventUpdated, id, at(20))
		newer.Scopes, newer.VariantKey, newer.Enabled = []string{"newer:scope"}, "newer", true
		older := newPayload(extension.EventUpdated, id, at(10))
		older.Scopes, older.VariantKey, older.Enabled = []string{"older:scope"}, "older", false
		env.mustDeliver(t, newer, http.StatusNoContent)
		before := instances(t, env.Store)

		env.mustDeliver(t, older, http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomeStale)
		// One nanosecond older still counts.
		justOlder := newPayload(extension.EventUpdated, id, at(20).Add(-1))
		justOlder.Scopes = []string{"older:scope"}
		env.mustDeliver(t, justOlder, http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomeStale)

		if diff := cmp.Diff(before, instances(t, env.Store)); diff != "" {
			t.Errorf("stale deliveries changed instances (-before +after):\n%s", diff)
		}
		checkInstance(t, env.Store, extension.Instance{
			ID: id, ContextKind: extension.ContextProject, ContextID: testContextID,
			ConsentedScopes: []string{"newer:scope"}, Enabled: true, VariantKey: "newer", LastEventNano: at(20).UnixNano(),
		})
		checkSecret(t, env.Store, id, add.Secret)

		// A rotation older than the update but newer than the install: its secret is the
		// platform's current one (the update sent none), its context is older than the
		// update's. An older rotation after it changes nothing.
		olderRotation := newPayload(extension.EventSecretRotated, id, at(15))
		env.mustDeliver(t, olderRotation, http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomePartlyApplied)
		checkSecret(t, env.Store, id, olderRotation.Secret)
		env.mustDeliver(t, newPayload(extension.EventSecretRotated, id, at(12)), http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomeStale)
		checkSecret(t, env.Store, id, olderRotation.Secret)
		checkInstance(t, env.Store, extension.Instance{
			ID: id, ContextKind: extension.ContextProject, ContextID: testContextID,
			ConsentedScopes: []string{"newer:scope"}, Enabled: true, VariantKey: "newer", LastEventNano: at(20).UnixNano(),
		})

		// One nanosecond newer is applied.
		justNewer := newPayload(extension.EventUpdated, id, at(20).Add(1))
		justNewer.Scopes = []string{"newest:scope"}
		env.mustDeliver(t, justNewer, http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomeApplied)
		if got := instance(t, env.Store, id).ConsentedScopes; !cmp.Equal(got, justNewer.Scopes) {
			t.Errorf("scopes = %v, want %v", got, justNewer.Scopes)
		}
	})
}

func TestRemovedInstanceIsNotRevivedByOlderEvents(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		env.mustDeliver(t, newPayload(extension.EventAdded, id, at(0)), http.StatusNoContent)
		env.mustDeliver(t, newPayload(extension.EventRemoved, id, at(20)), http.StatusNoContent)

		// Late older events set only what the removal does not (the install's variant: the
		// removal sends none, nor does the update), and the instance stays removed.
		for _, late := range []struct {
			p    testPayload
			want extension.Outcome
		}{
			{newPayload(extension.EventAdded, id, at(10)), extension.OutcomePartlyApplied},
			{newPayload(extension.EventUpdated, id, at(15)), extension.OutcomeStale},
			{newPayload(extension.EventSecretRotated, id, at(19)), extension.OutcomeStale},
		} {
			env.mustDeliver(t, late.p, http.StatusNoContent)
			checkOutcome(t, env.Store, late.want)
			if !instance(t, env.Store, id).Removed() {
				t.Errorf("a late %s at %v revived the instance", late.p.Kind, late.p.CreatedAt)
			}
		}
		// Newer events other than an install do not bring it back either. They are kept
		// for the install they belong to, which may be on its way.
		for _, later := range []testPayload{
			newPayload(extension.EventUpdated, id, at(30)),
			newPayload(extension.EventSecretRotated, id, at(31)),
		} {
			env.mustDeliver(t, later, http.StatusNoContent)
			checkOutcome(t, env.Store, extension.OutcomeApplied)
			if !instance(t, env.Store, id).Removed() {
				t.Errorf("a newer %s revived the instance", later.Kind)
			}
		}
		checkCredentialsErr(t, env.Store, id, extension.ErrRemoved)

		// A newer install under the same id does: it starts clean.
		reinstall := newPayload(extension.EventAdded, id, at(40))
		reinstall.Scopes = []string{"project:read"}
		env.mustDeliver(t, reinstall, http.StatusNoContent)
		checkInstance(t, env.Store, extension.Instance{
			ID: id, ContextKind: extension.ContextProject, ContextID: testContextID,
			ConsentedScopes: []string{"project:read"}, Enabled: true, LastEventNano: at(40).UnixNano(),
		})
		if instance(t, env.Store, id).Removed() {
			t.Error("reinstalled instance is still removed")
		}
		checkSecret(t, env.Store, id, reinstall.Secret)
	})
}

func TestTwoInstancesInOneContext(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		oldID, newID := uuid.NewString(), uuid.NewString()
		oldAdd := newPayload(extension.EventAdded, oldID, at(0))
		env.mustDeliver(t, oldAdd, http.StatusNoContent)
		// A re-install in the same project overtakes the old instance's removal.
		newAdd := newPayload(extension.EventAdded, newID, at(100))
		env.mustDeliver(t, newAdd, http.StatusNoContent)
		checkSecret(t, env.Store, oldID, oldAdd.Secret)
		checkSecret(t, env.Store, newID, newAdd.Secret)

		env.mustDeliver(t, newPayload(extension.EventRemoved, oldID, at(50)), http.StatusNoContent)
		checkCredentialsErr(t, env.Store, oldID, extension.ErrRemoved)
		checkSecret(t, env.Store, newID, newAdd.Secret)
		live, err := env.Store.Instances(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 1 || live[0].ID != newID || live[0].ContextID != testContextID {
			t.Errorf("live instances = %+v, want only %s in context %s", live, newID, testContextID)
		}
	})
}

func TestRemovalOfUnknownInstance(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		known := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		env.mustDeliver(t, known, http.StatusNoContent)
		liveBefore, err := env.Store.Instances(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}

		id := uuid.NewString()
		rec := env.deliver(t, newPayload(extension.EventRemoved, id, at(10)))
		if rec.Code < 200 || rec.Code > 299 {
			t.Fatalf("status = %d (%s), want 2xx", rec.Code, rec.Body)
		}
		liveAfter, err := env.Store.Instances(context.Background(), false)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(liveBefore, liveAfter); diff != "" {
			t.Errorf("live instances changed (-before +after):\n%s", diff)
		}
		if _, _, err := env.Store.InstanceCredentials(context.Background(), id); !errors.Is(err, extension.ErrRemoved) && !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("InstanceCredentials(unknown, removed) = %v, want ErrRemoved or ErrNotFound", err)
		}
		// The same removal retried is still fine.
		if rec := env.deliver(t, newPayload(extension.EventRemoved, id, at(10))); rec.Code < 200 || rec.Code > 299 {
			t.Errorf("retried removal: status = %d, want 2xx", rec.Code)
		}
		checkSecret(t, env.Store, known.InstanceID, known.Secret)
	})
}

// An instance id the platform sends in upper case is the same instance in lower case.
func TestInstanceIDCase(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		add := newPayload(extension.EventAdded, strings.ToUpper(id), at(0))
		env.mustDeliver(t, add, http.StatusNoContent)
		upd := newPayload(extension.EventUpdated, id, at(10))
		upd.Scopes = []string{"user:read"}
		env.mustDeliver(t, upd, http.StatusNoContent)
		all := instances(t, env.Store)
		if len(all) != 1 || all[0].ID != id || !cmp.Equal(all[0].ConsentedScopes, upd.Scopes) {
			t.Errorf("instances = %+v, want one, %s, with the update's scopes", all, id)
		}
		checkSecret(t, env.Store, id, add.Secret)
	})
}
