package frontend

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed templates/*.html
var templateFS embed.FS

// staticFS holds the stylesheet and the fonts it names.
//
//go:embed static/style.css static/fonts/*.woff2
var staticFS embed.FS

// Page names: each is the layout plus templates/NAME.html. Every template but the layout
// is a page, parsed at start; a page's handler names it by one of these constants.
const (
	pageProblem    = "problem"
	pageSignedOut  = "signedout"
	pageDashboard  = "dashboard"
	pageLogin      = "login"
	pageChoose     = "choose"
	pageNoInstance = "noinstance"
	pageRename     = "rename"
	pageAction     = "action"
	pageTeam       = "team"

	// The ops console's pages.
	pageConsoleHome      = "ops_home"
	pageConsoleInstances = "ops_instances"
	pageConsoleInstance  = "ops_instance"
	pageConsoleReconcile = "ops_reconcile"
	pageConsoleDoctor    = "ops_doctor"
)

// contentSecurityPolicy is the same on every page: the pages load our stylesheet and
// nothing else, run no script, post forms to us only, and are never framed.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// SecurityHeaders are the headers every page carries. Referrer-Policy is same-origin, so
// a link to another site never carries our URLs; a handler whose own URL holds a key sets
// no-referrer before rendering, and the engine keeps it.
var SecurityHeaders = map[string]string{
	"Content-Security-Policy":      contentSecurityPolicy,
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Permissions-Policy":           "camera=(), microphone=(), geolocation=(), payment=()",
}

// Engine renders the pages: one template set per language and page, parsed once, so a
// broken page fails the start, not the first customer who needs it.
type Engine struct {
	pages    map[string]map[string]*template.Template // language → page → template
	catalogs catalogs
	cssPath  string
	// assets are the static files by the path they are served at.
	assets map[string]asset
	secure bool
	logger *slog.Logger
}

// StylesheetPath is where the stylesheet is served: its name carries a hash of its
// content, so it can be cached for ever and a new version is a new URL.
func (e *Engine) StylesheetPath() string { return e.cssPath }

func newEngine(secure bool, logger *slog.Logger) (*Engine, error) {
	cs, err := loadCatalogs()
	if err != nil {
		return nil, err
	}
	assets, cssPath, err := loadAssets()
	if err != nil {
		return nil, err
	}
	e := &Engine{pages: map[string]map[string]*template.Template{}, catalogs: cs,
		cssPath: cssPath, assets: assets, secure: secure, logger: logger}
	pageFiles, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("frontend: pages: %w", err)
	}
	for _, lang := range languages {
		e.pages[lang] = map[string]*template.Template{}
		cat := cs[lang]
		funcs := template.FuncMap{
			"t": func(key string, args ...string) string { return cat.text(key, args...) },
			// has reports whether the copy has key: a problem's hint is optional.
			"has": func(key string) bool { _, ok := cat[key]; return ok },
			// dict passes several values to a partial: dict "key" value "key" value….
			"dict": func(kv ...any) (map[string]any, error) {
				if len(kv)%2 != 0 {
					return nil, fmt.Errorf("dict: odd number of arguments")
				}
				m := map[string]any{}
				for i := 0; i < len(kv); i += 2 {
					k, ok := kv[i].(string)
					if !ok {
						return nil, fmt.Errorf("dict: key %v is not a string", kv[i])
					}
					m[k] = kv[i+1]
				}
				return m, nil
			},
		}
		for _, file := range pageFiles {
			name := strings.TrimSuffix(path.Base(file), ".html")
			if name == "layout" {
				continue
			}
			t, err := template.New(name).Funcs(funcs).Option("missingkey=error").
				ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
			if err != nil {
				return nil, fmt.Errorf("frontend: page %s: %w", name, err)
			}
			e.pages[lang][name] = t
		}
	}
	return e, nil
}

// view is what the layout sees; a page's own data is .Page.
type view struct {
	Lang       string
	Stylesheet string
	// LangLinks switch the language by reloading the page; only pages that are safe to
	// load again have them (not an error page of a single-use link).
	LangLinks []langLink
	Page      any
}

type langLink struct {
	Lang, Label, URL string
	Current          bool
}

// Render writes a page in the request's language with the security headers. It renders
// into a buffer first, so a template failure becomes a clean 500 instead of half a page
// under a 200 status.
func (e *Engine) Render(c echo.Context, status int, page string, data any) error {
	return e.render(c, status, page, data, false)
}

// renderReloadable is Render for a page that may be loaded again as it is: it offers the
// language switch.
func (e *Engine) renderReloadable(c echo.Context, status int, page string, data any) error {
	return e.render(c, status, page, data, true)
}

func (e *Engine) render(c echo.Context, status int, page string, data any, reloadable bool) error {
	req := c.Request()
	lang, chosen := requestLang(req)
	if chosen {
		setLangCookie(c, lang, e.secure)
	}
	t, ok := e.pages[lang][page]
	if !ok {
		return fmt.Errorf("frontend: no page %q", page)
	}
	v := view{Lang: lang, Stylesheet: e.cssPath, Page: data}
	if reloadable {
		for _, l := range languages {
			q := url.Values{"lang": {l}}
			v.LangLinks = append(v.LangLinks, langLink{Lang: l, Label: e.catalogs[l].text("lang.name"),
				URL: req.URL.Path + "?" + q.Encode(), Current: l == lang})
		}
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("frontend: render %s: %w", page, err)
	}
	h := c.Response().Header()
	for k, val := range SecurityHeaders {
		h.Set(k, val)
	}
	if h.Get("Referrer-Policy") == "" {
		h.Set("Referrer-Policy", "same-origin")
	}
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
	h.Add("Vary", "Accept-Language, Cookie")
	h.Set("Content-Language", lang)
	return c.HTMLBlob(status, buf.Bytes())
}

// Problem answers a failure as the user sees it: the status and the copy of key
// (KEY.title, KEY.message and KEY.hint in the catalogs). The copy is fixed text: no key,
// token, id or platform answer ever goes into it. retryURL, when set, is offered as a
// link to start again.
func (e *Engine) Problem(c echo.Context, status int, key, retryURL string) error {
	return e.Render(c, status, pageProblem, problemView{Key: key, RetryURL: retryURL})
}

type problemView struct {
	Key      string
	RetryURL string
}

// ErrorPage renders the page of an error status for the HTTP front's error handler.
func (e *Engine) ErrorPage(c echo.Context, status int) error {
	key := "error.server"
	switch {
	case status == http.StatusNotFound:
		key = "error.not_found"
	case status == http.StatusMethodNotAllowed:
		key = "error.method"
	case status == http.StatusRequestEntityTooLarge:
		key = "error.too_large"
	case status == http.StatusTooManyRequests:
		key = "error.too_many"
	case status == http.StatusForbidden:
		key = "error.forbidden"
	case status < 500:
		key = "error.bad_request"
	}
	return e.Problem(c, status, key, "")
}

// HasCopy reports whether every language has a title and a message for the problem key:
// the wiring's test checks each key another package may show.
func (e *Engine) HasCopy(key string) bool {
	for _, lang := range languages {
		c := e.catalogs[lang]
		if _, ok := c[key+".title"]; !ok {
			return false
		}
		if _, ok := c[key+".message"]; !ok {
			return false
		}
	}
	return true
}

// StaticPrefix is the path under which Static serves: route StaticPrefix+"*" to it.
const StaticPrefix = "/static/"

// asset is a static file as it is served.
type asset struct {
	contentType string
	body        []byte
}

// fontURL is how the stylesheet names a font: url("fonts/NAME.woff2"), relative, so the
// file also works opened straight from the source tree.
var fontURL = regexp.MustCompile(`url\("fonts/([a-z0-9-]+)\.woff2"\)`)

// loadAssets gives every static file a path that carries a hash of its content, so each
// can be cached for ever and a new version is a new URL. The stylesheet's font URLs are
// rewritten to the fonts' hashed paths first, and the stylesheet hashed after, so a new
// font also gives the stylesheet a new URL. A font the stylesheet names but the binary
// lacks fails the start.
func loadAssets() (map[string]asset, string, error) {
	hashed := func(name, ext string, body []byte) string {
		sum := sha256.Sum256(body)
		return StaticPrefix + name + "." + hex.EncodeToString(sum[:6]) + ext
	}
	assets := map[string]asset{}
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		return nil, "", fmt.Errorf("frontend: stylesheet: %w", err)
	}
	var missing error
	css = fontURL.ReplaceAllFunc(css, func(m []byte) []byte {
		name := "fonts/" + string(fontURL.FindSubmatch(m)[1])
		font, err := staticFS.ReadFile("static/" + name + ".woff2")
		if err != nil {
			missing = fmt.Errorf("frontend: stylesheet names %s: %w", name, err)
			return m
		}
		p := hashed(name, ".woff2", font)
		assets[p] = asset{contentType: "font/woff2", body: font}
		return []byte(`url("` + p + `")`)
	})
	if missing != nil {
		return nil, "", missing
	}
	cssPath := hashed("style", ".css", css)
	assets[cssPath] = asset{contentType: "text/css; charset=utf-8", body: css}
	return assets, cssPath, nil
}

// Static serves the stylesheet and its fonts under their content-hash paths, cached for
// a year; any other path under StaticPrefix is the front's 404.
func (e *Engine) Static(c echo.Context) error {
	a, ok := e.assets[c.Request().URL.Path]
	if !ok {
		return echo.ErrNotFound
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	return c.Blob(http.StatusOK, a.contentType, a.body)
}
