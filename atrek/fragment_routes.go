package atrek

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// FragmentSession serves GET /mstudio/fragment/session behind Middleware: a frontend
// fragment sends its session token there and gets back who and where it is. It is the
// smallest use of the middleware, and lets a fragment developer check their integration
// end to end.
func (v *SessionTokenVerifier) FragmentSession(c echo.Context) error {
	claims, in, ok := FragmentFrom(c)
	if !ok {
		return echo.NewHTTPError(http.StatusUnauthorized, "session token required")
	}
	return c.JSON(http.StatusOK, map[string]any{
		"userId":      claims.UserID(),
		"instanceId":  in.ID,
		"context":     in.ContextKind,
		"contextId":   in.ContextID,
		"contextName": in.ContextName,
		"scopes":      claims.Scopes,
		"sessionId":   claims.SessionID,
	})
}
