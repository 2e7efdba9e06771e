package frontend

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// "Forgot password": with a Mailer (EXT_SMTP_URL) and password sign-in on, a local user
// asks for a reset link by e-mail. The page answers the same, at once, whether or not an
// account has the address: the lookup, the link and the mail happen after the answer, in
// the background, so neither the page nor its timing tells which addresses exist.

const pageForgot = "forgot"

// resetLinkPath is where a reset link leads: the reset page, /reset/{token}.
const resetLinkPath = "/reset/"

// Limits of "forgot password", per e-mail address, on top of the sign-in form's limit per
// client address: a few mails an hour at most, so nobody can flood an inbox or keep
// killing a user's earlier link.
const (
	forgotRate    = rate.Limit(1.0 / 600) // one more every ten minutes
	forgotBurst   = 3
	forgotPending = 16               // reset requests worked at once in the background; past it, dropped
	forgotTimeout = 30 * time.Second // of one background request
)

// forgotView is the page: the form, or (Sent) the answer.
type forgotView struct {
	InstanceID string
	Email      string
	Sent       bool
	Problem    string // copy key of what went wrong
}

// forgotForm is the "forgot password" form's input.
type forgotForm struct {
	Email   string // as entered, cut to maxEmailField bytes of text: shown again
	Problem string // copy key of what is wrong, or ""
	// normalized is the address as NormalizeEmail reads it, when there is no Problem.
	normalized string
}

// parseForgotForm reads the form's field email: an address, as entered (the address as
// sent is checked, not what clipping leaves of it).
func parseForgotForm(form url.Values) forgotForm {
	email := form.Get("email")
	f := forgotForm{Email: clipText(email, maxEmailField)}
	n, err := extension.NormalizeEmail(email)
	if err != nil {
		f.Problem = "forgot.bad_email"
		return f
	}
	f.normalized = n
	return f
}

// forgotAvailable answers for an instance whose sign-in page offers no "forgot password"
// (no Mailer, password sign-in off) with the page that says so, and ok false.
func (f *Frontend) forgotAvailable(c echo.Context, id string) (ok bool, err error) {
	if f.mailer == nil || !uuidPattern.MatchString(id) {
		return false, f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	settings, ok, err := f.signInSettings(c, id)
	if !ok {
		return false, err
	}
	if !settings.PasswordLogin {
		return false, f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	return true, nil
}

// ForgotPassword serves GET /app/{instanceId}/login/forgot: the form.
func (f *Frontend) ForgotPassword(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	id := c.Param(InstanceParam)
	if ok, err := f.forgotAvailable(c, id); !ok {
		return err
	}
	return f.renderReloadable(c, http.StatusOK, pageForgot, forgotView{InstanceID: id})
}

// SubmitForgotPassword serves POST /app/{instanceId}/login/forgot with the field email.
// A well-formed address always gets the same answer; the reset, if the address has a
// local account, goes on in the background.
func (f *Frontend) SubmitForgotPassword(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	ctx := c.Request().Context()
	id := c.Param(InstanceParam)
	if ok, err := f.forgotAvailable(c, id); !ok {
		return err
	}
	values, ok := formValues(c, "email")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	form := parseForgotForm(values)
	view := forgotView{InstanceID: id, Email: form.Email, Problem: form.Problem}
	if form.Problem != "" {
		return f.Render(c, http.StatusBadRequest, pageForgot, view)
	}
	normalized := form.normalized
	if !f.loginLimit.allow(c.RealIP()) || !f.forgotLimit.allow(id+" "+normalized) {
		f.refusals.Refused(ctx, "forgot password rate limited", c.RealIP())
		view.Problem = "forgot.busy"
		return f.Render(c, http.StatusTooManyRequests, pageForgot, view)
	}
	lang, _ := requestLang(c.Request())
	select {
	case f.forgotSlots <- struct{}{}:
		go func() {
			defer func() { <-f.forgotSlots }()
			bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), forgotTimeout)
			defer cancel()
			f.sendResetLink(bctx, id, normalized, lang)
		}()
	default:
		f.logger.WarnContext(ctx, "forgot password: too many requests at once; one dropped", "instance_id", id)
	}
	return f.Render(c, http.StatusOK, pageForgot, forgotView{InstanceID: id, Sent: true})
}

// sendResetLink makes a reset link for the local account with the address, if there is
// one, and hands its mail to the Mailer. Nothing of it reaches the page.
func (f *Frontend) sendResetLink(ctx context.Context, instanceID, email, lang string) {
	token, pr, acc, err := f.store.RequestPasswordReset(ctx, instanceID, email)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		f.logger.InfoContext(ctx, "forgot password: no local account with the address", "instance_id", instanceID)
		return
	case err != nil:
		f.logger.ErrorContext(ctx, "forgot password: issue reset link failed", "instance_id", instanceID, "error", err.Error())
		return
	}
	if acc.Language != "" {
		lang = acc.Language
	}
	var contextName string
	if in, err := f.store.InstanceByID(ctx, instanceID); err == nil {
		contextName = in.ContextName
	}
	err = f.mailer.SendPasswordReset(ctx, ResetMail{InstanceID: instanceID, To: email, Name: acc.Name, ContextName: contextName,
		Lang: lang, Link: extension.Secret(f.origin + resetLinkPath + token.Reveal()), Expires: pr.ExpiresAt})
	if err != nil {
		f.logger.ErrorContext(ctx, "forgot password: hand over the mail failed", "instance_id", instanceID, "account_id", acc.ID, "error", err.Error())
		return
	}
	f.logger.InfoContext(ctx, "forgot password: reset link mailed", "instance_id", instanceID, "account_id", acc.ID)
}
