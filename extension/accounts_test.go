package extension_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// ssoStart is the fake clock's start in the SSO tests: whole microseconds, which both
// databases keep exactly.
var ssoStart = time.Date(2026, 3, 14, 11, 36, 24, 123456000, time.UTC)

// newSSOStore returns a migrated store of the dialect on the fake clock with the given
// instances installed.
func newSSOStore(t *testing.T, d extension.Dialect, clk *extensiontest.Clock, instanceIDs ...string) *extension.Store {
	t.Helper()
	s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
	installInstances(t, s, instanceIDs...)
	return s
}

func installInstances(t *testing.T, s *extension.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := s.ApplyLifecycle(context.Background(), addedEvent(id, at(1), realisticSecret)); err != nil {
			t.Fatalf("install %s: %v", id, err)
		}
	}
}

// countRows counts a table's rows straight through database/sql.
func countRows(t *testing.T, s *extension.Store, table string) int {
	t.Helper()
	var n int
	if err := s.SQLDB().QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func TestEnsurePlatformAccount(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1", "i-2")
		later := ssoStart.Add(time.Hour)

		type view struct {
			InstanceID, PlatformUserID, Email, Name, Role string
			CreatedAt, UpdatedAt                          time.Time
			Created                                       bool
		}
		ids := map[string]string{} // instance/user → account id
		steps := []struct {
			name                            string
			now                             time.Time
			instance, user, email, userName string
			defaultRole                     string
			want                            view
		}{
			{"first sign-in of the instance: owner", ssoStart, "i-1", "u-1", "one@example.com", "One", extension.RoleMember,
				view{"i-1", "u-1", "one@example.com", "One", extension.RoleOwner, ssoStart, ssoStart, true}},
			{"second user: the default role", ssoStart, "i-1", "u-2", "two@example.com", "Two", extension.RoleMember,
				view{"i-1", "u-2", "two@example.com", "Two", extension.RoleMember, ssoStart, ssoStart, true}},
			{"third user: another default role", ssoStart, "i-1", "u-3", "", "", "viewer",
				view{"i-1", "u-3", "", "", "viewer", ssoStart, ssoStart, true}},
			{"owner again, nothing new: no write", later, "i-1", "u-1", "one@example.com", "One", extension.RoleMember,
				view{"i-1", "u-1", "one@example.com", "One", extension.RoleOwner, ssoStart, ssoStart, false}},
			{"owner again, empty profile keeps the stored one", later, "i-1", "u-1", "", "", extension.RoleMember,
				view{"i-1", "u-1", "one@example.com", "One", extension.RoleOwner, ssoStart, ssoStart, false}},
			{"a newer e-mail address is taken over", later, "i-1", "u-1", "one@new.example", "", extension.RoleMember,
				view{"i-1", "u-1", "one@new.example", "One", extension.RoleOwner, ssoStart, later, false}},
			{"a newer name is taken over, the role stays", later.Add(time.Minute), "i-1", "u-2", "", "Two Too", extension.RoleOwner,
				view{"i-1", "u-2", "two@example.com", "Two Too", extension.RoleMember, ssoStart, later.Add(time.Minute), false}},
			{"the owner of one instance is new in another: its owner", later, "i-2", "u-2", "two@example.com", "Two", extension.RoleMember,
				view{"i-2", "u-2", "two@example.com", "Two", extension.RoleOwner, later, later, true}},
		}
		for _, st := range steps {
			clk.Set(st.now)
			acc, created, err := s.EnsurePlatformAccount(ctx, st.instance, st.user, st.email, st.userName, st.defaultRole)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			got := view{acc.InstanceID, acc.PlatformUserID, acc.Email, acc.Name, acc.Role, acc.CreatedAt, acc.UpdatedAt, created}
			if diff := cmp.Diff(st.want, got); diff != "" {
				t.Errorf("%s: account (-want +got):\n%s", st.name, diff)
			}
			key := st.instance + "/" + st.user
			if id, ok := ids[key]; ok && id != acc.ID {
				t.Errorf("%s: account id %s, want the one provisioned before, %s", st.name, acc.ID, id)
			}
			ids[key] = acc.ID
			stored, err := s.AccountByID(ctx, acc.ID)
			if err != nil {
				t.Fatalf("%s: AccountByID: %v", st.name, err)
			}
			if diff := cmp.Diff(acc, stored); diff != "" {
				t.Errorf("%s: stored account (-returned +stored):\n%s", st.name, diff)
			}
		}
		if got, want := countRows(t, s, "accounts"), 4; got != want {
			t.Errorf("accounts: got %d rows, want %d", got, want)
		}
	})
}

func TestEnsurePlatformAccountErrors(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1")
		if _, _, err := s.EnsurePlatformAccount(ctx, "i-unknown", "u-1", "", "", extension.RoleMember); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("unknown instance: got %v, want ErrNotFound", err)
		}
		for _, tc := range []struct{ name, instance, user, role string }{
			{"no instance", "", "u-1", extension.RoleMember},
			{"no user", "i-1", "", extension.RoleMember},
			{"no default role", "i-1", "u-1", ""},
		} {
			if _, _, err := s.EnsurePlatformAccount(ctx, tc.instance, tc.user, "", "", tc.role); err == nil {
				t.Errorf("%s: got no error", tc.name)
			}
		}
		if n := countRows(t, s, "accounts"); n != 0 {
			t.Errorf("refused calls left %d accounts", n)
		}
		if _, err := s.AccountByID(ctx, "a-unknown"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("AccountByID of an unknown id: got %v, want ErrNotFound", err)
		}
	})
}

// TestEnsurePlatformAccountOwnerRace signs 20 users in to a fresh instance at once
// through two stores on one database (two replicas): exactly one becomes the owner.
// Another 10 sign-ins of one user at once make exactly one account.
func TestEnsurePlatformAccountOwnerRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		for round := range 3 {
			instanceID := fmt.Sprintf("i-race-%d", round)
			installInstances(t, stores[0], instanceID)
			var (
				wg      sync.WaitGroup
				mu      sync.Mutex
				roles   = map[string]int{}
				created int
				ids     = map[string]bool{}
			)
			start := make(chan struct{})
			ensure := func(i int, user string) {
				<-start
				acc, c, err := stores[i%2].EnsurePlatformAccount(context.Background(), instanceID, user, user+"@example.com", "", extension.RoleMember)
				if err != nil {
					t.Errorf("round %d: %s: %v", round, user, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if c {
					created++
					roles[acc.Role]++
				}
				ids[acc.ID] = true
			}
			for i := range 20 {
				wg.Go(func() { ensure(i, fmt.Sprintf("u-%02d", i)) })
			}
			for i := range 10 {
				wg.Go(func() { ensure(i, "u-same") })
			}
			close(start)
			wg.Wait()
			if diff := cmp.Diff(map[string]int{extension.RoleOwner: 1, extension.RoleMember: 20}, roles); diff != "" {
				t.Errorf("round %d: roles of the provisioned accounts (-want +got):\n%s", round, diff)
			}
			if created != 21 || len(ids) != 21 {
				t.Errorf("round %d: %d created, %d distinct accounts; want 21 and 21", round, created, len(ids))
			}
		}
		if got, want := countRows(t, stores[0], "accounts"), 3*21; got != want {
			t.Errorf("accounts: got %d rows, want %d", got, want)
		}
	})
}
