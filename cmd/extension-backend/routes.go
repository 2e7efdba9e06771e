package main

import (
	"net/http"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/webhooks"
)

// handlers are the edge packages' handlers, built by newHTTP.
type handlers struct {
	webhooks  *webhooks.Handler
	sso       *atrek.Handler
	oauth     *atrek.OAuth
	fragments *atrek.SessionTokenVerifier
	pages     *frontend.Frontend
}

// routes is the one route table: every route the backend serves, with the middleware in
// front of it. /healthz, /readyz and /metrics come with the front (httpfront.New); any
// other path gets the front's 404, a page for a browser and JSON for anybody else.
func routes(f *httpfront.Front, h handlers) {
	e := f.Echo
	// The platform: lifecycle webhooks, and fragments embedded in the control panel.
	e.POST("/mstudio/webhooks", h.webhooks.Receive)
	e.GET("/mstudio/fragment/session", h.fragments.FragmentSession, h.fragments.Middleware())

	// Hosting customers: the control panel's click-through, and the OAuth2 sign-in of a
	// platform user who comes directly.
	e.GET("/mstudio/sso", h.sso.Entry)
	e.GET("/login/mstudio", h.oauth.Login, h.oauth.NoStore())
	e.GET("/login/mstudio/callback", h.oauth.Callback, h.oauth.NoStore())
	e.GET("/login/mstudio/choose", h.oauth.Choose, h.oauth.NoStore())

	// Pages. Every page of an instance sits under /app/:instanceId, behind that
	// instance's session; every state-changing form behind SameOrigin.
	p := h.pages
	e.GET(frontend.StaticPrefix+"*", p.Static)
	e.GET("/app", p.AppIndex)
	e.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	e.GET("/app/:instanceId/team", p.Team, p.RequireSession())
	e.GET("/app/:instanceId/reclaim", h.sso.Reclaim, p.RequireSession())
	e.POST("/app/:instanceId/reclaim", h.sso.SubmitReclaim, p.SameOrigin(), p.RequireSession())
	e.GET("/app/:instanceId/login", p.Login)
	e.POST("/app/:instanceId/login", p.SubmitLogin, p.SameOrigin())
	// Sign-in with the instance's OpenID Connect providers: links (not forms) out to the
	// provider, one callback for every provider.
	e.GET("/app/:instanceId/login/oidc/:providerId", p.StartOIDC)
	e.GET("/login/oidc/callback", p.OIDCCallback)
	e.GET("/app/:instanceId/login/forgot", p.ForgotPassword)
	e.POST("/app/:instanceId/login/forgot", p.SubmitForgotPassword, p.SameOrigin())
	e.GET("/app/:instanceId/actions/rename-project", p.RenameProject, p.RequireSession())
	e.POST("/app/:instanceId/actions/rename-project", p.StartRenameProject, p.SameOrigin(), p.RequireSession())
	e.GET("/app/:instanceId/actions/:actionId", p.Action, p.RequireSession())
	e.GET("/app/:instanceId/account", p.Account, p.RequireSession())
	e.POST("/app/:instanceId/account", p.SaveProfile, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/account/password", p.ChangeOwnPassword, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/account/sessions/end", p.EndSession, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/account/sessions/end-others", p.EndOtherSessions, p.SameOrigin(), p.RequireSession())
	e.GET("/app/:instanceId/account/identities/connect/:providerId", p.ConnectOIDC, p.RequireSession())
	e.POST("/app/:instanceId/account/identities/:identityId/remove", p.DisconnectIdentity, p.SameOrigin(), p.RequireSession())
	e.GET("/app/:instanceId/audit", p.Audit, p.RequireSession())
	e.GET("/app/:instanceId/export", p.ExportData, p.RequireSession())
	e.GET("/app/:instanceId/settings/sign-in", p.SignInSettings, p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in", p.SaveSignInSettings, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in/providers", p.AddProvider, p.SameOrigin(), p.RequireSession())
	e.GET("/app/:instanceId/settings/sign-in/providers/new", p.NewProvider, p.RequireSession())
	e.GET("/app/:instanceId/settings/sign-in/providers/:providerId", p.EditProvider, p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in/providers/:providerId", p.SaveProvider, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in/providers/:providerId/disable", p.ProviderAction("disable"), p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in/providers/:providerId/enable", p.ProviderAction("enable"), p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/settings/sign-in/providers/:providerId/delete", p.ProviderAction("delete"), p.SameOrigin(), p.RequireSession())
	// The team: its forms (owners and admins; the store checks each role rule), and the
	// pages of the links it hands out, whose token the front logs only as its prefix.
	e.POST("/app/:instanceId/team/invitations", p.Invite, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/invitations/:invitationId/revoke", p.RevokeInvitation, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/invitations/:invitationId/reissue", p.ReissueInvitation, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/transfer", p.TransferOwnership, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/role", p.ChangeRole, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/remove", p.Remove, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/reset", p.IssueReset, p.SameOrigin(), p.RequireSession())
	e.GET("/invite/:token", p.Invitation)
	e.GET("/invite/:token/oidc/:providerId", p.InviteOIDC)
	e.POST("/invite/:token", p.AcceptInvitation, p.SameOrigin())
	e.GET("/reset/:token", p.ResetPassword)
	e.POST("/reset/:token", p.UseReset, p.SameOrigin())
	e.POST("/logout", p.Logout, p.SameOrigin())
	e.GET("/signed-out", p.SignedOut)
}

// opsRoutes is the route table of the ops console's listener (EXT_OPS_ADDR), beside the
// front's /healthz, /readyz and /metrics. Its only changes are behind a same-origin check:
// resume (ours) and retrying a job (River's UI, whose other changes are refused).
func opsRoutes(f *httpfront.Front, c *frontend.Console, jobsUI http.Handler) {
	e := f.Echo
	e.GET(frontend.StaticPrefix+"*", c.Static)
	e.GET("/", c.ConsoleHome)
	e.GET("/instances", c.ConsoleInstances)
	e.GET("/instances/:instanceId", c.ConsoleInstance)
	e.GET("/reconcile", c.ConsoleReconcile)
	e.POST("/reconcile/resume", c.ConsoleResume, c.ConsoleSameOrigin())
	e.GET("/doctor", c.ConsoleDoctor)
	if jobsUI != nil {
		e.Any(opsJobsPath, c.ConsoleJobs(jobsUI))
		e.Any(opsJobsPath+"/*", c.ConsoleJobs(jobsUI))
	}
}
