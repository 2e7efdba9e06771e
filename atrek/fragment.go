package atrek

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
)

// HeaderSessionToken is the request header that carries a frontend fragment's session
// token, by the convention of the platform's docs and reference extension.
//
// The middleware reads this header only. Authorization: Bearer carries access tokens
// everywhere else in the platform's world; taking session tokens there too would invite
// mixing the two up, in our code and in a fragment's.
const HeaderSessionToken = "x-session-token"

// fragmentKey keys the verified fragment in a request's context.
type fragmentKey struct{}

type fragment struct {
	claims   *SessionClaims
	instance *extension.Instance
}

// Middleware verifies the session token of every request and hands its claims and
// instance to the handler through the request context (FragmentFrom). It refuses a
// request without a valid token with 401, one for another extension or for an instance
// that is unknown, disabled or removed with 403, and answers 503 while the platform's key
// cannot be had. The errors are *echo.HTTPError, for the server's error handler to write.
func (v *SessionTokenVerifier) Middleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			// What a fragment's request gets depends on whose token it carries: no shared
			// cache may keep it. Set first, so a refusal has it too and a handler may
			// loosen it.
			h := c.Response().Header()
			h.Add("Vary", HeaderSessionToken)
			h.Set("Cache-Control", "private, no-store")
			req := c.Request()
			var raw string
			switch values := req.Header.Values(HeaderSessionToken); len(values) {
			case 0:
			case 1:
				raw = values[0]
			default:
				// Which one a proxy or the handler would see is anybody's guess.
				return sessionTokenError(invalid("more than one " + HeaderSessionToken + " header"))
			}
			ctx := mstudio.WithClientAddress(req.Context(), c.RealIP())
			claims, in, err := v.Verify(ctx, raw)
			if err != nil {
				return sessionTokenError(err)
			}
			ctx = context.WithValue(ctx, fragmentKey{}, fragment{claims, in})
			c.SetRequest(req.WithContext(ctx))
			return next(c)
		}
	}
}

// FragmentFrom returns what Middleware verified for the request: the session token's
// claims (user, scopes, session) and the instance. ok is false outside the middleware.
func FragmentFrom(c echo.Context) (claims *SessionClaims, instance *extension.Instance, ok bool) {
	return FragmentFromContext(c.Request().Context())
}

// FragmentFromContext is FragmentFrom for code that has only the request's context.
func FragmentFromContext(ctx context.Context) (claims *SessionClaims, instance *extension.Instance, ok bool) {
	f, ok := ctx.Value(fragmentKey{}).(fragment)
	return f.claims, f.instance, ok
}

// sessionTokenError turns a verification error into the answer: words a fragment's
// developer can act on, never the token. Anything else is a 500 for the error handler.
func sessionTokenError(err error) error {
	code, msg := http.StatusUnauthorized, ""
	switch {
	case errors.Is(err, ErrSessionTokenMissing):
		msg = "session token missing: send it in the " + HeaderSessionToken + " header"
	case errors.Is(err, ErrSessionTokenExpired):
		msg = "session token expired: get a new one from the control panel"
	case errors.Is(err, ErrSessionTokenInvalid):
		msg = "session token not valid"
	case errors.Is(err, ErrForeignExtension):
		code, msg = http.StatusForbidden, "the session token was issued for another extension"
	case errors.Is(err, extension.ErrDisabled):
		code, msg = http.StatusForbidden, "the extension is disabled in this project or organisation"
	case errors.Is(err, extension.ErrRemoved):
		code, msg = http.StatusForbidden, "the extension was removed from this project or organisation"
	case errors.Is(err, ErrInstanceUnavailable):
		code, msg = http.StatusForbidden, "the extension is not installed here (yet)"
	case errors.Is(err, ErrSessionKeyUnavailable):
		code, msg = http.StatusServiceUnavailable, "session tokens cannot be checked right now; try again shortly"
	default:
		return err
	}
	return &echo.HTTPError{Code: code, Message: msg, Internal: err}
}

// AccessToken verifies a session token and exchanges it, with the extension secret, for
// an access token of the token's user in its instance, valid for about 60 s. The token is
// returned, never kept: the platform says not to cache it, so each use exchanges anew.
func (v *SessionTokenVerifier) AccessToken(ctx context.Context, raw string) (extension.Secret, time.Time, error) {
	if v.exchange.client == nil {
		return "", time.Time{}, fmt.Errorf("%w: no platform client", ErrExchangeUnavailable)
	}
	claims, _, err := v.Verify(ctx, raw)
	if err != nil {
		return "", time.Time{}, err
	}
	if v.exchange.secret.IsZero() && !claims.AuthenticatableWithoutSecret {
		return "", time.Time{}, fmt.Errorf("%w: no extension secret (EXT_EXTENSION_SECRET)", ErrExchangeUnavailable)
	}
	tok, err := v.exchange.client.ExchangeSessionToken(ctx, raw, v.exchange.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("atrek: %w", err)
	}
	return tok.Token, tok.Expiry, nil
}
