package atrek_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
)

func TestSessionPresetCookieNotAdopted(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		u, _ := url.Parse(e.AppURL)
		// A value an attacker planted before sign-in, in the form of a real id.
		planted := strings.Repeat("A", 43)
		e.HTTP.Jar.SetCookies(u, []*http.Cookie{{Name: e.cookieName(), Value: planted, Path: "/"}})
		e.signIn(t, e.HTTP, e.Ada)
		first, _ := e.sessionCookie(e.HTTP)
		if first == planted || first == "" {
			t.Fatal("the planted cookie was adopted")
		}
		planter := e.newBrowser(t)
		planter.Jar.SetCookies(u, []*http.Cookie{{Name: e.cookieName(), Value: planted, Path: "/"}})
		if resp, _ := e.get(t, planter, e.appPath()); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("the planted id opens the app: %d", resp.StatusCode)
		}

		// Signing in again issues a new id and ends the session the old one named.
		e.signIn(t, e.HTTP, e.Ada)
		second, _ := e.sessionCookie(e.HTTP)
		if second == first {
			t.Fatal("a second sign-in kept the session id")
		}
		if _, err := e.Store.SessionByID(context.Background(), extension.Secret(first), time.Hour, time.Hour); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the previous session still lives: %v", err)
		}
		if resp, body := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
			t.Errorf("/app after the second sign-in: %d\n%s", resp.StatusCode, body)
		}
	})
}

func TestSessionLogout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		e.signIn(t, e.HTTP, e.Ada)
		id, _ := e.sessionCookie(e.HTTP)

		// A browser's cross-site form post is refused and changes nothing.
		resp, body := e.do(t, e.HTTP, http.MethodPost, "/logout", http.Header{"Sec-Fetch-Site": {"cross-site"}})
		wantPage(t, resp, body, http.StatusForbidden, "refused")
		if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
			t.Fatalf("a cross-site logout ended the session: %d", resp.StatusCode)
		}

		resp, _ = e.do(t, e.HTTP, http.MethodPost, "/logout", http.Header{"Sec-Fetch-Site": {"same-origin"}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signed-out" {
			t.Fatalf("logout: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, ok := e.sessionCookie(e.HTTP); ok {
			t.Error("the cookie survived logout")
		}
		if _, err := e.Store.SessionByID(context.Background(), extension.Secret(id), time.Hour, time.Hour); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the session survived logout: %v", err)
		}
		resp, body = e.get(t, e.HTTP, "/signed-out")
		wantPage(t, resp, body, http.StatusOK, "You are signed out")
		resp, _ = e.get(t, e.HTTP, e.appPath())
		wantLogin(t, e, resp)

		// The old id, replayed, opens nothing.
		replay := e.newBrowser(t)
		u, _ := url.Parse(e.AppURL)
		replay.Jar.SetCookies(u, []*http.Cookie{{Name: e.cookieName(), Value: id, Path: "/"}})
		if resp, _ := e.get(t, replay, e.appPath()); resp.StatusCode != http.StatusSeeOther {
			t.Errorf("a logged-out id opens /app: %d", resp.StatusCode)
		}
	})
}

func TestSessionIdleTimeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil) // idle 2 h
		e.signIn(t, e.HTTP, e.Ada)
		e.Clock.Advance(time.Hour + 59*time.Minute)
		if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
			t.Fatalf("/app within the idle timeout: %d", resp.StatusCode)
		}
		e.Clock.Advance(2*time.Hour + time.Second)
		resp, _ := e.get(t, e.HTTP, e.appPath())
		wantLogin(t, e, resp)
	})
}

func TestSessionAbsoluteTimeout(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnvWith(t, apptest.Options{Dialect: d, Frontend: func(c *frontend.Config) { c.SessionAbsolute = 6 * time.Hour }}, nil)
		e.signIn(t, e.HTTP, e.Ada)
		// Active every 90 minutes: never idle, yet over after 6 h.
		for range 3 {
			e.Clock.Advance(90 * time.Minute)
			if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
				t.Fatalf("/app within the absolute timeout: %d", resp.StatusCode)
			}
		}
		e.Clock.Advance(90 * time.Minute)
		resp, _ := e.get(t, e.HTTP, e.appPath())
		wantLogin(t, e, resp)
	})
}

func TestSessionDisabledInstance(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	e.signIn(t, e.HTTP, e.Ada)
	e.Apply(t, extension.LifecycleEvent{Kind: extension.EventUpdated, InstanceID: e.Instance.ID,
		ContextKind: e.Instance.ContextKind, ContextID: e.Instance.ContextID, Scopes: e.Instance.Scopes, Enabled: new(false)})
	// Disabling ends the instance's sessions (the lifecycle path deletes them), and the
	// sign-in page says the extension is disabled.
	resp, _ := e.get(t, e.HTTP, e.appPath())
	wantLogin(t, e, resp)
	resp, body := e.get(t, e.HTTP, resp.Header.Get("Location"))
	wantPage(t, resp, body, http.StatusForbidden, "The extension is disabled")
}

// With an https public URL the cookie is Secure and __Host- prefixed, which makes the
// browser enforce host-only and Path=/.
func TestSessionCookieSecure(t *testing.T) {
	e := newSSOEnvWith(t, apptest.Options{Frontend: func(c *frontend.Config) { c.PublicURL = "https://ext.example" }}, nil)
	app := httpfront.New(httpfront.Options{})
	app.GET("/mstudio/sso", e.Handler.Entry)
	key := e.key(t, e.Instance.ID, e.Ada.ID)
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, ssoPath(key, e.Ada.ID, e.Instance.ID), nil))
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", rec.Code, rec.Body)
	}
	cks := rec.Result().Cookies()
	if len(cks) != 1 {
		t.Fatalf("cookies %q", rec.Header().Values("Set-Cookie"))
	}
	ck := cks[0]
	e.remember(ck.Value)
	if ck.Name != "__Host-"+e.cookieName() || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("cookie %q", rec.Header().Values("Set-Cookie"))
	}
	if tok, err := e.Store.UserToken(context.Background(), e.Ada.ID, e.Instance.ID); err == nil {
		e.remember(tok.Token.Reveal(), tok.Refresh.Reveal())
	}
}

// wantLogin checks that a page view without a live session is sent to the instance's
// sign-in page.
func wantLogin(t *testing.T, e *ssoEnv, resp *http.Response) {
	t.Helper()
	if want := e.appPath() + "/login"; resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Errorf("answer %d to %q, want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

// The scan at the end of every env's test checks no secret reached a log or page; this
// makes sure the log has something to scan and that it names the outcome and the ids.
func TestSSOLogsIDsAndOutcome(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	e.signIn(t, e.HTTP, e.Ada)
	e.get(t, e.HTTP, ssoPath(e.key(t, e.Instance.ID, e.Bob.ID), e.Ada.ID, e.Instance.ID))
	logs := e.Logs.String()
	for _, want := range []string{"sso: signed in", `"instance_id":"` + e.Instance.ID, `"user_id":"` + e.Ada.ID, "platform refused the key"} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}
