package frontend_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/labstack/echo/v4"
)

// newAccountEnv is newPagesEnv with the account, audit and sign-in settings pages routed
// as cmd's table routes them.
func newAccountEnv(t *testing.T, d extension.Dialect) *pagesEnv {
	t.Helper()
	// A cheap hash: these tests sign in and change passwords many times.
	return newAccountEnvWith(t, d, extension.NewPasswordHasher(cheapHash, 0, -1))
}

var cheapHash = extension.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newAccountEnvWith(t *testing.T, d extension.Dialect, hasher *extension.PasswordHasher) *pagesEnv {
	t.Helper()
	app := apptest.New(t, apptest.Options{Dialect: d, Frontend: func(c *frontend.Config) { c.Hasher = hasher }})
	p := app.Pages
	app.Front.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	app.Front.GET("/app/:instanceId/login", p.Login)
	app.Front.POST("/app/:instanceId/login", p.SubmitLogin, p.SameOrigin())
	app.Front.GET("/app/:instanceId/account", p.Account, p.RequireSession())
	app.Front.POST("/app/:instanceId/account", p.SaveProfile, p.SameOrigin(), p.RequireSession())
	app.Front.POST("/app/:instanceId/account/password", p.ChangeOwnPassword, p.SameOrigin(), p.RequireSession())
	app.Front.POST("/app/:instanceId/account/sessions/end", p.EndSession, p.SameOrigin(), p.RequireSession())
	app.Front.POST("/app/:instanceId/account/sessions/end-others", p.EndOtherSessions, p.SameOrigin(), p.RequireSession())
	app.Front.GET("/app/:instanceId/audit", p.Audit, p.RequireSession())
	app.Front.GET("/app/:instanceId/settings/sign-in", p.SignInSettings, p.RequireSession())
	app.Front.POST("/app/:instanceId/settings/sign-in", p.SaveSignInSettings, p.SameOrigin(), p.RequireSession())
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

// team is an instance with a platform owner (Ada) and two local accounts, an admin and a
// member, each signed in in a browser of its own.
type accountTeam struct {
	in                   mstudiotest.Instance
	owner, admin, lena   extension.Account
	ownerB, adminB, lenB *http.Client
}

const (
	lenaPassword  = "correct horse battery"
	adminPassword = "staple battery horse"
)

// invite makes a local account of the instance through an invitation by actor.
func (e *pagesEnv) invite(t *testing.T, in mstudiotest.Instance, actor extension.Account, email, name, role, password string) extension.Account {
	t.Helper()
	_, token, err := e.Store.CreateInvitation(t.Context(), in.ID, actor.ID, email, role)
	if err != nil {
		t.Fatal(err)
	}
	hash, err := extension.HashPassword(password, cheapHash)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := e.Store.AcceptInvitation(t.Context(), token, name, hash)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// passwordSignIn signs a local account in with a browser of its own, as a browser does.
func (e *pagesEnv) passwordSignIn(t *testing.T, in mstudiotest.Instance, email, password, userAgent string) *http.Client {
	t.Helper()
	b := apptest.Browser(t)
	resp, body := e.do(t, b, http.MethodPost, frontend.LoginPath(in.ID), http.Header{"Origin": {apptest.PublicURL}, "User-Agent": {userAgent}},
		url.Values{"email": {email}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in of %s: %d\n%s", email, resp.StatusCode, body)
	}
	return b
}

func newAccountTeam(t *testing.T, e *pagesEnv) *accountTeam {
	t.Helper()
	tm := &accountTeam{in: e.Install(t, mstudiotest.InstanceSpec{})}
	ada := e.User(t, "Ada Admin")
	tm.ownerB = apptest.Browser(t)
	e.signIn(t, tm.ownerB, tm.in, ada)
	var err error
	if tm.owner, _, err = e.Store.EnsurePlatformAccount(t.Context(), tm.in.ID, ada.ID, "", "", extension.RoleMember); err != nil {
		t.Fatal(err)
	}
	tm.admin = e.invite(t, tm.in, tm.owner, "max@example.test", "Max Admin", extension.RoleAdmin, adminPassword)
	tm.lena = e.invite(t, tm.in, tm.owner, "lena@example.test", "Lena Local", extension.RoleMember, lenaPassword)
	tm.adminB = e.passwordSignIn(t, tm.in, "max@example.test", adminPassword, firefox)
	tm.lenB = e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, firefox)
	return tm
}

const (
	firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	iphone  = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)

func (e *pagesEnv) get(t *testing.T, b *http.Client, path string) (*http.Response, string) {
	t.Helper()
	return e.do(t, b, http.MethodGet, path, http.Header{"Accept-Language": {"en"}}, nil)
}

func (e *pagesEnv) post(t *testing.T, b *http.Client, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	return e.do(t, b, http.MethodPost, path, http.Header{"Origin": {apptest.PublicURL}, "Accept-Language": {"en"}}, form)
}

// TestPagesByRole opens the three pages as owner, admin and member: everybody has an
// account page, owners and admins the audit log, owners alone the sign-in settings; the
// tabs offer just those. A session of another instance opens none of them and changes
// nothing there.
func TestPagesByRole(t *testing.T) {
	e := newAccountEnv(t, extension.SQLite)
	tm := newAccountTeam(t, e)
	app := frontend.AppPath(tm.in.ID)
	for _, c := range []struct {
		name            string
		b               *http.Client
		account, audit  int
		settings        int
		passwordSection bool
	}{
		{"owner", tm.ownerB, 200, 200, 200, false},
		{"admin", tm.adminB, 200, 200, 403, true},
		{"member", tm.lenB, 200, 403, 403, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.get(t, c.b, app+"/account")
			if resp.StatusCode != c.account {
				t.Fatalf("account page: %d\n%s", resp.StatusCode, body)
			}
			if got := strings.Contains(body, `name="current_password"`); got != c.passwordSection {
				t.Errorf("password form shown: %v, want %v", got, c.passwordSection)
			}
			if !c.passwordSection && !strings.Contains(body, "You sign in through the control panel") {
				t.Error("a platform user's account page does not say they sign in through the control panel")
			}
			if got := strings.Contains(body, `href="`+app+`/audit"`); got != (c.audit == 200) {
				t.Errorf("tab to the audit log: %v", got)
			}
			if got := strings.Contains(body, `href="`+app+`/settings/sign-in"`); got != (c.settings == 200) {
				t.Errorf("tab to the settings: %v", got)
			}
			if resp, body := e.get(t, c.b, app+"/audit"); resp.StatusCode != c.audit {
				t.Errorf("audit log: %d\n%s", resp.StatusCode, body)
			} else if c.audit == 403 && !strings.Contains(body, "owners and administrators") {
				t.Errorf("the refusal does not say who may:\n%s", body)
			}
			if resp, body := e.get(t, c.b, app+"/settings/sign-in"); resp.StatusCode != c.settings {
				t.Errorf("settings: %d\n%s", resp.StatusCode, body)
			}
			if c.settings != 200 {
				resp, _ := e.post(t, c.b, app+"/settings/sign-in", url.Values{"default_role": {"admin"}, "password_login": {"on"}})
				if resp.StatusCode != http.StatusForbidden {
					t.Errorf("saving the settings: %d, want 403", resp.StatusCode)
				}
			}
		})
	}
	if st, err := e.Store.InstanceSettings(t.Context(), tm.in.ID); err != nil || st.Stored {
		t.Errorf("the refused saves stored settings: %+v, %v", st, err)
	}

	// Another instance: Lena's and Ada's browsers hold no session of it.
	other := e.Install(t, mstudiotest.InstanceSpec{})
	otherApp := frontend.AppPath(other.ID)
	otherOwner := apptest.Browser(t)
	e.signIn(t, otherOwner, other, e.User(t, "Bob Builder"))
	for _, b := range []*http.Client{tm.ownerB, tm.lenB} {
		for _, p := range []string{"/account", "/audit", "/settings/sign-in"} {
			if resp, _ := e.get(t, b, otherApp+p); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.LoginPath(other.ID) {
				t.Errorf("another instance's %s: %d to %q, want 303 to its sign-in page", p, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		for p, form := range map[string]url.Values{
			"/account":                     {"name": {"Mallory"}, "language": {"de"}},
			"/account/password":            {"current_password": {lenaPassword}, "new_password": {"a new long password"}, "new_password_again": {"a new long password"}},
			"/account/sessions/end-others": {},
			"/settings/sign-in":            {"default_role": {"admin"}, "allowed_domains": {"evil.example"}},
		} {
			if resp, _ := e.post(t, b, otherApp+p, form); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("posting to another instance's %s: %d, want 401", p, resp.StatusCode)
			}
		}
	}
	if st, err := e.Store.InstanceSettings(t.Context(), other.ID); err != nil || st.Stored {
		t.Errorf("another instance's settings changed: %+v, %v", st, err)
	}
	if resp, _ := e.get(t, otherOwner, otherApp+"/account"); resp.StatusCode != http.StatusOK {
		t.Errorf("the other instance's owner lost the session: %d", resp.StatusCode)
	}
}

// TestChangePassword: a wrong current password counts as a failed sign-in and changes
// nothing; a bad new password is refused with what to do; the right one changes it, ends
// the account's other sessions and keeps this one; a platform user has no password here.
func TestChangePassword(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newAccountEnv(t, d)
			tm := newAccountTeam(t, e)
			phone := e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, iphone)
			path := frontend.AccountPath(tm.in.ID) + "/password"
			const newPassword = "a much longer new password"
			for _, c := range []struct {
				name    string
				form    url.Values
				status  int
				message string
			}{
				{"wrong current", url.Values{"current_password": {"not it at all"}, "new_password": {newPassword}, "new_password_again": {newPassword}},
					http.StatusForbidden, "Your current password is not right"},
				{"no current", url.Values{"new_password": {newPassword}, "new_password_again": {newPassword}},
					http.StatusBadRequest, "Enter your current password"},
				{"short", url.Values{"current_password": {lenaPassword}, "new_password": {"short"}, "new_password_again": {"short"}},
					http.StatusBadRequest, "at least 12 characters"},
				{"mismatch", url.Values{"current_password": {lenaPassword}, "new_password": {newPassword}, "new_password_again": {newPassword + "!"}},
					http.StatusBadRequest, "not the same"},
			} {
				resp, body := e.post(t, tm.lenB, path, c.form)
				if resp.StatusCode != c.status || !strings.Contains(body, c.message) {
					t.Errorf("%s: %d, want %d with %q\n%s", c.name, resp.StatusCode, c.status, c.message, body)
				}
				if strings.Contains(body, newPassword) || strings.Contains(body, lenaPassword) {
					t.Errorf("%s: the page shows a password", c.name)
				}
			}
			acc, _, err := e.Store.LocalCredentials(t.Context(), tm.in.ID, "lena@example.test")
			if err != nil || acc.FailedLogins != 1 {
				t.Errorf("failed sign-ins after one wrong current password: %d, %v; want 1", acc.FailedLogins, err)
			}
			if resp, _ := e.get(t, phone, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusOK {
				t.Fatalf("the refused changes ended the phone's session: %d", resp.StatusCode)
			}

			resp, body := e.post(t, tm.lenB, path, url.Values{"current_password": {lenaPassword}, "new_password": {newPassword}, "new_password_again": {newPassword}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("change: %d\n%s", resp.StatusCode, body)
			}
			if _, body := e.get(t, tm.lenB, resp.Header.Get("Location")); !strings.Contains(body, "Your password is changed") {
				t.Errorf("no confirmation:\n%s", body)
			}
			if resp, _ := e.get(t, phone, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the phone is still signed in: %d", resp.StatusCode)
			}
			if resp, _ := e.get(t, tm.adminB, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusOK {
				t.Errorf("another account's session ended: %d", resp.StatusCode)
			}
			if acc, _, _ := e.Store.LocalCredentials(t.Context(), tm.in.ID, "lena@example.test"); acc.FailedLogins != 0 {
				t.Errorf("failures after the change: %d, want 0", acc.FailedLogins)
			}
			e.passwordSignIn(t, tm.in, "lena@example.test", newPassword, firefox)
			if resp, _ := e.post(t, apptest.Browser(t), frontend.LoginPath(tm.in.ID), url.Values{"email": {"lena@example.test"}, "password": {lenaPassword}}); resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("the old password still signs in: %d", resp.StatusCode)
			}
			evs, _, err := e.Store.AuditEvents(t.Context(), tm.in.ID, extension.AuditFilter{AccountID: tm.lena.ID}, extension.AuditPage{})
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, ev := range evs {
				kinds[ev.Kind+" "+ev.Detail["where"]]++
			}
			if kinds[extension.AuditPasswordChanged+" "] != 1 || kinds[extension.AuditSignInFailed+" password_change"] != 1 {
				t.Errorf("audit of lena: %v", kinds)
			}
			if logs := e.Logs.String(); strings.Contains(logs, newPassword) || strings.Contains(logs, lenaPassword) {
				t.Error("a password reached the log")
			}

			// A platform user has no password to change.
			resp, body = e.post(t, tm.ownerB, path, url.Values{"current_password": {"whatever it is"}, "new_password": {newPassword}, "new_password_again": {newPassword}})
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no password here") {
				t.Errorf("a platform user's password change: %d\n%s", resp.StatusCode, body)
			}
		})
	}
}

// sessionCookie returns the browser's session id of an instance.
func (e *pagesEnv) sessionCookie(t *testing.T, b *http.Client, instanceID string) string {
	t.Helper()
	u, _ := url.Parse(e.URL)
	for _, ck := range b.Jar.Cookies(u) {
		if ck.Name == "ext_s_"+strings.ReplaceAll(instanceID, "-", "") {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

var handleField = regexp.MustCompile(`name="session" value="([0-9a-f]{32})"`)

// TestSessionsList: the account page lists the account's own live sessions with their
// browser, marks this one, and names the others by a handle that is neither the id nor
// its hash; one can be signed out by it, all others at once; another account's handle
// ends nothing.
func TestSessionsList(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newAccountEnv(t, d)
			tm := newAccountTeam(t, e)
			phone := e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, iphone)
			third := e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, "curl/8.5.0")
			page := frontend.AccountPath(tm.in.ID)
			resp, body := e.get(t, tm.lenB, page)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("account page: %d", resp.StatusCode)
			}
			for _, want := range []string{"Firefox on Linux", "Safari on iOS", "An unknown browser", "this browser", "Sign out everywhere else"} {
				if !strings.Contains(body, want) {
					t.Errorf("the sessions list lacks %q", want)
				}
			}
			if n := strings.Count(body, "this browser</span>"); n != 1 {
				t.Errorf("%d sessions marked as this browser, want 1", n)
			}
			// No session id or hash of one on the page.
			for _, b := range []*http.Client{tm.lenB, phone, third} {
				id := e.sessionCookie(t, b, tm.in.ID)
				raw, _ := base64.RawURLEncoding.DecodeString(id)
				sum := sha256.Sum256(raw)
				if strings.Contains(body, id) || strings.Contains(body, hex.EncodeToString(sum[:])) || strings.Contains(body, hex.EncodeToString(sum[:16])) {
					t.Error("the page shows a session id or its hash")
				}
			}
			handles := handleField.FindAllStringSubmatch(body, -1)
			if len(handles) != 2 {
				t.Fatalf("%d sign-out buttons, want 2 (the other sessions)", len(handles))
			}

			// The owner's session cannot be ended with Lena's browser, nor Lena's with the
			// owner's: a handle works only for its own account.
			ownerSessions, err := e.Store.AccountSessions(t.Context(), tm.in.ID, tm.owner.ID, time.Hour, 24*time.Hour)
			if err != nil || len(ownerSessions) != 1 {
				t.Fatalf("owner sessions: %v, %v", ownerSessions, err)
			}
			if resp, body := e.post(t, tm.lenB, page+"/sessions/end", url.Values{"session": {ownerSessions[0].Handle}}); resp.StatusCode != http.StatusNotFound ||
				!strings.Contains(body, "signed out already") {
				t.Errorf("ending the owner's session: %d\n%s", resp.StatusCode, body)
			}
			if resp, _ := e.post(t, tm.ownerB, page+"/sessions/end", url.Values{"session": {handles[0][1]}}); resp.StatusCode != http.StatusNotFound {
				t.Errorf("the owner ending Lena's session: %d", resp.StatusCode)
			}
			for _, bad := range []url.Values{{}, {"session": {"not-a-handle"}}, {"session": {handles[0][1], handles[1][1]}}} {
				if resp, body := e.post(t, tm.lenB, page+"/sessions/end", bad); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Nothing was signed out") {
					t.Errorf("end with %v: %d", bad, resp.StatusCode)
				}
			}
			for _, b := range []*http.Client{tm.ownerB, tm.lenB, phone, third} {
				if resp, _ := e.get(t, b, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusOK {
					t.Fatalf("a refused sign-out ended a session: %d", resp.StatusCode)
				}
			}

			// Signing out the phone by its handle.
			phoneHandle := ""
			for _, s := range mustSessions(t, e, tm.in.ID, tm.lena.ID) {
				if strings.Contains(s.UserAgent, "iPhone") {
					phoneHandle = s.Handle
				}
			}
			resp, _ = e.post(t, tm.lenB, page+"/sessions/end", url.Values{"session": {phoneHandle}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("end the phone's session: %d", resp.StatusCode)
			}
			if resp, _ := e.get(t, phone, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the phone is still signed in: %d", resp.StatusCode)
			}
			// All the others at once.
			if resp, _ := e.post(t, tm.lenB, page+"/sessions/end-others", url.Values{}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("end the others: %d", resp.StatusCode)
			}
			if resp, _ := e.get(t, third, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the third browser is still signed in: %d", resp.StatusCode)
			}
			resp, body = e.get(t, tm.lenB, page)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "signed in in this browser only") || handleField.MatchString(body) {
				t.Errorf("after ending the others: %d\n%s", resp.StatusCode, body)
			}
			if resp, _ := e.get(t, tm.ownerB, frontend.AppPath(tm.in.ID)); resp.StatusCode != http.StatusOK {
				t.Errorf("the owner's session ended with Lena's others: %d", resp.StatusCode)
			}
		})
	}
}

func mustSessions(t *testing.T, e *pagesEnv, instanceID, accountID string) []extension.Session {
	t.Helper()
	list, err := e.Store.AccountSessions(t.Context(), instanceID, accountID, time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestProfileAndLanguage: a local user changes name and language; the language holds at
// once in this browser and from the next sign-in in another; a platform user keeps the
// control panel's name; bad input changes nothing.
func TestProfileAndLanguage(t *testing.T) {
	e := newAccountEnv(t, extension.SQLite)
	tm := newAccountTeam(t, e)
	page := frontend.AccountPath(tm.in.ID)
	resp, _ := e.post(t, tm.lenB, page, url.Values{"name": {"  Lena Lokal "}, "language": {"de"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	// English asked for by the browser; the account's German wins.
	_, body := e.do(t, tm.lenB, http.MethodGet, resp.Header.Get("Location"), http.Header{"Accept-Language": {"en"}}, nil)
	if !strings.Contains(body, `<html lang="de">`) || !strings.Contains(body, "Gespeichert") || !strings.Contains(body, `value="Lena Lokal"`) {
		t.Errorf("after saving German:\n%s", body)
	}
	other := e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, iphone)
	if _, body := e.do(t, other, http.MethodGet, frontend.AppPath(tm.in.ID), http.Header{"Accept-Language": {"en"}}, nil); !strings.Contains(body, `<html lang="de">`) {
		t.Error("the account's language does not hold after a new sign-in")
	}
	// Back to the browser's language.
	e.post(t, tm.lenB, page, url.Values{"name": {"Lena Lokal"}, "language": {""}})
	if _, body := e.do(t, tm.lenB, http.MethodGet, page, http.Header{"Accept-Language": {"en"}}, nil); !strings.Contains(body, `<html lang="en">`) {
		t.Error("choosing the browser's language again did not")
	}
	for _, bad := range []url.Values{
		{"name": {""}, "language": {"de"}},
		{"name": {"Line\nbreak"}, "language": {"de"}},
		{"name": {strings.Repeat("x", 201)}},
		{"name": {"Lena"}, "language": {"fr"}},
		{"name": {"Lena"}, "language": {"de", "en"}},
	} {
		if resp, _ := e.post(t, tm.lenB, page, bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", bad, resp.StatusCode)
		}
	}
	acc, err := e.Store.AccountByID(t.Context(), tm.lena.ID)
	if err != nil || acc.Name != "Lena Lokal" || acc.Language != "" {
		t.Errorf("after bad input: %+v, %v", acc, err)
	}
	// A platform user's name is the control panel's: only the language changes.
	e.post(t, tm.ownerB, page, url.Values{"name": {"Someone Else"}, "language": {"en"}})
	if acc, err := e.Store.AccountByID(t.Context(), tm.owner.ID); err != nil || acc.Name != tm.owner.Name || acc.Language != "en" {
		t.Errorf("the owner after saving: %+v, %v", acc, err)
	}
}

// TestAuditPage pages through the log with the cursor, filters by account and kind, and
// answers a query it did not write with 400 and what to do.
func TestAuditPage(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newAccountEnv(t, d)
			tm := newAccountTeam(t, e)
			base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			for i := range 70 {
				ev := extension.AuditEvent{InstanceID: tm.in.ID, AccountID: tm.admin.ID, Kind: extension.AuditInvitationCreated,
					Detail:    map[string]string{"invitation": "x", "email": fmt.Sprintf("guest%02d@example.test", i), "role": "member"},
					CreatedAt: base.Add(time.Duration(i/3) * time.Second)}
				if i%5 == 0 {
					ev.AccountID, ev.Kind, ev.Detail = tm.lena.ID, extension.AuditPasswordChanged, nil
				}
				if err := e.Store.Audit(t.Context(), ev); err != nil {
					t.Fatal(err)
				}
			}
			total := 70 + 7 // the team's own events: invitations, acceptances, sign-ins
			page := frontend.AppPath(tm.in.ID) + "/audit"
			older := regexp.MustCompile(`href="(/app/[^"]+/audit\?[^"]*before=[^"]+)">Older events`)
			seen, pages := map[string]bool{}, 0
			next := page
			for next != "" {
				resp, body := e.get(t, tm.adminB, strings.ReplaceAll(next, "&amp;", "&"))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("page %d: %d\n%s", pages, resp.StatusCode, body)
				}
				for _, m := range regexp.MustCompile(`guest\d\d@example\.test`).FindAllString(body, -1) {
					if seen[m] {
						t.Errorf("%s on two pages", m)
					}
					seen[m] = true
				}
				pages++
				next = ""
				if m := older.FindStringSubmatch(body); m != nil {
					next = m[1]
				}
				if pages > 3 {
					t.Fatal("paging does not end")
				}
			}
			if pages != 2 || len(seen) != 56 {
				t.Errorf("%d pages, %d invitations seen; want 2 pages (%d events), 56", pages, len(seen), total)
			}
			_, body := e.get(t, tm.adminB, page)
			if !strings.Contains(body, "Invited guest69@example.test as Member.") || !strings.Contains(body, "Max Admin") {
				t.Errorf("the newest event is not described:\n%s", body)
			}
			if i, j := strings.Index(body, "guest69@"), strings.Index(body, "guest68@"); i < 0 || j < i {
				t.Error("not newest first")
			}

			// Filters: by kind, and by account; the older link keeps them.
			_, body = e.get(t, tm.adminB, page+"?kind="+extension.AuditPasswordChanged)
			if n := strings.Count(body, "Changed their password."); n != 14 || strings.Contains(body, "guest") {
				t.Errorf("kind filter: %d password changes, want 14", n)
			}
			_, body = e.get(t, tm.adminB, page+"?account="+tm.admin.ID+"&kind=")
			if strings.Contains(body, "Changed their password.") || !strings.Contains(body, `href="`+page+"?account="+tm.admin.ID+"&amp;before=") {
				t.Errorf("account filter: shows others' events, or the older link drops the filter:\n%s", body)
			}
			_, body = e.get(t, tm.adminB, page+"?account="+tm.lena.ID+"&kind="+extension.AuditSignIn)
			if n := strings.Count(body, "Signed in with a password."); n != 1 {
				t.Errorf("Lena's sign-ins: %d, want 1", n)
			}
			// A click-through from the control panel says so.
			if err := e.Store.Audit(t.Context(), extension.AuditEvent{InstanceID: tm.in.ID, AccountID: tm.admin.ID, Kind: extension.AuditSignIn,
				Detail: map[string]string{"method": "platform"}}); err != nil {
				t.Fatal(err)
			}
			_, body = e.get(t, tm.adminB, page+"?account="+tm.admin.ID+"&kind="+extension.AuditSignIn)
			if !strings.Contains(body, "Signed in through the control panel.") {
				t.Errorf("a platform sign-in is not described as one:\n%s", body)
			}

			for _, q := range []string{
				"?before=yesterday",
				"?before=1-0",
				"?kind=sign_in&kind=role.changed",
				"?kind=nonsense",
				"?account=not-an-id",
				"?account=" + strings.ToUpper(tm.lena.ID),
				"?account=00000000-0000-4000-8000-000000000000",
			} {
				resp, body := e.get(t, tm.adminB, page+q)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Choose the filters below again") || strings.Contains(body, "guest") {
					t.Errorf("%s: %d, want 400 with what to do and no events", q, resp.StatusCode)
				}
			}
			// An account of another instance is no filter here.
			other := e.Install(t, mstudiotest.InstanceSpec{})
			stranger, _, err := e.Store.EnsurePlatformAccount(t.Context(), other.ID, "u-stranger", "", "Stranger", extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			if resp, _ := e.get(t, tm.adminB, page+"?account="+stranger.ID); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("another instance's account as a filter: %d", resp.StatusCode)
			}
			// German.
			_, body = e.do(t, tm.adminB, http.MethodGet, page+"?lang=de", nil, nil)
			if !strings.Contains(body, "Hat guest69@example.test als Mitglied eingeladen.") {
				t.Errorf("German sentence missing:\n%s", body)
			}
		})
	}
}

// TestSignInSettingsPage: the owner saves valid settings and gets a confirmation; bad
// input is the form again with 400, what was typed and the field's error, and the stored
// settings stay; turning password sign-in off with local accounts warns who is locked out.
func TestSignInSettingsPage(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newAccountEnv(t, d)
			tm := newAccountTeam(t, e)
			page := frontend.SignInSettingsPath(tm.in.ID)
			resp, body := e.get(t, tm.ownerB, page)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "2 team members sign in with a password only") ||
				strings.Contains(body, `value="owner"`) || strings.Contains(body, "Identity providers") {
				t.Fatalf("settings page: %d\n%s", resp.StatusCode, body)
			}
			resp, _ = e.post(t, tm.ownerB, page, url.Values{"default_role": {"admin"}, "allowed_domains": {"Example.TEST, example.org"}, "password_login": {"on"}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("save: %d", resp.StatusCode)
			}
			_, body = e.get(t, tm.ownerB, resp.Header.Get("Location"))
			if !strings.Contains(body, "Saved.") || !strings.Contains(body, `value="example.test, example.org"`) {
				t.Errorf("after saving:\n%s", body)
			}
			want, err := e.Store.InstanceSettings(t.Context(), tm.in.ID)
			if err != nil || want.DefaultRole != extension.RoleAdmin || len(want.AllowedDomains) != 2 || !want.PasswordLogin {
				t.Fatalf("stored: %+v, %v", want, err)
			}
			for _, c := range []struct {
				form  url.Values
				shows string
			}{
				{url.Values{"default_role": {"member"}, "allowed_domains": {"example.test, not a domain!"}}, "is not a domain name"},
				{url.Values{"default_role": {"owner"}, "allowed_domains": {"kept.example"}}, "Choose one of the roles"},
				{url.Values{"default_role": {"member"}, "allowed_domains": {"kept.example"}, "password_login": {"yes"}}, "does not allow"},
				{url.Values{"default_role": {"member", "admin"}}, "does not allow"},
			} {
				resp, body := e.post(t, tm.ownerB, page, c.form)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, c.shows) || !strings.Contains(body, "Nothing was saved") {
					t.Errorf("%v: %d\n%s", c.form, resp.StatusCode, body)
				}
				if typed := c.form.Get("allowed_domains"); typed != "" && !strings.Contains(body, `value="`+typed+`"`) {
					t.Errorf("%v: the typed domains are not kept", c.form)
				}
			}
			if got, _ := e.Store.InstanceSettings(t.Context(), tm.in.ID); got.DefaultRole != want.DefaultRole || !got.UpdatedAt.Equal(want.UpdatedAt) ||
				strings.Join(got.AllowedDomains, ",") != strings.Join(want.AllowedDomains, ",") || !got.PasswordLogin {
				t.Errorf("bad input changed the settings: %+v, want %+v", got, want)
			}
			// Password sign-in off while local accounts exist: saved, with a warning naming them.
			resp, _ = e.post(t, tm.ownerB, page, url.Values{"default_role": {"member"}, "allowed_domains": {""}})
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("save off: %d", resp.StatusCode)
			}
			_, body = e.get(t, tm.ownerB, resp.Header.Get("Location"))
			if !strings.Contains(body, "Some team members cannot sign in") || !strings.Contains(body, "Lena Local") || !strings.Contains(body, "Max Admin") {
				t.Errorf("no warning about the locked-out accounts:\n%s", body)
			}
			if st, _ := e.Store.InstanceSettings(t.Context(), tm.in.ID); st.PasswordLogin || len(st.AllowedDomains) != 0 {
				t.Errorf("stored: %+v", st)
			}
		})
	}
}

// TestChangePasswordBusy: with every hashing place taken, the password form answers 429
// and "try again", and changes nothing.
func TestChangePasswordBusy(t *testing.T) {
	hasher := extension.NewPasswordHasher(cheapHash, 1, 0) // one at a time, no queue
	e := newAccountEnvWith(t, extension.SQLite, hasher)
	tm := newAccountTeam(t, e)
	// Take the one place with a costly verification (the stored hash's parameters decide
	// its cost), and wait until it holds it.
	costly, err := extension.HashPassword("x", extension.PasswordParams{Memory: 32 * 1024, Time: 16, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	// The costly verification tries until it has the place (the probes below may hold it
	// for a moment); the probes stop once it is held, or when it has already ended.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := hasher.Verify(context.Background(), "y", costly); !errors.Is(err, extension.ErrBusy) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() { <-done })
	for hasher.VerifyDummy(t.Context(), "probe") == nil {
		select {
		case <-done:
			t.Skip("the costly verification ended before the request: this machine is too fast for the test")
		case <-time.After(time.Millisecond):
		}
	}
	const newPassword = "a much longer new password"
	resp, body := e.post(t, tm.lenB, frontend.AccountPath(tm.in.ID)+"/password",
		url.Values{"current_password": {lenaPassword}, "new_password": {newPassword}, "new_password_again": {newPassword}})
	select {
	case <-done:
		t.Skip("the costly verification ended before the request: this machine is too fast for the test")
	default:
	}
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "try again") {
		t.Errorf("busy: %d\n%s", resp.StatusCode, body)
	}
	<-done
	e.passwordSignIn(t, tm.in, "lena@example.test", lenaPassword, firefox) // unchanged
}
