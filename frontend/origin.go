package frontend

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// SameOrigin refuses a state-changing request that a browser sends from another site, with
// a page and 403. It believes, in this order: Sec-Fetch-Site (sent by every current
// browser), the Origin header (scheme, host and port must be ours exactly), the Referer.
// A request that carries none of them is refused too: a browser always sends one on a
// form post, and nothing but a browser needs these routes.
func (f *Frontend) SameOrigin() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				return next(c)
			}
			if f.sameOrigin(r) {
				return next(c)
			}
			f.refusals.Refused(r.Context(), "cross-site request", c.RealIP())
			return f.Problem(c, http.StatusForbidden, "problem.cross_site", "")
		}
	}
}

func (f *Frontend) sameOrigin(r *http.Request) bool {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin", "none":
		return true
	case "":
	default: // same-site, cross-site
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && originOf(u) == f.origin
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && originOf(u) == f.origin
	}
	return false
}

// originOf is a URL's origin as browsers serialise it: scheme and host in lower case, and
// the port only when it is not the scheme's default (https://host:443 is https://host).
func originOf(u *url.URL) string {
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "https" && port == "443") || (scheme == "http" && port == "80") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 address
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host
}
