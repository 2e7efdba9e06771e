package mstudiotest

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const ssoRedirectURI = "http://localhost:8765/callback?from=mstudio"

// ssoPKCE returns a code verifier and its S256 challenge.
func ssoPKCE() (verifier, challenge string) {
	verifier = randomToken(64)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// ssoAuthorizeParams are the query parameters of a good authorization request.
func ssoAuthorizeParams(sim *Server, challenge string) url.Values {
	return url.Values{
		"response_type": {"code"}, "client_id": {sim.ExtensionID()}, "redirect_uri": {ssoRedirectURI},
		"scope": {"user:read project:read"}, "state": {"xyz 123"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
}

// ssoAuthorize sends an authorization request and returns the answer without
// following its redirect.
func ssoAuthorize(t *testing.T, base string, q url.Values, header map[string]string) ssoResponse {
	t.Helper()
	req, err := http.NewRequest("GET", base+"/v2/oauth2/authorize?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return ssoSend(t, c, req)
}

// ssoRedirected checks that r redirects to ssoRedirectURI and returns the query it adds.
func ssoRedirected(t *testing.T, r ssoResponse) url.Values {
	t.Helper()
	if r.status != http.StatusFound {
		t.Fatalf("status = %d, want 302 (body %s)", r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "http://localhost:8765/callback" {
		t.Errorf("redirected to %s, want the redirect URI", got)
	}
	q := loc.Query()
	if q.Get("from") != "mstudio" {
		t.Errorf("the redirect URI's own query was lost: %s", loc.RawQuery)
	}
	return q
}

// ssoCode runs the authorization request and returns the code and the verifier.
func ssoCode(t *testing.T, sim *Server, base string) (code, verifier string) {
	t.Helper()
	verifier, challenge := ssoPKCE()
	q := ssoRedirected(t, ssoAuthorize(t, base, ssoAuthorizeParams(sim, challenge), nil))
	if q.Get("code") == "" || q.Get("state") != "xyz 123" {
		t.Fatalf("redirect query %v, want a code and the state", q)
	}
	return q.Get("code"), verifier
}

// ssoTokenRequest posts a form to the token endpoint, with HTTP Basic when basicUser
// is set.
func ssoTokenRequest(t *testing.T, base string, form url.Values, basicUser string) ssoResponse {
	t.Helper()
	req, err := http.NewRequest("POST", base+"/v2/oauth2/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, "")
	}
	return ssoSend(t, http.DefaultClient, req)
}

// ssoTokens is the token endpoint's answer.
type ssoTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
}

// ssoCheckOAuthError reports a failure unless r is RFC 6749's error body.
func ssoCheckOAuthError(t *testing.T, r ssoResponse, status int, code string) {
	t.Helper()
	var got struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
		return
	}
	ssoDecode(t, r, status, &got)
	if got.Error != code || got.Description == "" {
		t.Errorf("body = %s, want error %q with a description", r.body, code)
	}
}

// ssoWhoAmI returns the user a user's own token stands for, by asking for a
// retrieval key, whose answer names the user.
func ssoWhoAmI(t *testing.T, sim *Server, base, token string) string {
	t.Helper()
	in := ssoInstance(t, sim, InstanceSpec{}, false)
	var got struct {
		UserID string `json:"userId"`
	}
	ssoDecode(t, ssoDo(t, "POST", base+"/v2/extension-instances/"+in.ID+"/actions/create-access-token-retrieval-key", ssoToken(token), nil), 200, &got)
	return got.UserID
}

func TestOAuthCodeFlow(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{UserTokenTTL: 15 * time.Minute})
	ada := ssoUser(t, sim, true)
	in := ssoInstance(t, sim, InstanceSpec{}, false)
	tests := []struct {
		name      string
		basicUser string
		bodyID    bool
	}{
		{"client_id in the body", "", true},
		{"client_id by HTTP Basic", sim.ExtensionID(), false},
		{"both, the same", sim.ExtensionID(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier := ssoCode(t, sim, base)
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {ssoRedirectURI}, "code_verifier": {verifier}}
			if tt.bodyID {
				form.Set("client_id", sim.ExtensionID())
			}
			r := ssoTokenRequest(t, base, form, tt.basicUser)
			var got ssoTokens
			ssoDecode(t, r, 200, &got)
			if got.AccessToken == "" || got.RefreshToken == "" {
				t.Fatalf("answer %s lacks a token", r.body)
			}
			want := ssoTokens{AccessToken: got.AccessToken, RefreshToken: got.RefreshToken, TokenType: "bearer", ExpiresIn: 900, Scope: "user:read project:read"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("token answer (-want +got):\n%s", diff)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			// A user token, bound to no instance: it acts as the consenting user.
			if r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, map[string]string{"Authorization": "Bearer " + got.AccessToken}, nil); r.status != 200 {
				t.Errorf("read project: status %d, want 200 (body %s)", r.status, r.body)
			}
			if id := ssoWhoAmI(t, sim, base, got.AccessToken); id != ada.ID {
				t.Errorf("token stands for %s, want the first user with access %s", id, ada.ID)
			}
		})
	}
}

func TestOAuthTokenRefused(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{})
	in := ssoInstance(t, sim, InstanceSpec{}, false)
	good := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {ssoRedirectURI}, "code_verifier": {verifier}, "client_id": {sim.ExtensionID()}}
	}
	tests := []struct {
		name       string
		change     func(url.Values)
		basicUser  string
		wantStatus int
		wantError  string
	}{
		{"wrong verifier", func(f url.Values) { v, _ := ssoPKCE(); f.Set("code_verifier", v) }, "", 400, "invalid_grant"},
		{"missing verifier", func(f url.Values) { f.Del("code_verifier") }, "", 400, "invalid_grant"},
		{"the challenge as verifier", func(f url.Values) { _, c := ssoPKCE(); f.Set("code_verifier", c) }, "", 400, "invalid_grant"},
		{"redirect URI with a trailing slash", func(f url.Values) { f.Set("redirect_uri", "http://localhost:8765/callback/?from=mstudio") }, "", 400, "invalid_grant"},
		{"redirect URI without its query", func(f url.Values) { f.Set("redirect_uri", "http://localhost:8765/callback") }, "", 400, "invalid_grant"},
		{"missing redirect URI", func(f url.Values) { f.Del("redirect_uri") }, "", 400, "invalid_request"},
		{"unknown code", func(f url.Values) { f.Set("code", "not-a-code") }, "", 400, "invalid_grant"},
		{"unknown client", func(f url.Values) { f.Set("client_id", "0b5d2c1e-0000-4000-8000-000000000000") }, "", 400, "invalid_client"},
		{"no client", func(f url.Values) { f.Del("client_id") }, "", 400, "invalid_client"},
		{"unknown client by Basic", func(f url.Values) { f.Del("client_id") }, "someone-else", 401, "invalid_client"},
		{"grant type password", func(f url.Values) { f.Set("grant_type", "password") }, "", 400, "unsupported_grant_type"},
		{"repeated parameter", func(f url.Values) { f.Add("code", "again") }, "", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, verifier := ssoCode(t, sim, base)
			form := good(code, verifier)
			tt.change(form)
			ssoCheckOAuthError(t, ssoTokenRequest(t, base, form, tt.basicUser), tt.wantStatus, tt.wantError)
		})
	}

	t.Run("a failed attempt uses the code up", func(t *testing.T) {
		code, verifier := ssoCode(t, sim, base)
		form := good(code, verifier)
		form.Set("redirect_uri", "http://localhost:8765/other")
		ssoCheckOAuthError(t, ssoTokenRequest(t, base, form, ""), 400, "invalid_grant")
		ssoCheckOAuthError(t, ssoTokenRequest(t, base, good(code, verifier), ""), 400, "invalid_grant")
	})
	t.Run("reused code revokes what it gave", func(t *testing.T) {
		code, verifier := ssoCode(t, sim, base)
		var first ssoTokens
		ssoDecode(t, ssoTokenRequest(t, base, good(code, verifier), ""), 200, &first)
		ssoCheckOAuthError(t, ssoTokenRequest(t, base, good(code, verifier), ""), 400, "invalid_grant")
		if r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, ssoToken(first.AccessToken), nil); r.status != 401 {
			t.Errorf("access token after the replay: status %d, want 401", r.status)
		}
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}, "client_id": {sim.ExtensionID()}}
		ssoCheckOAuthError(t, ssoTokenRequest(t, base, refresh, ""), 400, "invalid_grant")
	})
	t.Run("expired code", func(t *testing.T) {
		code, verifier := ssoCode(t, sim, base)
		clock.Advance(60 * time.Second)
		ssoCheckOAuthError(t, ssoTokenRequest(t, base, good(code, verifier), ""), 400, "invalid_grant")
	})
	t.Run("JSON body", func(t *testing.T) {
		code, verifier := ssoCode(t, sim, base)
		r := ssoDo(t, "POST", base+"/v2/oauth2/token", nil, map[string]string{"grant_type": "authorization_code", "code": code, "code_verifier": verifier})
		ssoCheckOAuthError(t, r, 400, "invalid_request")
	})
}

func TestOAuthAuthorizeRefused(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{})
	_, challenge := ssoPKCE()
	_, otherChallenge := ssoPKCE()
	tests := []struct {
		name      string
		change    func(url.Values)
		redirects bool // the error goes back to the client; otherwise it is shown
		wantError string
	}{
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, true, "invalid_request"},
		{"no method (means plain)", func(q url.Values) { q.Del("code_challenge_method") }, true, "invalid_request"},
		{"no challenge", func(q url.Values) { q.Del("code_challenge") }, true, "invalid_request"},
		{"challenge not a SHA-256", func(q url.Values) { q.Set("code_challenge", otherChallenge[:40]) }, true, "invalid_request"},
		{"response type token", func(q url.Values) { q.Set("response_type", "token") }, true, "unsupported_response_type"},
		{"malformed scope", func(q url.Values) { q.Set("scope", "everything") }, true, "invalid_scope"},
		{"consent refused", func(q url.Values) { q.Set("grant_consent", "false") }, true, "access_denied"},
		{"unknown test user", func(q url.Values) { q.Set("user_id", "0b5d2c1e-0000-4000-8000-000000000000") }, true, "access_denied"},
		{"unknown client", func(q url.Values) { q.Set("client_id", "0b5d2c1e-0000-4000-8000-000000000000") }, false, "invalid_request"},
		{"no redirect URI", func(q url.Values) { q.Del("redirect_uri") }, false, "invalid_request"},
		{"relative redirect URI", func(q url.Values) { q.Set("redirect_uri", "/callback") }, false, "invalid_request"},
		{"redirect URI with a fragment", func(q url.Values) { q.Set("redirect_uri", ssoRedirectURI+"#top") }, false, "invalid_request"},
		{"redirect URI not http", func(q url.Values) { q.Set("redirect_uri", "javascript://localhost/alert(1)") }, false, "invalid_request"},
		{"repeated redirect URI", func(q url.Values) { q.Add("redirect_uri", "http://evil.example/") }, false, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := ssoAuthorizeParams(sim, challenge)
			tt.change(q)
			r := ssoAuthorize(t, base, q, nil)
			if !tt.redirects {
				ssoCheckOAuthError(t, r, 400, tt.wantError)
				return
			}
			got := ssoRedirected(t, r)
			if got.Get("error") != tt.wantError || got.Get("error_description") == "" || got.Get("code") != "" {
				t.Errorf("redirect query %v, want error %q with a description and no code", got, tt.wantError)
			}
			if got.Get("state") != "xyz 123" {
				t.Errorf("state = %q, want it back", got.Get("state"))
			}
		})
	}
}

func TestOAuthConsentingUser(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{})
	ada, otto := ssoUser(t, sim, true), ssoUser(t, sim, false)
	bob := sim.Users()[1]
	tests := []struct {
		name   string
		query  map[string]string
		header map[string]string
		want   string
	}{
		{"nobody named: first user with access", nil, nil, ada.ID},
		{"user_id", map[string]string{"user_id": bob.ID}, nil, bob.ID},
		{"login_hint e-mail", map[string]string{"login_hint": strings.ToUpper(otto.Email)}, nil, otto.ID},
		{"the request's own token wins", map[string]string{"user_id": ada.ID}, ssoToken(bob.Token), bob.ID},
		{"the x-access-token cookie", nil, map[string]string{"Cookie": "x-access-token=" + otto.Token}, otto.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifier, challenge := ssoPKCE()
			q := ssoAuthorizeParams(sim, challenge)
			for k, v := range tt.query {
				q.Set(k, v)
			}
			code := ssoRedirected(t, ssoAuthorize(t, base, q, tt.header)).Get("code")
			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {ssoRedirectURI}, "code_verifier": {verifier}, "client_id": {sim.ExtensionID()}}
			var got ssoTokens
			ssoDecode(t, ssoTokenRequest(t, base, form, ""), 200, &got)
			g, ok := sim.authenticate(&http.Request{Header: http.Header{"X-Access-Token": {got.AccessToken}}})
			if !ok || g.userID != tt.want || g.instanceID != "" {
				t.Errorf("token stands for user %q instance %q, want user %s and no instance", g.userID, g.instanceID, tt.want)
			}
		})
	}
	t.Run("an instance-bound token cannot consent", func(t *testing.T) {
		in := ssoInstance(t, sim, InstanceSpec{}, false)
		bound, _ := sim.issueToken(grant{userID: ada.ID, instanceID: in.ID, scopes: in.Scopes}, time.Hour)
		_, challenge := ssoPKCE()
		got := ssoRedirected(t, ssoAuthorize(t, base, ssoAuthorizeParams(sim, challenge), ssoToken(bound)))
		if got.Get("error") != "access_denied" {
			t.Errorf("redirect query %v, want access_denied", got)
		}
	})
}

func TestOAuthRefreshRotates(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{})
	in := ssoInstance(t, sim, InstanceSpec{}, false)
	code, verifier := ssoCode(t, sim, base)
	var first ssoTokens
	ssoDecode(t, ssoTokenRequest(t, base, url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {ssoRedirectURI}, "code_verifier": {verifier}, "client_id": {sim.ExtensionID()},
	}, ""), 200, &first)
	refresh := func(token, scope string) ssoResponse {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}, "client_id": {sim.ExtensionID()}}
		if scope != "" {
			f.Set("scope", scope)
		}
		return ssoTokenRequest(t, base, f, "")
	}

	// Asking for more than was granted fails and leaves the refresh token usable.
	ssoCheckOAuthError(t, refresh(first.RefreshToken, "project:read project:write"), 400, "invalid_scope")
	var second, third ssoTokens
	ssoDecode(t, refresh(first.RefreshToken, ""), 200, &second)
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Errorf("a refresh must give a new access token and a new refresh token")
	}
	if second.Scope != "user:read project:read" {
		t.Errorf("scope = %q, want the scopes first granted", second.Scope)
	}
	ssoCheckOAuthError(t, refresh(first.RefreshToken, ""), 400, "invalid_grant")
	ssoDecode(t, refresh(second.RefreshToken, "project:read"), 200, &third)
	if third.Scope != "project:read" {
		t.Errorf("scope = %q, want the narrowed project:read", third.Scope)
	}
	if r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, ssoToken(third.AccessToken), nil); r.status != 200 {
		t.Errorf("refreshed token reads a project: status %d, want 200 (body %s)", r.status, r.body)
	}

	// The two kinds of refresh token do not mix.
	r := ssoDo(t, "PUT", base+"/v2/users/self/sessions", nil, map[string]string{"refreshToken": third.RefreshToken})
	ssoCheckError(t, r, 400, "InvalidRefreshToken")
	ada := ssoUser(t, sim, true)
	var session ssoSession
	ssoDecode(t, ssoRedeem(t, base, ssoNewKey(t, sim, in.ID, ada.ID), ada.ID), 200, &session)
	ssoCheckOAuthError(t, refresh(session.RefreshToken, ""), 400, "invalid_grant")
	// Neither refusal used the other kind's token up.
	ssoDecode(t, refresh(third.RefreshToken, ""), 200, &ssoTokens{})
	ssoDecode(t, ssoDo(t, "PUT", base+"/v2/users/self/sessions", nil, map[string]string{"refreshToken": session.RefreshToken}), 200, &ssoSession{})
}
