package frontend_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/labstack/echo/v4"
)

// teamEnv is an app with the team's routes as cmd's table registers them, an instance
// and its owner Ada (a platform user) signed in in her own browser.
type teamEnv struct {
	*pagesEnv
	in  mstudiotest.Instance
	ada *http.Client
	// adaID is Ada's account.
	adaID string
}

// recordingMailer keeps the mails the pages hand over, as the job queue would take them.
type recordingMailer struct {
	mu      sync.Mutex
	invites []frontend.InvitationMail
	resets  []frontend.ResetMail
}

func (m *recordingMailer) SendInvitation(_ context.Context, mail frontend.InvitationMail) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.invites = append(m.invites, mail)
	return nil
}

func (m *recordingMailer) SendPasswordReset(_ context.Context, mail frontend.ResetMail) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.resets = append(m.resets, mail)
	return nil
}

func newTeamEnv(t *testing.T, opts apptest.Options) *teamEnv {
	t.Helper()
	app := apptest.New(t, opts)
	p := app.Pages
	e := app.Front
	e.GET("/app/:instanceId", p.Dashboard, p.RequireSession())
	e.GET("/app/:instanceId/login", p.Login)
	e.POST("/app/:instanceId/login", p.SubmitLogin, p.SameOrigin())
	e.GET("/app/:instanceId/team", p.Team, p.RequireSession())
	e.POST("/app/:instanceId/team/invitations", p.Invite, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/invitations/:invitationId/revoke", p.RevokeInvitation, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/invitations/:invitationId/reissue", p.ReissueInvitation, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/transfer", p.TransferOwnership, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/role", p.ChangeRole, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/remove", p.Remove, p.SameOrigin(), p.RequireSession())
	e.POST("/app/:instanceId/team/:accountId/reset", p.IssueReset, p.SameOrigin(), p.RequireSession())
	e.GET("/invite/:token", p.Invitation)
	e.POST("/invite/:token", p.AcceptInvitation, p.SameOrigin())
	e.GET("/reset/:token", p.ResetPassword)
	e.POST("/reset/:token", p.UseReset, p.SameOrigin())
	e.GET("/test/sign-in/:instanceId/:userId", func(c echo.Context) error {
		acc, _, err := app.Store.EnsurePlatformAccount(c.Request().Context(), c.Param("instanceId"), c.Param("userId"), "", c.QueryParam("name"), extension.RoleMember)
		if err != nil {
			return err
		}
		if err := p.Sessions.Start(c, acc, c.Param("userId")); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, frontend.AppPath(acc.InstanceID))
	})
	env := &teamEnv{pagesEnv: &pagesEnv{App: app, URL: app.URL(t)}}
	env.in = app.Install(t, mstudiotest.InstanceSpec{})
	env.ada = apptest.Browser(t)
	env.signIn(t, env.ada, env.in, app.User(t, "Ada Admin"))
	accs, err := app.Store.Accounts(t.Context(), env.in.ID)
	if err != nil || len(accs) != 1 || accs[0].Role != extension.RoleOwner {
		t.Fatalf("Ada is not the instance's owner: %+v, %v", accs, err)
	}
	env.adaID = accs[0].ID
	return env
}

func (e *teamEnv) team() string { return frontend.TeamPath(e.in.ID) }

func (e *teamEnv) post(t *testing.T, b *http.Client, path string, form url.Values) (*http.Response, string) {
	t.Helper()
	if form == nil {
		form = url.Values{}
	}
	return e.do(t, b, http.MethodPost, path, sameOrigin, form)
}

var linkPattern = regexp.MustCompile(`id="link" class="link" type="text" readonly value="([^"]+)"`)

// linkOf returns the link a link page shows, and its token.
func linkOf(t *testing.T, body, kind string) (link, token string) {
	t.Helper()
	m := linkPattern.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no link on the page:\n%s", body)
	}
	link = m[1]
	prefix := apptest.PublicURL + "/" + kind + "/"
	if !strings.HasPrefix(link, prefix) || len(link) != len(prefix)+43 {
		t.Fatalf("link %q, want %s followed by a token", link, prefix)
	}
	return link, strings.TrimPrefix(link, prefix)
}

// invite has Ada invite an address at a role through the team page and returns the token.
func (e *teamEnv) invite(t *testing.T, email, role string) string {
	t.Helper()
	resp, body := e.post(t, e.ada, e.team()+"/invitations", url.Values{"email": {email}, "role": {role}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invite %s: %d\n%s", email, resp.StatusCode, body)
	}
	_, token := linkOf(t, body, "invite")
	return token
}

// accept accepts an invitation in a new browser and returns it, signed in.
func (e *teamEnv) accept(t *testing.T, token, name, password string) *http.Client {
	t.Helper()
	b := apptest.Browser(t)
	resp, body := e.post(t, b, "/invite/"+token, url.Values{"name": {name}, "password": {password}, "password_repeat": {password}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(e.in.ID) {
		t.Fatalf("accept: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	return b
}

func (e *teamEnv) account(t *testing.T, email string) extension.Account {
	t.Helper()
	acc, _, err := e.Store.LocalCredentials(t.Context(), e.in.ID, email)
	if err != nil {
		t.Fatalf("local account %s: %v", email, err)
	}
	return acc
}

// noSecretsLogged fails the test when a log line carries one of the secrets.
func (e *teamEnv) noSecretsLogged(t *testing.T, secrets ...string) {
	t.Helper()
	logs := e.Logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("a log line carries a secret (%d bytes)", len(s))
		}
	}
	if !strings.Contains(logs, `"path":"/invite/…"`) && strings.Contains(logs, "/invite/") {
		t.Error("the request log names /invite/ paths other than redacted")
	}
}

func linkHeadersOK(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q, want no-referrer", what, got)
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", what, got)
	}
}

const goodPassword = "correct horse battery staple"

// TestInvitationAccepted: an owner invites, the link is shown once, the invited person
// sees who invited them to what, accepts with a name and password and lands signed in on
// the dashboard; the link is then used, says so, and signs in nobody else. No token
// reaches a log line.
func TestInvitationAccepted(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newTeamEnv(t, apptest.Options{Dialect: d})
			resp, body := e.post(t, e.ada, e.team()+"/invitations", url.Values{"email": {" Lena@Example.test "}, "role": {"admin"}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("invite: %d\n%s", resp.StatusCode, body)
			}
			linkHeadersOK(t, "link page", resp)
			_, token := linkOf(t, body, "invite")
			for _, want := range []string{"shown only this once", "Lena@Example.test", "“Administrator”", "Send it on a way you trust"} {
				if !strings.Contains(body, want) {
					t.Errorf("link page lacks %q", want)
				}
			}
			// Shown once: the team page lists the invitation, never its link.
			resp, body = e.do(t, e.ada, http.MethodGet, e.team(), nil, nil)
			if resp.StatusCode != http.StatusOK || strings.Contains(body, token) || !strings.Contains(body, "Lena@Example.test") {
				t.Errorf("team page after inviting: %d, shows the token or lacks the invitation", resp.StatusCode)
			}

			lena := apptest.Browser(t)
			resp, body = e.do(t, lena, http.MethodGet, "/invite/"+token, nil, nil)
			linkHeadersOK(t, "invitation page", resp)
			for _, want := range []string{"Ada Admin invited you to a project as Administrator", "Lena@Example.test", "12 to 1024 characters",
				`name="password"`, `name="name"`} {
				if resp.StatusCode != http.StatusOK || !strings.Contains(body, want) {
					t.Errorf("invitation page (%d) lacks %q", resp.StatusCode, want)
				}
			}
			if strings.Contains(body, "already signed in") {
				t.Error("a fresh browser is told it is signed in")
			}
			// Ada's browser has a session of the instance: the page says so.
			if _, body := e.do(t, e.ada, http.MethodGet, "/invite/"+token, nil, nil); !strings.Contains(body, "already signed in here, as Ada Admin") {
				t.Error("the invitation page does not tell a signed-in browser")
			}
			// Mistakes: the form again, 400, nothing created, the name kept, never the password.
			for _, tc := range []struct {
				form url.Values
				want string
			}{
				{url.Values{"name": {"Lena Local"}, "password": {"too short"}}, "too short"},
				{url.Values{"name": {"Lena Local"}, "password": {goodPassword}, "password_repeat": {goodPassword + "!"}}, "not the same"},
				{url.Values{"name": {"  "}, "password": {goodPassword}}, "Enter your name"},
				{url.Values{"name": {"Lena Local"}, "password": {strings.Repeat("x", 1025)}}, "too long"},
			} {
				resp, body := e.post(t, lena, "/invite/"+token, tc.form)
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.want) || strings.Contains(body, goodPassword) {
					t.Errorf("accept with %v: %d, want 400 with %q", tc.form["name"], resp.StatusCode, tc.want)
				}
			}
			if _, _, err := e.Store.LocalCredentials(t.Context(), e.in.ID, "lena@example.test"); err == nil {
				t.Fatal("a refused form created the account")
			}
			resp, body = e.post(t, lena, "/invite/"+token, url.Values{"name": {"Lena Local"}, "password": {goodPassword}})
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(e.in.ID) {
				t.Fatalf("accept: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if resp, body := e.do(t, lena, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Lena Local") {
				t.Errorf("dashboard after accepting: %d", resp.StatusCode)
			}
			if acc := e.account(t, "lena@example.test"); acc.Role != extension.RoleAdmin || acc.Name != "Lena Local" {
				t.Errorf("account %+v, want Lena Local, admin", acc)
			}
			// Used: the page says so and where to sign in; a second acceptance makes nothing.
			resp, body = e.do(t, apptest.Browser(t), http.MethodGet, "/invite/"+token, nil, nil)
			if resp.StatusCode != http.StatusGone || !strings.Contains(body, "already accepted") ||
				!strings.Contains(body, `href="`+frontend.LoginPath(e.in.ID)+`"`) || !strings.Contains(body, "tell Ada Admin") {
				t.Errorf("used invitation: %d\n%s", resp.StatusCode, body)
			}
			other := apptest.Browser(t)
			if resp, _ := e.post(t, other, "/invite/"+token, url.Values{"name": {"Mallory"}, "password": {goodPassword}}); resp.StatusCode != http.StatusGone || len(resp.Cookies()) != 0 {
				t.Errorf("second acceptance: %d, cookies %v", resp.StatusCode, resp.Cookies())
			}
			accs, _ := e.Store.Accounts(t.Context(), e.in.ID)
			if len(accs) != 2 {
				t.Errorf("%d accounts, want 2", len(accs))
			}
			e.noSecretsLogged(t, token, goodPassword)
			if !strings.Contains(e.Logs.String(), "invitation accepted") {
				t.Error("the acceptance is not logged")
			}
		})
	}
}

// TestInviteRefused: a bad address, a role above one's own, a disallowed domain, an
// address with an account or an open invitation: the team page again with a 4xx, the
// message next to the form and the address kept; nothing changes. A member may not invite.
func TestInviteRefused(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	lena := e.accept(t, e.invite(t, "lena@example.test", extension.RoleAdmin), "Lena Local", goodPassword)
	milo := e.accept(t, e.invite(t, "milo@example.test", extension.RoleMember), "Milo Member", goodPassword)
	e.invite(t, "open@example.test", extension.RoleMember)
	open := func() int {
		inv, err := e.Store.OpenInvitations(t.Context(), e.in.ID)
		if err != nil {
			t.Fatal(err)
		}
		return len(inv)
	}
	before := open()
	for _, tc := range []struct {
		name   string
		b      *http.Client
		email  string
		role   string
		status int
		want   string
	}{
		{"bad address", e.ada, "not an address", "member", http.StatusBadRequest, "Enter a complete e-mail address"},
		{"bad role", e.ada, "new@example.test", "king", http.StatusBadRequest, "Choose one of the roles"},
		{"admin invites an owner", lena, "new@example.test", "owner", http.StatusForbidden, "up to your own role"},
		{"has an account", e.ada, "LENA@example.test", "member", http.StatusConflict, "already has an extension account"},
		{"invited already", e.ada, "open@example.test", "member", http.StatusConflict, "already has an open invitation"},
		{"member", milo, "new@example.test", "member", http.StatusForbidden, "Only owners and administrators can change the team"},
	} {
		resp, body := e.post(t, tc.b, e.team()+"/invitations", url.Values{"email": {tc.email}, "role": {tc.role}})
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.name, resp.StatusCode, tc.status, tc.want, body)
		}
		if tc.b != milo && !strings.Contains(body, `value="`+tc.email+`"`) {
			t.Errorf("%s: the address typed is not kept", tc.name)
		}
		if linkPattern.MatchString(body) {
			t.Errorf("%s: a refusal shows a link", tc.name)
		}
	}
	// Allowed domains: an address outside them is refused, and the page names them.
	st, err := e.Store.InstanceSettings(t.Context(), e.in.ID)
	if err != nil {
		t.Fatal(err)
	}
	st.AllowedDomains = []string{"example.test"}
	if _, err := e.Store.UpdateInstanceSettings(t.Context(), e.in.ID, e.adaID, st); err != nil {
		t.Fatal(err)
	}
	resp, body := e.post(t, e.ada, e.team()+"/invitations", url.Values{"email": {"x@elsewhere.test"}, "role": {"member"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "Allowed: example.test") || !strings.Contains(body, `aria-invalid="true"`) {
		t.Errorf("disallowed domain: %d\n%s", resp.StatusCode, body)
	}
	if got := open(); got != before {
		t.Errorf("%d open invitations after the refusals, want %d", got, before)
	}
}

// TestTeamChanges: changing a role, removing, transferring ownership; the refusals (a
// member, an admin granting owner or touching an owner, the last owner, another instance's
// account, a malformed id) change nothing and say what to do.
func TestTeamChanges(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	lenaToken := e.invite(t, "lena@example.test", extension.RoleAdmin)
	lena := e.accept(t, lenaToken, "Lena Local", goodPassword)
	milo := e.accept(t, e.invite(t, "milo@example.test", extension.RoleMember), "Milo Member", goodPassword)
	lenaID, miloID := e.account(t, "lena@example.test").ID, e.account(t, "milo@example.test").ID
	openInv := e.invite(t, "open@example.test", extension.RoleMember)
	invs, err := e.Store.OpenInvitations(t.Context(), e.in.ID)
	if err != nil || len(invs) != 1 {
		t.Fatalf("open invitations %v, %v", invs, err)
	}
	invID := invs[0].ID

	// Another instance with an account of its own.
	other := e.Install(t, mstudiotest.InstanceSpec{})
	stranger, _, err := e.Store.EnsurePlatformAccount(t.Context(), other.ID, e.User(t, "Otto Outsider").ID, "otto@example.test", "Otto Outsider", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	role := func(id string) string {
		t.Helper()
		acc, err := e.Store.AccountByID(t.Context(), id)
		if err != nil {
			t.Fatalf("account %s: %v", id, err)
		}
		return acc.Role
	}

	// The member sees the team without a form and is refused every change.
	resp, body := e.do(t, milo, http.MethodGet, e.team(), nil, nil)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "<form method=\"post\" action=\"/app/") || !strings.Contains(body, "Lena Local") {
		t.Errorf("member's team page: %d, has forms or lacks the members\n%s", resp.StatusCode, body)
	}
	for _, path := range []string{"/invitations", "/invitations/" + invID + "/revoke", "/invitations/" + invID + "/reissue", "/transfer",
		"/" + lenaID + "/role", "/" + lenaID + "/remove", "/" + lenaID + "/reset"} {
		resp, body := e.post(t, milo, e.team()+path, url.Values{"role": {"member"}, "email": {"x@example.test"}, "account": {miloID}})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Only owners and administrators") || linkPattern.MatchString(body) {
			t.Errorf("member's POST %s: %d", path, resp.StatusCode)
		}
	}

	for _, tc := range []struct {
		name   string
		b      *http.Client
		path   string
		form   url.Values
		status int
		want   string
	}{
		{"admin grants owner", lena, "/" + miloID + "/role", url.Values{"role": {"owner"}}, http.StatusForbidden, "Your role does not allow this change"},
		{"admin demotes an owner", lena, "/" + e.adaID + "/role", url.Values{"role": {"member"}}, http.StatusForbidden, "only owners manage owners"},
		{"admin removes an owner", lena, "/" + e.adaID + "/remove", nil, http.StatusForbidden, "Your role does not allow this change"},
		{"admin transfers", lena, "/transfer", url.Values{"account": {lenaID}}, http.StatusForbidden, "Your role does not allow this change"},
		{"last owner demoted", e.ada, "/" + e.adaID + "/role", url.Values{"role": {"admin"}}, http.StatusConflict, "The team needs an owner"},
		{"last owner removed", e.ada, "/" + e.adaID + "/remove", url.Values{"confirm": {"yes"}}, http.StatusConflict, "Make someone else an owner first"},
		{"another instance's account", e.ada, "/" + stranger.ID + "/role", url.Values{"role": {"admin"}}, http.StatusNotFound, "not in this team"},
		{"another instance's account, no role", e.ada, "/" + stranger.ID + "/role", nil, http.StatusNotFound, "not in this team"},
		{"another instance's account removed", e.ada, "/" + stranger.ID + "/remove", nil, http.StatusNotFound, "not in this team"},
		{"another instance's account reset", e.ada, "/" + stranger.ID + "/reset", nil, http.StatusNotFound, "not in this team"},
		{"malformed id", e.ada, "/not-an-id/role", url.Values{"role": {"admin"}}, http.StatusNotFound, "not in this team"},
		{"malformed invitation id", e.ada, "/invitations/x'--/revoke", nil, http.StatusNotFound, "not in this team"},
		{"unknown role", e.ada, "/" + miloID + "/role", url.Values{"role": {"root"}}, http.StatusBadRequest, "Unknown role"},
		{"platform user's reset", lena, "/" + e.adaID + "/reset", nil, http.StatusForbidden, "Your role does not allow this change"},
		{"transfer to a stranger", e.ada, "/transfer", url.Values{"account": {stranger.ID}}, http.StatusNotFound, "not in this team"},
	} {
		resp, body := e.post(t, tc.b, e.team()+tc.path, tc.form)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d with %q\n%s", tc.name, resp.StatusCode, tc.status, tc.want, body)
		}
	}
	if role(e.adaID) != extension.RoleOwner || role(lenaID) != extension.RoleAdmin || role(miloID) != extension.RoleMember || role(stranger.ID) != extension.RoleOwner {
		t.Fatalf("a refused change changed a role: %s %s %s %s", role(e.adaID), role(lenaID), role(miloID), role(stranger.ID))
	}

	// The owner's page offers the forms, each role select only what she may grant.
	_, body = e.do(t, e.ada, http.MethodGet, e.team(), nil, nil)
	for _, want := range []string{`action="/app/` + e.in.ID + `/team/` + miloID + `/role"`, `action="/app/` + e.in.ID + `/team/` + miloID + `/reset"`,
		`action="/app/` + e.in.ID + `/team/invitations/` + invID + `/reissue"`, `action="/app/` + e.in.ID + `/team/transfer"`, `value="owner"`} {
		if !strings.Contains(body, want) {
			t.Errorf("owner's team page lacks %s", want)
		}
	}
	if strings.Contains(body, `/team/`+e.adaID+`/`) {
		t.Error("the owner's own row has forms")
	}
	_, body = e.do(t, lena, http.MethodGet, e.team(), nil, nil)
	if strings.Contains(body, `value="owner"`) || strings.Contains(body, `/team/`+e.adaID+`/`) || strings.Contains(body, "/team/transfer") {
		t.Error("the admin's page offers the owner role, a form on the owner or the transfer")
	}
	if !strings.Contains(body, `/team/`+miloID+`/role`) {
		t.Error("the admin's page offers no form for a member")
	}

	// Success: 303 back with a fixed confirmation.
	ok := func(b *http.Client, path string, form url.Values, done string) {
		t.Helper()
		resp, body := e.post(t, b, e.team()+path, form)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.team()+"?done="+done {
			t.Fatalf("POST %s: %d to %q\n%s", path, resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if _, body := e.do(t, b, http.MethodGet, resp.Header.Get("Location"), nil, nil); !strings.Contains(body, `class="alert success"`) {
			t.Errorf("POST %s: the team page shows no confirmation", path)
		}
	}
	ok(lena, "/"+miloID+"/role", url.Values{"role": {"admin"}}, "role_changed")
	if role(miloID) != extension.RoleAdmin {
		t.Errorf("Milo is %s, want admin", role(miloID))
	}
	ok(e.ada, "/invitations/"+invID+"/revoke", nil, "revoked")
	if resp, body := e.do(t, apptest.Browser(t), http.MethodGet, "/invite/"+openInv, nil, nil); resp.StatusCode != http.StatusGone || !strings.Contains(body, "withdrawn") {
		t.Errorf("revoked invitation's page: %d", resp.StatusCode)
	}
	// Removal asks first: the button's post without confirm=yes shows what it means and
	// a form that confirms, and removes nobody.
	resp, body = e.post(t, lena, e.team()+"/"+miloID+"/remove", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="confirm" value="yes"`) || !strings.Contains(body, "Remove Milo") {
		t.Errorf("remove without confirm: %d\n%s", resp.StatusCode, body)
	}
	if _, err := e.Store.AccountByID(t.Context(), miloID); err != nil {
		t.Fatalf("asking removed Milo: %v", err)
	}
	ok(lena, "/"+miloID+"/remove", url.Values{"confirm": {"yes"}}, "removed")
	if _, err := e.Store.AccountByID(t.Context(), miloID); err == nil {
		t.Error("Milo is still there")
	}
	if resp, _ := e.do(t, milo, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a removed account's session goes on: %d", resp.StatusCode)
	}
	ok(e.ada, "/transfer", url.Values{"account": {lenaID}}, "transferred")
	if role(e.adaID) != extension.RoleAdmin || role(lenaID) != extension.RoleOwner {
		t.Errorf("after the transfer Ada is %s and Lena %s", role(e.adaID), role(lenaID))
	}
	evs, _, err := e.Store.AuditEvents(t.Context(), e.in.ID, extension.AuditFilter{}, extension.AuditPage{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Kind]++
	}
	if kinds[extension.AuditRoleChanged] != 1 || kinds[extension.AuditAccountRemoved] != 1 || kinds[extension.AuditOwnershipTransferred] != 1 ||
		kinds[extension.AuditInvitationRevoked] != 1 {
		t.Errorf("audit events %v", kinds)
	}
	e.noSecretsLogged(t, lenaToken, openInv, goodPassword)
}

// TestReissueAndExpiry: a new link replaces the old one, which then says so; an expired
// invitation names who invited and what to do; unknown and malformed links are 404.
func TestReissueAndExpiry(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	old := e.invite(t, "lena@example.test", extension.RoleMember)
	invs, _ := e.Store.OpenInvitations(t.Context(), e.in.ID)
	resp, body := e.post(t, e.ada, e.team()+"/invitations/"+invs[0].ID+"/reissue", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reissue: %d\n%s", resp.StatusCode, body)
	}
	linkHeadersOK(t, "reissued link", resp)
	_, fresh := linkOf(t, body, "invite")
	if fresh == old {
		t.Fatal("the new link is the old one")
	}
	resp, body = e.do(t, apptest.Browser(t), http.MethodGet, "/invite/"+old, nil, nil)
	if resp.StatusCode != http.StatusGone || !strings.Contains(body, "newer link") || !strings.Contains(body, "Ask Ada Admin for a new link") {
		t.Errorf("replaced link: %d\n%s", resp.StatusCode, body)
	}
	linkHeadersOK(t, "replaced link", resp)
	if resp, _ := e.post(t, apptest.Browser(t), "/invite/"+old, url.Values{"name": {"Lena"}, "password": {goodPassword}}); resp.StatusCode != http.StatusGone {
		t.Errorf("accepting the replaced link: %d", resp.StatusCode)
	}
	for _, path := range []string{"/invite/" + strings.Repeat("A", 43), "/invite/short", "/reset/" + strings.Repeat("A", 43), "/reset/short"} {
		resp, body := e.do(t, apptest.Browser(t), http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "does not work") {
			t.Errorf("%s: %d\n%s", path, resp.StatusCode, body)
		}
		linkHeadersOK(t, path, resp)
	}
	e.Clock.Advance(extension.InvitationTTL + time.Hour)
	resp, body = e.do(t, apptest.Browser(t), http.MethodGet, "/invite/"+fresh, nil, nil)
	if resp.StatusCode != http.StatusGone || !strings.Contains(body, "has expired") || !strings.Contains(body, "Ask Ada Admin for a new link") {
		t.Errorf("expired link: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := e.post(t, apptest.Browser(t), "/invite/"+fresh, url.Values{"name": {"Lena"}, "password": {goodPassword}}); resp.StatusCode != http.StatusGone {
		t.Errorf("accepting an expired link: %d", resp.StatusCode)
	}
	e.noSecretsLogged(t, old, fresh)
}

// TestPasswordReset: an admin hands out a reset link once; using it sets the new
// password, ends every other session of the account and signs this browser in; the link
// then says it was used. A platform user has no password to reset.
func TestPasswordReset(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newTeamEnv(t, apptest.Options{Dialect: d})
			lena1 := e.accept(t, e.invite(t, "lena@example.test", extension.RoleMember), "Lena Local", goodPassword)
			lenaID := e.account(t, "lena@example.test").ID
			lena2 := apptest.Browser(t)
			if resp, _ := e.post(t, lena2, frontend.LoginPath(e.in.ID), url.Values{"email": {"lena@example.test"}, "password": {goodPassword}}); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("second sign-in: %d", resp.StatusCode)
			}
			resp, body := e.post(t, e.ada, e.team()+"/"+lenaID+"/reset", nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Lena Local") {
				t.Fatalf("issue reset: %d\n%s", resp.StatusCode, body)
			}
			linkHeadersOK(t, "reset link page", resp)
			_, token := linkOf(t, body, "reset")
			if resp, _ := e.post(t, e.ada, e.team()+"/"+e.adaID+"/reset", nil); resp.StatusCode != http.StatusConflict {
				t.Errorf("reset of a platform user: %d, want 409", resp.StatusCode)
			}

			b := apptest.Browser(t)
			resp, body = e.do(t, b, http.MethodGet, "/reset/"+token, nil, nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Lena Local") || !strings.Contains(body, "every other session") {
				t.Errorf("reset page: %d\n%s", resp.StatusCode, body)
			}
			linkHeadersOK(t, "reset page", resp)
			if resp, _ := e.post(t, b, "/reset/"+token, url.Values{"password": {"short"}}); resp.StatusCode != http.StatusBadRequest {
				t.Errorf("short password: %d", resp.StatusCode)
			}
			const newPassword = "a brand new passphrase"
			resp, body = e.post(t, b, "/reset/"+token, url.Values{"password": {newPassword}, "password_repeat": {newPassword}})
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != frontend.AppPath(e.in.ID) {
				t.Fatalf("use reset: %d to %q\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
			}
			if resp, body := e.do(t, b, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "Lena Local") {
				t.Errorf("dashboard after the reset: %d", resp.StatusCode)
			}
			for i, old := range []*http.Client{lena1, lena2} {
				if resp, _ := e.do(t, old, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusSeeOther {
					t.Errorf("session %d of the old password goes on: %d", i+1, resp.StatusCode)
				}
			}
			if resp, _ := e.do(t, e.ada, http.MethodGet, frontend.AppPath(e.in.ID), nil, nil); resp.StatusCode != http.StatusOK {
				t.Errorf("another account's session ended: %d", resp.StatusCode)
			}
			signIn := func(pw string) int {
				resp, _ := e.post(t, apptest.Browser(t), frontend.LoginPath(e.in.ID), url.Values{"email": {"lena@example.test"}, "password": {pw}})
				return resp.StatusCode
			}
			if signIn(goodPassword) != http.StatusUnauthorized || signIn(newPassword) != http.StatusSeeOther {
				t.Error("the old password still works or the new one does not")
			}
			resp, body = e.do(t, apptest.Browser(t), http.MethodGet, "/reset/"+token, nil, nil)
			if resp.StatusCode != http.StatusGone || !strings.Contains(body, "already used") {
				t.Errorf("used reset link: %d\n%s", resp.StatusCode, body)
			}
			if resp, _ := e.post(t, apptest.Browser(t), "/reset/"+token, url.Values{"password": {"another new passphrase"}}); resp.StatusCode != http.StatusGone || len(resp.Cookies()) != 0 {
				t.Errorf("second use: %d, cookies %v", resp.StatusCode, resp.Cookies())
			}
			// An expired link says so.
			_, body = e.post(t, e.ada, e.team()+"/"+lenaID+"/reset", nil)
			_, late := linkOf(t, body, "reset")
			e.Clock.Advance(extension.PasswordResetTTL + time.Minute)
			if resp, body := e.do(t, apptest.Browser(t), http.MethodGet, "/reset/"+late, nil, nil); resp.StatusCode != http.StatusGone || !strings.Contains(body, "has expired") {
				t.Errorf("expired reset link: %d\n%s", resp.StatusCode, body)
			}
			e.noSecretsLogged(t, token, late, goodPassword, newPassword)
			if !strings.Contains(e.Logs.String(), `"path":"/reset/…"`) {
				t.Error("the request log has no redacted /reset/ path")
			}
		})
	}
}

// TestLinksMailed: with a mailer, the link page also hands the link to it, in the
// inviter's language, and says it was sent.
func TestLinksMailed(t *testing.T) {
	m := &recordingMailer{}
	e := newTeamEnv(t, apptest.Options{Frontend: func(c *frontend.Config) { c.Mailer = m }})
	resp, body := e.do(t, e.ada, http.MethodPost, e.team()+"/invitations", http.Header{"Origin": {apptest.PublicURL}, "Accept-Language": {"de"}},
		url.Values{"email": {"Lena@Example.test"}, "role": {"member"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "per E-Mail an Lena@Example.test geschickt") {
		t.Fatalf("invite with a mailer: %d\n%s", resp.StatusCode, body)
	}
	link, _ := linkOf(t, body, "invite")
	if len(m.invites) != 1 || m.invites[0].Link.Reveal() != link || m.invites[0].To != "lena@example.test" || m.invites[0].Lang != "de" ||
		m.invites[0].InviterName != "Ada Admin" || m.invites[0].Role != "member" {
		t.Errorf("mails %+v", m.invites)
	}
	lena := e.accept(t, strings.TrimPrefix(link, apptest.PublicURL+"/invite/"), "Lena Local", goodPassword)
	_ = lena
	resp, body = e.post(t, e.ada, e.team()+"/"+e.account(t, "lena@example.test").ID+"/reset", nil)
	if resp.StatusCode != http.StatusOK || len(m.resets) != 1 || !strings.Contains(body, "also sent it by e-mail to Lena Local") {
		t.Errorf("reset with a mailer: %d, %d mails", resp.StatusCode, len(m.resets))
	}
}

// TestLinkFormsRateLimited: the invitation and reset forms hash passwords, so they share
// the sign-in's limit per address.
func TestLinkFormsRateLimited(t *testing.T) {
	e := newTeamEnv(t, apptest.Options{})
	b := apptest.Browser(t)
	var limited bool
	for i := range 60 {
		path := "/invite/"
		if i%2 == 1 {
			path = "/reset/"
		}
		resp, _ := e.post(t, b, path+strings.Repeat("A", 43), url.Values{"password": {"x"}})
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("60 posts in a row were never limited")
	}
}
