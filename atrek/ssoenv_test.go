package atrek_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/labstack/echo/v4"
)

// syncBuffer collects log output written concurrently.
type syncBuffer = extensiontest.LogBuffer

// ssoEnv is the simulator over HTTP, a store of one dialect, the real client and the
// Echo app with the SSO routes behind an httptest server, all on one fake clock. Every
// key, token and cookie value it sees is collected, and at the end of the test no log
// line and no page may contain one of them.
type ssoEnv struct {
	*installer
	Sim      *mstudiotest.Server
	Store    *extension.Store
	Client   *mstudio.Client
	Clock    *clock
	Handler  *atrek.Handler
	App      *httptest.Server
	HTTP     *http.Client // a cookie jar; redirects are not followed
	Instance mstudiotest.Instance
	Ada      mstudiotest.User // access to every context
	Bob      mstudiotest.User // access to every context
	Otto     mstudiotest.User // access to none
	Logs     *syncBuffer

	mu      sync.Mutex
	hits    map[string]int // simulator requests by route
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
	e := &ssoEnv{Clock: &clock{t: time.Now().Truncate(time.Second)}, hits: map[string]int{}, Logs: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(e.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sim, err := mstudiotest.New(mstudiotest.Options{Now: e.Clock.Now, SecretActivationDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	e.Sim = sim
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.hits[r.Method+" "+r.URL.Path]++
		e.mu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	e.Store = extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: e.Clock.Now, Logger: logger})
	e.installer = &installer{sim: e.Sim, store: e.Store, now: e.Clock.Now}
	e.Client, err = mstudio.New(simSrv.URL, mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 5 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range sim.Users() {
		switch u.Name {
		case "Ada Admin":
			e.Ada = u
		case "Bob Builder":
			e.Bob = u
		case "Otto Outsider":
			e.Otto = u
		}
	}
	cfg := atrek.Config{Store: e.Store, Client: e.Client, ExtensionID: sim.ExtensionID(),
		PublicURL: "http://127.0.0.1:8080", Logger: logger, Now: e.Clock.Now}
	if tune != nil {
		tune(&cfg)
	}
	if e.Handler, err = atrek.New(cfg); err != nil {
		t.Fatal(err)
	}
	app := echo.New()
	app.IPExtractor = echo.ExtractIPDirect() // as cmd wires it without trusted proxies
	e.Handler.Routes(app)
	e.App = httptest.NewServer(app)
	t.Cleanup(e.App.Close)
	e.HTTP = e.newBrowser(t)
	e.Instance = e.install(t, mstudiotest.InstanceSpec{})
	t.Cleanup(func() { e.scan(t) })
	return e
}

// newBrowser is a fresh browser: its own cookie jar, redirects shown, not followed.
func (e *ssoEnv) newBrowser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

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
	req, err := http.NewRequest(method, e.App.URL+path, nil)
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
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app" {
		t.Fatalf("sign-in of %s: %d %q, want 303 to /app\n%s", user.Name, resp.StatusCode, resp.Header.Get("Location"), body)
	}
	tok, err := e.Store.UserToken(context.Background(), user.ID, e.Instance.ID)
	if err != nil {
		t.Fatalf("token of %s after sign-in: %v", user.Name, err)
	}
	e.remember(tok.Token.Reveal(), tok.Refresh.Reveal())
	return resp
}

// hitCount returns how often the simulator saw the route.
func (e *ssoEnv) hitCount(route string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hits[route]
}

func (e *ssoEnv) platformCalls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.hits {
		n += c
	}
	return n
}

// sessionCookie returns the browser's session cookie for the app, if any.
func (e *ssoEnv) sessionCookie(browser *http.Client) (string, bool) {
	u, _ := url.Parse(e.App.URL)
	for _, ck := range browser.Jar.Cookies(u) {
		if ck.Name == "ext_session" {
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
