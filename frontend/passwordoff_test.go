package frontend_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/frontend"
)

// setSignIn stores the instance's sign-in settings on behalf of Ada, the owner.
func (e *teamEnv) setSignIn(t *testing.T, passwordLogin bool, domains ...string) {
	t.Helper()
	if _, err := e.Store.UpdateInstanceSettings(t.Context(), e.in.ID, e.adaID, extension.InstanceSettings{
		DefaultRole: extension.RoleMember, AllowedDomains: domains, PasswordLogin: passwordLogin}); err != nil {
		t.Fatal(err)
	}
}

// refusedPage checks a 403 page that names the refusal and sets no cookie.
func refusedPage(t *testing.T, what string, resp *http.Response, body, want string) {
	t.Helper()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, want) || len(resp.Cookies()) != 0 {
		t.Errorf("%s: %d, cookies %v, want 403 with %q\n%s", what, resp.StatusCode, resp.Cookies(), want, body)
	}
}

// TestLinksWhilePasswordOff: with password sign-in off, an invitation or reset link
// signs nobody in and stays unused, the team page offers neither, its forms are refused,
// and turning it off signed the local accounts out; on again, the links work.
func TestLinksWhilePasswordOff(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newTeamEnv(t, apptest.Options{Dialect: d})
			max := e.accept(t, e.invite(t, "max@example.test", extension.RoleAdmin), "Max Local", goodPassword)
			maxID := e.account(t, "max@example.test").ID
			resp, body := e.post(t, e.ada, e.team()+"/"+maxID+"/reset", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("issue reset: %d", resp.StatusCode)
			}
			_, reset := linkOf(t, body, "reset")
			invite := e.invite(t, "lena@example.test", extension.RoleMember)

			e.setSignIn(t, false)
			if resp, _ := e.do(t, max, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("a local account's session after password sign-in went off: %d, want 303 to sign-in", resp.StatusCode)
			}
			if resp, _ := e.do(t, e.ada, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("a platform user's session after password sign-in went off: %d", resp.StatusCode)
			}

			const off = "Sign-in with a password is off"
			lena := apptest.Browser(t)
			resp, body = e.do(t, lena, http.MethodGet, "/invite/"+invite, nil, nil)
			refusedPage(t, "invitation page", resp, body, off)
			resp, body = e.post(t, lena, "/invite/"+invite, url.Values{"name": {"Lena"}, "password": {goodPassword}})
			refusedPage(t, "accept", resp, body, off)
			resp, body = e.do(t, lena, http.MethodGet, "/reset/"+reset, nil, nil)
			refusedPage(t, "reset page", resp, body, off)
			resp, body = e.post(t, lena, "/reset/"+reset, url.Values{"password": {"a brand new passphrase"}})
			refusedPage(t, "use reset", resp, body, off)
			if inv, err := e.Store.Invitation(t.Context(), extension.Secret(invite)); err != nil || inv.State != extension.InvitationPending {
				t.Errorf("invitation after the refusal: %+v, %v", inv, err)
			}
			if _, err := e.Store.PasswordResetByToken(t.Context(), extension.Secret(reset)); err != nil {
				t.Errorf("reset link after the refusal: %v", err)
			}
			if _, _, err := e.Store.LocalCredentials(t.Context(), e.in.ID, "lena@example.test"); err == nil {
				t.Error("a refused acceptance made the account")
			}

			// The team page offers no invitation and no reset link; sent anyway, they are refused.
			resp, body = e.do(t, e.ada, http.MethodGet, e.team(), nil, nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "you cannot invite people") ||
				strings.Contains(body, `action="`+e.team()+`/invitations"`) || strings.Contains(body, "/reset\"") || strings.Contains(body, "/reissue\"") {
				t.Errorf("team page while off: %d\n%s", resp.StatusCode, body)
			}
			resp, body = e.post(t, e.ada, e.team()+"/invitations", url.Values{"email": {"later@example.test"}, "role": {"member"}})
			refusedPage(t, "invite", resp, body, off)
			resp, body = e.post(t, e.ada, e.team()+"/"+maxID+"/reset", nil)
			refusedPage(t, "reset link", resp, body, off)

			// On again, but lena's domain no longer allowed: the invitation page says so.
			e.setSignIn(t, true, "example.org")
			resp, body = e.do(t, lena, http.MethodGet, "/invite/"+invite, nil, nil)
			refusedPage(t, "invitation page, domain gone", resp, body, "no longer allowed here")
			resp, body = e.post(t, lena, "/invite/"+invite, url.Values{"name": {"Lena"}, "password": {goodPassword}})
			refusedPage(t, "accept, domain gone", resp, body, "no longer allowed here")
			if inv, err := e.Store.Invitation(t.Context(), extension.Secret(invite)); err != nil || inv.State != extension.InvitationPending {
				t.Errorf("invitation after the domain refusal: %+v, %v", inv, err)
			}

			e.setSignIn(t, true)
			e.accept(t, invite, "Lena", goodPassword)
			resp, _ = e.post(t, apptest.Browser(t), "/reset/"+reset, url.Values{"password": {"a brand new passphrase"}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("use reset once password sign-in is on again: %d", resp.StatusCode)
			}
			e.noSecretsLogged(t, invite, reset, goodPassword)
		})
	}
}

// TestOwnResetRefused: an admin cannot make a reset link for their own account (the
// account page changes one's password, asking for the current one); nothing is made.
func TestOwnResetRefused(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	max := e.accept(t, e.invite(t, "max@example.test", extension.RoleAdmin), "Max Local", goodPassword)
	maxID := e.account(t, "max@example.test").ID
	resp, body := e.post(t, max, e.team()+"/"+maxID+"/reset", nil)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "/reset/") {
		t.Errorf("own reset link: %d, want 403 and no link\n%s", resp.StatusCode, body)
	}
}
