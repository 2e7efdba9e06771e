package atrek

import (
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// Pages renders what a browser sees. The package declares it and cmd hands over the
// frontend's page engine, so the sign-in's pages look and read like every other page.
type Pages interface {
	// Problem answers a failure: status, and the copy of key in the user's language
	// (fixed text: no key, token, id or platform answer ever goes into it). retryURL,
	// when set, is offered as the way to start again.
	Problem(c echo.Context, status int, key, retryURL string) error
	// Render writes page with data.
	Render(c echo.Context, status int, page string, data any) error
}

// Sessions starts and ends browser sessions; cmd hands over the frontend's.
type Sessions interface {
	// Starting says how a sign-in to the instance starts its session in this browser:
	// the timeout, the User-Agent, and the session the browser brought, which the
	// sign-in ends (a session id the browser brought is never adopted).
	Starting(c echo.Context, instanceID string) extension.SessionStart
	// Started hands the browser the session the store started for the account.
	Started(c echo.Context, acc extension.Account, id extension.Secret)
	// End ends this browser's session of the instance, if any.
	End(c echo.Context, instanceID string) error
	// Current returns the account of the session the request's middleware found, and
	// the platform user it signed in as ("" for a local account); ok is false without one.
	Current(c echo.Context) (acc extension.Account, platformUserID string, ok bool)
}

// AppPath is where a sign-in ends: the instance's dashboard.
func AppPath(instanceID string) string { return "/app/" + instanceID }

// problem is a failure as the customer sees it: a status and the key of its copy.
type problem struct {
	Status int
	Key    string
}

// The problems of the click-through. Every key must have copy in every language;
// ProblemKeys lists them for the wiring's test.
var (
	problemBadLink          = problem{http.StatusBadRequest, "problem.bad_link"}
	problemNotInstalled     = problem{http.StatusNotFound, "problem.not_installed"}
	problemDisabled         = problem{http.StatusForbidden, "problem.disabled"}
	problemRemoved          = problem{http.StatusGone, "problem.removed"}
	problemUsed             = problem{http.StatusBadRequest, "problem.link_used"}
	problemExpired          = problem{http.StatusBadRequest, "problem.link_expired"}
	problemNoAccessProject  = problem{http.StatusForbidden, "problem.no_access_project"}
	problemNoAccessCustomer = problem{http.StatusForbidden, "problem.no_access_customer"}
	problemPlatform         = problem{http.StatusBadGateway, "problem.platform"}
	problemTooMany          = problem{http.StatusTooManyRequests, "problem.too_many"}
	problemDomainNotAllowed = problem{http.StatusForbidden, "problem.domain_not_allowed"}
	problemInternal         = problem{http.StatusInternalServerError, "error.server"}
)

// ProblemKeys lists the copy keys of every page this package may show.
func ProblemKeys() []string {
	var keys []string
	for _, p := range []problem{problemBadLink, problemNotInstalled, problemDisabled, problemRemoved, problemUsed,
		problemExpired, problemNoAccessProject, problemNoAccessCustomer, problemPlatform, problemTooMany, problemInternal, problemDomainNotAllowed,
		oauthProblemExpired, oauthProblemState, oauthProblemDenied, oauthProblemIncomplete, oauthProblemPlatform,
		oauthProblemNone, oauthProblemUnavailable, oauthProblemInternal,
		reclaimProblemLocal, reclaimProblemNotOwner, reclaimProblemSignIn} {
		keys = append(keys, p.Key)
	}
	return keys
}

// fail answers with the problem's page. A problem is an answer, not an error, so the
// server's error handler does not see it.
func (h *Handler) fail(c echo.Context, p problem) error {
	return h.pages.Problem(c, p.Status, p.Key, "")
}

// internal logs a failure of ours (the error texts of the store carry no secrets) and
// answers the generic page.
func (h *Handler) internal(c echo.Context, what string, err error) error {
	h.logger.ErrorContext(c.Request().Context(), "sso: "+what+" failed", "error", err.Error())
	return h.fail(c, problemInternal)
}
