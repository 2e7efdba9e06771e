package browsertest_test

import (
	"bytes"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest/browsertest"
)

// strictCSP is as strict as the pages' own policy: no script of any origin may run.
const strictCSP = "default-src 'none'; style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// site is a tiny site under a strict CSP: a form that greets whoever submits it, a cookie
// setter and reader, and a page that breaks an accessibility rule.
func site(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	page := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Security-Policy", strictCSP)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s</title></head><body><main><h1>%s</h1>%s</main></body></html>`,
			title, title, body)
	}
	mux.HandleFunc("GET /form", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Form", `<form method="post" action="/hello"><label for="name">Name</label> <input id="name" name="name">
<button type="submit">Say hello</button></form>`)
	})
	mux.HandleFunc("POST /hello", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Hello", `<p id="greeting">Hello, `+html.EscapeString(r.FormValue("name"))+`</p>`)
	})
	mux.HandleFunc("GET /set", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "who", Value: r.URL.Query().Get("who"), Path: "/"})
		page(w, "Set", "<p>set</p>")
	})
	mux.HandleFunc("GET /who", func(w http.ResponseWriter, r *http.Request) {
		who := "nobody"
		if c, err := r.Cookie("who"); err == nil {
			who = c.Value
		}
		page(w, "Who", `<p id="who">`+html.EscapeString(who)+`</p>`)
	})
	mux.HandleFunc("GET /broken", func(w http.ResponseWriter, r *http.Request) {
		page(w, "Broken", `<img src="/nothing.png"><input name="unlabelled">`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestBrowser(t *testing.T) {
	base := site(t)
	b := browsertest.New(t)

	t.Run("keyboard fills and submits a form", func(t *testing.T) {
		p := b.NewContext(t)
		if status := p.Open(base + "/form"); status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		p.Fill("#name", "Ada")
		p.TabTo("button: Say hello", 3)
		p.PressAndWait(browsertest.Enter)
		if got := p.Text("#greeting"); got != "Hello, Ada" {
			t.Errorf("greeting %q", got)
		}
		if got := p.Path(); got != "/hello" {
			t.Errorf("path %q", got)
		}
		if got := p.Lang(); got != "en" {
			t.Errorf("lang %q", got)
		}
	})

	t.Run("browser contexts keep their cookies apart", func(t *testing.T) {
		ada, bob := b.NewContext(t), b.NewContext(t)
		ada.Open(base + "/set?who=ada")
		bob.Open(base + "/set?who=bob")
		ada.Open(base + "/who")
		bob.Open(base + "/who")
		if a, b := ada.Text("#who"), bob.Text("#who"); a != "ada" || b != "bob" {
			t.Errorf("ada's context sees %q, bob's %q", a, b)
		}
		fresh := b.NewContext(t)
		fresh.Open(base + "/who")
		if got := fresh.Text("#who"); got != "nobody" {
			t.Errorf("a new context sees %q", got)
		}
	})

	t.Run("axe runs under a strict CSP and finds violations", func(t *testing.T) {
		p := b.NewContext(t)
		p.Open(base + "/broken")
		ids := map[string]bool{}
		for _, v := range p.Axe() {
			ids[v.ID] = true
			if v.Impact == "" || len(v.Nodes) == 0 {
				t.Errorf("violation without impact or elements: %s", v)
			}
		}
		for _, want := range []string{"image-alt", "label"} {
			if !ids[want] {
				t.Errorf("axe did not report %s; it reported %v", want, ids)
			}
		}
		p.Open(base + "/form")
		if vs := p.Axe(); len(vs) != 0 {
			t.Errorf("a clean page: %v", vs)
		}
	})

	t.Run("screenshots go to the folder", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(browsertest.ScreenshotDirEnv, dir)
		p := b.NewContext(t)
		p.Open(base + "/form")
		path := p.Screenshot("form page/en")
		if !strings.HasPrefix(path, dir) || !strings.HasSuffix(path, "form_page_en.png") {
			t.Errorf("screenshot at %s, want form_page_en.png in %s", path, dir)
		}
		png, err := os.ReadFile(path)
		if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Errorf("screenshot %s is no PNG: %v", path, err)
		}
	})
}
