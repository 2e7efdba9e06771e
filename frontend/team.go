package frontend

import (
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// teamView is the team page: every account of the instance, platform users and local
// users alike, each with how it signs in, and (for those who manage the team) the
// invitations still open.
type teamView struct {
	InstanceID  string
	Members     []memberView
	Invitations []invitationView
	CanManage   bool // an admin or owner: sees the open invitations
}

type memberView struct {
	Name, Email, Role, Method string
	You                       bool
}

type invitationView struct {
	Email, Role, InvitedBy, Expires string
}

// Team serves GET /app/{instanceId}/team.
func (f *Frontend) Team(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	accounts, err := f.store.Accounts(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "list accounts", err)
	}
	v := teamView{InstanceID: s.Instance.ID, CanManage: extension.CanGrant(s.Account.Role, extension.RoleMember)}
	for _, a := range accounts {
		v.Members = append(v.Members, memberView{Name: a.Name, Email: a.Email, Role: a.Role, Method: a.SignInMethod(), You: a.ID == s.Account.ID})
	}
	if v.CanManage {
		open, err := f.store.OpenInvitations(ctx, s.Instance.ID)
		if err != nil {
			return f.internal(c, "list invitations", err)
		}
		for _, in := range open {
			v.Invitations = append(v.Invitations, invitationView{Email: in.Email, Role: in.Role, InvitedBy: in.InviterName,
				Expires: in.ExpiresAt.Format("2006-01-02")})
		}
	}
	return f.renderReloadable(c, http.StatusOK, pageTeam, v)
}
