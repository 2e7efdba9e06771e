package mstudio_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

const (
	oauthRedirectURI = "https://ext.example.test/login/mstudio/callback"
	oauthVerifier    = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
	oauthChallenge   = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
)

// oauthSim starts a simulator and returns it with a client of it.
func oauthSim(t *testing.T) (*mstudiotest.Server, *mstudio.Client) {
	t.Helper()
	p := apptest.NewPlatform(t, mstudiotest.Options{UserTokenTTL: time.Hour})
	return p.Sim, newClient(t, p.SimURL, mstudio.Options{})
}

// oauthCode asks the simulator's authorize endpoint, which consents at once for the
// user, for a code bound to the challenge.
func oauthCode(t *testing.T, sim *mstudiotest.Server, c *mstudio.Client, userID, challenge string) string {
	t.Helper()
	u := c.AuthorizeURL(mstudio.AuthorizeRequest{
		ClientID: sim.ExtensionID(), RedirectURI: oauthRedirectURI, Scope: "user:read project:read",
		State: "the-state", CodeChallenge: challenge,
	})
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(u + "&user_id=" + userID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := loc.Query().Get("state"); got != "the-state" {
		t.Errorf("state = %q, want the-state", got)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("authorize answered %s, want a code", loc)
	}
	return code
}

func TestPKCEChallenge(t *testing.T) {
	if got := mstudio.PKCEChallenge(oauthVerifier); got != oauthChallenge {
		t.Errorf("PKCEChallenge = %q, want %q", got, oauthChallenge)
	}
}

func TestAuthorizeURL(t *testing.T) {
	c := newTestClient(t, "https://api.example.test/base/")
	got, err := url.Parse(c.AuthorizeURL(mstudio.AuthorizeRequest{
		ClientID: "cid", RedirectURI: oauthRedirectURI, Scope: "user:read project:read", State: "st", CodeChallenge: oauthChallenge,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Scheme != "https" || got.Host != "api.example.test" || got.Path != "/base/v2/oauth2/authorize" {
		t.Errorf("endpoint = %s, want https://api.example.test/base/v2/oauth2/authorize", got)
	}
	want := map[string]string{
		"response_type": "code", "client_id": "cid", "redirect_uri": oauthRedirectURI, "scope": "user:read project:read",
		"state": "st", "code_challenge": oauthChallenge, "code_challenge_method": "S256",
	}
	for k, v := range want {
		if g := got.Query().Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
}

func TestExchangeAuthorizationCode(t *testing.T) {
	sim, c := oauthSim(t)
	before := time.Now()
	code := oauthCode(t, sim, c, testUserID, oauthChallenge)
	tok, err := c.ExchangeAuthorizationCode(t.Context(), code, oauthRedirectURI, oauthVerifier, sim.ExtensionID(), "")
	if err != nil {
		t.Fatalf("ExchangeAuthorizationCode: %v", err)
	}
	if tok.AccessToken.IsZero() || tok.RefreshToken.IsZero() {
		t.Errorf("access or refresh token empty")
	}
	if tok.Scope != "user:read project:read" {
		t.Errorf("Scope = %q, want user:read project:read", tok.Scope)
	}
	if lo, hi := before.Add(time.Hour-time.Minute), time.Now().Add(time.Hour); tok.ExpiresAt.Before(lo) || tok.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt = %v, want about an hour from now", tok.ExpiresAt)
	}
	u, err := c.User(t.Context(), tok.AccessToken, "self")
	if err != nil {
		t.Fatalf("the token does not work: %v", err)
	}
	if u.ID != testUserID {
		t.Errorf("user = %s, want %s", u.ID, testUserID)
	}
}

// TestExchangeAuthorizationCodeRefused: a reused code and a wrong verifier are the
// platform's invalid_grant, and the error text names neither code nor verifier.
func TestExchangeAuthorizationCodeRefused(t *testing.T) {
	sim, c := oauthSim(t)
	exchange := func(code, verifier string) error {
		_, err := c.ExchangeAuthorizationCode(t.Context(), code, oauthRedirectURI, verifier, sim.ExtensionID(), "")
		return err
	}
	used := oauthCode(t, sim, c, testUserID, oauthChallenge)
	if err := exchange(used, oauthVerifier); err != nil {
		t.Fatal(err)
	}
	otherVerifier := strings.Repeat("v", 43)
	for _, tc := range []struct{ name, code, verifier string }{
		{"reused code", used, oauthVerifier},
		{"wrong verifier", oauthCode(t, sim, c, testUserID, oauthChallenge), otherVerifier},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := exchange(tc.code, tc.verifier)
			var apiErr *mstudio.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Type != "invalid_grant" {
				t.Fatalf("err = %v, want a 400 invalid_grant", err)
			}
			if s := err.Error(); strings.Contains(s, tc.code) || strings.Contains(s, tc.verifier) {
				t.Errorf("error text %q carries the code or the verifier", s)
			}
		})
	}
}

// TestExchangeAuthorizationCodeRequest checks the request on the wire: a form body,
// client authentication by Basic with a secret, by client_id without; and that a
// failure is never retried once sent, since the code is single use.
func TestExchangeAuthorizationCodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		secret string
	}{{"public client", ""}, {"confidential client", "s3cr:et"}} {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
					t.Errorf("Content-Type = %q", ct)
				}
				if err := r.ParseForm(); err != nil {
					t.Error(err)
				}
				user, pass, basic := r.BasicAuth()
				if tc.secret == "" {
					if basic || r.PostForm.Get("client_id") != "cid" {
						t.Errorf("public client: basic %v, client_id %q; want no Basic, client_id cid", basic, r.PostForm.Get("client_id"))
					}
				} else if user != "cid" || pass != url.QueryEscape(tc.secret) || r.PostForm.Has("client_id") {
					t.Errorf("confidential client: Basic %q:%q, client_id in body %v", user, pass, r.PostForm.Has("client_id"))
				}
				for k, v := range map[string]string{"grant_type": "authorization_code", "code": "the-code", "redirect_uri": oauthRedirectURI, "code_verifier": oauthVerifier} {
					if g := r.PostForm.Get(k); g != v {
						t.Errorf("%s = %q, want %q", k, g, v)
					}
				}
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			c := newClient(t, srv.URL, mstudio.Options{})
			_, err := c.ExchangeAuthorizationCode(t.Context(), "the-code", oauthRedirectURI, oauthVerifier, "cid", extension.Secret(tc.secret))
			var apiErr *mstudio.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
				t.Errorf("err = %v, want the 503", err)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("%d requests, want 1: a sent code is never sent again", n)
			}
		})
	}
}
