package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/prometheus/client_golang/prometheus"
)

// routedApp is the production route table (newHTTP) on the shared test app's store and
// simulator.
func routedApp(t *testing.T) (*apptest.App, string, mstudiotest.Instance) {
	t.Helper()
	app := apptest.New(t, apptest.Options{})
	cfg := &Config{PublicURL: apptest.PublicURL, ExtensionID: app.Sim.ExtensionID(), DefaultRole: "member"}
	front, err := newHTTP(t.Context(), cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, nil, mailQueue(t, app, cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	return app, srv.URL, app.Install(t, mstudiotest.InstanceSpec{})
}

func fetch(t *testing.T, b *http.Client, method, u string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestEveryPageSameHeaders opens every page a browser can reach, in English and German,
// and checks each carries the same security headers, its language, and words of that
// language.
func TestEveryPageSameHeaders(t *testing.T) {
	app, base, in := routedApp(t)
	ada := app.User(t, "Ada Admin")
	app.Install(t, mstudiotest.InstanceSpec{}) // a second instance of Ada's: the OAuth sign-in asks which
	wantHeaders := func(t *testing.T, path, lang string, resp *http.Response, body string) {
		t.Helper()
		for k, v := range frontend.SecurityHeaders {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", path, k, got, v)
			}
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: Content-Type %q, want a page", path, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, `<html lang="`+lang+`">`) {
			t.Errorf("%s: page not marked %s", path, lang)
		}
		if css := regexp.MustCompile(`href="(/static/style\.[0-9a-f]+\.css)"`).FindStringSubmatch(body); css == nil {
			t.Errorf("%s: no stylesheet link", path)
		}
	}
	for _, lang := range []struct {
		accept, code, notFound string
	}{{"en-GB,en;q=0.8", "en", "Page not found"}, {"de-DE,de;q=0.9,en;q=0.5", "de", "Seite nicht gefunden"}} {
		t.Run(lang.code, func(t *testing.T) {
			b := apptest.Browser(t)
			hdr := http.Header{"Accept": {"text/html,application/xhtml+xml"}, "Accept-Language": {lang.accept}}
			key, err := app.Sim.NewRetrievalKey(in.ID, ada.ID)
			if err != nil {
				t.Fatal(err)
			}
			sso := "/mstudio/sso?" + url.Values{"atrek": {key}, "userId": {ada.ID}, "instanceId": {in.ID}}.Encode()
			if resp, body := fetch(t, b, http.MethodGet, base+sso, hdr); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("click-through: %d\n%s", resp.StatusCode, body)
			}
			links := teamLinks(t, app, in, lang.code) // the invitation and reset pages (team_pages_test.go)
			pages := []struct {
				path   string
				status int
			}{
				{"/this/page/does/not/exist", http.StatusNotFound},
				{"/mstudio/sso?atrek=short", http.StatusBadRequest},               // SSO error
				{"/login/mstudio/callback?state=x&code=y", http.StatusBadRequest}, // OAuth error
				{"/signed-out", http.StatusOK},
				{atrek.AppPath(in.ID), http.StatusOK},
				{atrek.AppPath(in.ID) + "/actions/rename-project", http.StatusOK},
				{atrek.AppPath(in.ID) + "/actions/00000000-0000-4000-8000-000000000000", http.StatusNotFound},
				{atrek.AppPath(in.ID) + "/login", http.StatusSeeOther}, // signed in: on to the app
				{atrek.AppPath(in.ID) + "/login/forgot", http.StatusOK},
				{atrek.ReclaimPath(in.ID), http.StatusSeeOther}, // an owner already: on to the app
				{atrek.AppPath(in.ID) + "/account", http.StatusOK},
				{atrek.AppPath(in.ID) + "/audit", http.StatusOK},
				{atrek.AppPath(in.ID) + "/audit?before=yesterday", http.StatusBadRequest},
				{atrek.AppPath(in.ID) + "/settings/sign-in", http.StatusOK},
				{"/app/00000000-0000-4000-8000-000000000000/login", http.StatusNotFound},
				{"/app/not-an-id", http.StatusNotFound},
				{"/mstudio/webhooks", http.StatusMethodNotAllowed},
				{atrek.AppPath(in.ID) + "/team?done=removed", http.StatusOK},
				{links.Invite, http.StatusOK}, {links.InviteUsed, http.StatusGone}, {links.InviteRevoked, http.StatusGone},
				{links.InviteUnknown, http.StatusNotFound}, {links.Reset, http.StatusOK}, {links.ResetUsed, http.StatusGone},
				{links.ResetUnknown, http.StatusNotFound},
			}
			for _, p := range pages {
				resp, body := fetch(t, b, http.MethodGet, base+p.path, hdr)
				if resp.StatusCode != p.status {
					t.Errorf("%s: %d, want %d\n%s", p.path, resp.StatusCode, p.status, body)
					continue
				}
				if p.status == http.StatusSeeOther {
					continue
				}
				wantHeaders(t, p.path, lang.code, resp, body)
				if strings.Contains(body, in.ID) && !strings.HasPrefix(p.path, atrek.AppPath(in.ID)) && !isLinkPage(p.path) {
					t.Errorf("%s: the page shows an instance id", p.path)
				}
				if isLinkPage(p.path) && (resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store") {
					t.Errorf("%s: Referrer-Policy %q, Cache-Control %q, want no-referrer and no-store", p.path,
						resp.Header.Get("Referrer-Policy"), resp.Header.Get("Cache-Control"))
				}
			}
			_, body := fetch(t, b, http.MethodGet, base+"/nowhere", hdr)
			if !strings.Contains(body, lang.notFound) {
				t.Errorf("404 page lacks %q:\n%s", lang.notFound, body)
			}

			// The pages of a browser that is not signed in: an instance's sign-in page, and
			// the OAuth sign-in's chooser between Ada's two instances.
			fresh := apptest.Browser(t)
			resp, body := fetch(t, fresh, http.MethodGet, base+atrek.AppPath(in.ID)+"/login", hdr)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("sign-in page: %d\n%s", resp.StatusCode, body)
			}
			wantHeaders(t, "sign-in page", lang.code, resp, body)
			resp, _ = fetch(t, fresh, http.MethodGet, base+"/login/mstudio", hdr)
			authorize := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusSeeOther || authorize == "" {
				t.Fatalf("/login/mstudio: %d to %q, want 303 to the platform", resp.StatusCode, authorize)
			}
			resp, _ = fetch(t, fresh, http.MethodGet, authorize+"&user_id="+url.QueryEscape(ada.ID), nil)
			callback := resp.Header.Get("Location")
			if !strings.HasPrefix(callback, apptest.PublicURL+"/login/mstudio/callback?") {
				t.Fatalf("the platform's authorize: %d to %q, want our callback", resp.StatusCode, callback)
			}
			resp, body = fetch(t, fresh, http.MethodGet, base+strings.TrimPrefix(callback, apptest.PublicURL), hdr)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "/login/mstudio/choose?instance="+in.ID) {
				t.Fatalf("OAuth callback: %d, want the chooser\n%s", resp.StatusCode, body)
			}
			wantHeaders(t, "OAuth chooser", lang.code, resp, body)
		})
	}
}

// An API client (no text/html in Accept) gets JSON errors.
func TestErrorsJSONForAPIClients(t *testing.T) {
	_, base, _ := routedApp(t)
	resp, body := fetch(t, http.DefaultClient, http.MethodGet, base+"/nowhere", http.Header{"Accept": {"application/json"}})
	if resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(body, `"error"`) {
		t.Errorf("got %d %q %s, want a JSON 404", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// The stylesheet and its fonts are served under their content hashes, cacheable for ever;
// any other path under /static is the front's 404.
func TestStylesheet(t *testing.T) {
	_, base, _ := routedApp(t)
	_, page := fetch(t, http.DefaultClient, http.MethodGet, base+"/signed-out", nil)
	css := regexp.MustCompile(`href="(/static/style\.[0-9a-f]+\.css)"`).FindStringSubmatch(page)
	if css == nil {
		t.Fatalf("no stylesheet link in\n%s", page)
	}
	resp, body := fetch(t, http.DefaultClient, http.MethodGet, base+css[1], nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.Contains(body, "--primary:") {
		t.Errorf("stylesheet: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	font := regexp.MustCompile(`url\("(/static/fonts/[a-z0-9.-]+\.woff2)"\)`).FindStringSubmatch(body)
	if font == nil {
		t.Fatal("the stylesheet names no font")
	}
	resp, _ = fetch(t, http.DefaultClient, http.MethodGet, base+font[1], nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "font/woff2" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("font: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	resp, _ = fetch(t, http.DefaultClient, http.MethodGet, base+"/static/style.css", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/static/style.css: %d, want 404", resp.StatusCode)
	}
}

// Every page another package shows has copy in both languages.
func TestEveryProblemHasCopy(t *testing.T) {
	app := apptest.New(t, apptest.Options{})
	for _, key := range atrek.ProblemKeys() {
		if !app.Pages.HasCopy(key) {
			t.Errorf("problem %q has no title and message in every language", key)
		}
	}
}
