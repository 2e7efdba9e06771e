package extension_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// seededInstance is what seedEverything made in an instance.
type seededInstance struct {
	id     string
	domain string // every e-mail address of the instance is at it
	owner  extension.Account
	local  extension.Account
}

// seedEverything installs an instance and gives it a row in every table that holds an
// instance's data, through the store's own methods: an owner signed in from the control
// panel (account, session, user token, shared token), a local account through an
// invitation with an OpenID Connect identity and a password-reset link, an open
// invitation, sign-in settings, an action, and the audit events all of that writes.
func seedEverything(t *testing.T, s *extension.Store, id, domain string, installedAt time.Time) seededInstance {
	t.Helper()
	ctx := context.Background()
	if _, err := s.ApplyLifecycle(ctx, addedEvent(id, installedAt, realisticSecret)); err != nil {
		t.Fatalf("install %s: %v", id, err)
	}
	in := seededInstance{id: id, domain: domain}
	var err error
	if in.owner, _, err = s.EnsurePlatformAccount(ctx, id, "user-of-"+id, "owner@"+domain, "Owner of "+id, extension.RoleMember); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutUserToken(ctx, in.owner.PlatformUserID, id, extension.Secret("user-token-"+id), extension.Secret("refresh-"+id), time.Now().Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateSession(ctx, in.owner.ID, id, in.owner.PlatformUserID, time.Hour); err != nil {
		t.Fatal(err)
	}
	shareToken(t, s, id)
	_, token, err := s.CreateInvitation(ctx, id, in.owner.ID, "ada@"+domain, extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	if in.local, err = s.AcceptInvitation(ctx, token, "Ada of "+id, fakeHash); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateInvitation(ctx, id, in.owner.ID, "grace@"+domain, extension.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.IssuePasswordReset(ctx, id, in.owner.ID, in.local.ID); err != nil {
		t.Fatal(err)
	}
	p, err := s.SaveOIDCProvider(ctx, in.owner.ID, googleProvider(id), testClientSecret, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.LinkOIDCIdentity(ctx, id, in.local.ID, p.ID, claims("subject-of-"+id, "ada@"+domain)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAction(ctx, id, in.owner.ID, "rename_project", "Project of "+id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateInstanceSettings(ctx, id, in.owner.ID, extension.InstanceSettings{
		DefaultRole: extension.RoleMember, AllowedDomains: []string{domain}, PasswordLogin: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetContextName(ctx, id, "Customer of "+id, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCaptures(ctx, []extension.CapturedDelivery{{ID: extension.NewCaptureID(), InstanceID: id, RequestID: "capture-of-" + id,
		Kind: "ExtensionAddedToContext", ReceivedAt: time.Now(), Verified: true, Status: 204, Outcome: "applied",
		URL: "http://127.0.0.1/mstudio/webhooks", Header: http.Header{"X-Marketplace-Signature": {"sig-of-" + id}},
		Body: []byte(`{"secret":"` + realisticSecret + `"}`)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordMintFailure(ctx, id, "secret_refused", 403, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A later seed's run resolves this finding (it no longer finds it); the row stays.
	if _, _, err := s.RecordReconcile(ctx, []extension.ReconcileFinding{{Kind: extension.FindingFailed, InstanceID: id,
		Detail: "instanceUpdated failed after 3 attempts"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	return in
}

// instanceTables lists the tables of the database that have an instance_id column, read
// from the schema itself: a table added later shows up here without anybody listing it.
func instanceTables(t *testing.T, s *extension.Store) []string {
	t.Helper()
	var q string
	switch s.Dialect() {
	case extension.Postgres:
		q = `SELECT table_name FROM information_schema.columns
WHERE table_schema = current_schema() AND column_name = 'instance_id' ORDER BY table_name`
	default:
		q = `SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
WHERE m.type = 'table' AND c.name = 'instance_id' ORDER BY m.name`
	}
	rows, err := s.SQLDB().Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) < 5 {
		t.Fatalf("found only %v with an instance_id column: the schema query is wrong", out)
	}
	return out
}

// rowsOf counts a table's rows of an instance.
func rowsOf(t *testing.T, s *extension.Store, table, instanceID string) int {
	t.Helper()
	col := "instance_id"
	if table == "instances" {
		col = "id"
	}
	var n int
	q := "SELECT COUNT(*) FROM " + table + " WHERE " + col + " = ?"
	if s.Dialect() == extension.Postgres {
		q = "SELECT COUNT(*) FROM " + table + " WHERE " + col + " = $1"
	}
	if err := s.SQLDB().QueryRow(q, instanceID).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// tombstone reads the fields of an instance's row that erasure clears or keeps.
type tombstone struct {
	removed                              bool
	sealedSecret, contextID, contextName string
	removalVersion                       string
}

func tombstoneOf(t *testing.T, s *extension.Store, id string) tombstone {
	t.Helper()
	q := `SELECT removed_at IS NOT NULL, sealed_secret, context_id, context_name, removal_version FROM instances WHERE id = ?`
	if s.Dialect() == extension.Postgres {
		q = `SELECT removed_at IS NOT NULL, sealed_secret, context_id, context_name, removal_version FROM instances WHERE id = $1`
	}
	var ts tombstone
	if err := s.SQLDB().QueryRow(q, id).Scan(&ts.removed, &ts.sealedSecret, &ts.contextID, &ts.contextName, &ts.removalVersion); err != nil {
		t.Fatalf("read instance %s: %v", id, err)
	}
	return ts
}

// Every table with an instance column is erased or kept on purpose.
func TestEveryInstanceTableHasARetention(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		kept := extension.KeptTables()
		for _, table := range instanceTables(t, s) {
			_, isKept := kept[table]
			if erased := slices.Contains(extension.ErasedTables(), table); erased == isKept {
				t.Errorf("table %s: erased %v, kept %v: want exactly one (add it to erasedTables or keptTables in retention.go)",
					table, erased, isKept)
			}
		}
	})
}

// A removed instance keeps its data through the grace period, loses it after, and the
// tombstone stays with its secret and personal fields cleared; another instance is not
// touched; a second run erases nothing more.
func TestEraseRemovedInstanceAfterGrace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
		seedEverything(t, s, "i-gone", "gone.example", at(1))
		seedEverything(t, s, "i-stays", "stays.example", at(1))
		tables := instanceTables(t, s)
		before := map[string]int{}
		for _, table := range tables {
			before[table] = rowsOf(t, s, table, "i-gone")
			if before[table] == 0 && table != "webhook_deliveries" {
				t.Errorf("seed made no row in %s: seed it in seedEverything, or the test proves nothing about it", table)
			}
		}
		staysBefore := map[string]int{}
		for _, table := range tables {
			staysBefore[table] = rowsOf(t, s, table, "i-stays")
		}

		removedAt := clk.Now()
		mustApply(t, s, removedEvent("i-gone", at(2)), extension.OutcomeApplied)
		grace := extension.DefaultRetentionAfterRemoval

		// One second before the deadline: nothing is erased.
		clk.Set(removedAt.Add(grace - time.Second))
		got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace))
		if err != nil || len(got) != 0 {
			t.Fatalf("before the deadline: erased %+v, %v; want nothing", got, err)
		}
		for _, table := range []string{"accounts", "invitations", "password_resets", "audit_events", "oidc_identities", "oidc_providers", "actions", "instance_settings"} {
			if n := rowsOf(t, s, table, "i-gone"); n < before[table] {
				t.Errorf("before the deadline: %s has %d rows of the removed instance, want %d", table, n, before[table])
			}
		}

		// At the deadline: erased, with counts.
		clk.Set(removedAt.Add(grace))
		got, err = s.EraseRemovedInstances(ctx, clk.Now().Add(-grace))
		if err != nil || len(got) != 1 || got[0].InstanceID != "i-gone" {
			t.Fatalf("at the deadline: erased %+v, %v; want i-gone", got, err)
		}
		if got[0].Rows["accounts"] != 2 || got[0].Rows["audit_events"] == 0 || got[0].Rows["oidc_providers"] != 1 {
			t.Errorf("counts %v: want 2 accounts, 1 provider, some audit events", got[0].Rows)
		}
		if !got[0].RemovedAt.Equal(removedAt) {
			t.Errorf("removed at %v, want %v", got[0].RemovedAt, removedAt)
		}
		for _, table := range extension.ErasedTables() {
			if n := rowsOf(t, s, table, "i-gone"); n != 0 {
				t.Errorf("after erasure: %s has %d rows of the removed instance, want 0", table, n)
			}
		}
		if n := rowsOf(t, s, "webhook_deliveries", "i-gone"); n == 0 {
			t.Error("the delivery journal of the removed instance is gone; it is kept for its own retention")
		}
		ts := tombstoneOf(t, s, "i-gone")
		if !ts.removed || ts.removalVersion == "" || ts.sealedSecret != "" || ts.contextID != "" || ts.contextName != "" {
			t.Errorf("tombstone %+v: want removed, its removal version kept, secret, context id and name cleared", ts)
		}
		for _, table := range tables {
			if n := rowsOf(t, s, table, "i-stays"); n != staysBefore[table] {
				t.Errorf("the other instance: %s has %d rows, want %d", table, n, staysBefore[table])
			}
		}
		if ts := tombstoneOf(t, s, "i-stays"); ts.removed || ts.sealedSecret == "" || ts.contextName == "" {
			t.Errorf("the other instance's row %+v: want it untouched", ts)
		}

		// Again: nothing more to do.
		clk.Advance(time.Hour)
		if got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace)); err != nil || len(got) != 0 {
			t.Errorf("second run: erased %+v, %v; want nothing", got, err)
		}
		if _, err := s.EraseRemovedInstance(ctx, "i-gone", clk.Now().Add(-grace)); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("erasing it again: %v, want ErrNotFound", err)
		}

		// An older delivery still cannot bring the erased instance back; a newer install
		// starts it afresh, and its next removal is erased after its own grace period.
		mustApply(t, s, addedEvent("i-gone", at(0), realisticSecret), extension.OutcomeStale)
		seedEverything(t, s, "i-gone", "gone.example", at(3))
		clk.Advance(time.Hour)
		removedAgain := clk.Now()
		mustApply(t, s, removedEvent("i-gone", at(4)), extension.OutcomeApplied)
		clk.Set(removedAgain.Add(grace - time.Second))
		if got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace)); err != nil || len(got) != 0 {
			t.Errorf("second removal, before its deadline: erased %+v, %v; want nothing", got, err)
		}
		clk.Set(removedAgain.Add(grace))
		if got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace)); err != nil || len(got) != 1 || got[0].Rows["accounts"] != 2 {
			t.Errorf("second removal, at its deadline: erased %+v, %v; want i-gone's 2 accounts", got, err)
		}
	})
}

// A re-install within the grace period finds everything again, and the erasure that was
// pending does not happen.
func TestReinstallWithinGraceKeepsData(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
		in := seedEverything(t, s, "i-back", "back.example", at(1))
		kept := map[string]int{}
		for _, table := range []string{"accounts", "invitations", "password_resets", "audit_events", "oidc_identities", "oidc_providers", "actions", "instance_settings"} {
			kept[table] = rowsOf(t, s, table, "i-back")
		}
		grace := extension.DefaultRetentionAfterRemoval
		removedAt := clk.Now()
		mustApply(t, s, removedEvent("i-back", at(2)), extension.OutcomeApplied)
		clk.Set(removedAt.Add(grace - time.Minute))
		mustApply(t, s, addedEvent("i-back", at(3), realisticSecret), extension.OutcomeApplied)
		clk.Set(removedAt.Add(2 * grace))
		if got, err := s.EraseRemovedInstances(ctx, clk.Now().Add(-grace)); err != nil || len(got) != 0 {
			t.Fatalf("after a re-install: erased %+v, %v; want nothing", got, err)
		}
		for table, n := range kept {
			if got := rowsOf(t, s, table, "i-back"); got != n {
				t.Errorf("%s: %d rows after the re-install, want %d", table, got, n)
			}
		}
		if acc, err := s.AccountByID(ctx, in.local.ID); err != nil || acc.Email != "ada@back.example" {
			t.Errorf("the local account after the re-install: %+v, %v", acc, err)
		}
		if ts := tombstoneOf(t, s, "i-back"); ts.removed || ts.sealedSecret == "" || ts.contextID == "" {
			t.Errorf("instance %+v: want live with its secret and context", ts)
		}
	})
}

// Two replicas erase while the platform re-installs the instance and a user signs in to
// it at once: each instance is erased at most once, an account made after the re-install
// is never lost, and an instance is erased exactly when the erasure came first.
func TestEraseRacesReinstallOnTwoReplicas(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		a := extensiontest.Open(t, url, extension.Options{Keys: kr, Now: clk.Now})
		b := extensiontest.Open(t, url, extension.Options{Keys: kr, Now: clk.Now})
		grace := extension.DefaultRetentionAfterRemoval
		const n = 12
		old := map[string]extension.Account{}
		for i := range n {
			id := fmt.Sprintf("i-race-%02d", i)
			old[id] = seedEverything(t, a, id, fmt.Sprintf("race%d.example", i), at(1)).owner
			mustApply(t, a, removedEvent(id, at(2)), extension.OutcomeApplied)
		}
		clk.Advance(grace + time.Minute)
		cutoff := clk.Now().Add(-grace)

		erased := make(chan extension.Erasure, 2*n)
		var wg sync.WaitGroup
		for _, s := range []*extension.Store{a, b} {
			wg.Go(func() {
				got, err := s.EraseRemovedInstances(ctx, cutoff)
				if err != nil {
					t.Errorf("erase: %v", err)
				}
				for _, e := range got {
					erased <- e
				}
			})
		}
		fresh := map[string]extension.Account{}
		var mu sync.Mutex
		for i := range n {
			id := fmt.Sprintf("i-race-%02d", i)
			wg.Go(func() {
				if _, err := b.ApplyLifecycle(ctx, addedEvent(id, at(3), realisticSecret)); err != nil {
					t.Errorf("re-install %s: %v", id, err)
					return
				}
				acc, _, err := b.EnsurePlatformAccount(ctx, id, "user-after-"+id, fmt.Sprintf("after@race%d.example", i), "After", extension.RoleMember)
				if err != nil {
					t.Errorf("sign in to %s: %v", id, err)
					return
				}
				mu.Lock()
				fresh[id] = acc
				mu.Unlock()
			})
		}
		wg.Wait()
		close(erased)
		times := map[string]int{}
		for e := range erased {
			times[e.InstanceID]++
		}
		for i := range n {
			id := fmt.Sprintf("i-race-%02d", i)
			if times[id] > 1 {
				t.Errorf("%s erased %d times, want at most once", id, times[id])
			}
			if acc, ok := fresh[id]; !ok {
				continue // reported above
			} else if _, err := a.AccountByID(ctx, acc.ID); err != nil {
				t.Errorf("%s: the account made after the re-install: %v; want it kept", id, err)
			}
			_, err := a.AccountByID(ctx, old[id].ID)
			switch {
			case times[id] == 1 && !errors.Is(err, extension.ErrNotFound):
				t.Errorf("%s erased, but its old owner's account: %v", id, err)
			case times[id] == 0 && err != nil:
				t.Errorf("%s not erased (re-installed first), but its old owner's account: %v", id, err)
			}
			if ts := tombstoneOf(t, a, id); ts.removed {
				t.Errorf("%s is removed after its re-install", id)
			}
		}
		t.Logf("%d of %d instances erased before their re-install", len(times), n)
	})
}
