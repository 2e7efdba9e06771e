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
			f.logger.InfoContext(r.Context(), "cross-site request refused", "path", r.URL.Path)
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
		return strings.EqualFold(o, f.origin)
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		return err == nil && strings.EqualFold(u.Scheme+"://"+u.Host, f.origin)
	}
	return false
}
