package frontend_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/oauth2-proxy/mockoidc"
)

// The provider form's role_map: group=role rules, roles member or admin, each group
// once, and only for a template whose provider sends groups.
func TestProviderRoleMapForm(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	for _, c := range []struct {
		name, template, roleMap, problem, issuer string
	}{
		{"owner by group", "custom", "founders=owner", "with the role member or admin", ""},
		{"no role", "custom", "staff", "with the role member or admin", ""},
		{"a group twice", "custom", "staff=member\nstaff=admin", "each group once", ""},
		{"a template without groups", "google", "staff=admin", "This service sends no groups", ""},
		// Anyone can create the top-level group "admins" on gitlab.com.
		{"a short group on gitlab.com", "gitlab", "my-org/staff=member\nadmins=admin", "write the full path of each group", "https://gitlab.com/"},
	} {
		resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(func(v url.Values) {
			v.Set("template", c.template)
			v.Set("role_map", c.roleMap)
			if c.issuer != "" {
				v.Set("issuer", c.issuer)
			}
		}))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.problem) || !strings.Contains(body, `aria-invalid="true">`+c.roleMap) {
			t.Errorf("%s: %d, want 400 with %q and the field as typed\n%s", c.name, resp.StatusCode, c.problem, body)
		}
	}
	id := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("role_map", " it-admins = Admin \r\ncn=staff,ou=groups=member\r\n") }))
	p, err := e.Store.OIDCProviderByID(context.Background(), e.In.ID, id)
	want := []extension.RoleRule{{Group: "it-admins", Role: "admin"}, {Group: "cn=staff,ou=groups", Role: "member"}}
	if err != nil || len(p.RoleMap) != len(want) {
		t.Fatalf("stored map: %+v, %v; want %+v", p.RoleMap, err, want)
	}
	for i := range want {
		if p.RoleMap[i] != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i, p.RoleMap[i], want[i])
		}
	}
	if _, body := e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id), nil); !strings.Contains(body, "it-admins=admin\ncn=staff,ou=groups=member\n</textarea>") {
		t.Errorf("provider page does not show the map one rule a line:\n%s", body)
	}
	if _, body := e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id)+"?lang=de", nil); !strings.Contains(body, "Rollen nach Gruppe") {
		t.Error("German provider page lacks the role map's label")
	}
}

// A provider's group → role map, in the claim matrix's style against mockoidc on both
// dialects: the role at provisioning comes from the groups, and every later sign-in
// through the provider derives it again (no matching group: the provider's default role);
// an owner keeps theirs; every change is in the audit log; a provider without a map
// leaves roles alone.
func TestOIDCRoleMap(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			mapped := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("auto_provision", "on")
				v.Set("allowed_domains", "example.com")
				v.Set("role_map", "it-admins=admin, staff=member")
			}))
			plain := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("name", "Plain")
				v.Set("auto_provision", "on")
				v.Set("allowed_domains", "example.com")
			}))
			signIn := func(provider string, u *mockoidc.MockUser) {
				t.Helper()
				b := apptest.Browser(t)
				e.Mock.QueueUser(u)
				if resp, body := e.callback(t, b, e.authorize(t, b, e.loginPath(provider))); resp.StatusCode != http.StatusSeeOther {
					t.Fatalf("sign-in of %s: %d\n%s", u.Subject, resp.StatusCode, body)
				}
			}
			roleOf := func(email string) string {
				t.Helper()
				acc, _, err := e.Store.LocalCredentials(ctx, e.In.ID, email)
				if err != nil {
					t.Fatalf("account %s: %v", email, err)
				}
				return acc.Role
			}
			derived := func() []extension.AuditEvent {
				t.Helper()
				evs, _, err := e.Store.AuditEvents(ctx, e.In.ID, extension.AuditFilter{Kind: extension.AuditRoleDerived}, extension.AuditPage{Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				return evs
			}
			steps := []struct {
				name            string
				provider        string
				user            *mockoidc.MockUser
				email, wantRole string
				wantDerived     int // role.derived events so far
			}{
				{"provisioned by the admin group", mapped, mockUser("sub-ina", "ina@example.com", true, "it-admins", "staff"), "ina@example.com", extension.RoleAdmin, 0},
				{"provisioned by the staff group", mapped, mockUser("sub-sam", "sam@example.com", true, "staff"), "sam@example.com", extension.RoleMember, 0},
				{"provisioned without a matching group", mapped, mockUser("sub-guest", "guest@example.com", true, "visitors"), "guest@example.com", extension.RoleMember, 0},
				{"left the admin group", mapped, mockUser("sub-ina", "ina@example.com", true, "staff"), "ina@example.com", extension.RoleMember, 1},
				{"joined the admin group", mapped, mockUser("sub-sam", "sam@example.com", true, "staff", "it-admins"), "sam@example.com", extension.RoleAdmin, 2},
				{"no group at all: the default role", mapped, mockUser("sub-sam", "sam@example.com", true), "sam@example.com", extension.RoleMember, 3},
				{"the same groups again: no change", mapped, mockUser("sub-ina", "ina@example.com", true, "staff"), "ina@example.com", extension.RoleMember, 3},
				{"a provider without a map provisions at its default role", plain, mockUser("sub-pia", "pia@example.com", true, "it-admins"), "pia@example.com", extension.RoleMember, 3},
			}
			for _, s := range steps {
				signIn(s.provider, s.user)
				if got := roleOf(s.email); got != s.wantRole {
					t.Errorf("%s: role %s, want %s", s.name, got, s.wantRole)
				}
				if got := len(derived()); got != s.wantDerived {
					t.Errorf("%s: %d role.derived events, want %d", s.name, got, s.wantDerived)
				}
			}
			// A role given by hand is left alone by a provider without a map.
			pia, _, _ := e.Store.LocalCredentials(ctx, e.In.ID, "pia@example.com")
			if _, err := e.Store.ChangeRole(ctx, e.In.ID, ownerID(t, e), pia.ID, extension.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			signIn(plain, mockUser("sub-pia", "pia@example.com", true))
			if got := roleOf("pia@example.com"); got != extension.RoleAdmin {
				t.Errorf("a provider without a map changed a role to %s", got)
			}
			// An owner keeps the role, whatever the groups say.
			ina, _, _ := e.Store.LocalCredentials(ctx, e.In.ID, "ina@example.com")
			if _, err := e.Store.ChangeRole(ctx, e.In.ID, ownerID(t, e), ina.ID, extension.RoleOwner); err != nil {
				t.Fatal(err)
			}
			signIn(mapped, mockUser("sub-ina", "ina@example.com", true, "visitors"))
			if got := roleOf("ina@example.com"); got != extension.RoleOwner {
				t.Errorf("the groups changed an owner's role to %s", got)
			}
			evs := derived()
			if len(evs) != 3 {
				t.Fatalf("%d role.derived events, want 3", len(evs))
			}
			// Newest first: Sam's move to the default role names no group.
			if d := evs[0].Detail; d["from"] != extension.RoleAdmin || d["to"] != extension.RoleMember || d["group"] != "" || d["provider"] != "Mock IdP" {
				t.Errorf("newest role.derived: %v", d)
			}
			if d := evs[1].Detail; d["to"] != extension.RoleAdmin || d["group"] != "it-admins" {
				t.Errorf("role.derived by the admin group: %v", d)
			}
			_, body := e.get(t, e.Owner, http.MethodGet, frontend.AppPath(e.In.ID)+"/audit", nil)
			for _, want := range []string{"Mock IdP changed the role of", "from Administrator to Member", "it-admins", "none of the groups"} {
				if !strings.Contains(body, want) {
					t.Errorf("audit page lacks %q", want)
				}
			}
			e.checkNoSecrets(t, nil)
		})
	}
}
