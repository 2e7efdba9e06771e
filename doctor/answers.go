package doctor

// Readers of what a probed endpoint answers. Everything here is untrusted input: another
// server's headers and redirects. Each reader returns findings and never fails on odd
// input (FuzzSignInRedirect, FuzzSecurityHeaders, FuzzPageKind).

import (
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// SignInConfig is what the endpoint's OAuth2 sign-in redirect (GET /login/mstudio) tells
// about its configuration: the redirect URI is built from EXT_PUBLIC_URL, the client id
// is EXT_EXTENSION_ID, and the redirect goes to EXT_MSTUDIO_API_URL.
type SignInConfig struct {
	PublicURL string // scheme://host[:port][/path] of the redirect URI, without its callback path
	ClientID  string
	Platform  string // scheme://host of the authorization endpoint
}

const signInCallbackPath = "/login/mstudio/callback"

// ReadSignInRedirect reads the Location of the sign-in redirect; ok is false when it is
// not one (a missing or foreign redirect, an older backend).
func ReadSignInRedirect(location string) (cfg SignInConfig, ok bool) {
	if len(location) > 8192 {
		return SignInConfig{}, false
	}
	u, err := url.Parse(location)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return SignInConfig{}, false
	}
	q := u.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (redirect.Scheme != "http" && redirect.Scheme != "https") || redirect.Host == "" {
		return SignInConfig{}, false
	}
	base, found := strings.CutSuffix(redirect.Path, signInCallbackPath)
	if !found || redirect.RawQuery != "" || redirect.Fragment != "" {
		return SignInConfig{}, false
	}
	cfg.PublicURL = redirect.Scheme + "://" + redirect.Host + base
	cfg.ClientID = strings.ToLower(q.Get("client_id"))
	cfg.Platform = u.Scheme + "://" + u.Host
	return cfg, true
}

// SameOrigin reports whether two URLs have the same scheme, host and port (a default
// port written out or left off counts the same).
func SameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// PageKind says what kind of body a Content-Type announces: "html", "json" or "other".
func PageKind(contentType string) string {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "other"
	}
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml":
		return "html"
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	}
	return "other"
}

// SecurityHeaderFindings judges the headers of a page a browser shows: a Content Security
// Policy, no MIME sniffing, no framing by other sites, a Referrer-Policy, and on https
// Strict-Transport-Security. page names the page in messages.
func SecurityHeaderFindings(h http.Header, https bool, page string) []Finding {
	var missing []string
	csp := strings.ToLower(strings.Join(h.Values("Content-Security-Policy"), ";"))
	if strings.TrimSpace(csp) == "" {
		missing = append(missing, "Content-Security-Policy")
	}
	if !strings.EqualFold(strings.TrimSpace(h.Get("X-Content-Type-Options")), "nosniff") {
		missing = append(missing, "X-Content-Type-Options: nosniff")
	}
	xfo := strings.ToUpper(strings.TrimSpace(h.Get("X-Frame-Options")))
	if !cspHasDirective(csp, "frame-ancestors") && xfo != "DENY" && xfo != "SAMEORIGIN" {
		missing = append(missing, "frame-ancestors (or X-Frame-Options)")
	}
	if strings.TrimSpace(h.Get("Referrer-Policy")) == "" {
		missing = append(missing, "Referrer-Policy")
	}
	var out []Finding
	if len(missing) > 0 {
		out = append(out, fail("set them in front of the backend (or run a backend version that sends them): they keep pages from being framed, sniffed or leaking their addresses",
			"%s lacks %s", page, strings.Join(missing, ", ")))
	} else {
		out = append(out, ok("%s carries Content-Security-Policy, X-Content-Type-Options, frame-ancestors and Referrer-Policy", page))
	}
	if https {
		if hsts := strings.ToLower(h.Get("Strict-Transport-Security")); !strings.Contains(hsts, "max-age=") || strings.Contains(hsts, "max-age=0") {
			out = append(out, warn("have the TLS proxy send it (Caddy: header Strict-Transport-Security \"max-age=31536000\")",
				"%s is https without Strict-Transport-Security: a browser may still try plain http first", page))
		} else {
			out = append(out, ok("%s sends Strict-Transport-Security", page))
		}
	}
	return out
}

// cspHasDirective reports whether a (lower-cased) policy, or one of several joined with
// ";", names the directive.
func cspHasDirective(csp, name string) bool {
	for _, d := range strings.Split(csp, ";") {
		if f := strings.Fields(d); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}
