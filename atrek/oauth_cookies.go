package atrek

// Helpers of the OAuth2 sign-in: the chooser label, random values, and the sealed cookies
// that carry a sign-in in flight.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// oauthRandom returns 32 random bytes, base64url: a state, or a PKCE verifier of 43
// characters (RFC 7636 4.1).
func oauthRandom() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (o *OAuth) setSealed(c echo.Context, name, aad string, v any) error {
	plain, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sealed, err := o.store.Keys().Seal(extension.Secret(plain), aad)
	if err != nil {
		return err
	}
	c.SetCookie(o.cookie(name, sealed, int(oauthCookieTTL/time.Second)))
	return nil
}

// openSealed reports whether the request carries the cookie, sealed by us for aad, and
// decodes it into v.
func (o *OAuth) openSealed(c echo.Context, name, aad string, v any) bool {
	ck, err := c.Cookie(name)
	if err != nil || ck.Value == "" {
		return false
	}
	plain, err := o.store.Keys().Open(ck.Value, aad)
	return err == nil && json.Unmarshal([]byte(plain.Reveal()), v) == nil
}

func (o *OAuth) clearCookie(c echo.Context, name string) { c.SetCookie(o.cookie(name, "", -1)) }

// cookie is Lax, not Strict: the platform's redirect back is a cross-site top-level
// navigation, which must carry the pre-session cookie.
func (o *OAuth) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: oauthLoginPath, MaxAge: maxAge,
		HttpOnly: true, Secure: o.secure, SameSite: http.SameSiteLaxMode,
	}
}

// The problems of the OAuth2 sign-in. Each page offers a fresh start but oauthProblemNone's.
var (
	oauthProblemExpired     = problem{http.StatusBadRequest, "problem.oauth_expired"}
	oauthProblemState       = problem{http.StatusBadRequest, "problem.oauth_state"}
	oauthProblemDenied      = problem{http.StatusForbidden, "problem.oauth_denied"}
	oauthProblemIncomplete  = problem{http.StatusBadRequest, "problem.oauth_incomplete"}
	oauthProblemPlatform    = problem{http.StatusBadGateway, "problem.oauth_platform"}
	oauthProblemNone        = problem{http.StatusForbidden, "problem.oauth_none"}
	oauthProblemUnavailable = problem{http.StatusForbidden, "problem.oauth_unavailable"}
	oauthProblemInternal    = problem{http.StatusInternalServerError, "error.server"}
)

func (o *OAuth) fail(c echo.Context, p problem) error {
	retry := oauthLoginPath
	if p == oauthProblemNone {
		retry = ""
	}
	return o.pages.Problem(c, p.Status, p.Key, retry)
}

// internal logs a failure of ours and answers the generic page.
func (o *OAuth) internal(c echo.Context, what string, err error) error {
	o.logger.ErrorContext(c.Request().Context(), "oauth sign-in: "+what+" failed", "error", err.Error())
	return o.fail(c, oauthProblemInternal)
}
