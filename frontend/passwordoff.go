package frontend

import (
	"errors"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The pages of what the instance's sign-in settings refuse now: password sign-in is off
// (no invitation, reset link or their use), or an invited address's domain is no longer
// allowed. Each is 403 and says whom to ask; nothing was changed.

// passwordOff answers a request that only password sign-in serves while it is off.
func (f *Frontend) passwordOff(c echo.Context) error {
	return f.Problem(c, http.StatusForbidden, "problem.password_off", "")
}

// domainGone answers an invitation whose address's domain is no longer allowed.
func (f *Frontend) domainGone(c echo.Context) error {
	return f.Problem(c, http.StatusForbidden, "problem.domain_gone", "")
}

// knownRefusal answers a store refusal that a handler passed on as unexpected (the team
// page's forms) with its own page instead of a server error; ok is false for any other
// error.
func (f *Frontend) knownRefusal(c echo.Context, err error) (ok bool, _ error) {
	if errors.Is(err, extension.ErrPasswordLoginOff) {
		return true, f.passwordOff(c)
	}
	return false, nil
}

// linkRefusal checks a link page's instance's sign-in settings as they are now: with
// password sign-in off it answers the password-off page, and for an invitation (email
// set) whose address's domain is no longer allowed the domain page; refused is false
// when the link may go on.
func (f *Frontend) linkRefusal(c echo.Context, instanceID, email string) (refused bool, _ error) {
	st, err := f.store.InstanceSettings(c.Request().Context(), instanceID)
	if err != nil {
		return true, f.internal(c, "load settings", err)
	}
	if !st.PasswordLogin {
		return true, f.passwordOff(c)
	}
	if email == "" {
		return false, nil
	}
	if normalized, err := extension.NormalizeEmail(email); err == nil && !st.AllowsEmail(normalized) {
		return true, f.domainGone(c)
	}
	return false, nil
}

// invitationRefusal is linkRefusal for an invitation's page: with password sign-in off
// the invitation is still accepted through an enabled provider of the instance, so only
// an instance without one refuses; passwordOff says the page offers only the providers.
func (f *Frontend) invitationRefusal(c echo.Context, instanceID, email string) (passwordOff, refused bool, _ error) {
	ctx := c.Request().Context()
	st, err := f.store.InstanceSettings(ctx, instanceID)
	if err != nil {
		return false, true, f.internal(c, "load settings", err)
	}
	if !st.PasswordLogin {
		providers, err := f.store.HasEnabledOIDCProvider(ctx, instanceID)
		if err != nil {
			return false, true, f.internal(c, "list providers", err)
		}
		if !providers {
			return false, true, f.passwordOff(c)
		}
	}
	if email != "" {
		if normalized, err := extension.NormalizeEmail(email); err == nil && !st.AllowsEmail(normalized) {
			return false, true, f.domainGone(c)
		}
	}
	return !st.PasswordLogin, false, nil
}
