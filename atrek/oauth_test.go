package atrek_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// oauthSignIn is one call of the SignIn stub.
type oauthSignIn struct {
	InstanceID string
	UserID     string
	Token      mstudio.UserToken
}

// oauthEnv is the shared app (apptest) with the OAuth routes, whose SignIn records its
// calls. At the end of a test no page and no log line may carry a code, state or token it
// saw.
type oauthEnv struct {
	*apptest.App
	AppURL string
	Ada    mstudiotest.User // access to every context
	Otto   mstudiotest.User // access to none

	mu      sync.Mutex
	signIns []oauthSignIn
	secrets []string
	pages   []string
}

func oauthForEachDialect(t *testing.T, f func(t *testing.T, e *oauthEnv)) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { f(t, newOAuthEnv(t, d)) })
	}
}

func newOAuthEnv(t *testing.T, d extension.Dialect) *oauthEnv {
	t.Helper()
	app := apptest.New(t, apptest.Options{Dialect: d})
	e := &oauthEnv{App: app, Ada: app.User(t, "Ada Admin"), Otto: app.User(t, "Otto Outsider")}
	e.AppURL = app.URL(t)
	o, err := atrek.NewOAuth(atrek.OAuthConfig{
		Store: e.Store, Client: e.Client, ExtensionID: e.Sim.ExtensionID(), PublicURL: e.AppURL, Pages: app.Pages,
		SignIn: func(c echo.Context, in *extension.Instance, userID string, tok mstudio.UserToken) error {
			e.mu.Lock()
			e.signIns = append(e.signIns, oauthSignIn{in.ID, userID, tok})
			e.secrets = append(e.secrets, tok.Token.Reveal(), tok.RefreshToken.Reveal())
			e.mu.Unlock()
			return c.Redirect(http.StatusSeeOther, atrek.AppPath(in.ID))
		},
		Now: e.Clock.Now, Logger: e.Logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	app.Front.GET("/login/mstudio", o.Login, o.NoStore())
	app.Front.GET("/login/mstudio/callback", o.Callback, o.NoStore())
	app.Front.GET("/login/mstudio/choose", o.Choose, o.NoStore())
	t.Cleanup(func() { e.scan(t) })
	return e
}

// get fetches u (relative to the app) and remembers the app's pages for the scan.
func (e *oauthEnv) get(t *testing.T, b *http.Client, u string) (*http.Response, string) {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = e.AppURL + u
	}
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(u, e.AppURL+"/") {
		e.mu.Lock()
		e.pages = append(e.pages, string(body))
		e.mu.Unlock()
	}
	return resp, string(body)
}

// authorize starts a sign-in in the browser and lets the simulator consent for the user
// (query: extra authorize parameters); it returns the callback URL the platform
// redirects to, not yet visited.
func (e *oauthEnv) authorize(t *testing.T, b *http.Client, userID string, query ...string) string {
	t.Helper()
	resp, _ := e.get(t, b, "/login/mstudio")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("/login/mstudio: status %d, want 303", resp.StatusCode)
	}
	to := resp.Header.Get("Location") + "&user_id=" + url.QueryEscape(userID)
	for _, q := range query {
		to += "&" + q
	}
	resp, _ = e.get(t, b, to)
	cb := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(cb, e.AppURL+"/login/mstudio/callback?") {
		t.Fatalf("authorize: status %d, Location %q", resp.StatusCode, cb)
	}
	u, _ := url.Parse(cb)
	e.mu.Lock()
	e.secrets = append(e.secrets, u.Query().Get("code"), u.Query().Get("state"))
	e.mu.Unlock()
	return cb
}

func (e *oauthEnv) calls() []oauthSignIn {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]oauthSignIn(nil), e.signIns...)
}

// scan fails the test if a page or log line carries a code, state or token.
func (e *oauthEnv) scan(t *testing.T) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		if s == "" {
			continue
		}
		if strings.Contains(e.Logs.String(), s) {
			t.Errorf("the logs carry a secret %.6s…", s)
		}
		for _, p := range e.pages {
			if strings.Contains(p, s) {
				t.Errorf("a page carries a secret %.6s…: %s", s, p)
			}
		}
	}
}

// refused checks a refusal: the status, the words of the page, and no sign-in.
func (e *oauthEnv) refused(t *testing.T, resp *http.Response, body string, status int, words string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, words) {
		t.Errorf("status %d, page %q; want %d with %q", resp.StatusCode, body, status, words)
	}
	if n := len(e.calls()); n != 0 {
		t.Errorf("SignIn called %d times, want 0", n)
	}
}

// withQuery returns u with the query parameter set to v.
func withQuery(t *testing.T, u, k, v string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(k, v)
	p.RawQuery = q.Encode()
	return p.String()
}

func TestOAuthHappyPath(t *testing.T) {
	oauthForEachDialect(t, func(t *testing.T, e *oauthEnv) {
		in := e.Install(t, mstudiotest.InstanceSpec{})
		b := apptest.Browser(t)
		resp, _ := e.get(t, b, "/login/mstudio")
		ck := resp.Header.Get("Set-Cookie")
		for _, want := range []string{"ext_oauth=", "Path=/login/mstudio", "Max-Age=600", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(ck, want) {
				t.Errorf("pre-session cookie %q lacks %s", ck, want)
			}
		}
		if strings.Contains(ck, "Secure") {
			t.Errorf("pre-session cookie %q is Secure on http", ck)
		}
		auth, _ := url.Parse(resp.Header.Get("Location"))
		q := auth.Query()
		if auth.Path != "/v2/oauth2/authorize" || q.Get("client_id") != e.Sim.ExtensionID() ||
			q.Get("redirect_uri") != e.AppURL+"/login/mstudio/callback" || q.Get("code_challenge_method") != "S256" || len(q.Get("state")) != 43 {
			t.Errorf("authorize URL %s", auth)
		}

		cb := e.authorize(t, b, e.Ada.ID)
		resp, _ = e.get(t, b, cb)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != atrek.AppPath(in.ID) {
			t.Fatalf("callback: status %d, Location %q; want 303 to the app", resp.StatusCode, resp.Header.Get("Location"))
		}
		for k, want := range map[string]string{"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("the pre-session cookie was not deleted: %q", resp.Header.Get("Set-Cookie"))
		}
		calls := e.calls()
		if len(calls) != 1 || calls[0].InstanceID != in.ID || calls[0].UserID != e.Ada.ID {
			t.Fatalf("SignIn calls %+v, want one for %s in %s", calls, e.Ada.ID, in.ID)
		}
		if tok := calls[0].Token; tok.RefreshToken.IsZero() || !tok.ExpiresAt.After(time.Now()) {
			t.Errorf("token lacks a refresh token or expiry: %+v", tok)
		}
		u, err := e.Client.User(t.Context(), calls[0].Token.Token, "self")
		if err != nil || u.ID != e.Ada.ID {
			t.Errorf("the token does not work at /v2/users/self: %+v, %v", u, err)
		}
	})
}

func TestOAuthSecureCookie(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	o, err := atrek.NewOAuth(atrek.OAuthConfig{Store: e.Store, Client: e.Client, ExtensionID: e.Sim.ExtensionID(),
		PublicURL: "https://ext.example.test/", Pages: e.Pages, SignIn: func(echo.Context, *extension.Instance, string, mstudio.UserToken) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	app := httpfront.New(httpfront.Options{})
	app.GET("/login/mstudio", o.Login)
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/login/mstudio", nil))
	if ck := rec.Header().Get("Set-Cookie"); !strings.HasPrefix(ck, "__Secure-ext_oauth=") || !strings.Contains(ck, "; Secure") {
		t.Errorf("cookie %q, want __Secure-ext_oauth and Secure", ck)
	}
	loc, _ := url.Parse(rec.Header().Get("Location"))
	if got := loc.Query().Get("redirect_uri"); got != "https://ext.example.test/login/mstudio/callback" {
		t.Errorf("redirect_uri = %q", got)
	}
}

func TestOAuthStateMismatch(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	cb := e.authorize(t, b, e.Ada.ID)
	resp, body := e.get(t, b, withQuery(t, cb, "state", strings.Repeat("A", 43)))
	e.refused(t, resp, body, http.StatusBadRequest, "does not belong to the sign-in started in this browser")
	// The attempt is over: the right state does not work after a wrong one.
	resp, body = e.get(t, b, cb)
	e.refused(t, resp, body, http.StatusBadRequest, "The sign-in has expired")
}

// TestOAuthWrongVerifier: the first attempt's code and the second attempt's state and
// cookie pass our checks, but the cookie's verifier is not the one the code is bound to;
// the platform refuses it.
func TestOAuthWrongVerifier(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	first, _ := url.Parse(e.authorize(t, b, e.Ada.ID))
	second, _ := url.Parse(e.authorize(t, b, e.Ada.ID))
	resp, body := e.get(t, b, withQuery(t, second.String(), "code", first.Query().Get("code")))
	e.refused(t, resp, body, http.StatusBadRequest, "The control panel&#39;s answer was not complete.")
	if logs := e.logString(); !strings.Contains(logs, "code refused") || !strings.Contains(logs, "code_verifier does not match") {
		t.Errorf("the logs do not show the platform's refusal:\n%s", logs)
	}
}

func (e *oauthEnv) logString() string { return e.Logs.String() }

// TestOAuthReusedCode replays a callback complete with its pre-session cookie, as one
// who copied both would: the platform refuses the used code.
func TestOAuthReusedCode(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	cb := e.authorize(t, b, e.Ada.ID)
	appURL, _ := url.Parse(e.AppURL + "/login/mstudio")
	cookies := b.Jar.Cookies(appURL)
	if resp, _ := e.get(t, b, cb); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: status %d", resp.StatusCode)
	}
	replay := apptest.Browser(t)
	replay.Jar.SetCookies(appURL, cookies)
	resp, body := e.get(t, replay, cb)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The control panel&#39;s answer was not complete.") {
		t.Errorf("replay: status %d, page %q", resp.StatusCode, body)
	}
	if n := len(e.calls()); n != 1 {
		t.Errorf("SignIn called %d times, want 1", n)
	}
	if logs := e.logString(); !strings.Contains(logs, "already used") {
		t.Errorf("the logs do not show the platform's refusal:\n%s", logs)
	}
}

func TestOAuthPreSessionCookie(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cookie func(e *oauthEnv, b *http.Client) // changes the browser's cookie before the callback
	}{
		{"missing", func(e *oauthEnv, b *http.Client) { b.Jar, _ = cookiejar.New(nil) }},
		{"forged", func(e *oauthEnv, b *http.Client) {
			e.setCookie(b, "ext_oauth", "v1.x."+strings.Repeat("A", 80))
		}},
		{"sealed for another purpose", func(e *oauthEnv, b *http.Client) {
			sealed, _ := e.Store.Keys().Seal(`{"s":"x","v":"y","e":99999999999}`, "oauth-choice")
			e.setCookie(b, "ext_oauth", sealed)
		}},
		{"expired", func(e *oauthEnv, b *http.Client) { e.Clock.Advance(11 * time.Minute) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newOAuthEnv(t, extension.SQLite)
			e.Install(t, mstudiotest.InstanceSpec{})
			b := apptest.Browser(t)
			cb := e.authorize(t, b, e.Ada.ID)
			tc.cookie(e, b)
			resp, body := e.get(t, b, cb)
			e.refused(t, resp, body, http.StatusBadRequest, "The sign-in has expired")
		})
	}
}

func (e *oauthEnv) setCookie(b *http.Client, name, value string) {
	u, _ := url.Parse(e.AppURL + "/login/mstudio")
	b.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/login/mstudio"}})
}

func TestOAuthDenied(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	resp, body := e.get(t, b, e.authorize(t, b, e.Ada.ID, "grant_consent=false"))
	e.refused(t, resp, body, http.StatusForbidden, "The sign-in was cancelled")
}

func TestOAuthNoInstanceForUser(t *testing.T) {
	e := newOAuthEnv(t, extension.SQLite)
	e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	resp, body := e.get(t, b, e.authorize(t, b, e.Otto.ID))
	e.refused(t, resp, body, http.StatusForbidden, "None of your projects and organisations has this extension installed.")
}

func TestOAuthChooser(t *testing.T) {
	oauthForEachDialect(t, func(t *testing.T, e *oauthEnv) {
		first := e.Install(t, mstudiotest.InstanceSpec{})
		second := e.Install(t, mstudiotest.InstanceSpec{ContextKind: "customer"})
		disabled := e.Install(t, mstudiotest.InstanceSpec{})
		if _, err := e.Store.ApplyLifecycle(t.Context(), extension.LifecycleEvent{Kind: extension.EventUpdated, RequestID: uuid.NewString(),
			CreatedAt: e.Clock.Now().Add(time.Second), InstanceID: disabled.ID, ContextKind: disabled.ContextKind,
			ContextID: disabled.ContextID, Scopes: disabled.Scopes, Enabled: new(false)}); err != nil {
			t.Fatal(err)
		}
		if err := e.Store.SetContextName(t.Context(), first.ID, "Shop & Blog", e.Clock.Now()); err != nil {
			t.Fatal(err)
		}
		b := apptest.Browser(t)
		resp, body := e.get(t, b, e.authorize(t, b, e.Ada.ID))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("callback: status %d, page %q; want the chooser", resp.StatusCode, body)
		}
		for _, want := range []string{"Shop &amp; Blog", "An organisation whose name we do not know yet", "/login/mstudio/choose?instance=" + second.ID} {
			if !strings.Contains(body, want) {
				t.Errorf("chooser lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, disabled.ID) {
			t.Errorf("chooser offers the disabled instance")
		}
		if n := len(e.calls()); n != 0 {
			t.Fatalf("SignIn called before a choice")
		}

		// Without the choice cookie, a link is refused.
		resp, body = e.get(t, apptest.Browser(t), "/login/mstudio/choose?instance="+second.ID)
		e.refused(t, resp, body, http.StatusBadRequest, "The sign-in has expired")
		// A choice the user was not offered is refused.
		resp, body = e.get(t, b, "/login/mstudio/choose?instance="+disabled.ID)
		e.refused(t, resp, body, http.StatusForbidden, "not available")

		// A copy of the choice cookie, taken before the choice, as one who copied it would.
		appURL, _ := url.Parse(e.AppURL + "/login/mstudio/choose")
		copied := apptest.Browser(t)
		copied.Jar.SetCookies(appURL, b.Jar.Cookies(appURL))

		resp, _ = e.get(t, b, "/login/mstudio/choose?instance="+second.ID)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != atrek.AppPath(second.ID) {
			t.Fatalf("choose: status %d, want 303 to the app", resp.StatusCode)
		}
		calls := e.calls()
		if len(calls) != 1 || calls[0].InstanceID != second.ID || calls[0].UserID != e.Ada.ID {
			t.Fatalf("SignIn calls %+v, want one for %s in %s", calls, e.Ada.ID, second.ID)
		}
		if _, err := e.Client.User(t.Context(), calls[0].Token.Token, "self"); err != nil {
			t.Errorf("the token does not work: %v", err)
		}
		// The choice is spent.
		resp, _ = e.get(t, b, "/login/mstudio/choose?instance="+first.ID)
		if resp.StatusCode != http.StatusBadRequest || len(e.calls()) != 1 {
			t.Errorf("second choice: status %d, %d sign-ins; want 400 and 1", resp.StatusCode, len(e.calls()))
		}
		// The copied cookie is spent too: the choice is single use on the server's side.
		resp, body = e.get(t, copied, "/login/mstudio/choose?instance="+first.ID)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "The sign-in has expired") {
			t.Errorf("replayed choice cookie: %d\n%s", resp.StatusCode, body)
		}
		if n := len(e.calls()); n != 1 {
			t.Errorf("the copied choice cookie signed in again: %d sign-ins", n)
		}
	})
}
