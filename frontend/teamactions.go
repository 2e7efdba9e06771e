package frontend

import (
	"errors"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The team page's forms. Each runs behind SameOrigin and RequireSession; the store checks
// the role rules (nobody grants above their own role, an admin manages up to admins, the
// last owner stays) in the transaction that makes the change, and writes its audit event.
// A refusal is the team page again with a 4xx status and what to do; a success is 303
// back to it with a fixed confirmation key. A link is shown once, on the page that
// answers the form, and never again.

// linkView is the page that shows an invitation or reset link once, to copy.
type linkView struct {
	InstanceID string
	Reset      bool   // a password-reset link, not an invitation
	Link       string // the link; this page is the only place it is ever shown
	For        string // the invited address, or the name of the account to reset
	Role       string // the invitation's role
	Expires    string
	Mailed     bool // handed to the mailer
	MailFailed bool // the mailer refused it: send it yourself
}

// teamManager returns the signed-in account when its role may change the team; for a
// member it answers 403 with the team page, and ok is false.
func (f *Frontend) teamManager(c echo.Context) (s SignedIn, ok bool, err error) {
	s, _ = SignedInFrom(c.Request().Context())
	if !extension.CanGrant(s.Account.Role, extension.RoleMember) {
		f.refusals.Refused(c.Request().Context(), "team change by a member", c.RealIP())
		return s, false, f.renderTeam(c, teamState{status: http.StatusForbidden, problem: "team.refused.member"})
	}
	return s, true, nil
}

// pathID returns a route parameter that must be an id of ours (a UUID).
func pathID(c echo.Context, name string) (string, bool) {
	id := c.Param(name)
	return id, uuidPattern.MatchString(id)
}

// teamRefusal answers a change the store refused: the team page with what happened and
// what to do, or the instance's page when it is gone or disabled.
func (f *Frontend) teamRefusal(c echo.Context, err error) error {
	refused := func(status int, key string) error {
		return f.renderTeam(c, teamState{status: status, problem: key})
	}
	switch {
	case errors.Is(err, extension.ErrForbidden):
		return refused(http.StatusForbidden, "team.refused.forbidden")
	case errors.Is(err, extension.ErrNotFound):
		return refused(http.StatusNotFound, "team.refused.not_found")
	case errors.Is(err, extension.ErrLastOwner):
		return refused(http.StatusConflict, "team.refused.last_owner")
	case errors.Is(err, extension.ErrInvitationUsed):
		return refused(http.StatusConflict, "team.refused.invitation_used")
	case errors.Is(err, extension.ErrNotLocalAccount):
		return refused(http.StatusConflict, "team.refused.not_local")
	case errors.Is(err, extension.ErrInvalidRole):
		return refused(http.StatusBadRequest, "team.refused.bad_role")
	case errors.Is(err, extension.ErrEmailTaken):
		return refused(http.StatusConflict, "team.refused.email_taken")
	case errors.Is(err, extension.ErrDomainNotAllowed):
		return refused(http.StatusConflict, "team.refused.domain")
	case errors.Is(err, extension.ErrInvitationPending):
		return refused(http.StatusConflict, "team.refused.pending")
	case errors.Is(err, extension.ErrRemoved):
		return f.Problem(c, http.StatusGone, "problem.removed", "")
	case errors.Is(err, extension.ErrDisabled):
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	}
	return f.internal(c, "change the team", err)
}

// teamDoneRedirect sends the browser back to the team page with a confirmation.
func teamDoneRedirect(c echo.Context, instanceID, done string) error {
	return c.Redirect(http.StatusSeeOther, TeamPath(instanceID)+"?done="+done)
}

// linkHeaders mark a page whose address or body holds a link token: no browser or proxy
// keeps it, and no link on it carries the address on as a Referer.
func linkHeaders(c echo.Context) {
	h := c.Response().Header()
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// Invite serves POST /app/{instanceId}/team/invitations with the fields email and role:
// it creates the invitation and shows its link once (and hands it to the mailer, if there
// is one). A mistake is the team page again with the message next to the form and the
// address kept.
func (f *Frontend) Invite(c echo.Context) error {
	ctx := c.Request().Context()
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	values, ok := formValues(c, "email", "role")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	form := parseInviteForm(values.Get("email"), values.Get("role"))
	again := func(status int, problem, field string) error {
		form.Problem, form.Field = problem, field
		if problem == "team.invite.domain" {
			form.Domains = f.allowedDomains(c, s.Instance.ID)
		}
		return f.renderTeam(c, teamState{status: status, invite: form})
	}
	if form.Problem != "" {
		return again(http.StatusBadRequest, form.Problem, form.Field)
	}
	inv, token, err := f.store.CreateInvitation(ctx, s.Instance.ID, s.Account.ID, form.Email, form.Role)
	switch {
	case errors.Is(err, extension.ErrInvalidEmail):
		return again(http.StatusBadRequest, "team.invite.bad_email", "email")
	case errors.Is(err, extension.ErrInvalidRole):
		return again(http.StatusBadRequest, "team.invite.bad_role", "role")
	case errors.Is(err, extension.ErrForbidden):
		return again(http.StatusForbidden, "team.invite.forbidden_role", "role")
	case errors.Is(err, extension.ErrDomainNotAllowed):
		return again(http.StatusUnprocessableEntity, "team.invite.domain", "email")
	case errors.Is(err, extension.ErrEmailTaken):
		return again(http.StatusConflict, "team.invite.taken", "email")
	case errors.Is(err, extension.ErrInvitationPending):
		return again(http.StatusConflict, "team.invite.pending", "email")
	case err != nil:
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(ctx, "invitation created", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "invitation_id", inv.ID)
	return f.showInvitationLink(c, s, inv, token)
}

// showInvitationLink answers with the page that shows an invitation's link once.
func (f *Frontend) showInvitationLink(c echo.Context, s SignedIn, inv extension.Invitation, token extension.Secret) error {
	link := extension.Secret(f.origin + inviteLinkPath + token.Reveal())
	v := linkView{InstanceID: s.Instance.ID, Link: link.Reveal(), For: inv.Email, Role: inv.Role, Expires: minuteUTC(inv.ExpiresAt)}
	if f.mailer != nil {
		to, _ := extension.NormalizeEmail(inv.Email)
		lang, _ := requestLang(c.Request())
		err := f.mailer.SendInvitation(c.Request().Context(), InvitationMail{InstanceID: s.Instance.ID, To: to,
			InviterName: s.Account.Name, ContextName: s.Instance.ContextName, Role: inv.Role, Lang: lang, Link: link, Expires: inv.ExpiresAt})
		v.Mailed, v.MailFailed = err == nil, err != nil
		if err != nil {
			f.logger.ErrorContext(c.Request().Context(), "frontend: hand invitation to the mailer failed", "instance_id", s.Instance.ID,
				"invitation_id", inv.ID, "error", err.Error())
		}
	}
	linkHeaders(c)
	return f.Render(c, http.StatusOK, pageTeamLink, v)
}

// ChangeRole serves POST /app/{instanceId}/team/{accountId}/role with the field role.
func (f *Frontend) ChangeRole(c echo.Context) error {
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	id, ok := pathID(c, AccountParam)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	// Whom first, then what: another instance's account is not found, whatever the form says.
	if acc, err := f.store.AccountByID(c.Request().Context(), id); err != nil || acc.InstanceID != s.Instance.ID {
		if err != nil && !errors.Is(err, extension.ErrNotFound) {
			return f.internal(c, "load account", err)
		}
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	values, ok := formValues(c, "role")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	role, ok := parseRole(values.Get("role"))
	if !ok {
		return f.teamRefusal(c, extension.ErrInvalidRole)
	}
	if _, err := f.store.ChangeRole(c.Request().Context(), s.Instance.ID, s.Account.ID, id, role); err != nil {
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(c.Request().Context(), "role changed", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "target_id", id, "role", role)
	return teamDoneRedirect(c, s.Instance.ID, "role_changed")
}

// Remove serves POST /app/{instanceId}/team/{accountId}/remove.
func (f *Frontend) Remove(c echo.Context) error {
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	id, ok := pathID(c, AccountParam)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	values, ok := formValues(c, "confirm")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	if values.Get("confirm") != "yes" {
		// The row's button asks first: a removal cannot be undone, and the pages run no
		// script for a confirmation dialogue. What would refuse it is said now.
		target, err := f.store.AccountByID(c.Request().Context(), id)
		switch {
		case errors.Is(err, extension.ErrNotFound) || (err == nil && target.InstanceID != s.Instance.ID):
			return f.teamRefusal(c, extension.ErrNotFound)
		case err != nil:
			return f.internal(c, "load account", err)
		case !extension.CanManage(s.Account.Role, target.Role):
			return f.teamRefusal(c, extension.ErrForbidden)
		}
		return f.Render(c, http.StatusOK, pageConfirmRemove, confirmRemoveView{InstanceID: s.Instance.ID, AccountID: target.ID,
			Name: target.DisplayName(), Platform: !target.Local()})
	}
	if err := f.store.RemoveAccount(c.Request().Context(), s.Instance.ID, s.Account.ID, id); err != nil {
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(c.Request().Context(), "account removed", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "target_id", id)
	return teamDoneRedirect(c, s.Instance.ID, "removed")
}

// pageConfirmRemove asks before a removal.
const pageConfirmRemove = "confirmremove"

type confirmRemoveView struct {
	InstanceID, AccountID, Name string
	Platform                    bool // signs in with the control panel: may come back from there
}

// TransferOwnership serves POST /app/{instanceId}/team/transfer with the field account:
// that account becomes an owner and the acting owner an admin.
func (f *Frontend) TransferOwnership(c echo.Context) error {
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	if s.Account.Role != extension.RoleOwner {
		return f.teamRefusal(c, extension.ErrForbidden)
	}
	values, ok := formValues(c, "account")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	id, ok := parseTransferForm(values)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	if err := f.store.TransferOwnership(c.Request().Context(), s.Instance.ID, s.Account.ID, id); err != nil {
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(c.Request().Context(), "ownership transferred", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "target_id", id)
	return teamDoneRedirect(c, s.Instance.ID, "transferred")
}

// IssueReset serves POST /app/{instanceId}/team/{accountId}/reset: a one-time link that
// lets a local account set a new password, shown once.
func (f *Frontend) IssueReset(c echo.Context) error {
	ctx := c.Request().Context()
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	id, ok := pathID(c, AccountParam)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	token, pr, err := f.store.IssuePasswordReset(ctx, s.Instance.ID, s.Account.ID, id)
	if err != nil {
		return f.teamRefusal(c, err)
	}
	acc, err := f.store.AccountByID(ctx, id)
	if err != nil {
		return f.internal(c, "load account", err)
	}
	f.logger.InfoContext(ctx, "password reset issued", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "target_id", id)
	link := extension.Secret(f.origin + resetLinkPath + token.Reveal())
	v := linkView{InstanceID: s.Instance.ID, Reset: true, Link: link.Reveal(), For: acc.DisplayName(), Expires: minuteUTC(pr.ExpiresAt)}
	if f.mailer != nil {
		to, _ := extension.NormalizeEmail(acc.Email)
		lang, _ := requestLang(c.Request())
		err := f.mailer.SendPasswordReset(ctx, ResetMail{InstanceID: s.Instance.ID, To: to, Name: acc.Name,
			ContextName: s.Instance.ContextName, Lang: lang, Link: link, Expires: pr.ExpiresAt})
		v.Mailed, v.MailFailed = err == nil, err != nil
		if err != nil {
			f.logger.ErrorContext(ctx, "frontend: hand reset link to the mailer failed", "instance_id", s.Instance.ID, "error", err.Error())
		}
	}
	linkHeaders(c)
	return f.Render(c, http.StatusOK, pageTeamLink, v)
}

// RevokeInvitation serves POST /app/{instanceId}/team/invitations/{invitationId}/revoke.
func (f *Frontend) RevokeInvitation(c echo.Context) error {
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	id, ok := pathID(c, InvitationParam)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	if err := f.store.RevokeInvitation(c.Request().Context(), s.Instance.ID, s.Account.ID, id); err != nil {
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(c.Request().Context(), "invitation revoked", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "invitation_id", id)
	return teamDoneRedirect(c, s.Instance.ID, "revoked")
}

// ReissueInvitation serves POST /app/{instanceId}/team/invitations/{invitationId}/reissue:
// a new link for the same address and role, shown once; the old link is dead from then on.
func (f *Frontend) ReissueInvitation(c echo.Context) error {
	s, ok, err := f.teamManager(c)
	if !ok {
		return err
	}
	id, ok := pathID(c, InvitationParam)
	if !ok {
		return f.teamRefusal(c, extension.ErrNotFound)
	}
	inv, token, err := f.store.ReissueInvitation(c.Request().Context(), s.Instance.ID, s.Account.ID, id)
	if err != nil {
		return f.teamRefusal(c, err)
	}
	f.logger.InfoContext(c.Request().Context(), "invitation reissued", "instance_id", s.Instance.ID, "account_id", s.Account.ID,
		"invitation_id", inv.ID, "replaces", id)
	return f.showInvitationLink(c, s, inv, token)
}
