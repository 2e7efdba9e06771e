package frontend_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/frontend"
)

var disconnectForm = regexp.MustCompile(`action="(/app/[^"]+/account/identities/[^"]+/remove)"`)

// Connecting from the account page links the identity to the signed-in account; the same
// identity cannot connect to another account; an account's last way in stays.
func TestOIDCConnectAndDisconnect(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			id := e.addProvider(t, e.providerForm(nil))
			// Accounts made at first sign-in need a domain (or a claim); at id, Lena's
			// identity signs in whatever its address.
			made := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("name", "Made here")
				v.Set("auto_provision", "on")
				v.Set("allowed_domains", "example.com")
			}))
			connect := frontend.AccountPath(e.In.ID) + "/identities/connect/" + id

			owner, err := e.Store.AccountByID(ctx, ownerID(t, e))
			if err != nil {
				t.Fatal(err)
			}
			// A control panel user signs in through the control panel: nothing to connect.
			_, body := e.get(t, e.Owner, http.MethodGet, frontend.AccountPath(e.In.ID), nil)
			if strings.Contains(body, connect) {
				t.Errorf("a control panel user's account page offers to connect:\n%s", body)
			}
			if resp, _ := e.get(t, e.Owner, http.MethodGet, connect, nil); resp.StatusCode != http.StatusForbidden {
				t.Errorf("a control panel user connecting: %d, want 403", resp.StatusCode)
			}

			// A local account connects the provider.
			e.invite(t, e.In, owner, "lena@example.com", "Lena", extension.RoleMember, lenaPassword)
			lena := e.passwordSignIn(t, e.In, "lena@example.com", lenaPassword, "Firefox")
			_, body = e.get(t, lena, http.MethodGet, frontend.AccountPath(e.In.ID), nil)
			if !strings.Contains(body, `href="`+connect+`"`) {
				t.Fatalf("account page without the connect link:\n%s", body)
			}
			e.Mock.QueueUser(mockUser("sub-lena", "lena.private@example.org", true))
			resp, body := e.callback(t, lena, e.authorize(t, lena, connect))
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AccountPath(e.In.ID)+"?done=connected" {
				t.Fatalf("connect: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			_, body = e.get(t, lena, http.MethodGet, frontend.AccountPath(e.In.ID)+"?done=connected", nil)
			if !strings.Contains(body, "Connected. You can sign in with it") || !strings.Contains(body, "lena.private@example.org") ||
				strings.Contains(body, `href="`+connect+`"`) {
				t.Errorf("account page after connecting:\n%s", body)
			}
			// Signing in with it now is Lena, whatever the address says.
			b := apptest.Browser(t)
			e.Mock.QueueUser(mockUser("sub-lena", "whatever@example.com", false))
			if resp, _ := e.callback(t, b, e.authorize(t, b, e.loginPath(id))); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("sign-in with the connected identity: %d", resp.StatusCode)
			}

			// Another account cannot connect Lena's identity.
			e.invite(t, e.In, owner, "mia@example.com", "Mia", extension.RoleMember, adminPassword)
			mia := e.passwordSignIn(t, e.In, "mia@example.com", adminPassword, "Firefox")
			e.Mock.QueueUser(mockUser("sub-lena", "lena.private@example.org", true))
			resp, body = e.callback(t, mia, e.authorize(t, mia, connect))
			if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already connected to another team member") ||
				!strings.Contains(body, `href="`+connect+`?prompt=select"`) {
				t.Errorf("connecting another's identity: %d\n%s", resp.StatusCode, body)
			}

			// An account made through the provider has no other way in: its identity stays.
			nb := apptest.Browser(t)
			e.Mock.QueueUser(mockUser("sub-new", "new@example.com", true))
			if resp, _ := e.callback(t, nb, e.authorize(t, nb, e.loginPath(made))); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("provisioning: %d", resp.StatusCode)
			}
			// The page does not offer it, and the store refuses it when asked anyway.
			_, body = e.get(t, nb, http.MethodGet, frontend.AccountPath(e.In.ID), nil)
			if disconnectForm.MatchString(body) || !strings.Contains(body, "Your only way to sign in") {
				t.Errorf("the account page offers to disconnect the only way in:\n%s", body)
			}
			newAcc, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "new@example.com")
			if err != nil {
				t.Fatal(err)
			}
			newIDs, err := e.Store.OIDCIdentities(ctx, e.In.ID, newAcc.ID)
			if err != nil || len(newIDs) != 1 {
				t.Fatalf("identities of the new account: %+v, %v", newIDs, err)
			}
			resp, body = e.get(t, nb, http.MethodPost, frontend.AccountPath(e.In.ID)+"/identities/"+newIDs[0].ID+"/remove", url.Values{})
			if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "This is your only way to sign in") {
				t.Errorf("disconnecting the last way in: %d\n%s", resp.StatusCode, body)
			}
			// Lena's is not her last: she has her password.
			_, body = e.get(t, lena, http.MethodGet, frontend.AccountPath(e.In.ID), nil)
			m := disconnectForm.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no disconnect form:\n%s", body)
			}
			// Not someone else's, though.
			if resp, _ := e.get(t, nb, http.MethodPost, m[1], url.Values{}); resp.StatusCode != http.StatusNotFound {
				t.Errorf("disconnecting another account's identity: %d, want 404", resp.StatusCode)
			}
			if resp, _ := e.get(t, lena, http.MethodPost, m[1], url.Values{}); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("disconnecting beside a password: %d", resp.StatusCode)
			}
			lenaAcc, _, _ := e.Store.LocalCredentials(ctx, e.In.ID, "lena@example.com")
			if ids, _ := e.Store.OIDCIdentities(ctx, e.In.ID, lenaAcc.ID); len(ids) != 0 {
				t.Errorf("identities after disconnecting: %+v", ids)
			}
			kinds := e.auditKinds(t)
			if kinds[extension.AuditIdentityLinked] < 2 || kinds[extension.AuditIdentityUnlinked] != 1 || kinds[extension.AuditSignInRefused+":linked"] != 1 {
				t.Errorf("audit kinds: %v", kinds)
			}
		})
	}
}

// An invitation accepted at a provider needs the invited address; the wrong account's
// page names both addresses.
func TestOIDCInvitation(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	ctx := context.Background()
	id := e.addProvider(t, e.providerForm(nil))
	_, token, err := e.Store.CreateInvitation(ctx, e.In.ID, ownerID(t, e), "carla@example.com", extension.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	start := "/invite/" + token.Reveal() + "/oidc/" + id
	b := apptest.Browser(t)
	if _, body := e.get(t, b, http.MethodGet, "/invite/"+token.Reveal(), nil); !strings.Contains(body, `href="`+start+`"`) {
		t.Errorf("invitation page without the provider's link:\n%s", body)
	}
	e.Mock.QueueUser(mockUser("sub-carla-private", "carla@private.example", true))
	resp, body := e.callback(t, b, e.authorize(t, b, start))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Wrong account for this invitation") ||
		!strings.Contains(body, "carla@example.com") || !strings.Contains(body, "carla@private.example") ||
		!strings.Contains(body, `href="`+start+`?prompt=select"`) {
		t.Errorf("wrong account: %d\n%s", resp.StatusCode, body)
	}
	e.Mock.QueueUser(mockUser("sub-carla", "Carla@Example.com", false))
	if resp, body := e.callback(t, b, e.authorize(t, b, start)); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "is not confirmed") {
		t.Errorf("unverified invited address: %d\n%s", resp.StatusCode, body)
	}
	e.Mock.QueueUser(mockUser("sub-carla", "Carla@Example.com", true))
	if resp, body := e.callback(t, b, e.authorize(t, b, start)); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("invited address: %d\n%s", resp.StatusCode, body)
	}
	acc, hash, err := e.Store.LocalCredentials(ctx, e.In.ID, "carla@example.com")
	if err != nil || acc.Role != extension.RoleAdmin || hash != "" {
		t.Errorf("accepted account: %+v, %q, %v", acc, hash, err)
	}
	// No password sign-in for an account without a password, whatever is typed.
	resp, _ = e.get(t, apptest.Browser(t), http.MethodPost, frontend.LoginPath(e.In.ID), url.Values{"email": {"carla@example.com"}, "password": {""}})
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("password sign-in of an account without a password: %d", resp.StatusCode)
	}
	// The link is used: starting again says so.
	if resp, _ := e.get(t, apptest.Browser(t), http.MethodGet, start, nil); resp.StatusCode != http.StatusGone {
		t.Errorf("used invitation: %d, want 410", resp.StatusCode)
	}
	e.checkNoSecrets(t, nil)
}

// "Use another account" asks for prompt=select_account only where the template says the
// provider understands it; the login page's provider entry is a link, so the pages'
// form-action CSP does not apply to it.
func TestOIDCSelectAccountAndLinks(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	google := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("template", "google"); v.Set("name", "Google") }))
	gitlab := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("template", "gitlab"); v.Set("name", "GitLab") }))
	for _, c := range []struct {
		id   string
		want bool
	}{{google, true}, {gitlab, false}} {
		resp, _ := e.get(t, apptest.Browser(t), http.MethodGet, e.loginPath(c.id)+"?prompt=select", nil)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if got := loc.Query().Get("prompt") == "select_account"; resp.StatusCode != http.StatusSeeOther || got != c.want {
			t.Errorf("provider %s: %d, prompt=select_account %v, want %v", c.id, resp.StatusCode, got, c.want)
		}
		if resp, _ := e.get(t, apptest.Browser(t), http.MethodGet, e.loginPath(c.id), nil); strings.Contains(resp.Header.Get("Location"), "prompt=") {
			t.Errorf("a plain start asks for a prompt: %s", resp.Header.Get("Location"))
		}
	}
	resp, body := e.get(t, apptest.Browser(t), http.MethodGet, frontend.LoginPath(e.In.ID), nil)
	if !strings.Contains(body, `<a class="button" href="`+e.loginPath(google)+`">Sign in with Google</a>`) ||
		strings.Contains(body, `action="`+e.loginPath(google)) || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "form-action 'self'") {
		t.Errorf("login page's provider entry is not a plain link:\n%s", body)
	}
}

// With password sign-in off and a provider on, the team invites, and the invitation's
// page offers only the providers; accepted through one, the account has no password.
// With the provider off too, neither the team page nor the link invites.
func TestOIDCInvitationPasswordOff(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			owner := ownerID(t, e)
			if _, err := e.Store.UpdateInstanceSettings(ctx, e.In.ID, owner, extension.InstanceSettings{DefaultRole: extension.RoleMember}); err != nil {
				t.Fatal(err)
			}
			team := frontend.AppPath(e.In.ID) + "/team"
			if _, body := e.get(t, e.Owner, http.MethodGet, team, nil); !strings.Contains(body, "you cannot invite people") ||
				strings.Contains(body, `action="/app/`+e.In.ID+`/team/invitations"`) {
				t.Errorf("team page, password off and no provider: the invite form is offered\n%s", body)
			}
			id := e.addProvider(t, e.providerForm(nil))
			if _, body := e.get(t, e.Owner, http.MethodGet, team, nil); !strings.Contains(body, `action="/app/`+e.In.ID+`/team/invitations"`) ||
				!strings.Contains(body, "accept the invitation by signing in with one of the team") {
				t.Errorf("team page, password off and a provider on: no invite form or no note\n%s", body)
			}
			_, token, err := e.Store.CreateInvitation(ctx, e.In.ID, owner, "dora@example.com", extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			link := "/invite/" + token.Reveal()
			start := link + "/oidc/" + id
			b := apptest.Browser(t)
			resp, body := e.get(t, b, http.MethodGet, link, nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="`+start+`"`) ||
				!strings.Contains(body, "signs in only through its organisation") || strings.Contains(body, `name="password"`) {
				t.Errorf("invitation page, password off: %d, want the provider only\n%s", resp.StatusCode, body)
			}
			resp, _ = e.get(t, b, http.MethodGet, link+"?lang=de", nil)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("German invitation page: %d", resp.StatusCode)
			}
			e.Mock.QueueUser(mockUser("sub-dora", "dora@example.com", true))
			if resp, body := e.callback(t, b, e.authorize(t, b, start)); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("accept through the provider: %d\n%s", resp.StatusCode, body)
			}
			if acc, hash, err := e.Store.LocalCredentials(ctx, e.In.ID, "dora@example.com"); err != nil || hash != "" || acc.Role != extension.RoleMember {
				t.Errorf("accepted account: %+v, %q, %v", acc, hash, err)
			}
			// A pending invitation whose provider is turned off: the link says password
			// sign-in is off, as before providers.
			_, token, err = e.Store.CreateInvitation(ctx, e.In.ID, owner, "emil@example.com", extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Store.SetOIDCProviderEnabled(ctx, e.In.ID, owner, id, false); err != nil {
				t.Fatal(err)
			}
			if resp, body := e.get(t, apptest.Browser(t), http.MethodGet, "/invite/"+token.Reveal(), nil); resp.StatusCode != http.StatusForbidden ||
				!strings.Contains(body, "Sign-in with a password is off") {
				t.Errorf("invitation page, password and provider off: %d\n%s", resp.StatusCode, body)
			}
			e.checkNoSecrets(t, nil)
		})
	}
}
