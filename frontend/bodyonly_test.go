package frontend_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// TestFormsReadTheBodyOnly: the team, sign-in and "forgot password" forms read their
// fields from the POST body only. The same fields in the query string, with an empty
// body, are an empty form: nothing is created or changed, nobody is signed in. A field
// sent twice is a bad request.
func TestFormsReadTheBodyOnly(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	e.accept(t, e.invite(t, "lena@example.test", extension.RoleMember), "Lena Local", goodPassword)
	lenaID := e.account(t, "lena@example.test").ID
	openBefore, err := e.Store.OpenInvitations(t.Context(), e.in.ID)
	if err != nil {
		t.Fatal(err)
	}
	query := func(kv ...string) string {
		q := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return "?" + q.Encode()
	}
	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"invite", e.team() + "/invitations" + query("email", "mallory@example.test", "role", "admin"), http.StatusBadRequest},
		{"change role", e.team() + "/" + lenaID + "/role" + query("role", "owner"), http.StatusBadRequest},
		{"transfer", e.team() + "/transfer" + query("account", lenaID), http.StatusNotFound},
	} {
		resp, body := e.post(t, e.ada, tc.path, url.Values{})
		if resp.StatusCode != tc.status || linkPattern.MatchString(body) {
			t.Errorf("%s with the fields in the query: %d, want %d\n%s", tc.name, resp.StatusCode, tc.status, body)
		}
	}
	if open, err := e.Store.OpenInvitations(t.Context(), e.in.ID); err != nil || len(open) != len(openBefore) {
		t.Errorf("open invitations %d, want %d (%v)", len(open), len(openBefore), err)
	}
	accs, err := e.Store.Accounts(t.Context(), e.in.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accs {
		if want := map[string]string{e.adaID: extension.RoleOwner, lenaID: extension.RoleMember}[a.ID]; a.Role != want {
			t.Errorf("account %s has role %s, want %s", a.Name, a.Role, want)
		}
	}

	// A field twice in the body: a bad request, nothing created.
	resp, body := e.post(t, e.ada, e.team()+"/invitations", url.Values{"email": {"a@example.test", "b@example.test"}, "role": {"member"}})
	if resp.StatusCode != http.StatusBadRequest || linkPattern.MatchString(body) {
		t.Errorf("invite with two addresses: %d\n%s", resp.StatusCode, body)
	}
	if open, _ := e.Store.OpenInvitations(t.Context(), e.in.ID); len(open) != len(openBefore) {
		t.Errorf("an invitation was created from two addresses")
	}

	// Sign-in with the credentials in the query: an empty form, refused, no session.
	b := apptest.Browser(t)
	login := frontend.LoginPath(e.in.ID)
	resp, body = e.post(t, b, login+query("email", "lena@example.test", "password", goodPassword), url.Values{})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("sign-in with the fields in the query: %d, cookies %d\n%s", resp.StatusCode, len(resp.Cookies()), body)
	}
	// The same in the body signs in: the test above refused for the right reason.
	if resp, body := e.post(t, b, login, url.Values{"email": {"lena@example.test"}, "password": {goodPassword}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-in with the fields in the body: %d\n%s", resp.StatusCode, body)
	}
}

// TestForgotFormReadsTheBodyOnly: an address in the query string of "forgot password" is
// no address; no link is made.
func TestForgotFormReadsTheBodyOnly(t *testing.T) {
	mails := &handedOver{}
	e := newForgotEnv(t, mails)
	in := e.Install(t, mstudiotest.InstanceSpec{})
	e.localUser(t, in, "lena@example.test", "correct horse battery")
	forgot := frontend.LoginPath(in.ID) + "/forgot"
	resp, body := e.do(t, apptest.Browser(t), http.MethodPost, forgot+"?email=lena%40example.test", sameOrigin, url.Values{})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not an e-mail address") {
		t.Errorf("forgot with the address in the query: %d\n%s", resp.StatusCode, body)
	}
	time.Sleep(100 * time.Millisecond) // a background lookup, had one started, has ended
	if n := len(mails.all()); n != 0 {
		t.Errorf("%d reset mails for an address in the query", n)
	}
}
