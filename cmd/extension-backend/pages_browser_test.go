package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/prometheus/client_golang/prometheus"
)

// browserApp is the production route table (newHTTP) on the shared test app's store and
// simulator, configured with the address the browser reaches it at, as production is with
// EXT_PUBLIC_URL: the browser's form posts then come from our own origin.
func browserApp(t *testing.T) (*apptest.App, string) {
	t.Helper()
	app := apptest.New(t, apptest.Options{})
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := &Config{PublicURL: base, ExtensionID: app.Sim.ExtensionID(), DefaultRole: "member"}
	front, err := newHTTP(t.Context(), cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, nil, mailQueue(t, app, cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = front
	srv.Start()
	t.Cleanup(srv.Close)
	return app, base
}

// clickThrough is the address the control panel sends a user to when they open the
// extension: a fresh single-use key from the simulator, for that user and instance.
func clickThrough(t *testing.T, app *apptest.App, base string, in mstudiotest.Instance, user mstudiotest.User) string {
	t.Helper()
	key, err := app.Sim.NewRetrievalKey(in.ID, user.ID)
	if err != nil {
		t.Fatal(err)
	}
	return base + "/mstudio/sso?" + url.Values{"atrek": {key}, "userId": {user.ID}, "instanceId": {in.ID}}.Encode()
}

// pageCopy is the pages' copy in one language, read from the frontend's catalogs
// (locales/<lang>.json and every locales/<area>.<lang>.json), so the tests follow a change
// of wording.
func pageCopy(t *testing.T, lang string) map[string]string {
	t.Helper()
	dir := filepath.Join("..", "..", "frontend", "locales")
	files, err := filepath.Glob(filepath.Join(dir, "*"+lang+".json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no catalog of %s in %s: %v", lang, dir, err)
	}
	c := map[string]string{}
	for _, file := range files {
		if base := filepath.Base(file); base != lang+".json" && !strings.HasSuffix(base, "."+lang+".json") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	return c
}

// TestPagesInBrowser drives every page there is in headless Chromium: a hosting customer
// clicks through from the control panel, switches the language with the page's links,
// signs out with the keyboard alone; every page in English and German passes axe-core's
// WCAG 2.2 AA rules and is saved as a screenshot (browsertest.ScreenshotDir).
func TestPagesInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	en, de := pageCopy(t, frontend.LangEnglish), pageCopy(t, frontend.LangGerman)
	b := browsertest.New(t)

	t.Run("click-through and language switch", func(t *testing.T) {
		p := b.NewContext(t)
		if status := p.Open(clickThrough(t, app, base, in, ada)); status != http.StatusOK {
			t.Fatalf("click-through ends with %d", status)
		}
		if got := p.Path(); got != atrek.AppPath(in.ID) {
			t.Fatalf("click-through ends at %s, want the dashboard %s", got, atrek.AppPath(in.ID))
		}
		check := func(lang string, copy map[string]string) {
			t.Helper()
			if got := p.Lang(); got != lang {
				t.Errorf("<html lang=%q>, want %q", got, lang)
			}
			if got, want := p.Text("h1"), copy["dashboard.title"]; got != want {
				t.Errorf("heading %q, want %q", got, want)
			}
			if got, want := p.Text("form[action='/logout'] button"), copy["dashboard.sign_out"]; got != want {
				t.Errorf("sign-out button %q, want %q", got, want)
			}
			if got := p.Text("main"); !strings.Contains(got, ada.Name) {
				t.Errorf("the dashboard does not name %s:\n%s", ada.Name, got)
			}
		}
		check(frontend.LangEnglish, en)
		p.Follow("nav.lang a[hreflang='de']")
		check(frontend.LangGerman, de)
		// The choice sticks: the dashboard opened again without ?lang= stays German.
		p.Open(base + atrek.AppPath(in.ID))
		check(frontend.LangGerman, de)
		p.Follow("nav.lang a[hreflang='en']")
		check(frontend.LangEnglish, en)
	})

	t.Run("keyboard-only sign-out", func(t *testing.T) {
		p := b.NewContext(t)
		p.Open(clickThrough(t, app, base, in, ada))
		p.TabTo("button: "+en["dashboard.sign_out"], 16)
		p.Screenshot("dashboard-keyboard-focus.en") // for a look at the visible focus
		p.PressAndWait(browsertest.Enter)
		if got := p.Path(); got != "/signed-out" {
			t.Fatalf("Enter on the sign-out button lands on %s, want /signed-out", got)
		}
		if got, want := p.Text("h1"), en["signedout.title"]; got != want {
			t.Errorf("heading %q, want %q", got, want)
		}
		// Signed out for real: the dashboard sends the browser to the sign-in page.
		p.Open(base + atrek.AppPath(in.ID))
		if got := p.Path(); got != frontend.LoginPath(in.ID) {
			t.Errorf("after sign-out the dashboard goes to %s, want %s", got, frontend.LoginPath(in.ID))
		}
	})

	// Every page a browser can reach today, in each language: axe-core finds nothing and a
	// screenshot is taken. Add a row for a new page.
	for _, lang := range []string{frontend.LangEnglish, frontend.LangGerman} {
		t.Run("every page is accessible/"+lang, func(t *testing.T) {
			other := app.Install(t, mstudiotest.InstanceSpec{})
			customer, stranger := b.NewContext(t), b.NewContext(t)
			for _, p := range []*browsertest.Page{customer, stranger} {
				p.Open(base + "/signed-out?lang=" + lang) // the explicit choice, kept in a cookie
			}
			customer.Open(clickThrough(t, app, base, in, ada))
			// Bob, whom the platform names owner, clicks through after Ada: the offer.
			bob, reclaimer := app.User(t, "Bob Builder"), b.NewContext(t)
			if err := app.Sim.SetOwner(bob.ID, true); err != nil {
				t.Fatal(err)
			}
			reclaimer.Open(base + "/signed-out?lang=" + lang)
			reclaimer.Open(clickThrough(t, app, base, in, bob))
			links := teamLinks(t, app, in, lang) // the invitation and reset pages (team_pages_test.go)
			pages := []struct {
				name   string
				page   *browsertest.Page
				path   string
				status int
			}{
				{"dashboard", customer, atrek.AppPath(in.ID), http.StatusOK},
				{"rename-project", customer, frontend.RenameProjectPath(in.ID), http.StatusOK}, // without project:write: what to do
				{"team", customer, atrek.AppPath(in.ID) + "/team", http.StatusOK},
				{"account", customer, frontend.AccountPath(in.ID), http.StatusOK},
				{"audit", customer, atrek.AppPath(in.ID) + "/audit", http.StatusOK},
				{"audit-bad-query", customer, atrek.AppPath(in.ID) + "/audit?kind=nonsense", http.StatusBadRequest},
				{"settings-sign-in", customer, frontend.SignInSettingsPath(in.ID), http.StatusOK},
				{"not-found", customer, "/this/page/does/not/exist", http.StatusNotFound},
				{"sso-error", customer, "/mstudio/sso?atrek=short", http.StatusBadRequest},
				{"oauth-error", customer, "/login/mstudio/callback?state=x&code=y", http.StatusBadRequest},
				{"signed-out", customer, "/signed-out", http.StatusOK},
				{"sign-in", stranger, frontend.LoginPath(in.ID), http.StatusOK},
				{"forgot-password", stranger, frontend.LoginPath(in.ID) + "/forgot", http.StatusOK},
				{"reclaim-ownership", reclaimer, atrek.ReclaimPath(in.ID), http.StatusOK},
				{"sign-in-not-installed", stranger, frontend.LoginPath("00000000-0000-4000-8000-000000000000"), http.StatusNotFound},
				{"app-no-session", stranger, "/app", http.StatusOK},
				{"team-confirmation", customer, atrek.AppPath(in.ID) + "/team?done=role_changed", http.StatusOK},
				{"invite", stranger, links.Invite, http.StatusOK},
				{"invite-used", stranger, links.InviteUsed, http.StatusGone},
				{"invite-revoked", stranger, links.InviteRevoked, http.StatusGone},
				{"invite-signed-in", customer, links.Invite, http.StatusOK},
				{"invite-unknown", stranger, links.InviteUnknown, http.StatusNotFound},
				{"reset", stranger, links.Reset, http.StatusOK},
				{"reset-used", stranger, links.ResetUsed, http.StatusGone},
				{"reset-unknown", stranger, links.ResetUnknown, http.StatusNotFound},
				{"app-choose", customer, "/app", http.StatusOK}, // after the click-through into a second instance below
			}
			for _, pg := range pages {
				if pg.name == "app-choose" {
					customer.Open(clickThrough(t, app, base, other, ada))
				}
				if status := pg.page.Open(base + pg.path); status != pg.status {
					t.Errorf("%s: %s answers %d, want %d", pg.name, pg.path, status, pg.status)
				}
				if got := pg.page.Lang(); got != lang {
					t.Errorf("%s: <html lang=%q>, want %q", pg.name, got, lang)
				}
				pg.page.Screenshot(pg.name + "." + lang)
				if browsertest.HasAxe() {
					pg.page.CheckAccessible(pg.name + " (" + lang + ")")
				}
			}
			if !browsertest.HasAxe() { // the screenshots are taken; the checks could not run
				browsertest.Unavailable(t, browsertest.MissingAxe)
			}
		})
	}
}
