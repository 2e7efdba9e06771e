package frontend

import (
	"bytes"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// WCAG 2.2 AA: text needs 4.5:1 against its background (1.4.3), the parts of a control
// that show what it is and where the focus is need 3:1 (1.4.11).
func TestStyleContrast(t *testing.T) {
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		t.Fatal(err)
	}
	schemes := colourSchemes(t, string(css))
	text := [][2]string{ // foreground, background
		{"text", "bg"}, {"text", "surface"}, {"text", "surface-accent"}, {"text", "field-bg"}, {"text", "danger-soft"},
		{"text-label", "surface"}, {"text-muted", "surface"}, {"text-muted", "bg"}, {"text-muted", "surface-accent"},
		{"link", "surface"}, {"link", "bg"}, {"link", "surface-accent"}, {"link-hover", "surface"}, {"link-hover", "bg"},
		{"on-primary", "primary"}, {"on-primary", "primary-hover"}, {"on-primary", "primary-pressed"},
		{"on-secondary", "secondary"}, {"on-secondary", "secondary-hover"},
		{"on-danger", "danger"}, {"on-danger", "danger-hover"},
		{"danger-text", "surface"}, {"danger-text", "bg"},
		{"success-text", "surface"}, {"warning-text", "surface"}, {"info-text", "surface"},
		{"badge-text", "badge-bg"}, {"badge-blue-text", "badge-blue-bg"},
	}
	ui := [][2]string{
		{"border-strong", "surface"}, {"border-strong", "field-bg"}, {"danger", "danger-soft"},
		{"focus", "bg"}, {"focus", "surface"}, {"focus", "focus-inner"},
	}
	for _, scheme := range []string{"light", "dark"} {
		colours := schemes[scheme]
		check := func(pairs [][2]string, min float64) {
			for _, p := range pairs {
				fg, ok1 := colours[p[0]]
				bg, ok2 := colours[p[1]]
				if !ok1 || !ok2 {
					t.Errorf("%s: --%s or --%s is not a colour in style.css", scheme, p[0], p[1])
					continue
				}
				if r := contrast(fg, bg); r < min {
					t.Errorf("%s: --%s on --%s is %.2f:1, want at least %.1f:1", scheme, p[0], p[1], r, min)
				}
			}
		}
		check(text, 4.5)
		check(ui, 3)
	}
}

// colourSchemes reads the colour custom properties of style.css: light from the first
// :root block, dark from the :root block in the prefers-color-scheme: dark query on top of
// light.
func colourSchemes(t *testing.T, css string) map[string]map[string][3]float64 {
	t.Helper()
	css = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(css, "")
	light, dark, ok := strings.Cut(css, "@media (prefers-color-scheme: dark)")
	if !ok {
		t.Fatal("style.css has no dark scheme")
	}
	block := regexp.MustCompile(`(?s):root\s*\{(.*?)\}`)
	decl := regexp.MustCompile(`--([a-z0-9-]+)\s*:\s*#([0-9a-fA-F]{6})\s*;`)
	read := func(part string, into map[string][3]float64) {
		m := block.FindStringSubmatch(part)
		if m == nil {
			t.Fatal("style.css: a scheme without a :root block")
		}
		for _, d := range decl.FindAllStringSubmatch(m[1], -1) {
			into[d[1]] = parseHex(t, d[2])
		}
	}
	out := map[string]map[string][3]float64{"light": {}, "dark": {}}
	read(light, out["light"])
	for k, v := range out["light"] {
		out["dark"][k] = v
	}
	read(dark, out["dark"])
	if len(out["light"]) < 10 {
		t.Fatalf("style.css: only %d colours found", len(out["light"]))
	}
	return out
}

func parseHex(t *testing.T, h string) [3]float64 {
	t.Helper()
	var c [3]float64
	for i := range c {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		c[i] = float64(v) / 255
	}
	return c
}

// contrast is WCAG's contrast ratio of two sRGB colours.
func contrast(a, b [3]float64) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(c [3]float64) float64 {
	lin := func(v float64) float64 {
		if v <= 0.04045 {
			return v / 12.92
		}
		return math.Pow((v+0.055)/1.055, 2.4)
	}
	return 0.2126*lin(c[0]) + 0.7152*lin(c[1]) + 0.0722*lin(c[2])
}

// The ratio matches WCAG's known values.
func TestContrastFormula(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want float64
	}{{"000000", "ffffff", 21}, {"777777", "ffffff", 4.48}, {"ffffff", "ffffff", 1}} {
		if got := contrast(parseHex(t, c.a), parseHex(t, c.b)); math.Abs(got-c.want) > 0.01 {
			t.Errorf("contrast(#%s, #%s) = %.2f, want %.2f", c.a, c.b, got, c.want)
		}
	}
}

// The stylesheet and every font it names are served under content-hash paths, cacheable
// for ever; the stylesheet names no font by its source path and nothing off our origin.
func TestStaticAssets(t *testing.T) {
	eng, err := newEngine(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.GET(StaticPrefix+"*", eng.Static)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	immutable := func(path, contentType string, resp *http.Response) {
		t.Helper()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentType ||
			resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("%s: %d %q %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		}
	}
	if !regexp.MustCompile(`^/static/style\.[0-9a-f]{12}\.css$`).MatchString(eng.StylesheetPath()) {
		t.Fatalf("stylesheet path %q", eng.StylesheetPath())
	}
	resp, css := get(eng.StylesheetPath())
	immutable(eng.StylesheetPath(), "text/css; charset=utf-8", resp)
	if bytes.Contains(css, []byte(`url("fonts/`)) || regexp.MustCompile(`(?i)url\(\s*["']?(https?:)?//|@import`).Match(css) {
		t.Errorf("stylesheet names a source path, another origin or an import")
	}
	fonts := regexp.MustCompile(`url\("(/static/fonts/inter-[a-z-]+-(400|700)-normal\.[0-9a-f]{12}\.woff2)"\)`).FindAllSubmatch(css, -1)
	if len(fonts) != 4 {
		t.Fatalf("stylesheet names %d fonts, want 4 (Inter 400 and 700, latin and latin-ext)", len(fonts))
	}
	for _, f := range fonts {
		path := string(f[1])
		resp, body := get(path)
		immutable(path, "font/woff2", resp)
		if !bytes.HasPrefix(body, []byte("wOF2")) {
			t.Errorf("%s is not a WOFF2 file", path)
		}
	}
	for _, path := range []string{"/static/style.css", "/static/fonts/inter-latin-400-normal.woff2", "/static/fonts/",
		strings.Replace(eng.StylesheetPath(), ".css", "0.css", 1), "/static/../engine.go"} {
		if resp, _ := get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, resp.StatusCode)
		}
	}
}
