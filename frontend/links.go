package frontend

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The pages behind the links the team hands out: /invite/{token} creates a local account
// and /reset/{token} sets a new password, each once. The token is in the address, so
// these pages send no Referer and are kept by no cache, and the HTTP front logs only the
// prefix of their paths (SecretPaths). Their forms hash a password, so they share the
// sign-in's limit per address and the hasher's bound.

// linkState is what a link page says about its link.
const (
	linkReady   = "ready"   // can be used
	linkUnknown = "unknown" // malformed, unknown, or pruned
	linkExpired = "expired"
	linkUsed    = "used"
	linkRevoked = "revoked" // an invitation revoked or replaced by a newer link
	linkTaken   = "taken"   // the invited address got an account meanwhile
)

// inviteView is the page of an invitation link.
type inviteView struct {
	State    string
	Inviter  string // who invited; "" when unknown
	Context  contextView
	Role     string
	Email    string
	Expires  string
	LoginURL string
	// SignedInAs names the account this browser is signed in with in the instance, if any.
	SignedInAs   string
	DashboardURL string
	Form         passwordForm
	Min, Max     string // the password's length rule
	// Providers accept the invitation by signing in at one of the instance's providers.
	Providers []providerLink
	// PasswordOff: password sign-in is off, so the providers are the only way to accept.
	PasswordOff bool
}

// resetView is the page of a password-reset link.
type resetView struct {
	State    string
	Name     string
	Email    string
	Context  contextView
	Expires  string
	LoginURL string
	Form     passwordForm
	Min, Max string
}

var (
	minPassword = strconv.Itoa(extension.MinPasswordLength)
	maxPassword = strconv.Itoa(extension.MaxPasswordLength)
)

// linkToken returns the token of a link page's address, if it has a token's shape.
func linkToken(c echo.Context) (extension.Secret, bool) {
	token := c.Param(TokenParam)
	return extension.Secret(token), linkTokenPattern.MatchString(token)
}

// readPasswordForm reads a link page's form.
func readPasswordForm(c echo.Context, wantName bool) passwordForm {
	// The body only, each field once: a field sent twice (or only in the query string)
	// reads as missing, and the form asks for it again.
	form, ok := formValues(c, "name", "password", "password_repeat")
	if !ok {
		form = url.Values{}
	}
	_, repeatSent := form["password_repeat"]
	return parsePasswordForm(wantName, form.Get("name"), form.Get("password"), form.Get("password_repeat"), repeatSent)
}

// Invitation serves GET /invite/{token}: who invites whom to what, and the form to accept;
// or what became of the link and what to do now.
func (f *Frontend) Invitation(c echo.Context) error {
	linkHeaders(c)
	token, ok := linkToken(c)
	if !ok {
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	}
	inv, err := f.store.Invitation(c.Request().Context(), token)
	if errors.Is(err, extension.ErrNotFound) {
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	}
	if err != nil {
		return f.internal(c, "load invitation", err)
	}
	return f.invitationPage(c, inv, http.StatusOK, passwordForm{})
}

// invitationPage renders the page of an invitation in its state; status is that of a
// ready invitation (a form with a mistake is 4xx), the other states are 410.
func (f *Frontend) invitationPage(c echo.Context, inv extension.Invitation, status int, form passwordForm) error {
	ctx := c.Request().Context()
	in, err := f.store.InstanceByID(ctx, inv.InstanceID)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	case err != nil:
		return f.internal(c, "load instance", err)
	case in.Removed():
		return f.Problem(c, http.StatusGone, "problem.removed", "")
	case !in.Enabled:
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	}
	email := inv.Email
	if inv.State != extension.InvitationPending {
		email = "" // a dead link's domain does not matter
	}
	passwordOff, refused, err := f.invitationRefusal(c, in.ID, email)
	if refused {
		return err
	}
	v := inviteView{PasswordOff: passwordOff, State: linkReady, Inviter: inv.InviterName, Context: contextOf(in), Role: inv.Role, Email: inv.Email,
		Expires: minuteUTC(inv.ExpiresAt), LoginURL: LoginPath(inv.InstanceID), Form: form, Min: minPassword, Max: maxPassword}
	switch inv.State {
	case extension.InvitationExpired:
		v.State, status = linkExpired, http.StatusGone
	case extension.InvitationUsed:
		v.State, status = linkUsed, http.StatusGone
	case extension.InvitationRevoked:
		v.State, status = linkRevoked, http.StatusGone
	}
	if token, ok := linkToken(c); ok && v.State == linkReady {
		v.Providers = f.providerLinks(c, inv.InstanceID, "/invite/"+token.Reveal()+"/oidc/")
	}
	if s, err := f.Sessions.Read(c, inv.InstanceID); err == nil {
		v.SignedInAs, v.DashboardURL = s.Account.DisplayName(), AppPath(inv.InstanceID)
	}
	return f.renderInvite(c, status, v)
}

// renderLink writes a link page (page is pageInvite or pageReset) with the link pages'
// headers; the language switch only on a GET, which may be loaded again.
func (f *Frontend) renderLink(c echo.Context, status int, page string, v any) error {
	linkHeaders(c)
	if c.Request().Method == http.MethodGet {
		return f.renderReloadable(c, status, page, v)
	}
	return f.Render(c, status, page, v)
}

func (f *Frontend) renderInvite(c echo.Context, status int, v inviteView) error {
	return f.renderLink(c, status, pageInvite, v)
}

// AcceptInvitation serves POST /invite/{token} with the fields name and password (and
// password_repeat, checked when sent): it creates the local account and marks the
// invitation used in one transaction, signs the new account in and answers 303 to the
// instance's dashboard.
func (f *Frontend) AcceptInvitation(c echo.Context) error {
	ctx := c.Request().Context()
	linkHeaders(c)
	if !f.loginLimit.allow(c.RealIP()) {
		f.refusals.Refused(ctx, "invitation form rate limited", c.RealIP())
		return f.Problem(c, http.StatusTooManyRequests, "error.too_many", "")
	}
	token, ok := linkToken(c)
	if !ok {
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	}
	inv, err := f.store.Invitation(ctx, token)
	if errors.Is(err, extension.ErrNotFound) {
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	}
	if err != nil {
		return f.internal(c, "load invitation", err)
	}
	if inv.State != extension.InvitationPending {
		return f.invitationPage(c, inv, http.StatusGone, passwordForm{})
	}
	if refused, err := f.linkRefusal(c, inv.InstanceID, inv.Email); refused {
		return err
	}
	form := readPasswordForm(c, true)
	if form.Problem != "" {
		return f.invitationPage(c, inv, http.StatusBadRequest, form)
	}
	hash, err := f.hasher.Hash(ctx, form.password)
	switch {
	case errors.Is(err, extension.ErrBusy):
		form.Problem = "team.password.busy"
		return f.invitationPage(c, inv, http.StatusTooManyRequests, form)
	case err != nil:
		return f.internal(c, "hash password", err)
	}
	acc, err := f.store.AcceptInvitation(ctx, token, form.Name, hash)
	switch {
	case errors.Is(err, extension.ErrInvitationUsed), errors.Is(err, extension.ErrInvitationExpired),
		errors.Is(err, extension.ErrInvitationRevoked):
		// Another tab or person was quicker, or the link died meanwhile: say what it is now.
		if inv, err = f.store.Invitation(ctx, token); err != nil {
			return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
		}
		return f.invitationPage(c, inv, http.StatusGone, passwordForm{})
	case errors.Is(err, extension.ErrPasswordLoginOff): // turned off meanwhile
		return f.passwordOff(c)
	case errors.Is(err, extension.ErrDomainNotAllowed):
		return f.domainGone(c)
	case errors.Is(err, extension.ErrEmailTaken):
		return f.renderInvite(c, http.StatusConflict, inviteView{State: linkTaken, Email: inv.Email, Inviter: inv.InviterName,
			LoginURL: LoginPath(inv.InstanceID)})
	case errors.Is(err, extension.ErrInvalidName):
		form.Problem = "team.password.bad_name"
		return f.invitationPage(c, inv, http.StatusBadRequest, form)
	case errors.Is(err, extension.ErrNotFound):
		return f.renderInvite(c, http.StatusNotFound, inviteView{State: linkUnknown})
	case errors.Is(err, extension.ErrRemoved):
		return f.Problem(c, http.StatusGone, "problem.removed", "")
	case errors.Is(err, extension.ErrDisabled):
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	case err != nil:
		return f.internal(c, "accept invitation", err)
	}
	if err := f.Sessions.Start(c, acc, ""); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	} else if err != nil {
		return f.internal(c, "start session", err)
	}
	f.logger.InfoContext(ctx, "invitation accepted", "instance_id", acc.InstanceID, "account_id", acc.ID, "invitation_id", inv.ID)
	return c.Redirect(http.StatusSeeOther, AppPath(acc.InstanceID))
}

// ResetPassword serves GET /reset/{token}: the form to set a new password, or what became
// of the link and what to do now.
func (f *Frontend) ResetPassword(c echo.Context) error {
	linkHeaders(c)
	token, ok := linkToken(c)
	if !ok {
		return f.renderReset(c, http.StatusNotFound, resetView{State: linkUnknown})
	}
	return f.resetPage(c, token, http.StatusOK, passwordForm{})
}

// resetPage renders the page of a reset link in its state.
func (f *Frontend) resetPage(c echo.Context, token extension.Secret, status int, form passwordForm) error {
	ctx := c.Request().Context()
	pr, err := f.store.PasswordResetByToken(ctx, token)
	v := resetView{State: linkReady, Form: form, Min: minPassword, Max: maxPassword}
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return f.renderReset(c, http.StatusNotFound, resetView{State: linkUnknown})
	case errors.Is(err, extension.ErrResetUsed):
		v.State, status = linkUsed, http.StatusGone
	case errors.Is(err, extension.ErrResetExpired):
		v.State, status = linkExpired, http.StatusGone
	case err != nil:
		return f.internal(c, "load password reset", err)
	}
	in, err := f.store.InstanceByID(ctx, pr.InstanceID)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return f.renderReset(c, http.StatusNotFound, resetView{State: linkUnknown})
	case err != nil:
		return f.internal(c, "load instance", err)
	case in.Removed():
		return f.Problem(c, http.StatusGone, "problem.removed", "")
	case !in.Enabled:
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	}
	if refused, err := f.linkRefusal(c, in.ID, ""); refused {
		return err
	}
	acc, err := f.store.AccountByID(ctx, pr.AccountID)
	switch {
	case errors.Is(err, extension.ErrNotFound): // removed since
		return f.renderReset(c, http.StatusNotFound, resetView{State: linkUnknown})
	case err != nil:
		return f.internal(c, "load account", err)
	}
	v.Name, v.Email, v.Context, v.Expires, v.LoginURL = acc.Name, acc.Email, contextOf(in), minuteUTC(pr.ExpiresAt), LoginPath(in.ID)
	return f.renderReset(c, status, v)
}

func (f *Frontend) renderReset(c echo.Context, status int, v resetView) error {
	return f.renderLink(c, status, pageReset, v)
}

// UseReset serves POST /reset/{token} with the field password (and password_repeat,
// checked when sent): it sets the new password, which ends every session of the account,
// signs this browser in and answers 303 to the instance's dashboard.
func (f *Frontend) UseReset(c echo.Context) error {
	ctx := c.Request().Context()
	linkHeaders(c)
	if !f.loginLimit.allow(c.RealIP()) {
		f.refusals.Refused(ctx, "reset form rate limited", c.RealIP())
		return f.Problem(c, http.StatusTooManyRequests, "error.too_many", "")
	}
	token, ok := linkToken(c)
	if !ok {
		return f.renderReset(c, http.StatusNotFound, resetView{State: linkUnknown})
	}
	pr, err := f.store.PasswordResetByToken(ctx, token)
	if err != nil {
		return f.resetPage(c, token, http.StatusOK, passwordForm{})
	}
	if refused, err := f.linkRefusal(c, pr.InstanceID, ""); refused {
		return err
	}
	form := readPasswordForm(c, false)
	if form.Problem != "" {
		return f.resetPage(c, token, http.StatusBadRequest, form)
	}
	hash, err := f.hasher.Hash(ctx, form.password)
	switch {
	case errors.Is(err, extension.ErrBusy):
		form.Problem = "team.password.busy"
		return f.resetPage(c, token, http.StatusTooManyRequests, form)
	case err != nil:
		return f.internal(c, "hash password", err)
	}
	acc, err := f.store.ConsumePasswordReset(ctx, token, hash)
	switch {
	case errors.Is(err, extension.ErrResetUsed), errors.Is(err, extension.ErrResetExpired), errors.Is(err, extension.ErrNotFound):
		return f.resetPage(c, token, http.StatusOK, passwordForm{})
	case errors.Is(err, extension.ErrPasswordLoginOff): // turned off meanwhile
		return f.passwordOff(c)
	case errors.Is(err, extension.ErrRemoved):
		return f.Problem(c, http.StatusGone, "problem.removed", "")
	case errors.Is(err, extension.ErrDisabled):
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	case err != nil:
		return f.internal(c, "use password reset", err)
	}
	// The store ended every session of the account with the old password; this browser
	// gets a new one.
	if err := f.Sessions.Start(c, acc, ""); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	} else if err != nil {
		return f.internal(c, "start session", err)
	}
	f.logger.InfoContext(ctx, "password reset used", "instance_id", acc.InstanceID, "account_id", acc.ID)
	return c.Redirect(http.StatusSeeOther, AppPath(acc.InstanceID))
}
