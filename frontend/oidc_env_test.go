package frontend_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/oauth2-proxy/mockoidc"
)

// oidcEnv is the pages with every route of sign-in with providers as cmd's table
// registers them, an installed instance whose owner is signed in (in Owner), and a real
// OpenID Connect provider in-process (mockoidc).
type oidcEnv struct {
	*pagesEnv
	In    mstudiotest.Instance
	Owner *http.Client
	Mock  *mockoidc.MockOIDC
	// pages are every body the test saw, to check none holds a secret.
	pages []string
}

func newOIDCEnv(t *testing.T, d extension.Dialect) *oidcEnv {
	t.Helper()
	e := newPagesEnvWith(t, d, func(app *apptest.App) {
		p := app.Pages
		app.Front.GET("/app/:instanceId/login/oidc/:providerId", p.StartOIDC)
		app.Front.GET("/login/oidc/callback", p.OIDCCallback)
		app.Front.GET("/app/:instanceId/account", p.Account, p.RequireSession())
		app.Front.GET("/app/:instanceId/account/identities/connect/:providerId", p.ConnectOIDC, p.RequireSession())
		app.Front.POST("/app/:instanceId/account/identities/:identityId/remove", p.DisconnectIdentity, p.SameOrigin(), p.RequireSession())
		app.Front.GET("/app/:instanceId/settings/sign-in", p.SignInSettings, p.RequireSession())
		app.Front.POST("/app/:instanceId/settings/sign-in/providers", p.AddProvider, p.SameOrigin(), p.RequireSession())
		app.Front.GET("/app/:instanceId/settings/sign-in/providers/new", p.NewProvider, p.RequireSession())
		app.Front.GET("/app/:instanceId/settings/sign-in/providers/:providerId", p.EditProvider, p.RequireSession())
		app.Front.POST("/app/:instanceId/settings/sign-in/providers/:providerId", p.SaveProvider, p.SameOrigin(), p.RequireSession())
		app.Front.POST("/app/:instanceId/settings/sign-in/providers/:providerId/disable", p.ProviderAction("disable"), p.SameOrigin(), p.RequireSession())
		app.Front.POST("/app/:instanceId/settings/sign-in/providers/:providerId/enable", p.ProviderAction("enable"), p.SameOrigin(), p.RequireSession())
		app.Front.POST("/app/:instanceId/settings/sign-in/providers/:providerId/delete", p.ProviderAction("delete"), p.SameOrigin(), p.RequireSession())
		app.Front.GET("/app/:instanceId/audit", p.Audit, p.RequireSession())
		app.Front.GET("/invite/:token", p.Invitation)
		app.Front.GET("/invite/:token/oidc/:providerId", p.InviteOIDC)
	})
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	oe := &oidcEnv{pagesEnv: e, Mock: m, In: e.Install(t, mstudiotest.InstanceSpec{}), Owner: apptest.Browser(t)}
	e.signIn(t, oe.Owner, oe.In, e.User(t, "Ada Admin"))
	return oe
}

// providerForm is the add form with the mock's values; change adjusts it.
func (e *oidcEnv) providerForm(change func(url.Values)) url.Values {
	v := url.Values{"template": {"custom"}, "name": {"Mock IdP"}, "issuer": {e.Mock.Issuer()}, "client_id": {e.Mock.ClientID},
		"client_secret": {e.Mock.ClientSecret}, "scopes": {"openid email profile groups"}, "default_role": {"member"}}
	if change != nil {
		change(v)
	}
	return v
}

// addProvider adds a provider through the settings form and returns its id.
func (e *oidcEnv) addProvider(t *testing.T, form url.Values) string {
	t.Helper()
	resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("add provider: %d\n%s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	id := loc.Query().Get("provider_saved")
	if id == "" {
		t.Fatalf("add provider: redirected to %s", loc)
	}
	return id
}

// get does a request like pagesEnv.do (same origin for a POST) and keeps the body.
func (e *oidcEnv) get(t *testing.T, b *http.Client, method, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	var h http.Header
	if method == http.MethodPost || strings.Contains(path, "/identities/connect/") {
		h = sameOrigin // a form, or the account page's connect link
	}
	resp, body := e.do(t, b, method, path, h, form)
	e.pages = append(e.pages, body)
	return resp, body
}

// authorize starts a sign-in at start (a path of ours) and follows it to the provider,
// which signs in the user queued there; it returns the callback URL the provider sends
// the browser back to (on our test server).
func (e *oidcEnv) authorize(t *testing.T, b *http.Client, start string) *url.URL {
	t.Helper()
	resp, body := e.get(t, b, http.MethodGet, start, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("start %s: %d\n%s", start, resp.StatusCode, body)
	}
	at := resp.Header.Get("Location")
	if !strings.HasPrefix(at, e.Mock.AuthorizationEndpoint()+"?") {
		t.Fatalf("start went to %s, want the provider", at)
	}
	q, _ := url.Parse(at)
	for k, want := range map[string]string{"code_challenge_method": "S256", "response_type": "code",
		"redirect_uri": apptest.PublicURL + "/login/oidc/callback"} {
		if got := q.Query().Get(k); got != want {
			t.Errorf("authorization request %s = %q, want %q", k, got, want)
		}
	}
	if q.Query().Get("nonce") == "" || q.Query().Get("state") == "" || q.Query().Get("code_challenge") == "" {
		t.Errorf("authorization request without nonce, state or challenge: %s", q.RawQuery)
	}
	out, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(at)
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	back, err := url.Parse(out.Header.Get("Location"))
	if err != nil || out.StatusCode != http.StatusFound {
		t.Fatalf("provider answered %d to %q", out.StatusCode, out.Header.Get("Location"))
	}
	ours, _ := url.Parse(e.URL)
	back.Scheme, back.Host = ours.Scheme, ours.Host
	return back
}

// callback brings the browser back with the provider's answer.
func (e *oidcEnv) callback(t *testing.T, b *http.Client, back *url.URL) (*http.Response, string) {
	t.Helper()
	return e.get(t, b, http.MethodGet, back.RequestURI(), nil)
}

func (e *oidcEnv) loginPath(providerID string) string {
	return frontend.LoginPath(e.In.ID) + "/oidc/" + providerID
}

// auditKinds counts the instance's audit events by kind.
func (e *oidcEnv) auditKinds(t *testing.T) map[string]int {
	t.Helper()
	evs, _, err := e.Store.AuditEvents(context.Background(), e.In.ID, extension.AuditFilter{}, extension.AuditPage{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, ev := range evs {
		out[ev.Kind]++
		if ev.Kind == extension.AuditSignInRefused {
			out[ev.Kind+":"+ev.Detail["reason"]]++
		}
	}
	return out
}

// proxyIssuer is a server that serves the mock's discovery document under its own
// address, claiming to be the issuer: the mock's tokens then carry another issuer than
// the provider's, as a mix-up attack's would.
func proxyIssuer(t *testing.T, m *mockoidc.MockOIDC) string {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(m.DiscoveryEndpoint())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var doc map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		doc["issuer"] = srv.URL
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
