package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/oauth2-proxy/mockoidc"
	"github.com/prometheus/client_golang/prometheus"
)

// Who may use a route, as DESIGN.md's role rules say.
type access int

const (
	public            access = iota // anyone, with or without a session
	anyRole                         // every role of the instance; no session of it: sign in
	adminRole                       // admin and owner; member: 403
	ownerRole                       // owner; admin and member: 403
	localAccount                    // every role, with a local account (a password); a platform account: 403
	platformOwner                   // a platform user the platform names owner of the context (nobody in the fixture); others: 403
	notAnInstancePage               // platform, health or static routes: not exercised here
)

// accessRows lists every route of the route table with who may use it. A route added to
// routes.go without a row here fails TestEveryRouteAccess: decide who may use it first.
var accessRows = []struct {
	method, path string
	who          access
	// notFound, when set, says why an allowed actor's empty request may answer 404;
	// otherwise a 404 to an allowed actor fails the test, as any 5xx to anyone does.
	notFound string
}{
	{"POST", "/mstudio/webhooks", notAnInstancePage, ""},
	{"GET", "/mstudio/fragment/session", notAnInstancePage, ""},
	{"GET", "/mstudio/sso", notAnInstancePage, ""},
	{"GET", "/login/mstudio", notAnInstancePage, ""},
	{"GET", "/login/mstudio/callback", notAnInstancePage, ""},
	{"GET", "/login/mstudio/choose", notAnInstancePage, ""},
	{"GET", "/healthz", notAnInstancePage, ""},
	{"GET", "/readyz", notAnInstancePage, ""},
	{"GET", "/metrics", notAnInstancePage, ""},
	{"GET", "/static/*", notAnInstancePage, ""},
	{"GET", "/app", public, ""},
	{"POST", "/logout", public, ""},
	{"GET", "/signed-out", public, ""},
	{"GET", "/app/:instanceId/login", public, ""},
	{"POST", "/app/:instanceId/login", public, ""},
	{"GET", "/app/:instanceId", anyRole, ""},
	{"GET", "/app/:instanceId/team", anyRole, ""},
	{"GET", "/app/:instanceId/actions/rename-project", anyRole, ""},
	{"POST", "/app/:instanceId/actions/rename-project", anyRole, ""},
	{"GET", "/app/:instanceId/actions/:actionId", anyRole, ""},
	{"GET", "/app/:instanceId/reclaim", platformOwner, ""},
	{"POST", "/app/:instanceId/reclaim", platformOwner, ""},
	{"GET", "/app/:instanceId/account", anyRole, ""},
	{"POST", "/app/:instanceId/account", anyRole, ""},
	{"POST", "/app/:instanceId/account/password", localAccount, ""},
	{"POST", "/app/:instanceId/account/sessions/end", anyRole, ""},
	{"POST", "/app/:instanceId/account/sessions/end-others", anyRole, ""},
	{"GET", "/app/:instanceId/audit", adminRole, ""},
	{"GET", "/app/:instanceId/export", ownerRole, ""},
	{"GET", "/app/:instanceId/settings/sign-in", ownerRole, ""},
	{"POST", "/app/:instanceId/settings/sign-in", ownerRole, ""},
	{"GET", "/app/:instanceId/login/forgot", public, ""},
	{"POST", "/app/:instanceId/login/forgot", public, ""},
	{"POST", "/app/:instanceId/team/invitations", adminRole, ""},
	{"POST", "/app/:instanceId/team/invitations/:invitationId/reissue", adminRole, ""},
	{"POST", "/app/:instanceId/team/invitations/:invitationId/revoke", adminRole, ""},
	{"POST", "/app/:instanceId/team/transfer", ownerRole, "the empty form names no account"},
	{"POST", "/app/:instanceId/team/:accountId/role", adminRole, ""},
	{"POST", "/app/:instanceId/team/:accountId/reset", adminRole, ""},
	{"POST", "/app/:instanceId/team/:accountId/remove", adminRole, "the owner, who tries first, has removed the account by then"},
	{"GET", "/invite/:token", public, "the token is made up: no invitation of ours"},
	{"POST", "/invite/:token", public, "the token is made up: no invitation of ours"},
	{"GET", "/reset/:token", public, "the token is made up: no reset of ours"},
	{"POST", "/reset/:token", public, "the token is made up: no reset of ours"},
	{"GET", "/app/:instanceId/login/oidc/:providerId", public, ""},
	{"GET", "/login/oidc/callback", public, ""},
	{"GET", "/invite/:token/oidc/:providerId", public, "the token is made up: no invitation of ours"},
	{"GET", "/app/:instanceId/account/identities/connect/:providerId", localAccount, ""},
	{"POST", "/app/:instanceId/account/identities/:identityId/remove", anyRole, "the identity is the admin's: nobody else's to remove"},
	{"POST", "/app/:instanceId/settings/sign-in/providers", ownerRole, ""},
	{"GET", "/app/:instanceId/settings/sign-in/providers/new", ownerRole, ""},
	{"GET", "/app/:instanceId/settings/sign-in/providers/:providerId", ownerRole, ""},
	{"POST", "/app/:instanceId/settings/sign-in/providers/:providerId", ownerRole, ""},
	{"POST", "/app/:instanceId/settings/sign-in/providers/:providerId/disable", ownerRole, ""},
	{"POST", "/app/:instanceId/settings/sign-in/providers/:providerId/enable", ownerRole, ""},
	// Last: the provider is gone afterwards.
	{"POST", "/app/:instanceId/settings/sign-in/providers/:providerId/delete", ownerRole, ""},
}

// accessFixture is one instance with an owner, an admin and a member, a second instance
// with its owner, and objects of both that routes name by id.
type accessFixture struct {
	app      *apptest.App
	base     string
	a, b     string                       // instance ids
	accounts map[string]extension.Account // actor → its account (of a, or of b for "other")
	params   map[string]string            // route parameter → an id of instance a
	foreign  map[string]string            // route parameter → an id of instance b
}

// The actors: each role of instance a, the owner of instance b (who holds no session of
// a), and a browser without any session.
var accessActors = []string{"owner", "admin", "member", "other", "anonymous"}

func newAccessFixture(t *testing.T) *accessFixture {
	t.Helper()
	app := apptest.New(t, apptest.Options{})
	cfg := &Config{PublicURL: apptest.PublicURL, ExtensionID: app.Sim.ExtensionID(), DefaultRole: "member"}
	// With the job queue, as served: actions start and "forgot password" exists.
	front, err := newHTTP(t.Context(), cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, nil, mailQueue(t, app, cfg))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	f := &accessFixture{app: app, base: srv.URL, params: map[string]string{}, foreign: map[string]string{}}
	idp, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Shutdown() })
	f.a = app.Install(t, mstudiotest.InstanceSpec{Scopes: []string{"project:read", "project:write"}}).ID
	f.b = app.Install(t, mstudiotest.InstanceSpec{Scopes: []string{"project:read", "project:write"}}).ID
	ctx := t.Context()
	hash, err := extension.HashPassword("a password long enough", extension.PasswordOWASP)
	if err != nil {
		t.Fatal(err)
	}
	// owners are platform users; the rest local accounts, invited by the owner.
	owners := map[string]extension.Account{}
	for _, inst := range []string{f.a, f.b} {
		acc, _, err := app.Store.EnsurePlatformAccount(ctx, inst, app.User(t, "Ada Admin").ID, "ada@example.test", "Ada Admin", extension.RoleOwner)
		if err != nil {
			t.Fatal(err)
		}
		owners[inst] = acc
	}
	local := func(inst, email, role string) extension.Account {
		inv, token, err := app.Store.CreateInvitation(ctx, inst, owners[inst].ID, email, role)
		if err != nil {
			t.Fatal(err)
		}
		_ = inv
		acc, err := app.Store.AcceptInvitation(ctx, token, email, hash)
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	f.accounts = map[string]extension.Account{
		"owner":  owners[f.a],
		"admin":  local(f.a, "admin@example.test", extension.RoleAdmin),
		"member": local(f.a, "member@example.test", extension.RoleMember),
		"other":  owners[f.b],
	}
	// Objects routes name: a member to act on, an action, in a and in b.
	for inst, into := range map[string]map[string]string{f.a: f.params, f.b: f.foreign} {
		target := local(inst, "target@example.test", extension.RoleMember)
		into["accountId"] = target.ID
		act, err := app.Store.CreateAction(ctx, inst, owners[inst].ID, "rename_project", "New name")
		if err != nil {
			t.Fatal(err)
		}
		into["actionId"] = act.ID
		inv, _, err := app.Store.CreateInvitation(ctx, inst, owners[inst].ID, "invited@example.test", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		into["invitationId"] = inv.ID
		into["token"] = strings.Repeat("A", 43) // a link page is public; no link of ours
		// A provider (a real one in-process, so a sign-in can start), and an admin's
		// identity there.
		p, err := app.Store.SaveOIDCProvider(ctx, owners[inst].ID, extension.OIDCProvider{InstanceID: inst, Template: "custom",
			Name: "IdP", Issuer: idp.Issuer(), ClientID: idp.ClientID, Scopes: []string{"openid", "email"},
			DefaultRole: extension.RoleMember, Enabled: true}, extension.Secret(idp.ClientSecret), true)
		if err != nil {
			t.Fatal(err)
		}
		into["providerId"] = p.ID
		holder := local(inst, "identity@example.test", extension.RoleAdmin)
		if inst == f.a {
			holder = f.accounts["admin"]
		}
		if err := app.Store.LinkOIDCIdentity(ctx, inst, holder.ID, p.ID, extension.OIDCClaims{Subject: "admin-" + inst}); err != nil {
			t.Fatal(err)
		}
		ids, err := app.Store.OIDCIdentities(ctx, inst, holder.ID)
		if err != nil || len(ids) != 1 {
			t.Fatalf("owner's identities: %v, %v", ids, err)
		}
		into["identityId"] = ids[0].ID
	}
	return f
}

// request sends the route's method to its path with the parameters filled in, as the
// actor, with an empty form, and returns the response.
func (f *accessFixture) request(t *testing.T, method, path, actor string, params map[string]string, instance string) *http.Response {
	t.Helper()
	var segs []string
	for _, seg := range strings.Split(path, "/") {
		if name, ok := strings.CutPrefix(seg, ":"); ok {
			switch v, ok := params[name]; {
			case name == "instanceId":
				seg = instance
			case ok:
				seg = v
			default:
				t.Fatalf("%s %s: no value for :%s in the fixture", method, path, name)
			}
		}
		segs = append(segs, seg)
	}
	req, err := http.NewRequest(method, f.base+strings.Join(segs, "/"), strings.NewReader(url.Values{}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	// A browser following our own links and forms says so (the connect start checks it).
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", apptest.PublicURL)
	}
	if acc, ok := f.accounts[actor]; ok {
		// A new session for each request: a request may end the session it came with
		// (sign-out), and the next actor's must still work.
		id, _, err := f.app.Store.CreateSession(t.Context(), acc.ID, acc.InstanceID, acc.PlatformUserID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The session cookie's name carries the instance id's hex digits (frontend/session.go).
		req.AddCookie(&http.Cookie{Name: "ext_s_" + strings.ReplaceAll(acc.InstanceID, "-", ""), Value: id.Reveal()})
	}
	resp, err := apptest.Browser(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	apptest.Body(t, resp)
	return resp
}

// refusedForRole: the role may not; refusedNoSession: no session of this instance.
func refusedForRole(r *http.Response) bool { return r.StatusCode == http.StatusForbidden }
func refusedNoSession(r *http.Response) bool {
	return r.StatusCode == http.StatusUnauthorized ||
		(r.StatusCode == http.StatusSeeOther && strings.HasSuffix(r.Header.Get("Location"), "/login"))
}

// TestEveryRouteAccess: every route of the route table has a row saying who may use it;
// each instance page is tried by each role of the instance, by the owner of another
// instance and by a browser without a session, and gets in or is refused as the row
// says. A page that names another object by id gets 404 for an object of another
// instance, even from the owner. Forms are posted empty, so an allowed post fails its
// validation rather than changing anything a later actor relies on.
func TestEveryRouteAccess(t *testing.T) {
	f := newAccessFixture(t)
	// The route table and the rows agree.
	rows := map[string]access{}
	for _, r := range accessRows {
		rows[r.method+" "+r.path] = r.who
	}
	front, err := newHTTP(t.Context(), &Config{PublicURL: apptest.PublicURL, ExtensionID: f.app.Sim.ExtensionID(), DefaultRole: "member"},
		f.app.Logger, prometheus.NewRegistry(), f.app.Store, f.app.Client, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, r := range front.Echo.Routes() {
		key := r.Method + " " + r.Path
		if strings.HasPrefix(r.Name, "github.com/labstack/echo") || r.Method == "echo_route_not_found" {
			continue
		}
		served[key] = true
		if _, ok := rows[key]; !ok {
			t.Errorf("route %s has no row in accessRows: say who may use it", key)
		}
	}
	for key := range rows {
		if !served[key] {
			t.Errorf("accessRows has %s, which the route table does not serve", key)
		}
	}

	for _, r := range accessRows {
		if r.who == notAnInstancePage {
			continue
		}
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			for _, actor := range accessActors {
				resp := f.request(t, r.method, r.path, actor, f.params, f.a)
				var allowed bool
				switch r.who {
				case public:
					allowed = true
				case anyRole:
					allowed = actor == "owner" || actor == "admin" || actor == "member"
				case adminRole:
					allowed = actor == "owner" || actor == "admin"
				case ownerRole:
					allowed = actor == "owner"
				case localAccount:
					allowed = actor == "admin" || actor == "member" // the owner is a platform user
				case platformOwner:
					// Nobody in the fixture owns the project on the platform: the owner is
					// sent on to the dashboard (nothing to reclaim), the local accounts
					// are refused.
					allowed = actor == "owner"
				}
				refused := refusedForRole(resp) || refusedNoSession(resp)
				if r.who == public {
					// A public form may answer 401 to an empty sign-in; it must not refuse
					// anybody for who they are, nor fail.
					refused = refusedForRole(resp) || resp.StatusCode >= 500
				}
				switch {
				case resp.StatusCode >= 500:
					t.Errorf("%s: %d, a failure of ours", actor, resp.StatusCode)
				case allowed && resp.StatusCode == http.StatusNotFound && r.notFound == "":
					t.Errorf("%s: 404, want allowed (or say in the row why 404 is the answer)", actor)
				case allowed && refused:
					t.Errorf("%s: refused with %d (Location %q), want allowed", actor, resp.StatusCode, resp.Header.Get("Location"))
				case !allowed && !refused:
					t.Errorf("%s: %d, want refused", actor, resp.StatusCode)
				case !allowed && (actor == "other" || actor == "anonymous") && !refusedNoSession(resp):
					t.Errorf("%s: %d, want the sign-in (303 to login or 401)", actor, resp.StatusCode)
				}
			}
			// Another instance's object under this instance's page: never found.
			if !strings.Contains(strings.TrimPrefix(r.path, "/app/:instanceId"), ":") || r.who == public {
				return
			}
			if resp := f.request(t, r.method, r.path, "owner", f.foreign, f.a); resp.StatusCode != http.StatusNotFound {
				t.Errorf("owner with another instance's ids: %d, want 404", resp.StatusCode)
			}
		})
	}
}
