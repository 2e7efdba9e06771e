package frontend_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/frontend"
)

// A custom provider's own endpoints and extra parameters, on both dialects against
// mockoidc behind a gateway of its own: the browser goes to the own authorization
// endpoint with the extra parameters, the code is redeemed and the userinfo read at the
// own endpoints, and the ID token is still checked against the issuer's discovery and
// keys. The form refuses them for other templates and refuses the sign-in's own
// parameters.
func TestOIDCCustomEndpoints(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newOIDCEnv(t, d)
			var tokens, userinfos atomic.Int32
			gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				target := map[string]string{"/token": e.Mock.TokenEndpoint(), "/userinfo": e.Mock.UserinfoEndpoint()}[r.URL.Path]
				if target == "" {
					http.NotFound(w, r)
					return
				}
				map[string]*atomic.Int32{"/token": &tokens, "/userinfo": &userinfos}[r.URL.Path].Add(1)
				req, _ := http.NewRequestWithContext(r.Context(), r.Method, target, r.Body)
				req.Header = r.Header.Clone()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				for k, v := range resp.Header {
					w.Header()[k] = v
				}
				w.WriteHeader(resp.StatusCode)
				_, _ = io.Copy(w, resp.Body)
			}))
			t.Cleanup(gateway.Close)

			for _, c := range []struct{ name, template, field, value, problem string }{
				{"endpoints of another template", "keycloak", "token_endpoint", gateway.URL + "/token", "only for the template"},
				{"state as an extra parameter", "custom", "extra_params", "hd=example.com&state=x", "not one the sign-in sets itself"},
				{"http endpoint off loopback", "custom", "authorization_endpoint", "http://sso.example.com/auth", "https://"},
			} {
				resp, body := e.get(t, e.Owner, http.MethodPost, frontend.ProvidersPath(e.In.ID), e.providerForm(func(v url.Values) {
					v.Set("template", c.template)
					v.Set(c.field, c.value)
				}))
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.problem) {
					t.Errorf("%s: %d, want 400 with %q\n%s", c.name, resp.StatusCode, c.problem, body)
				}
			}
			id := e.addProvider(t, e.providerForm(func(v url.Values) {
				v.Set("auto_provision", "on")
				v.Set("allowed_domains", "example.com")
				v.Set("authorization_endpoint", gateway.URL+"/authorize")
				v.Set("token_endpoint", gateway.URL+"/token")
				v.Set("userinfo_endpoint", gateway.URL+"/userinfo")
				v.Set("extra_params", "hd=example.com&access_type=offline")
			}))
			if _, body := e.get(t, e.Owner, http.MethodGet, frontend.ProviderPath(e.In.ID, id), nil); !strings.Contains(body, `value="access_type=offline&amp;hd=example.com"`) ||
				!strings.Contains(body, `value="`+gateway.URL+`/token"`) {
				t.Errorf("provider page does not show the own endpoints:\n%s", body)
			}

			b := apptest.Browser(t)
			e.Mock.QueueUser(mockUser("sub-custom", "custom@example.com", true))
			resp, body := e.get(t, b, http.MethodGet, e.loginPath(id), nil)
			at, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || at == nil || !strings.HasPrefix(at.String(), gateway.URL+"/authorize?") {
				t.Fatalf("start: %d to %q, want the own authorization endpoint\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			q := at.Query()
			if q.Get("hd") != "example.com" || q.Get("access_type") != "offline" || q.Get("state") == "" || q.Get("code_challenge_method") != "S256" {
				t.Errorf("authorization request: %s", at.RawQuery)
			}
			// The gateway's authorization endpoint is the provider's own login page.
			out, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(e.Mock.AuthorizationEndpoint() + "?" + at.RawQuery)
			if err != nil {
				t.Fatal(err)
			}
			out.Body.Close()
			back, _ := url.Parse(out.Header.Get("Location"))
			ours, _ := url.Parse(e.URL)
			back.Scheme, back.Host = ours.Scheme, ours.Host
			if resp, body := e.callback(t, b, back); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("callback: %d\n%s", resp.StatusCode, body)
			}
			// The token endpoint may be asked twice: oauth2 tries the client secret in the
			// header, then in the body.
			if tokens.Load() == 0 || userinfos.Load() != 1 {
				t.Errorf("own endpoints used: token %d, userinfo %d times, want at least 1 and 1", tokens.Load(), userinfos.Load())
			}
			if acc, _, err := e.Store.LocalCredentials(context.Background(), e.In.ID, "custom@example.com"); err != nil || acc.Role != extension.RoleMember {
				t.Errorf("account: %+v, %v", acc, err)
			}
			e.checkNoSecrets(t, []string{back.Query().Get("code")})
		})
	}
}
