package atrek

// Helpers of the OAuth2 sign-in: the chooser label, random values, and the sealed cookies
// that carry a sign-in in flight.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// oauthLabel names an instance on the chooser page: its context's name, else its kind
// and id.
func oauthLabel(in extension.Instance) string {
	if in.ContextName != "" {
		return in.ContextName
	}
	if in.ContextKind == extension.ContextCustomer {
		return "Organisation " + in.ContextID
	}
	return "Project " + in.ContextID
}

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

// oauthProblem is a failed sign-in as the user sees it: fixed words, never a token, code
// or platform answer. Retry offers a fresh start.
type oauthProblem struct {
	Status         int
	Title, Message string
	Hint           string
	Retry          bool
}

var (
	oauthProblemExpired = oauthProblem{http.StatusBadRequest, "The sign-in has expired",
		"The sign-in took too long, was already completed, or was started in another browser.", "", true}
	oauthProblemState = oauthProblem{http.StatusBadRequest, "The sign-in did not complete",
		"The answer from the control panel does not belong to the sign-in started in this browser.", "", true}
	oauthProblemDenied = oauthProblem{http.StatusForbidden, "The sign-in was cancelled",
		"The control panel did not grant the extension access to your account.", "", true}
	oauthProblemIncomplete = oauthProblem{http.StatusBadRequest, "The sign-in did not complete",
		"The sign-in did not complete, try again.", "", true}
	oauthProblemPlatform = oauthProblem{http.StatusBadGateway, "The control panel did not answer",
		"We could not confirm your sign-in with the control panel just now.", "Wait a moment, then try again.", true}
	oauthProblemNone = oauthProblem{http.StatusForbidden, "The extension is not installed for you",
		"None of your projects has this extension installed.",
		"Install it from the control panel's marketplace, or sign in as a user of a project that has it.", false}
	oauthProblemUnavailable = oauthProblem{http.StatusForbidden, "This project is not available",
		"The extension is not installed, not enabled, or not accessible for you in this project or organisation.", "", true}
	oauthProblemInternal = oauthProblem{http.StatusInternalServerError, "Something went wrong on our side",
		"The extension could not complete your sign-in. This is our fault, not yours.", "Please try again in a few minutes.", true}
)

func (o *OAuth) fail(c echo.Context, p oauthProblem) error {
	return o.render(c, p.Status, "problem", p)
}

// internal logs a failure of ours and answers the generic page.
func (o *OAuth) internal(c echo.Context, what string, err error) error {
	o.logger.ErrorContext(c.Request().Context(), "oauth sign-in: "+what+" failed", "error", err.Error())
	return o.fail(c, oauthProblemInternal)
}

// render writes the page into a buffer first, so a template failure is a clean 500.
func (o *OAuth) render(c echo.Context, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := o.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render oauth page %s: %w", name, err)
	}
	h := c.Response().Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	return c.HTMLBlob(status, buf.Bytes())
}
