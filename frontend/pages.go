package frontend

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// InstanceParam is the route parameter that names the instance of a page under /app.
const InstanceParam = "instanceId"

// uuidPattern is the shape of an instance id: the platform's ids are UUIDs.
var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// AppPath is the dashboard of an instance, where a sign-in ends.
func AppPath(instanceID string) string { return "/app/" + strings.ToLower(instanceID) }

// LoginPath is the sign-in page of an instance.
func LoginPath(instanceID string) string { return AppPath(instanceID) + "/login" }

// RequireSession admits a request to a page of the instance its path names only with this
// browser's live session of that instance. Without one, a page view is sent to the
// instance's sign-in page; a removed or disabled instance gets its page. The session found
// is in the request's context (SignedInFrom).
func (f *Frontend) RequireSession() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			// Pages behind a session are one user's: no shared cache may keep them.
			c.Response().Header().Set("Cache-Control", "private, no-store")
			id := c.Param(InstanceParam)
			if !uuidPattern.MatchString(id) {
				return f.Problem(c, http.StatusNotFound, "error.not_found", "")
			}
			s, err := f.Sessions.Read(c, id)
			switch {
			case errors.Is(err, ErrNoSession):
				if c.Request().Method == http.MethodGet {
					return c.Redirect(http.StatusSeeOther, LoginPath(id))
				}
				return f.Problem(c, http.StatusUnauthorized, "problem.session_ended", LoginPath(id))
			case errors.Is(err, extension.ErrRemoved):
				return f.Problem(c, http.StatusGone, "problem.removed", "")
			case errors.Is(err, extension.ErrDisabled):
				return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
			case err != nil:
				return f.internal(c, "read session", err)
			}
			c.SetRequest(c.Request().WithContext(context.WithValue(c.Request().Context(), signedInKey{}, s)))
			return next(c)
		}
	}
}

// internal logs a failure of ours (the store's error texts carry no secrets) and answers
// the generic page.
func (f *Frontend) internal(c echo.Context, what string, err error) error {
	if ok, err := f.knownRefusal(c, err); ok {
		return err
	}
	f.logger.ErrorContext(c.Request().Context(), "frontend: "+what+" failed", "error", err.Error())
	return f.Problem(c, http.StatusInternalServerError, "error.server", "")
}

// contextView names an instance's project or organisation on a page.
type contextView struct {
	Customer bool   // an organisation, not a project
	Name     string // "" until the post-install job has read it
}

func contextOf(in *extension.Instance) contextView {
	return contextView{Customer: in.ContextKind == extension.ContextCustomer, Name: in.ContextName}
}

// Login is an instance's sign-in page (GET /app/{instanceId}/login). A browser that is
// signed in already goes on to the dashboard.
func (f *Frontend) Login(c echo.Context) error {
	id := c.Param(InstanceParam)
	if !uuidPattern.MatchString(id) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	if _, err := f.Sessions.Read(c, id); err == nil {
		return c.Redirect(http.StatusSeeOther, AppPath(id))
	}
	settings, ok, err := f.signInSettings(c, id)
	if !ok {
		return err
	}
	providers := f.providerLinks(c, id, LoginPath(id)+"/oidc/")
	return f.renderReloadable(c, http.StatusOK, pageLogin, loginView{InstanceID: id, PlatformLogin: "/login/mstudio",
		PasswordLogin: settings.PasswordLogin, Forgot: f.mailer != nil, Providers: providers})
}

// signInSettings returns the sign-in settings of the instance a sign-in page names, if it
// is installed and enabled. Otherwise it answers with the page that says why, and ok is
// false: the caller returns err, the outcome of writing that page.
func (f *Frontend) signInSettings(c echo.Context, id string) (settings extension.InstanceSettings, ok bool, err error) {
	ctx := c.Request().Context()
	in, err := f.store.InstanceByID(ctx, id)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return settings, false, f.Problem(c, http.StatusNotFound, "problem.not_installed", "")
	case err != nil:
		return settings, false, f.internal(c, "load instance", err)
	case in.Removed():
		return settings, false, f.Problem(c, http.StatusGone, "problem.removed", "")
	case !in.Enabled:
		return settings, false, f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	}
	if settings, err = f.store.InstanceSettings(ctx, id); err != nil {
		return settings, false, f.internal(c, "load settings", err)
	}
	return settings, true, nil
}

// AppIndex serves GET /app, where old links and bookmarks land: with one instance's
// session in this browser it goes there, with several it lets the user pick one, and
// otherwise it says how to get in.
func (f *Frontend) AppIndex(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "private, no-store")
	type entry struct {
		Name     string
		Customer bool
		URL      string
	}
	var live []entry
	for _, id := range f.Sessions.instancesOf(c.Request()) {
		if s, err := f.Sessions.Read(c, id); err == nil {
			cv := contextOf(s.Instance)
			live = append(live, entry{Name: cv.Name, Customer: cv.Customer, URL: AppPath(s.Instance.ID)})
		}
	}
	switch len(live) {
	case 0:
		return f.renderReloadable(c, http.StatusOK, pageNoInstance, struct{ PlatformLogin string }{"/login/mstudio"})
	case 1:
		return c.Redirect(http.StatusSeeOther, live[0].URL)
	}
	return f.renderReloadable(c, http.StatusOK, pageChoose, live)
}

// Logout serves POST /logout: it ends this browser's session of the instance named by the
// form field instance, or every session it holds when the field is empty, and sends the
// browser to the signed-out page. It runs behind SameOrigin, so another site cannot sign
// a user out.
func (f *Frontend) Logout(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	values, ok := formValues(c, "instance")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	var err error
	if id := values.Get("instance"); id != "" {
		if !uuidPattern.MatchString(id) {
			return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
		}
		err = f.Sessions.End(c, id)
	} else {
		err = f.Sessions.EndAll(c)
	}
	if err != nil {
		return f.internal(c, "end session", err)
	}
	f.logger.InfoContext(c.Request().Context(), "signed out")
	return c.Redirect(http.StatusSeeOther, "/signed-out")
}

// SignedOut is the page after logout.
func (f *Frontend) SignedOut(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return f.renderReloadable(c, http.StatusOK, pageSignedOut, nil)
}
