package atrek

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// Cookie names. With Secure cookies the __Host- prefix makes the browser itself insist on
// Secure, Path=/ and no Domain, so no sibling host can plant or overwrite the cookie.
const (
	cookieName       = "ext_session"
	cookieNameSecure = "__Host-ext_session"
)

// SignedIn is what RequireSession found for a request: the live session and its account.
// The session's id is not part of it: it lives in the cookie only.
type SignedIn struct {
	Session  extension.Session
	Account  extension.Account
	Instance *extension.Instance
}

// signedInKey keys SignedIn in a request's context.
type signedInKey struct{}

// SessionFrom returns what RequireSession put into the request; ok is false outside it.
func SessionFrom(c echo.Context) (SignedIn, bool) {
	return SessionFromContext(c.Request().Context())
}

// SessionFromContext is SessionFrom for code that has only the request's context.
func SessionFromContext(ctx context.Context) (SignedIn, bool) {
	s, ok := ctx.Value(signedInKey{}).(SignedIn)
	return s, ok
}

// setSessionCookie hands the browser a new session id. Max-Age equals the absolute
// timeout: the cookie never outlives the session it names.
func (h *Handler) setSessionCookie(c echo.Context, id extension.Secret) {
	c.SetCookie(&http.Cookie{
		Name: h.cookieName, Value: id.Reveal(), Path: "/",
		MaxAge: int(h.absolute / time.Second), HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (h *Handler) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: h.cookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: h.secure, SameSite: http.SameSiteLaxMode,
	})
}

// sessionCookie returns the session id the request carries, if any.
func (h *Handler) sessionCookie(r *http.Request) (extension.Secret, bool) {
	ck, err := r.Cookie(h.cookieName)
	if err != nil || ck.Value == "" {
		return "", false
	}
	return extension.Secret(ck.Value), true
}

// RequireSession admits requests of a signed-in user: the cookie must name a live
// session (within the idle and absolute timeouts) whose account and instance still
// exist and whose instance is enabled. It puts SignedIn into the request's context; any
// other request gets the "session ended" page with 401.
func (h *Handler) RequireSession() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			// Pages behind a session are one user's: no shared cache may keep them.
			c.Response().Header().Set("Cache-Control", "private, no-store")
			req := c.Request()
			ctx := req.Context()
			id, ok := h.sessionCookie(req)
			if !ok {
				return h.fail(c, problemSessionEnded)
			}
			sess, err := h.store.SessionByID(ctx, id, h.idle, h.absolute)
			if errors.Is(err, extension.ErrNotFound) {
				h.clearSessionCookie(c.Response())
				return h.fail(c, problemSessionEnded)
			}
			if err != nil {
				return h.internal(c, "load session", err)
			}
			acc, err := h.store.AccountByID(ctx, sess.AccountID)
			if errors.Is(err, extension.ErrNotFound) {
				h.clearSessionCookie(c.Response())
				return h.fail(c, problemSessionEnded)
			}
			if err != nil {
				return h.internal(c, "load account", err)
			}
			// The lifecycle path ends an instance's sessions when it is disabled or
			// removed; the handlers need the instance anyway, and checking its state
			// here too closes the window of a request racing that event.
			in, err := h.store.InstanceByID(ctx, sess.InstanceID)
			switch {
			case errors.Is(err, extension.ErrNotFound):
				return h.fail(c, problemSessionEnded)
			case err != nil:
				return h.internal(c, "load instance", err)
			case in.Removed():
				return h.fail(c, problemRemoved)
			case !in.Enabled:
				return h.fail(c, problemDisabled)
			}
			c.SetRequest(req.WithContext(context.WithValue(ctx, signedInKey{}, SignedIn{Session: sess, Account: acc, Instance: in})))
			return next(c)
		}
	}
}

// logout ends the session the cookie names, if any, and sends the browser to the
// signed-out page. It runs behind cross-origin protection (routes.go), so another site
// cannot sign a user out.
func (h *Handler) logout(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	if id, ok := h.sessionCookie(c.Request()); ok {
		if err := h.store.DeleteSession(c.Request().Context(), id); err != nil {
			return h.internal(c, "delete session", err)
		}
	}
	h.clearSessionCookie(c.Response())
	h.logger.InfoContext(c.Request().Context(), "sso: signed out")
	return c.Redirect(http.StatusSeeOther, "/signed-out")
}

func (h *Handler) signedOut(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return h.pages.render(c.Response(), http.StatusOK, pageSignedOut, nil)
}

// appPage is the plain "signed in as USER for INSTANCE" page that stands in for the
// frontend until it exists.
func (h *Handler) appPage(c echo.Context) error {
	s, ok := SessionFrom(c)
	if !ok {
		return h.fail(c, problemSessionEnded)
	}
	user := s.Account.Name
	if user == "" {
		user = s.Account.Email
	}
	if user == "" {
		user = s.Account.PlatformUserID
	}
	name := s.Instance.ContextName
	if name == "" {
		name = s.Instance.ContextID
	}
	kind := "project"
	if s.Instance.ContextKind == extension.ContextCustomer {
		kind = "organisation"
	}
	return h.pages.render(c.Response(), http.StatusOK, pageApp, struct {
		User, ContextKind, Context, Role string
	}{user, kind, name, s.Account.Role})
}

// internal logs a failure of ours (the error texts of the store carry no secrets) and
// answers the generic page.
func (h *Handler) internal(c echo.Context, what string, err error) error {
	h.logger.ErrorContext(c.Request().Context(), "sso: "+what+" failed", "error", err.Error())
	return h.fail(c, problemInternal)
}
