package frontend_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// pagesEnv is the shared app with the frontend's routes as cmd's table registers them, and
// a test-only route that signs a platform user in to an instance through Sessions.Start,
// as the single sign-on does.
type pagesEnv struct {
	*apptest.App
	URL string
}

func newPagesEnv(t *testing.T, d extension.Dialect) *pagesEnv {
	t.Helper()
	return newPagesEnvWith(t, d, nil)
}

// newPagesEnvWith is newPagesEnv with more routes, which routes registers, and the
// frontend on the app's clock.
func newPagesEnvWith(t *testing.T, d extension.Dialect, routes func(*apptest.App)) *pagesEnv {
	t.Helper()
	clk := extensiontest.NewClock(time.Now().Truncate(time.Second))
	app := apptest.New(t, apptest.Options{Dialect: d, Clock: clk, Frontend: func(fc *frontend.Config) { fc.Now = clk.Now }})
	p := app.Pages
	if routes != nil {
		routes(app)
	}
	app.Front.GET("/app", p.AppIndex)
	app.Front.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	app.Front.GET("/app/:instanceId/login", p.Login)
	app.Front.POST("/app/:instanceId/login", p.SubmitLogin, p.SameOrigin())
	app.Front.GET("/app/:instanceId/team", p.Team, p.RequireSession())
	app.Front.POST("/logout", p.Logout, p.SameOrigin())
	app.Front.GET("/signed-out", p.SignedOut)
	app.Front.GET("/test/sign-in/:instanceId/:userId", func(c echo.Context) error {
		acc, _, err := app.Store.EnsurePlatformAccount(c.Request().Context(), c.Param("instanceId"), c.Param("userId"), "", c.QueryParam("name"), extension.RoleMember)
		if err != nil {
			return err
		}
		if err := p.Sessions.Start(c, acc, c.Param("userId")); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, frontend.AppPath(acc.InstanceID))
	})
	return &pagesEnv{App: app, URL: app.URL(t)}
}

func (e *pagesEnv) do(t *testing.T, b *http.Client, method, path string, header http.Header, form url.Values) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, apptest.Body(t, resp)
}

func (e *pagesEnv) signIn(t *testing.T, b *http.Client, in mstudiotest.Instance, u mstudiotest.User) {
	t.Helper()
	resp, body := e.do(t, b, http.MethodGet, "/test/sign-in/"+in.ID+"/"+u.ID+"?name="+url.QueryEscape(u.Name), nil, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", resp.StatusCode, body)
	}
}

var sameOrigin = http.Header{"Origin": {apptest.PublicURL}}

// A browser signed in to two instances keeps both: neither sign-in ends the other, and
// signing out of one leaves the other.
func TestTwoInstancesOneBrowser(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newPagesEnv(t, d)
			one, two := e.Install(t, mstudiotest.InstanceSpec{}), e.Install(t, mstudiotest.InstanceSpec{})
			ada := e.User(t, "Ada Admin")
			b := apptest.Browser(t)
			e.signIn(t, b, one, ada)
			e.signIn(t, b, two, ada)
			for _, in := range []mstudiotest.Instance{one, two} {
				if resp, body := e.do(t, b, http.MethodGet, frontend.AppPath(in.ID), nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Ada Admin") {
					t.Fatalf("instance %s after signing in to both: %d\n%s", in.ID, resp.StatusCode, body)
				}
			}
			// /app lets the browser pick one of its two instances.
			if resp, body := e.do(t, b, http.MethodGet, "/app", nil, nil); resp.StatusCode != http.StatusOK ||
				!strings.Contains(body, `href="`+frontend.AppPath(two.ID)+`"`) {
				t.Errorf("/app with two sessions: %d\n%s", resp.StatusCode, body)
			}
			resp, _ := e.do(t, b, http.MethodPost, "/logout", sameOrigin, url.Values{"instance": {one.ID}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("logout: %d", resp.StatusCode)
			}
			if resp, _ := e.do(t, b, http.MethodGet, frontend.AppPath(one.ID), nil, nil); resp.StatusCode != http.StatusSeeOther ||
				resp.Header.Get("Location") != frontend.LoginPath(one.ID) {
				t.Errorf("signed out of one: %d to %q, want 303 to its sign-in page", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp, _ := e.do(t, b, http.MethodGet, frontend.AppPath(two.ID), nil, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("signing out of one ended the other: %d", resp.StatusCode)
			}
			// Logout without an instance ends every session of the browser.
			e.do(t, b, http.MethodPost, "/logout", sameOrigin, url.Values{})
			if resp, _ := e.do(t, b, http.MethodGet, frontend.AppPath(two.ID), nil, nil); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("after logging out of all: %d", resp.StatusCode)
			}
		})
	}
}

// A session id copied under another instance's cookie name opens nothing there.
func TestSessionOfAnotherInstanceRefused(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	one, two := e.Install(t, mstudiotest.InstanceSpec{}), e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	e.signIn(t, b, one, e.User(t, "Ada Admin"))
	u, _ := url.Parse(e.URL)
	var id string
	for _, ck := range b.Jar.Cookies(u) {
		if ck.Name == "ext_s_"+strings.ReplaceAll(one.ID, "-", "") {
			id = ck.Value
		}
	}
	if id == "" {
		t.Fatal("no session cookie for the first instance")
	}
	thief := apptest.Browser(t)
	thief.Jar.SetCookies(u, []*http.Cookie{{Name: "ext_s_" + strings.ReplaceAll(two.ID, "-", ""), Value: id, Path: "/"}})
	resp, _ := e.do(t, thief, http.MethodGet, frontend.AppPath(two.ID), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.LoginPath(two.ID) {
		t.Errorf("a session of another instance: %d to %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.Contains(e.Logs.String(), "session of another instance") {
		t.Error("the refusal was not logged")
	}
}

// A request may carry any number of made-up session cookies, and each costs a query: at
// most 32 are looked at. A logout of every session clears no more than that, and the app
// index still answers with a page.
func TestSessionCookiesBounded(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	var cookies []string
	for range 200 {
		cookies = append(cookies, "ext_s_"+strings.ReplaceAll(uuid.NewString(), "-", "")+"="+uuid.NewString())
	}
	header := http.Header{"Origin": {apptest.PublicURL}, "Cookie": {strings.Join(cookies, "; ")}, "Accept": {"text/html"}}
	resp, body := e.do(t, apptest.Browser(t), http.MethodPost, "/logout", header, url.Values{})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout with 200 session cookies: %d\n%s", resp.StatusCode, body)
	}
	cleared := 0
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, "ext_s_") && ck.MaxAge < 0 {
			cleared++
		}
	}
	if cleared != 32 {
		t.Errorf("logout cleared %d session cookies, want the first 32", cleared)
	}
	resp, body = e.do(t, apptest.Browser(t), http.MethodGet, "/app", header, nil)
	if resp.StatusCode >= http.StatusInternalServerError || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/app with 200 session cookies: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// SameOrigin admits a state-changing request only with evidence that it comes from our
// own pages.
func TestSameOrigin(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	in := e.Install(t, mstudiotest.InstanceSpec{})
	for _, c := range []struct {
		name   string
		header http.Header
		ok     bool
	}{
		{"sec-fetch-site same-origin", http.Header{"Sec-Fetch-Site": {"same-origin"}}, true},
		{"sec-fetch-site none (typed)", http.Header{"Sec-Fetch-Site": {"none"}}, true},
		{"sec-fetch-site cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {apptest.PublicURL}}, false},
		{"sec-fetch-site same-site", http.Header{"Sec-Fetch-Site": {"same-site"}}, false},
		{"our origin", http.Header{"Origin": {apptest.PublicURL}}, true},
		{"our origin in capitals", http.Header{"Origin": {strings.ToUpper(apptest.PublicURL)}}, true},
		{"our origin, other scheme", http.Header{"Origin": {strings.Replace(apptest.PublicURL, "http:", "https:", 1)}}, false},
		{"our host, other port", http.Header{"Origin": {"http://127.0.0.1:8081"}}, false},
		{"other origin", http.Header{"Origin": {"https://evil.example"}}, false},
		{"null origin, no referer", http.Header{"Origin": {"null"}}, false},
		{"our referer, no origin", http.Header{"Referer": {apptest.PublicURL + "/app/" + in.ID}}, true},
		{"cross-site referer, no origin", http.Header{"Referer": {"https://evil.example/page"}}, false},
		{"referer with our host, other scheme", http.Header{"Referer": {"https://127.0.0.1:8080/x"}}, false},
		{"nothing", http.Header{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := apptest.Browser(t)
			e.signIn(t, b, in, e.User(t, "Ada Admin"))
			resp, body := e.do(t, b, http.MethodPost, "/logout", c.header, url.Values{"instance": {in.ID}})
			after, _ := e.do(t, b, http.MethodGet, frontend.AppPath(in.ID), nil, nil)
			if c.ok {
				if resp.StatusCode != http.StatusSeeOther || after.StatusCode != http.StatusSeeOther {
					t.Errorf("refused: %d, then the app %d", resp.StatusCode, after.StatusCode)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "refused for your protection") {
				t.Errorf("admitted: %d\n%s", resp.StatusCode, body)
			}
			if after.StatusCode != http.StatusOK {
				t.Errorf("a refused logout ended the session: %d", after.StatusCode)
			}
		})
	}
}

// An explicit ?lang= wins over Accept-Language and is remembered in a cookie.
func TestLanguageChoice(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	b := apptest.Browser(t)
	de := http.Header{"Accept-Language": {"de-DE,de;q=0.9"}}
	if _, body := e.do(t, b, http.MethodGet, "/signed-out", de, nil); !strings.Contains(body, `lang="de"`) || !strings.Contains(body, "Du bist abgemeldet") {
		t.Fatalf("Accept-Language de: not German\n%s", body)
	}
	if _, body := e.do(t, b, http.MethodGet, "/signed-out?lang=en", de, nil); !strings.Contains(body, `<html lang="en">`) || !strings.Contains(body, "You are signed out") {
		t.Fatalf("?lang=en: not English\n%s", body)
	}
	// Remembered: the next page is English though the browser prefers German.
	_, body := e.do(t, b, http.MethodGet, "/signed-out", de, nil)
	if !strings.Contains(body, `<html lang="en">`) {
		t.Errorf("the choice was not kept\n%s", body)
	}
	if !strings.Contains(body, `href="/signed-out?lang=de"`) || !strings.Contains(body, `lang="de"`) {
		t.Errorf("no link to switch to German\n%s", body)
	}
	// A made-up language changes nothing.
	if _, body := e.do(t, b, http.MethodGet, "/signed-out?lang=xx", de, nil); !strings.Contains(body, `<html lang="en">`) {
		t.Errorf("?lang=xx changed the language\n%s", body)
	}
}

// Without a session the dashboard sends to the sign-in page, which offers the control
// panel's sign-in; /app with one session goes to it.
func TestLoginAndAppIndex(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	in := e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	resp, _ := e.do(t, b, http.MethodGet, frontend.AppPath(in.ID), nil, nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.LoginPath(in.ID) {
		t.Fatalf("dashboard without a session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := e.do(t, b, http.MethodGet, frontend.LoginPath(in.ID), nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/login/mstudio"`) {
		t.Errorf("sign-in page: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := e.do(t, b, http.MethodGet, "/app", nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Open the extension") {
		t.Errorf("/app without sessions: %d\n%s", resp.StatusCode, body)
	}
	e.signIn(t, b, in, e.User(t, "Ada Admin"))
	if resp, _ := e.do(t, b, http.MethodGet, "/app", nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(in.ID) {
		t.Errorf("/app with one session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// The origin compared is the one browsers send: a default port in EXT_PUBLIC_URL does not
// make our own forms cross-site.
func TestSameOriginDefaultPort(t *testing.T) {
	for _, c := range []struct{ public, origin string }{
		{"https://ext.example:443", "https://ext.example"},
		{"http://ext.example:80/base", "http://ext.example"},
		{"https://EXT.example", "https://ext.example"},
	} {
		app := apptest.New(t, apptest.Options{Frontend: func(fc *frontend.Config) { fc.PublicURL = c.public }})
		app.Front.POST("/logout", app.Pages.Logout, app.Pages.SameOrigin())
		req, _ := http.NewRequest(http.MethodPost, app.URL(t)+"/logout", nil)
		req.Header.Set("Origin", c.origin)
		resp, err := apptest.Browser(t).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("public URL %s, Origin %s: %d, want 303", c.public, c.origin, resp.StatusCode)
		}
	}
}

// A flood of cross-site posts writes one refusal line, not one per request.
func TestRefusalsLoggedBounded(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	b := apptest.Browser(t)
	for range 200 {
		resp, _ := e.do(t, b, http.MethodPost, "/logout", http.Header{"Sec-Fetch-Site": {"cross-site"}}, url.Values{})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-site logout: %d", resp.StatusCode)
		}
	}
	if n := strings.Count(e.Logs.String(), "cross-site request"); n != 1 {
		t.Errorf("%d log lines for 200 refusals, want 1", n)
	}
}

// localUser makes an owner (a platform user) and, through an invitation the owner sends,
// a local member with a password.
func (e *pagesEnv) localUser(t *testing.T, in mstudiotest.Instance, email, password string) (owner, member extension.Account) {
	t.Helper()
	ctx := t.Context()
	owner, _, err := e.Store.EnsurePlatformAccount(ctx, in.ID, e.User(t, "Ada Admin").ID, "ada@example.test", "Ada Admin", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := e.Store.CreateInvitation(ctx, in.ID, owner.ID, email, extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := extension.HashPassword(password, extension.PasswordOWASP)
	if err != nil {
		t.Fatal(err)
	}
	if member, err = e.Store.AcceptInvitation(ctx, token, "Lena Local", hash); err != nil {
		t.Fatal(err)
	}
	return owner, member
}

// TestPasswordSignIn: a local user signs in with e-mail and password; a wrong password
// and an unknown address get the same page and no session; five failures lock the
// account, so even the right password waits; an instance with password sign-in off
// refuses it.
func TestPasswordSignIn(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newPagesEnv(t, d)
			in := e.Install(t, mstudiotest.InstanceSpec{})
			const pw = "correct horse battery"
			owner, _ := e.localUser(t, in, "Lena@Example.TEST", pw)
			login := frontend.LoginPath(in.ID)
			if _, body := e.do(t, apptest.Browser(t), http.MethodGet, login, nil, nil); !strings.Contains(body, `name="password"`) ||
				!strings.Contains(body, "not your control panel password") {
				t.Errorf("sign-in page lacks the password form or says not what it is:\n%s", body)
			}
			signIn := func(b *http.Client, email, password string) (*http.Response, string) {
				return e.do(t, b, http.MethodPost, login, sameOrigin, url.Values{"email": {email}, "password": {password}})
			}
			b := apptest.Browser(t)
			wrong, wrongBody := signIn(b, "lena@example.test", "not the password")
			unknown, unknownBody := signIn(b, "nobody@example.test", "not the password")
			for _, r := range []struct {
				resp *http.Response
				body string
			}{{wrong, wrongBody}, {unknown, unknownBody}} {
				if r.resp.StatusCode != http.StatusUnauthorized || !strings.Contains(r.body, "is not right") || len(r.resp.Cookies()) != 0 {
					t.Errorf("refused sign-in: %d, cookies %v", r.resp.StatusCode, r.resp.Cookies())
				}
				if strings.Contains(r.body, "not the password") {
					t.Error("the page shows the password back")
				}
			}
			resp, _ := signIn(b, " LENA@example.test ", pw)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(in.ID) {
				t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if resp, body := e.do(t, b, http.MethodGet, frontend.AppPath(in.ID), nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Lena Local") {
				t.Errorf("dashboard after the sign-in: %d\n%s", resp.StatusCode, body)
			}
			// Five failures lock the account: the right password then waits too.
			for range 5 {
				signIn(apptest.Browser(t), "lena@example.test", "wrong")
			}
			if resp, _ := signIn(apptest.Browser(t), "lena@example.test", pw); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("a locked account signed in: %d", resp.StatusCode)
			}
			evs, _, err := e.Store.AuditEvents(t.Context(), in.ID, extension.AuditFilter{}, extension.AuditPage{Limit: 50})
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, ev := range evs {
				kinds[ev.Kind]++
			}
			if kinds[extension.AuditSignIn] != 1 || kinds[extension.AuditSignInFailed] != 6 || kinds[extension.AuditSignInLocked] != 1 {
				t.Errorf("audit kinds %v", kinds)
			}
			// Password sign-in off: refused with a page that says what to do instead.
			st, err := e.Store.InstanceSettings(t.Context(), in.ID)
			if err != nil {
				t.Fatal(err)
			}
			st.PasswordLogin = false
			if _, err := e.Store.UpdateInstanceSettings(t.Context(), in.ID, owner.ID, st); err != nil {
				t.Fatal(err)
			}
			if resp, body := signIn(apptest.Browser(t), "lena@example.test", pw); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "turned off") {
				t.Errorf("password sign-in off: %d\n%s", resp.StatusCode, body)
			}
			if !strings.Contains(e.Logs.String(), "signed in with a password") || strings.Contains(e.Logs.String(), pw) {
				t.Error("the log lacks the sign-in or carries the password")
			}
		})
	}
}

// TestTeamPage: the team lists platform users and local users with how each signs in; the
// owner sees the open invitations, a member does not; another instance's team stays shut.
func TestTeamPage(t *testing.T) {
	e := newPagesEnv(t, extension.SQLite)
	in, other := e.Install(t, mstudiotest.InstanceSpec{}), e.Install(t, mstudiotest.InstanceSpec{})
	const pw = "correct horse battery"
	owner, _ := e.localUser(t, in, "lena@example.test", pw)
	if _, _, err := e.Store.CreateInvitation(t.Context(), in.ID, owner.ID, "max@example.test", extension.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	team := frontend.AppPath(in.ID) + "/team"

	ada := apptest.Browser(t)
	e.signIn(t, ada, in, e.User(t, "Ada Admin"))
	resp, body := e.do(t, ada, http.MethodGet, team, nil, nil)
	for _, want := range []string{"Ada Admin", "Lena Local", "lena@example.test", "the control panel", "a password (extension account)",
		"Open invitations", "max@example.test", "Administrator"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("owner's team page (%d) lacks %q", resp.StatusCode, want)
		}
	}

	lena := apptest.Browser(t)
	if resp, _ := e.do(t, lena, http.MethodPost, frontend.LoginPath(in.ID), sameOrigin, url.Values{"email": {"lena@example.test"}, "password": {pw}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("Lena's sign-in: %d", resp.StatusCode)
	}
	resp, body = e.do(t, lena, http.MethodGet, team, nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Ada Admin") || strings.Contains(body, "max@example.test") {
		t.Errorf("member's team page: %d, shows the invitations or lacks the members\n%s", resp.StatusCode, body)
	}
	if resp, _ := e.do(t, lena, http.MethodGet, frontend.AppPath(other.ID)+"/team", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("another instance's team: %d, want 303 to its sign-in page", resp.StatusCode)
	}
}
