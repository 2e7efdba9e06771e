package atrek

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Routes registers the single sign-on entry and the pages around it:
//
//	GET  /mstudio/sso   the control panel's click-through (rate-limited per address)
//	POST /logout        ends the session (cross-origin protected)
//	GET  /signed-out    the page after logout
//	GET  /app           the signed-in page (until the frontend takes it over)
func (h *Handler) Routes(e *echo.Echo) {
	e.GET("/mstudio/sso", h.sso)
	e.POST("/logout", h.logout, h.crossOrigin())
	e.GET("/signed-out", h.signedOut)
	e.GET("/app", h.appPage, h.RequireSession())
}

// crossOrigin refuses state-changing requests a browser sends from another site, with
// our page instead of the standard library's plain text.
func (h *Handler) crossOrigin() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.logger.InfoContext(r.Context(), "sso: cross-origin request refused", "path", r.URL.Path)
		if err := h.pages.render(w, problemCrossOrigin.Status, pageError, problemCrossOrigin); err != nil {
			h.logger.ErrorContext(r.Context(), "sso: render refusal", "error", err.Error())
		}
	}))
	return echo.WrapMiddleware(cop.Handler)
}
