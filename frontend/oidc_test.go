package frontend_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/oauth2-proxy/mockoidc"
)

func mockUser(subject, email string, verified bool, groups ...string) *mockoidc.MockUser {
	return &mockoidc.MockUser{Subject: subject, Email: email, EmailVerified: verified, PreferredUsername: subject, Groups: groups}
}

// The settings form's contract: owners add a provider with the fields; saving
// checks the issuer by its discovery document; https is required off loopback; the
// client secret never comes back in a page.
func TestProviderSettings(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	for _, c := range []struct {
		name    string
		change  func(url.Values)
		status  int
		problem string
	}{
		{"http off loopback", func(v url.Values) { v.Set("issuer", "http://idp.example.com") }, http.StatusBadRequest, "https://"},
		{"no openid scope", func(v url.Values) { v.Set("scopes", "email profile") }, http.StatusBadRequest, "openid"},
		{"claim without values", func(v url.Values) { v.Set("required_claim", "groups") }, http.StatusBadRequest, "at least one value"},
		{"owner as default role", func(v url.Values) { v.Set("default_role", "owner") }, http.StatusBadRequest, "Choose one of the roles"},
		{"unknown template", func(v url.Values) { v.Set("template", "myspace") }, http.StatusBadRequest, "Choose one of the services"},
		{"bad domain", func(v url.Values) { v.Set("allowed_domains", "not a domain!") }, http.StatusBadRequest, "not a domain name"},
		{"auto-provisioning open to all", func(v url.Values) { v.Set("auto_provision", "on") }, http.StatusBadRequest, "Add your domain"},
		{"google open to all", func(v url.Values) { v.Set("template", "google"); v.Set("auto_provision", "on") }, http.StatusBadRequest, "Add your domain"},
		{"gitlab open to all", func(v url.Values) { v.Set("template", "gitlab"); v.Set("auto_provision", "on") }, http.StatusBadRequest, "Add your domain"},
		{"issuer elsewhere", func(v url.Values) { v.Set("issuer", e.Mock.Addr()) }, http.StatusBadGateway, "could not read"},
		{"issuer answers as another", func(v url.Values) { v.Set("issuer", e.Mock.Issuer()+"/") }, http.StatusBadRequest, e.Mock.Issuer()},
	} {
		resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(c.change))
		if resp.StatusCode != c.status || !strings.Contains(body, c.problem) {
			t.Errorf("%s: %d, want %d with %q\n%s", c.name, resp.StatusCode, c.status, c.problem, body)
		}
	}
	if ps, _ := e.Store.OIDCProviders(context.Background(), e.In.ID); len(ps) != 0 {
		t.Fatalf("refused forms stored %d providers", len(ps))
	}
	id := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("allowed_domains", "example.com"); v.Set("auto_provision", "on") }))
	resp, body := e.get(t, e.Owner, http.MethodGet, frontend.SignInSettingsPath(e.In.ID)+"?provider_saved="+id, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "The service answered as "+e.Mock.Issuer()) ||
		!strings.Contains(body, apptest.PublicURL+"/login/oidc/callback") {
		t.Errorf("settings after saving: %d\n%s", resp.StatusCode, body)
	}
	// The provider's page shows the values but not the secret; an edit without one keeps it.
	resp, body = e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id), nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `value="example.com"`) || !strings.Contains(body, "A secret is stored") {
		t.Errorf("provider page: %d\n%s", resp.StatusCode, body)
	}
	form := e.providerForm(func(v url.Values) { v.Set("name", "Renamed"); v.Del("client_secret") })
	if resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id), form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %d\n%s", resp.StatusCode, body)
	}
	p, err := e.Store.OIDCProviderByID(context.Background(), e.In.ID, id)
	if err != nil || p.Name != "Renamed" || !p.HasClientSecret || p.AutoProvision || len(p.AllowedDomains) != 0 {
		t.Errorf("after the edit: %+v, %v", p, err)
	}
	// The login page links to it; disabled, it does not.
	b := apptest.Browser(t)
	if _, body := e.get(t, b, http.MethodGet, frontend.LoginPath(e.In.ID), nil); !strings.Contains(body, `href="`+e.loginPath(id)+`"`) {
		t.Errorf("login page without the provider's link:\n%s", body)
	}
	if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id)+"/disable", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if _, body := e.get(t, b, http.MethodGet, frontend.LoginPath(e.In.ID), nil); strings.Contains(body, e.loginPath(id)) {
		t.Error("login page links to a disabled provider")
	}
	if resp, _ := e.get(t, b, http.MethodGet, e.loginPath(id), nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("start at a disabled provider: %d, want 404", resp.StatusCode)
	}
	// A member may not touch providers.
	member := apptest.Browser(t)
	e.signIn(t, member, e.In, e.User(t, "Bob Builder"))
	if resp, _ := e.get(t, member, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(nil)); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a member adding a provider: %d, want 403", resp.StatusCode)
	}
	if resp, _ := e.get(t, member, http.MethodPost, frontend.ProviderPath(e.In.ID, id)+"/delete", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a member deleting a provider: %d, want 403", resp.StatusCode)
	}
	if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id)+"/delete", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	e.checkNoSecrets(t, nil)
	kinds := e.auditKinds(t)
	for _, k := range []string{extension.AuditOIDCProviderAdded, extension.AuditOIDCProviderChanged, extension.AuditOIDCProviderDeleted} {
		if kinds[k] == 0 {
			t.Errorf("no audit event %s", k)
		}
	}
}

// checkNoSecrets checks that no page and no log line holds the client secret, an ID or
// access token (a JWT starts with eyJ) or one of the codes.
func (e *oidcEnv) checkNoSecrets(t *testing.T, codes []string) {
	t.Helper()
	logs := e.Logs.String()
	for _, where := range append([]string{logs}, e.pages...) {
		for _, secret := range append([]string{e.Mock.ClientSecret, "eyJ"}, codes...) {
			if secret != "" && strings.Contains(where, secret) {
				t.Errorf("a page or log line holds a secret %.6s…", secret)
			}
		}
	}
}

// The claim matrix against a real provider library in-process, on both dialects: who
// gets in, who is refused with which page, and what the audit log says.
func TestOIDCClaimMatrix(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			ctx := context.Background()
			open := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("auto_provision", "on"); v.Set("allowed_domains", "example.com") }))
			invitedOnly := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("name", "Invited only") }))
			staffOnly := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("name", "Staff only")
				v.Set("required_claim", "groups")
				v.Set("required_values", "staff, admins")
				v.Set("auto_provision", "on")
			}))
			var codes []string
			expect := func(name string, resp *http.Response, body string, status int, want string) {
				t.Helper()
				if resp.StatusCode != status || !strings.Contains(body, want) {
					t.Errorf("%s: %d, want %d with %q\n%s", name, resp.StatusCode, status, want, body)
				}
			}
			signIn := func(provider string, u *mockoidc.MockUser) (*http.Client, *http.Response, string) {
				t.Helper()
				b := apptest.Browser(t)
				e.Mock.QueueUser(u)
				back := e.authorize(t, b, e.loginPath(provider))
				codes = append(codes, back.Query().Get("code"))
				resp, body := e.callback(t, b, back)
				return b, resp, body
			}

			// Auto-provisioning: a verified address in an allowed domain joins as member.
			b, resp, _ := signIn(open, mockUser("sub-new", "new@example.com", true))
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(e.In.ID) {
				t.Fatalf("auto-provisioning: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp, body := e.get(t, b, http.MethodGet, frontend.AppPath(e.In.ID), nil); resp.StatusCode != http.StatusOK {
				t.Errorf("dashboard after provisioning: %d\n%s", resp.StatusCode, body)
			}
			acc, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "new@example.com")
			if err != nil || acc.Role != extension.RoleMember {
				t.Errorf("provisioned account: %+v, %v", acc, err)
			}
			// The same subject again: the known identity, whatever its address says now.
			_, resp, _ = signIn(open, mockUser("sub-new", "changed@example.com", true))
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("known identity: %d", resp.StatusCode)
			}

			_, resp, body := signIn(open, mockUser("sub-unverified", "unverified@example.com", false))
			expect("unverified e-mail", resp, body, http.StatusForbidden, "is not confirmed")
			_, resp, body = signIn(open, mockUser("sub-no-email", "", false))
			expect("no e-mail", resp, body, http.StatusForbidden, "No e-mail address was sent")
			_, resp, body = signIn(open, mockUser("sub-other", "new@example.com", true))
			expect("other subject, same e-mail", resp, body, http.StatusConflict, "Sign in with the other Mock IdP account")
			_, resp, body = signIn(open, mockUser("sub-elsewhere", "someone@other.example", true))
			expect("domain refused", resp, body, http.StatusForbidden, "e-mail domain is not allowed")
			_, resp, body = signIn(staffOnly, mockUser("sub-student", "student@example.com", true, "students"))
			expect("missing group", resp, body, http.StatusForbidden, "not in an allowed group")
			_, resp, _ = signIn(staffOnly, mockUser("sub-staff", "staff@example.com", true, "teachers", "staff"))
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("a member of a required group: %d", resp.StatusCode)
			}
			_, resp, body = signIn(invitedOnly, mockUser("sub-stranger", "stranger@example.com", true))
			expect("not invited", resp, body, http.StatusForbidden, "there is no invitation")

			// Invited: the verified address accepts the invitation, with its role.
			if _, _, err := e.Store.CreateInvitation(ctx, e.In.ID, ownerID(t, e), "Invited@Example.com", extension.RoleAdmin); err != nil {
				t.Fatal(err)
			}
			_, resp, _ = signIn(invitedOnly, mockUser("sub-invited", "invited@example.com", true))
			if resp.StatusCode != http.StatusSeeOther {
				t.Errorf("invited: %d", resp.StatusCode)
			}
			if acc, _, err := e.Store.LocalCredentials(ctx, e.In.ID, "invited@example.com"); err != nil || acc.Role != extension.RoleAdmin {
				t.Errorf("invited account: %+v, %v", acc, err)
			}

			// Changed state.
			b = apptest.Browser(t)
			e.Mock.QueueUser(mockUser("sub-new", "new@example.com", true))
			back := e.authorize(t, b, e.loginPath(open))
			codes = append(codes, back.Query().Get("code"))
			q := back.Query()
			q.Set("state", strings.Repeat("A", 43))
			tampered := *back
			tampered.RawQuery = q.Encode()
			resp, body = e.callback(t, b, &tampered)
			expect("changed state", resp, body, http.StatusBadRequest, "could not be finished")
			// The right state after that: the flow was taken once, by the tampered request.
			resp, body = e.callback(t, b, back)
			expect("flow taken", resp, body, http.StatusBadRequest, "could not be finished")

			// Replayed code: the same callback again, and the code with a new sign-in's state.
			b = apptest.Browser(t)
			e.Mock.QueueUser(mockUser("sub-new", "new@example.com", true))
			back = e.authorize(t, b, e.loginPath(open))
			codes = append(codes, back.Query().Get("code"))
			if resp, _ := e.callback(t, b, back); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-in before the replay: %d", resp.StatusCode)
			}
			resp, body = e.callback(t, b, back)
			expect("replayed callback", resp, body, http.StatusBadRequest, "already used")
			e.Mock.QueueUser(mockUser("sub-new", "new@example.com", true))
			fresh := e.authorize(t, b, e.loginPath(open))
			codes = append(codes, fresh.Query().Get("code"))
			q = fresh.Query()
			q.Set("code", back.Query().Get("code"))
			replay := *fresh
			replay.RawQuery = q.Encode()
			resp, body = e.callback(t, b, &replay)
			expect("replayed code", resp, body, http.StatusBadRequest, "did not confirm the sign-in")

			// Expired ID token: the provider's clock an hour behind.
			e.Mock.FastForward(-time.Hour)
			_, resp, body = signIn(open, mockUser("sub-new", "new@example.com", true))
			e.Mock.FastForward(time.Hour)
			expect("expired ID token", resp, body, http.StatusBadRequest, "did not confirm the sign-in")

			// Provider errors.
			for _, pe := range []struct {
				err    string
				status int
				want   string
			}{{"access_denied", http.StatusForbidden, "Sign-in was cancelled"}, {"server_error", http.StatusBadRequest, "reported a problem"}} {
				b = apptest.Browser(t)
				e.Mock.QueueUser(mockUser("sub-new", "new@example.com", true))
				back = e.authorize(t, b, e.loginPath(open))
				codes = append(codes, back.Query().Get("code"))
				back.RawQuery = url.Values{"error": {pe.err}, "state": {back.Query().Get("state")}}.Encode()
				resp, body = e.callback(t, b, back)
				expect("provider said "+pe.err, resp, body, pe.status, pe.want)
			}

			// Wrong issuer: a provider whose tokens name another issuer than its own.
			mixed := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("name", "Mix-up")
				v.Set("issuer", proxyIssuer(t, e.Mock))
				v.Set("auto_provision", "on")
				v.Set("allowed_domains", "example.com")
			}))
			_, resp, body = signIn(mixed, mockUser("sub-new", "new@example.com", true))
			expect("wrong issuer", resp, body, http.StatusBadRequest, "did not confirm the sign-in")

			// No flow cookie at all.
			resp, body = e.get(t, apptest.Browser(t), http.MethodGet, "/login/oidc/callback?code=x&state=y", nil)
			expect("no flow", resp, body, http.StatusBadRequest, "not started in this browser")

			kinds := e.auditKinds(t)
			for _, reason := range []string{"unverified", "no_email", "exists", "domain", "claim", "not_invited", "state", "token",
				"access_denied", "provider_error"} {
				if kinds[extension.AuditSignInRefused+":"+reason] == 0 {
					t.Errorf("no audit event of a refusal for %s (%v)", reason, kinds)
				}
			}
			for _, k := range []string{extension.AuditAccountProvisioned, extension.AuditIdentityLinked, extension.AuditInvitationAccepted} {
				if kinds[k] == 0 {
					t.Errorf("no audit event %s", k)
				}
			}
			// The audit page describes them all in words.
			_, body = e.get(t, e.Owner, http.MethodGet, frontend.AppPath(e.In.ID)+"/audit", nil)
			for _, want := range []string{"Signed in with Mock IdP.", "was refused: Your e-mail address is not confirmed", "Joined through Mock IdP as Member."} {
				if !strings.Contains(body, want) {
					t.Errorf("audit page lacks %q", want)
				}
			}
			e.checkNoSecrets(t, codes)
		})
	}
}

func ownerID(t *testing.T, e *oidcEnv) string {
	t.Helper()
	accs, err := e.Store.Accounts(context.Background(), e.In.ID)
	if err != nil || len(accs) == 0 || accs[0].Role != extension.RoleOwner {
		t.Fatalf("no owner: %+v, %v", accs, err)
	}
	return accs[0].ID
}
