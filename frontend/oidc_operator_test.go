package frontend_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// A file with mistakes stops startup with the line, the provider and the field; the
// client secret comes from the file or from the variable it names and never shows in an
// error.
func TestParseOperatorProviders(t *testing.T) {
	const secret = "vendor-secret-Lk29dQ"
	getenv := func(name string) string {
		if name == "VENDOR_SECRET" {
			return secret
		}
		return ""
	}
	good := `[
  {"id": "vendor-staff", "template": "keycloak", "name": "Vendor support",
   "issuer": "https://sso.vendor.example/realms/staff", "client_id": "extension",
   "client_secret_env": "VENDOR_SECRET", "allowed_domains": "vendor.example"},
  {"id": "vendor-ops", "template": "custom", "issuer": "https://ops.vendor.example", "client_id": "x",
   "client_secret": "` + secret + `", "auto_provision": true, "allowed_domains": "vendor.example"}
]`
	ps, err := frontend.ParseOperatorProviders([]byte(good), getenv)
	if err != nil || len(ps) != 2 {
		t.Fatalf("good file: %d providers, %v", len(ps), err)
	}
	if p := ps[0]; p.Key != "vendor-staff" || p.ClientSecret != secret || p.Provider.AutoProvision || p.Provider.Name != "Vendor support" ||
		p.Provider.DefaultRole != extension.RoleMember || !p.Provider.Enabled {
		t.Errorf("first provider: %+v", p)
	}
	if p := ps[1]; p.Provider.Name != "OpenID Connect" || !p.Provider.AutoProvision || p.ClientSecret != secret {
		t.Errorf("second provider: %+v", p)
	}
	for _, c := range []struct{ name, file, want string }{
		{"not JSON", "[\n{\"id\": \"a\",,}]", "line 2: not JSON"},
		{"not an array", `{"id": "a"}`, "line 1: want a JSON array"},
		{"unknown field", "[\n\n {\"id\": \"a\", \"clientid\": \"x\"}]", `line 3: unknown field "clientid"`},
		{"no id", `[{"template": "custom"}]`, "line 1: field id"},
		{"id twice", "[{\"id\":\"a\",\"template\":\"custom\",\"issuer\":\"https://a.example\",\"client_id\":\"c\",\"allowed_domains\":\"a.example\"},\n{\"id\":\"a\"}]", `line 2: field id: "a" is given twice`},
		{"bad issuer", "[\n{\"id\": \"a\", \"template\": \"custom\", \"issuer\": \"http://sso.vendor.example\", \"client_id\": \"c\"}]",
			`line 2: provider "a": field issuer: `},
		{"owner by group", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "role_map": "x=owner"}]`, "field role_map"},
		{"a role map", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "role_map": "leads=admin"}]`, "field role_map: not for the operator's providers"},
		{"secret twice", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "client_secret": "` + secret + `", "client_secret_env": "VENDOR_SECRET"}]`,
			"client_secret and client_secret_env are both set"},
		{"variable unset", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "NOPE"}]`, "the variable NOPE is not set"},
		{"auto without domains", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "auto_provision": true}]`, "Add your domain under allowed domains"},
		{"auto not a boolean", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "auto_provision": "on"}]`, "want true or false"},
		{"text after", "[]\nmore", "text after the array"},
		{"no domains", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c"}]`, "field allowed_domains: required"},
		{"admins by default", `[{"id": "a", "template": "custom", "issuer": "https://a.example", "client_id": "c", "allowed_domains": "a.example", "default_role": "admin"}]`, "field default_role: must be member"},
	} {
		_, err := frontend.ParseOperatorProviders([]byte(c.file), getenv)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), secret) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// The operator's providers, on both dialects against mockoidc: on every instance's login
// page; a member of the vendor's staff gets into an instance only by its invitation (no
// account is made for a stranger), then again by the linked identity; the settings page
// lists them and does not let owners change them.
func TestOIDCOperatorProviders(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			ps, err := frontend.ParseOperatorProviders([]byte(`[{"id": "vendor-staff", "template": "custom", "name": "Vendor support",
				"issuer": "`+e.Mock.Issuer()+`", "client_id": "`+e.Mock.ClientID+`", "client_secret_env": "S", "scopes": "openid email profile groups", "allowed_domains": "vendor.example"}]`),
				func(string) string { return e.Mock.ClientSecret })
			if err != nil {
				t.Fatal(err)
			}
			e.Store.SetOperatorProviders(ps)
			id := ps[0].ProviderID(e.In.ID)
			if _, body := e.get(t, apptest.Browser(t), http.MethodGet, frontend.LoginPath(e.In.ID), nil); !strings.Contains(body, `href="`+e.loginPath(id)+`"`) ||
				!strings.Contains(body, "Vendor support") {
				t.Fatalf("login page without the operator's provider:\n%s", body)
			}
			// A member of staff nobody invited: refused, no account.
			b := apptest.Browser(t)
			e.Mock.QueueUser(mockUser("staff-1", "lea@vendor.example", true))
			resp, body := e.callback(t, b, e.authorize(t, b, e.loginPath(id)))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "there is no invitation") {
				t.Errorf("uninvited staff: %d\n%s", resp.StatusCode, body)
			}
			if _, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "lea@vendor.example"); err == nil {
				t.Error("an account was made for uninvited staff")
			}
			// Invited: the invitation is accepted through the operator's provider.
			if _, _, err := e.Store.CreateInvitation(ctx, e.In.ID, ownerID(t, e), "lea@vendor.example", extension.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			e.Mock.QueueUser(mockUser("staff-1", "lea@vendor.example", true))
			if resp, body := e.callback(t, b, e.authorize(t, b, e.loginPath(id))); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("invited staff: %d\n%s", resp.StatusCode, body)
			}
			acc, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "lea@vendor.example")
			if err != nil || acc.Role != extension.RoleAdmin {
				t.Fatalf("staff account: %+v, %v", acc, err)
			}
			// Again, by the linked identity, in a new browser.
			b = apptest.Browser(t)
			e.Mock.QueueUser(mockUser("staff-1", "lea@vendor.example", true))
			if resp, _ := e.callback(t, b, e.authorize(t, b, e.loginPath(id))); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("linked staff again: %d", resp.StatusCode)
			}
			ids, err := e.Store.OIDCIdentities(ctx, e.In.ID, acc.ID)
			if err != nil || len(ids) != 1 || ids[0].ProviderName != "Vendor support" {
				t.Errorf("identities: %+v, %v", ids, err)
			}
			// Another instance: its own id for the provider, and no way in without its invitation.
			other := e.Install(t, mstudiotest.InstanceSpec{})
			otherID := ps[0].ProviderID(other.ID)
			if otherID == id {
				t.Error("the operator's provider has the same id in two instances")
			}
			e.Mock.QueueUser(mockUser("staff-1", "lea@vendor.example", true))
			resp, body = e.callback(t, b, e.authorize(t, b, frontend.LoginPath(other.ID)+"/oidc/"+otherID))
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "there is no invitation") {
				t.Errorf("staff linked in one instance, at another: %d\n%s", resp.StatusCode, body)
			}
			// Owners see it and cannot change it.
			_, body = e.get(t, e.Owner, http.MethodGet, frontend.SignInSettingsPath(e.In.ID), nil)
			if !strings.Contains(body, "Sign-in services of the extension") || !strings.Contains(body, "only people you invited") {
				t.Errorf("settings page does not list the operator's provider:\n%s", body)
			}
			if resp, _ := e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id), nil); resp.StatusCode != http.StatusNotFound {
				t.Errorf("edit page of the operator's provider: %d, want 404", resp.StatusCode)
			}
			if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id), e.providerForm(nil)); resp.StatusCode != http.StatusNotFound {
				t.Errorf("saving the operator's provider: %d, want 404", resp.StatusCode)
			}
			for _, action := range []string{"disable", "delete"} {
				if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id)+"/"+action, nil); resp.StatusCode != http.StatusNotFound {
					t.Errorf("%s the operator's provider: %d, want 404", action, resp.StatusCode)
				}
			}
			if _, body := e.get(t, e.Owner, http.MethodGet, frontend.AppPath(e.In.ID)+"/audit", nil); !strings.Contains(body, "Signed in with Vendor support.") {
				t.Error("audit page does not name the operator's provider")
			}
			e.checkNoSecrets(t, nil)
		})
	}
}

// The vendor's provider decides which addresses are verified: its domain rule keeps it
// from accepting a customer's pending invitation for an address outside the vendor's
// domains (found by review: without allowed_domains it took the invitation, as admin).
// And its id changes with its issuer, so a subject linked at the old issuer does not sign
// in at the new one; a new name keeps it.
func TestOIDCOperatorProviderCannotTakeCustomerInvitations(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			file := func(issuer, name string) []extension.OperatorProvider {
				ps, err := frontend.ParseOperatorProviders([]byte(`[{"id": "vendor-staff", "template": "custom", "name": "`+name+`",
					"issuer": "`+issuer+`", "client_id": "`+e.Mock.ClientID+`", "client_secret_env": "S", "allowed_domains": "vendor.example"}]`),
					func(string) string { return e.Mock.ClientSecret })
				if err != nil {
					t.Fatal(err)
				}
				return ps
			}
			ps := file(e.Mock.Issuer(), "Vendor support")
			e.Store.SetOperatorProviders(ps)
			id := ps[0].ProviderID(e.In.ID)
			if _, _, err := e.Store.CreateInvitation(ctx, e.In.ID, ownerID(t, e), "alice@customer.example", extension.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			b := apptest.Browser(t)
			e.Mock.QueueUser(mockUser("vendor-user-9", "alice@customer.example", true))
			resp, _ := e.callback(t, b, e.authorize(t, b, e.loginPath(id)))
			if _, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "alice@customer.example"); resp.StatusCode == http.StatusSeeOther || err == nil {
				t.Errorf("the vendor's provider took the customer's invitation: status %d, account found: %v", resp.StatusCode, err == nil)
			}
			if renamed := file(e.Mock.Issuer()+"/", "Vendor help")[0].ProviderID(e.In.ID); renamed != id {
				t.Error("a new name (and the issuer written with a slash) changed the provider's id: its links would be lost")
			}
			if moved := file("https://another-idp.example", "Vendor support")[0].ProviderID(e.In.ID); moved == id {
				t.Error("another issuer kept the provider's id: a subject linked at the old issuer would sign in at the new one")
			}
		})
	}
}
