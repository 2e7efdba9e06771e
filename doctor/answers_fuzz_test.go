package doctor

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"
)

// What a probed server answers is untrusted: none of its readers may panic, and what
// they put into a finding stays one printable line.

func printableLine(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) })
}

func FuzzReadSignInRedirect(f *testing.F) {
	f.Add("https://api.mittwald.de/v2/oauth2/authorize?client_id=3F1E6C2A-8B4D-4E59-9A7C-2D5B8E1F4A60&redirect_uri=https%3A%2F%2Fext.example.com%2Flogin%2Fmstudio%2Fcallback&state=x")
	f.Add("http://127.0.0.1:8081/v2/oauth2/authorize?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fbase%2Flogin%2Fmstudio%2Fcallback")
	f.Add("/relative?redirect_uri=https://x/login/mstudio/callback")
	f.Add("https://a/?redirect_uri=https%3A%2F%2Fx%2Flogin%2Fmstudio%2Fcallback%3Fq%3D1")
	f.Add("https://a/?redirect_uri=javascript:alert(1)")
	f.Add("https://a/?redirect_uri=https%3A%2F%2Fx%0D%0A%1B%5B2J%2Flogin%2Fmstudio%2Fcallback")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, location string) {
		cfg, ok := ReadSignInRedirect(location)
		if !ok {
			if cfg != (SignInConfig{}) {
				t.Fatalf("not a redirect, but %+v", cfg)
			}
			return
		}
		u, err := url.Parse(cfg.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("public URL %q is not an http(s) URL", cfg.PublicURL)
		}
		if cfg.ClientID != strings.ToLower(cfg.ClientID) {
			t.Fatalf("client id %q not lower-cased", cfg.ClientID)
		}
		if s := quoteURL(cfg.PublicURL) + quote(cfg.ClientID, 40); !printableLine(s) {
			t.Fatalf("shown as %q", s)
		}
		f := PublicURLFinding("its EXT_PUBLIC_URL", cfg.PublicURL)
		if f.Level != OK && f.Level != Warn && f.Level != Fail {
			t.Fatalf("level %q", f.Level)
		}
	})
}

func FuzzSecurityHeaderFindings(f *testing.F) {
	f.Add("default-src 'none'; frame-ancestors 'none'", "nosniff", "DENY", "same-origin", "max-age=31536000", true)
	f.Add("", "", "", "", "", false)
	f.Add("frame-ancestors", "NOSNIFF ", "sameorigin", "no-referrer", "max-age=0", true)
	f.Add(";;;", "x", "ALLOW-FROM x", "\x00", "max-age=", true)
	f.Fuzz(func(t *testing.T, csp, xcto, xfo, referrer, hsts string, https bool) {
		h := http.Header{}
		for k, v := range map[string]string{"Content-Security-Policy": csp, "X-Content-Type-Options": xcto,
			"X-Frame-Options": xfo, "Referrer-Policy": referrer, "Strict-Transport-Security": hsts} {
			if v != "" {
				h.Set(k, v)
			}
		}
		fs := SecurityHeaderFindings(h, https, "the page")
		want := 1
		if https {
			want = 2
		}
		if len(fs) != want {
			t.Fatalf("%d findings, want %d", len(fs), want)
		}
		for _, f := range fs {
			if !printableLine(f.Message) || (f.Level != OK && f.Action == "") {
				t.Fatalf("finding %+v", f)
			}
		}
	})
}

func FuzzPageKind(f *testing.F) {
	for _, s := range []string{"text/html; charset=UTF-8", "application/json", "application/problem+json", "", "text/html;;", "TEXT/HTML"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, contentType string) {
		switch PageKind(contentType) {
		case "html", "json", "other":
		default:
			t.Fatalf("PageKind(%q) = %q", contentType, PageKind(contentType))
		}
	})
}

func FuzzClockFinding(f *testing.F) {
	f.Add("Thu, 03 Dec 2026 08:00:00 GMT", int64(0))
	f.Add("Thursday, 03-Dec-26 08:00:00 GMT", int64(time.Minute))
	f.Add("Thu Dec  3 08:00:00 2026", int64(-time.Hour))
	f.Add("\x1b[31m", int64(5))
	f.Fuzz(func(t *testing.T, date string, rtt int64) {
		sent := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		f := ClockFinding(date, sent, sent.Add(time.Duration(rtt)))
		if !printableLine(f.Message) || (f.Level != OK && f.Action == "") {
			t.Fatalf("finding %+v", f)
		}
	})
}

func FuzzErrorText(f *testing.F) {
	f.Add([]byte(`{"error":"meta.extensionId is not this extension's id"}`))
	f.Add([]byte(`{"error":"\u001b[2Jgone\nnext"}`))
	f.Add([]byte(`{"error":12}`))
	f.Add([]byte(`<html>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := errorText(body)
		if !printableLine(s) || len(s) > 120*10+10 {
			t.Fatalf("errorText = %q", s)
		}
	})
}
