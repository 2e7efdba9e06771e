package frontend_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/oauth2-proxy/mockoidc"
)

// Pointing a provider at another issuer disconnects its identities: a user there whose
// subject collides with a connected user's is a stranger, not that user. The edit form
// says so beforehand.
func TestOIDCIssuerChangeDisconnects(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	id := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("auto_provision", "on"); v.Set("allowed_domains", "example.com") }))
	b := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("1234", "victim@example.com", true))
	if resp, _ := e.callback(t, b, e.authorize(t, b, e.loginPath(id))); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("victim provisioning: %d", resp.StatusCode)
	}
	if _, page := e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id), nil); !strings.Contains(page, "connect it again") {
		t.Error("the edit form does not warn that changing the address disconnects people")
	}
	other, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Shutdown() })
	form := e.providerForm(func(v url.Values) {
		v.Set("issuer", other.Issuer())
		v.Set("client_id", other.ClientID)
		v.Set("client_secret", other.ClientSecret)
		v.Set("auto_provision", "on")
		v.Set("allowed_domains", "example.com")
	})
	if resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id), form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit issuer: %d\n%s", resp.StatusCode, body)
	}
	e.Mock = other
	a := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("1234", "someone-else@elsewhere.example", false))
	resp, _ := e.callback(t, a, e.authorize(t, a, e.loginPath(id)))
	if resp.StatusCode == http.StatusSeeOther && resp.Header.Get("Location") == frontend.AppPath(e.In.ID) {
		t.Fatal("a user of another issuer with the same subject signed in to the victim's account")
	}
	if got := e.auditKinds(t)[extension.AuditOIDCProviderChanged]; got != 1 {
		t.Errorf("%d oidc_provider.changed events, want 1", got)
	}
}

// The discovery fetch follows no redirect: here to another server naming endpoints on
// inner addresses; in production from https to any http address.
func TestOIDCDiscoveryRedirectRefused(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	var issuer string
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"` + issuer + `","authorization_endpoint":"http://10.0.0.1/a","token_endpoint":"http://10.0.0.1/t","jwks_uri":"http://169.254.169.254/latest/meta-data/"}`))
	}))
	t.Cleanup(target.Close)
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/anything", http.StatusFound)
	}))
	t.Cleanup(redirecting.Close)
	issuer = redirecting.URL
	resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(func(v url.Values) { v.Set("issuer", issuer) }))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "configuration") {
		t.Errorf("discovery through a redirect: %d, want %d and the discovery problem", resp.StatusCode, http.StatusBadGateway)
	}
	if ps, err := e.Store.OIDCProviders(t.Context(), e.In.ID); err != nil || len(ps) != 0 {
		t.Errorf("providers after a refused discovery: %d, %v", len(ps), err)
	}
}

// Connecting starts with a GET that changes the account: another site cannot start it.
func TestOIDCConnectCrossSite(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	id := e.addProvider(t, e.providerForm(nil))
	acc, _ := e.Store.AccountByID(t.Context(), ownerID(t, e))
	e.invite(t, e.In, acc, "lena@example.com", "Lena", extension.RoleMember, lenaPassword)
	lena := e.passwordSignIn(t, e.In, "lena@example.com", lenaPassword, "Firefox")
	connect := frontend.AccountPath(e.In.ID) + "/identities/connect/" + id
	for _, h := range []http.Header{{"Sec-Fetch-Site": {"cross-site"}}, {"Sec-Fetch-Site": {"same-site"}}, {"Referer": {"https://evil.example/"}}, nil} {
		resp, body := e.do(t, lena, http.MethodGet, connect, h, nil)
		if resp.StatusCode != http.StatusForbidden || strings.HasPrefix(resp.Header.Get("Location"), e.Mock.AuthorizationEndpoint()) {
			t.Errorf("connect with %v: %d to %q, want 403", h, resp.StatusCode, resp.Header.Get("Location"))
		} else if !strings.Contains(body, "sent from another website") {
			t.Errorf("connect with %v: 403 without the cross-site page", h)
		}
	}
	if resp, _ := e.do(t, lena, http.MethodGet, connect, http.Header{"Sec-Fetch-Site": {"same-origin"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("connect from the account page: %d, want 303", resp.StatusCode)
	}
}

// An ID token whose nonce is not the flow's (here: the authorization request's nonce
// swapped on the way to the provider, which signs what it was sent) is refused.
func TestOIDCWrongNonceRefused(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	id := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("auto_provision", "on"); v.Set("allowed_domains", "example.com") }))
	b := apptest.Browser(t)
	resp, body := e.get(t, b, http.MethodGet, e.loginPath(id), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("start: %d\n%s", resp.StatusCode, body)
	}
	at, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := at.Query()
	q.Set("nonce", "another-nonce-of-the-attacker-000000000000000")
	at.RawQuery = q.Encode()
	e.Mock.QueueUser(mockUser("sub-n", "nonce@example.com", true))
	out, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(at.String())
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	back, err := url.Parse(out.Header.Get("Location"))
	if err != nil || out.StatusCode != http.StatusFound {
		t.Fatalf("provider answered %d", out.StatusCode)
	}
	resp, body = e.get(t, b, http.MethodGet, back.RequestURI(), nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "did not confirm the sign-in") {
		t.Errorf("wrong nonce: %d, want %d with the could-not-finish page\n%.500s", resp.StatusCode, http.StatusBadRequest, body)
	}
	if ps, _ := e.Store.AccountsWithIdentities(t.Context(), e.In.ID); len(ps) != 0 {
		t.Errorf("%d accounts made through a token with the wrong nonce", len(ps))
	}
	if got := e.auditKinds(t)[extension.AuditSignInRefused+":token"]; got != 1 {
		t.Errorf("%d refusals for the token audited, want 1", got)
	}
}

// A callback replayed with the same flow cookie and the same URL finds its state used: the
// could-not-finish page, 400, not an error.
func TestOIDCCallbackReplayRefused(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	id := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("auto_provision", "on"); v.Set("allowed_domains", "example.com") }))
	b := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("sub-r", "replay@example.com", true))
	back := e.authorize(t, b, e.loginPath(id))
	target, _ := url.Parse(e.URL + back.RequestURI())
	var saved []string
	for _, c := range b.Jar.Cookies(target) {
		saved = append(saved, c.Name+"="+c.Value)
	}
	if len(saved) == 0 {
		t.Fatal("no flow cookie to replay")
	}
	if resp, body := e.callback(t, b, back); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: %d\n%.500s", resp.StatusCode, body)
	}
	resp, body := e.do(t, &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		http.MethodGet, back.RequestURI(), http.Header{"Cookie": {strings.Join(saved, "; ")}}, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "already used") {
		t.Errorf("replayed callback: %d, want %d with the could-not-finish page\n%.500s", resp.StatusCode, http.StatusBadRequest, body)
	}
}

// A provider disabled, or an invitation revoked, while the user was at the provider: the
// way back shows its page and the refusal is audited.
func TestOIDCGoneMidFlowAudited(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	id := e.addProvider(t, e.providerForm(nil))
	inv, token, err := e.Store.CreateInvitation(t.Context(), e.In.ID, ownerID(t, e), "carla@example.com", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	b := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("sub-carla", "carla@example.com", true))
	back := e.authorize(t, b, "/invite/"+token.Reveal()+"/oidc/"+id)
	if err := e.Store.RevokeInvitation(t.Context(), e.In.ID, ownerID(t, e), inv.ID); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.callback(t, b, back); resp.StatusCode != http.StatusGone {
		t.Errorf("invitation revoked meanwhile: %d, want %d", resp.StatusCode, http.StatusGone)
	}

	e.Mock.QueueUser(mockUser("sub-carla", "carla@example.com", true))
	back = e.authorize(t, b, e.loginPath(id))
	if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, id)+"/disable", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	if resp, _ := e.callback(t, b, back); resp.StatusCode != http.StatusNotFound {
		t.Errorf("provider disabled meanwhile: %d, want %d", resp.StatusCode, http.StatusNotFound)
	}
	kinds := e.auditKinds(t)
	for _, reason := range []string{"invitation_gone", "provider_gone"} {
		if kinds[extension.AuditSignInRefused+":"+reason] != 1 {
			t.Errorf("refusals %s audited: %d, want 1 (%v)", reason, kinds[extension.AuditSignInRefused+":"+reason], kinds)
		}
	}
}

// The exists page names the way in the account with the address has: not a password it
// does not have, but the service it connected.
func TestOIDCExistsNamesTheWayIn(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	first := e.addProvider(t, e.providerForm(func(v url.Values) {
		v.Set("name", "Company Login")
		v.Set("auto_provision", "on")
		v.Set("allowed_domains", "example.com")
	}))
	second := e.addProvider(t, e.providerForm(func(v url.Values) { v.Set("name", "Second Login") }))
	b := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("sub-1", "carla@example.com", true))
	if resp, _ := e.callback(t, b, e.authorize(t, b, e.loginPath(first))); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("provisioning: %d", resp.StatusCode)
	}
	a := apptest.Browser(t)
	e.Mock.QueueUser(mockUser("sub-2", "carla@example.com", true))
	resp, body := e.callback(t, a, e.authorize(t, a, e.loginPath(second)))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Sign in with Company Login, then connect Second Login") ||
		strings.Contains(body, "password") {
		t.Errorf("exists page for an account without a password: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := e.get(t, e.Owner, http.MethodPost, frontend.ProviderPath(e.In.ID, first)+"/disable", url.Values{}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("disable: %d", resp.StatusCode)
	}
	e.Mock.QueueUser(mockUser("sub-2", "carla@example.com", true))
	resp, body = e.callback(t, a, e.authorize(t, a, e.loginPath(second)))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Ask an owner of the team") || strings.Contains(body, "password") {
		t.Errorf("exists page for an account with no way in: %d\n%s", resp.StatusCode, body)
	}
	// An account with a password is told to use it.
	owner, _ := e.Store.AccountByID(t.Context(), ownerID(t, e))
	e.invite(t, e.In, owner, "lena@example.com", "Lena", extension.RoleMember, lenaPassword)
	e.Mock.QueueUser(mockUser("sub-3", "lena@example.com", true))
	resp, body = e.callback(t, a, e.authorize(t, a, e.loginPath(second)))
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "Sign in with your password, then connect Second Login") {
		t.Errorf("exists page for an account with a password: %d\n%s", resp.StatusCode, body)
	}
}

// A discovery document that sends the token request to plain http elsewhere is refused at
// the form, with what to do, and nothing is saved.
func TestOIDCDiscoveryInsecureEndpointForm(t *testing.T) {
	e := newOIDCEnv(t, extension.SQLite)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"issuer":"` + srv.URL + `","authorization_endpoint":"` + srv.URL + `/a","token_endpoint":"http://10.0.0.1/t","jwks_uri":"` + srv.URL + `/k"}`))
	}))
	t.Cleanup(srv.Close)
	resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(func(v url.Values) { v.Set("issuer", srv.URL) }))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "do not start with https://") {
		t.Errorf("http token endpoint: %d, want 400 with the https problem", resp.StatusCode)
	}
	if ps, err := e.Store.OIDCProviders(t.Context(), e.In.ID); err != nil || len(ps) != 0 {
		t.Errorf("providers after a refused discovery: %d, %v", len(ps), err)
	}
}
