package atrek_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// ssoEnv is the shared app (apptest: the simulator over HTTP, a store of one dialect, the
// real client, the production front with the frontend's pages and sessions, one fake
// clock) with the SSO routes. Every key, token and cookie value it sees is collected, and
// at the end of the test no log line and no page may contain one of them.
type ssoEnv struct {
	*apptest.App
	Clock    *extensiontest.Clock
	Handler  *atrek.Handler
	AppURL   string
	HTTP     *http.Client // a cookie jar; redirects are not followed
	Instance mstudiotest.Instance
	Ada      mstudiotest.User // access to every context
	Bob      mstudiotest.User // access to every context
	Otto     mstudiotest.User // access to none

	mu      sync.Mutex
	secrets []string
	pages   []string
}

// forEachDialect runs the test on SQLite and, when configured, on PostgreSQL.
func forEachDialect(t *testing.T, f func(t *testing.T, d extension.Dialect)) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { f(t, d) })
	}
}

func newSSOEnv(t *testing.T, d extension.Dialect, tune func(*atrek.Config)) *ssoEnv {
	t.Helper()
	return newSSOEnvWith(t, apptest.Options{Dialect: d}, tune)
}

// newSSOEnvWith is newSSOEnv on an app built with opts.
func newSSOEnvWith(t *testing.T, opts apptest.Options, tune func(*atrek.Config)) *ssoEnv {
	t.Helper()
	app := apptest.New(t, opts)
	e := &ssoEnv{App: app, Clock: app.Clock,
		Ada: app.User(t, "Ada Admin"), Bob: app.User(t, "Bob Builder"), Otto: app.User(t, "Otto Outsider")}
	cfg := atrek.Config{Store: e.Store, Client: e.Client, ExtensionID: e.Sim.ExtensionID(),
		Sessions: app.Pages.Sessions, Pages: app.Pages, Logger: e.Logger, Now: e.Clock.Now}
	if tune != nil {
		tune(&cfg)
	}
	var err error
	if e.Handler, err = atrek.New(cfg); err != nil {
		t.Fatal(err)
	}
	registerSSO(app, e.Handler)
	e.AppURL = app.URL(t)
	e.HTTP = apptest.Browser(t)
	e.Instance = e.Install(t, mstudiotest.InstanceSpec{})
	t.Cleanup(func() { e.scan(t) })
	return e
}

// registerSSO registers the routes of the click-through as cmd's route table does.
func registerSSO(app *apptest.App, h *atrek.Handler) {
	p := app.Pages
	app.Front.GET("/mstudio/sso", h.Entry)
	app.Front.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	app.Front.GET("/app/:instanceId/login", p.Login)
	app.Front.POST("/logout", p.Logout, p.SameOrigin())
	app.Front.GET("/signed-out", p.SignedOut)
}

// appPath is the env's instance's dashboard.
func (e *ssoEnv) appPath() string { return atrek.AppPath(e.Instance.ID) }

// cookieName is the session cookie of the env's instance (http public URL).
func (e *ssoEnv) cookieName() string { return "ext_s_" + strings.ReplaceAll(e.Instance.ID, "-", "") }

// newBrowser is a fresh browser: its own cookie jar, redirects shown, not followed.
func (e *ssoEnv) newBrowser(t testing.TB) *http.Client { return apptest.Browser(t) }

// key mints a retrieval key at the simulator, as the control panel does on a click.
func (e *ssoEnv) key(t testing.TB, instanceID, userID string) string {
	t.Helper()
	k, err := e.Sim.NewRetrievalKey(instanceID, userID)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(k)
	return k
}

func (e *ssoEnv) remember(secrets ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range secrets {
		if s != "" {
			e.secrets = append(e.secrets, s)
		}
	}
}

// ssoPath is the click-through URL the control panel builds from our template.
func ssoPath(key, userID, instanceID string) string {
	q := url.Values{"atrek": {key}, "userId": {userID}, "instanceId": {instanceID}}
	return "/mstudio/sso?" + q.Encode()
}

// do sends a request with the browser and returns the answer with its body read.
func (e *ssoEnv) do(t testing.TB, browser *http.Client, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.AppURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range resp.Cookies() {
		e.remember(ck.Value)
	}
	e.mu.Lock()
	e.pages = append(e.pages, string(body))
	e.mu.Unlock()
	return resp, string(body)
}

func (e *ssoEnv) get(t testing.TB, browser *http.Client, path string) (*http.Response, string) {
	t.Helper()
	return e.do(t, browser, http.MethodGet, path, nil)
}

// signIn clicks through as the user with a fresh key and expects to land signed in.
func (e *ssoEnv) signIn(t testing.TB, browser *http.Client, user mstudiotest.User) *http.Response {
	t.Helper()
	resp, body := e.get(t, browser, ssoPath(e.key(t, e.Instance.ID, user.ID), user.ID, e.Instance.ID))
	if want := atrek.AppPath(e.Instance.ID); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Fatalf("sign-in of %s: %d %q, want 303 to %s\n%s", user.Name, resp.StatusCode, resp.Header.Get("Location"), want, body)
	}
	tok, err := e.Store.UserToken(context.Background(), user.ID, e.Instance.ID)
	if err != nil {
		t.Fatalf("token of %s after sign-in: %v", user.Name, err)
	}
	e.remember(tok.Token.Reveal(), tok.Refresh.Reveal())
	return resp
}

// hitCount returns how often the simulator saw the route.
func (e *ssoEnv) hitCount(route string) int { return e.SimHits(route) }

// sessionCookie returns the browser's session cookie of the env's instance, if any.
func (e *ssoEnv) sessionCookie(browser *http.Client) (string, bool) {
	u, _ := url.Parse(e.AppURL)
	for _, ck := range browser.Jar.Cookies(u) {
		if ck.Name == e.cookieName() {
			return ck.Value, true
		}
	}
	return "", false
}

// scan fails the test if a key, token or cookie value reached a log line or a page.
func (e *ssoEnv) scan(t testing.TB) {
	logs := e.Logs.String()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%d chars) appears in the log", len(s))
		}
		for _, p := range e.pages {
			if strings.Contains(p, s) {
				t.Errorf("a secret (%d chars) appears in a page", len(s))
			}
		}
	}
}

const routeRedeem = "POST /v2/authenticate-token-retrieval-key"

func wantPage(t testing.TB, resp *http.Response, body string, status int, words string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(body, words) {
		t.Fatalf("answer %d, want %d with %q:\n%s", resp.StatusCode, status, words, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want an HTML page", ct)
	}
}
