package atrek

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// Reclaiming ownership: a platform user whom the platform names owner of the instance's
// project or organisation may take the owner role in the instance, whatever it is now.
// Whoever owns the context at the platform can remove the extension, or every local
// account with it, anyway; this is the safe way back in when the instance's own owners
// are gone (left the team, lost their password), without the operator. It is offered,
// never done silently: the single sign-on of such a user whose account is no owner ends
// on the page that offers it, and the page's POST asks the platform again, with the
// user's own token, before it changes the role. The audit log records it as the
// platform's (extension.AuditOwnershipReclaimed).

// PageReclaim is the page that offers a platform owner the owner role; its data is a
// ReclaimView.
const PageReclaim = "reclaim"

// ReclaimView is the reclaim page.
type ReclaimView struct {
	InstanceID  string
	ContextName string // "" while not known
	Customer    bool   // an organisation, not a project
	Role        string // the account's role now
}

// ReclaimPath is the reclaim page of an instance.
func ReclaimPath(instanceID string) string { return AppPath(instanceID) + "/reclaim" }

// The problems of the reclaim page.
var (
	reclaimProblemLocal    = problem{http.StatusForbidden, "reclaim.local"}
	reclaimProblemNotOwner = problem{http.StatusForbidden, "reclaim.not_owner"}
	reclaimProblemSignIn   = problem{http.StatusUnauthorized, "reclaim.sign_in_again"}
)

// offerReclaim reports whether the platform named the signing-in user owner of the
// instance's context (read beside the sign-in's other platform reads, or asked now for an
// account demoted while the sign-in ran), for an account that is no owner; a failure to
// ask is logged and counts as no.
func (h *Handler) offerReclaim(ctx context.Context, log *slog.Logger, in *extension.Instance, acc extension.Account, token extension.Secret, read platformReads) bool {
	if acc.Role == extension.RoleOwner {
		return false
	}
	if !read.ownerAsked {
		read.owner, read.ownerErr = h.client.ContextOwner(ctx, token, in.ContextKind, in.ContextID)
	}
	if read.ownerErr != nil {
		log.WarnContext(ctx, "sso: asking the platform for the user's role failed", "error", read.ownerErr.Error())
		return false
	}
	if read.owner {
		log.InfoContext(ctx, "sso: the platform names the user owner; reclaiming ownership is offered", "account_id", acc.ID, "role", acc.Role)
	}
	return read.owner
}

// confirmOwner finds the session's account and asks the platform, with the user's own
// token (refreshed when due), whether they own the instance's context now. When not, it
// answers with the page that says why and ok is false.
func (h *Handler) confirmOwner(c echo.Context) (acc extension.Account, in *extension.Instance, ok bool, err error) {
	ctx := c.Request().Context()
	acc, userID, found := h.sessions.Current(c)
	if !found {
		return acc, nil, false, h.internal(c, "reclaim", errors.New("no session in the request"))
	}
	log := h.logger.With("instance_id", acc.InstanceID, "account_id", acc.ID)
	if in, err = h.store.InstanceByID(ctx, acc.InstanceID); err != nil {
		return acc, nil, false, h.internal(c, "load instance", err)
	}
	if userID == "" {
		return acc, in, false, h.fail(c, reclaimProblemLocal)
	}
	if acc.Role == extension.RoleOwner {
		return acc, in, false, c.Redirect(http.StatusSeeOther, AppPath(in.ID))
	}
	token, err := h.tokens.Token(ctx, userID, in.ID)
	switch {
	case errors.Is(err, ErrSignInAgain):
		log.InfoContext(ctx, "reclaim refused: no valid token of the user")
		return acc, in, false, h.fail(c, reclaimProblemSignIn)
	case err != nil:
		log.WarnContext(ctx, "reclaim: the user's token failed", "error", err.Error())
		return acc, in, false, h.fail(c, problemPlatform)
	}
	owner, err := h.client.ContextOwner(ctx, token, in.ContextKind, in.ContextID)
	switch {
	case err != nil:
		log.WarnContext(ctx, "reclaim: asking the platform failed", "error", err.Error())
		return acc, in, false, h.fail(c, problemPlatform)
	case !owner:
		log.InfoContext(ctx, "reclaim refused: the platform does not name the user owner", "user_id", userID)
		return acc, in, false, h.fail(c, reclaimProblemNotOwner)
	}
	return acc, in, true, nil
}

// Reclaim serves GET /app/{instanceId}/reclaim behind RequireSession: the offer, for a
// platform user the platform names owner now.
func (h *Handler) Reclaim(c echo.Context) error {
	acc, in, ok, err := h.confirmOwner(c)
	if !ok {
		return err
	}
	return h.pages.Render(c, http.StatusOK, PageReclaim, ReclaimView{InstanceID: in.ID, ContextName: in.ContextName,
		Customer: in.ContextKind == extension.ContextCustomer, Role: acc.Role})
}

// SubmitReclaim serves POST /app/{instanceId}/reclaim behind SameOrigin and
// RequireSession: with the platform's word, fresh, the account becomes an owner, and
// the browser goes on to the dashboard.
func (h *Handler) SubmitReclaim(c echo.Context) error {
	acc, in, ok, err := h.confirmOwner(c)
	if !ok {
		return err
	}
	ctx := c.Request().Context()
	updated, err := h.store.ReclaimOwnership(ctx, in.ID, acc.ID)
	if err != nil {
		return h.internal(c, "reclaim ownership", err)
	}
	h.logger.InfoContext(ctx, "ownership reclaimed", "instance_id", in.ID, "account_id", acc.ID, "from", acc.Role, "to", updated.Role)
	return c.Redirect(http.StatusSeeOther, AppPath(in.ID))
}
