package frontend

import (
	"net/http"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// Pages of the team and of the links it hands out.
const (
	pageTeamLink = "teamlink" // an invitation or reset link, shown once
	pageInvite   = "invite"   // /invite/{token}
	pageReset    = "reset"    // /reset/{token}
)

// Route parameters of the team's forms and the link pages.
const (
	AccountParam    = "accountId"
	InvitationParam = "invitationId"
	TokenParam      = "token"
)

// inviteLinkPath is where an invitation link leads: the invitation page, /invite/{token}.
const inviteLinkPath = "/invite/"

// SecretPaths are the path prefixes whose rest is a link token: the HTTP front logs only
// the prefix (httpfront.Options.SecretPaths).
func SecretPaths() []string { return []string{inviteLinkPath, resetLinkPath} }

// TeamPath is the team page of an instance.
func TeamPath(instanceID string) string { return AppPath(instanceID) + "/team" }

// teamView is the team page: every account of the instance, platform users and local
// users alike, each with how it signs in; for owners and admins the forms to invite,
// change roles, remove, hand out reset links and manage the open invitations, each only
// where the actor's role allows it; for a member the list alone.
type teamView struct {
	Tabs        tabsView
	InstanceID  string
	Members     []memberView
	Invitations []invitationView
	CanManage   bool         // an admin or owner
	Grantable   []roleOption // roles the actor may give, for the invite form
	Invite      inviteForm   // the invite form as entered, after a mistake
	Mailer      bool         // links are e-mailed as well as shown
	PasswordOff bool         // password sign-in is off: no reset links
	// InviteOff: password sign-in is off and no provider is enabled, so nobody invited could
	// get in; ProvidersOnly: it is off, and invitations are accepted through a provider.
	InviteOff, ProvidersOnly bool
	TransferTo               []memberView // an owner's candidates for ownership
	Done                     string       // a confirmation (teamDone)
	Problem                  string       // copy key (KEY.title, KEY.hint) of a refused change
}

type memberView struct {
	ID, Name, Email, Role, Method string
	You                           bool
	Manage                        bool         // the actor may change and remove it
	Roles                         []roleOption // roles the actor may give it
	Reset                         bool         // a local account: a reset link can be made
}

type roleOption struct {
	Value    string
	Selected bool
}

type invitationView struct {
	ID, Email, Role, InvitedBy, Expires string
	Expired                             bool
	Manage                              bool // the actor may revoke and re-issue it
}

// teamState is what a team page shows besides the team: the outcome of a change.
type teamState struct {
	status  int
	done    string
	problem string
	invite  inviteForm
}

// Team serves GET /app/{instanceId}/team.
func (f *Frontend) Team(c echo.Context) error {
	return f.renderTeam(c, teamState{status: http.StatusOK, done: parseDone(c.QueryParam("done"))})
}

// renderTeam renders the team page of the signed-in account's instance.
func (f *Frontend) renderTeam(c echo.Context, st teamState) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	actor := s.Account.Role
	accounts, err := f.store.Accounts(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "list accounts", err)
	}
	v := teamView{Tabs: tabsFor(s, tabTeam), InstanceID: s.Instance.ID, CanManage: extension.CanGrant(actor, extension.RoleMember),
		Invite: st.invite, Mailer: f.mailer != nil, Done: st.done, Problem: st.problem}
	if v.Invite.Role == "" {
		v.Invite.Role = extension.RoleMember
	}
	v.Grantable = grantable(actor, v.Invite.Role)
	if v.CanManage {
		settings, err := f.store.InstanceSettings(ctx, s.Instance.ID)
		if err != nil {
			return f.internal(c, "load settings", err)
		}
		v.PasswordOff = !settings.PasswordLogin
		if v.PasswordOff {
			providers, err := f.store.HasEnabledOIDCProvider(ctx, s.Instance.ID)
			if err != nil {
				return f.internal(c, "list providers", err)
			}
			v.InviteOff, v.ProvidersOnly = !providers, providers
		}
	}
	for _, a := range accounts {
		m := memberView{ID: a.ID, Name: a.DisplayName(), Email: a.Email, Role: a.Role, Method: a.SignInMethod(), You: a.ID == s.Account.ID}
		// One's own row has no forms: a slip there could lock oneself out. Another owner or
		// admin changes it, or the owner transfers ownership.
		if !m.You && extension.CanManage(actor, a.Role) {
			m.Manage, m.Reset, m.Roles = true, a.Local() && !v.PasswordOff, grantable(actor, a.Role)
		}
		if actor == extension.RoleOwner && !m.You {
			v.TransferTo = append(v.TransferTo, m)
		}
		v.Members = append(v.Members, m)
	}
	if v.CanManage {
		open, err := f.store.OpenInvitations(ctx, s.Instance.ID)
		if err != nil {
			return f.internal(c, "list invitations", err)
		}
		for _, in := range open {
			v.Invitations = append(v.Invitations, invitationView{ID: in.ID, Email: in.Email, Role: in.Role,
				InvitedBy: in.InviterName, Expires: day(in.ExpiresAt),
				Expired: in.State == extension.InvitationExpired, Manage: extension.CanGrant(actor, in.Role)})
		}
	}
	if st.status == http.StatusOK {
		return f.renderReloadable(c, st.status, pageTeam, v)
	}
	return f.Render(c, st.status, pageTeam, v)
}

// grantable lists the roles an actor may give, most powerful first, with selected marked.
func grantable(actor, selected string) []roleOption {
	var out []roleOption
	for _, r := range extension.Roles() {
		if extension.CanGrant(actor, r) {
			out = append(out, roleOption{Value: r, Selected: r == selected})
		}
	}
	return out
}

// allowedDomains is the instance's allowed domains as a page lists them.
func (f *Frontend) allowedDomains(c echo.Context, instanceID string) string {
	st, err := f.store.InstanceSettings(c.Request().Context(), instanceID)
	if err != nil {
		return ""
	}
	return strings.Join(st.AllowedDomains, ", ")
}
