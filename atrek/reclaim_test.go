package atrek_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// registerReclaim registers the reclaim page as cmd's route table does, and a test-only
// route that signs a local account in.
func registerReclaim(e *ssoEnv) {
	p := e.Pages
	e.Front.GET("/app/:instanceId/reclaim", e.Handler.Reclaim, p.RequireSession())
	e.Front.POST("/app/:instanceId/reclaim", e.Handler.SubmitReclaim, p.SameOrigin(), p.RequireSession())
	e.Front.GET("/test/local/:accountId", func(c echo.Context) error {
		acc, err := e.Store.AccountByID(c.Request().Context(), c.Param("accountId"))
		if err != nil {
			return err
		}
		if err := p.Sessions.Start(c, acc, ""); err != nil {
			return err
		}
		return c.Redirect(http.StatusSeeOther, atrek.AppPath(acc.InstanceID))
	})
}

var fromUs = http.Header{"Origin": {apptest.PublicURL}}

// A platform owner of the project takes the owner role: offered at sign-in, confirmed
// with the platform on the page and again on the POST (over HTTP, with the user's own
// token), recorded as the platform's; nobody else can, and nobody loses a role.
func TestReclaimOwnership(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		registerReclaim(e)
		reclaim := atrek.ReclaimPath(e.Instance.ID)
		ctx := context.Background()
		e.signIn(t, e.newBrowser(t), e.Bob) // the first: the instance's owner
		ada := e.newBrowser(t)
		e.signIn(t, ada, e.Ada) // no owner at the platform: the dashboard, as always
		if acc := accountOf(t, e, e.Ada.ID); acc.Role != extension.RoleMember {
			t.Fatalf("Ada is %s", acc.Role)
		}
		resp, body := e.get(t, ada, reclaim)
		wantPage(t, resp, body, http.StatusForbidden, "You are not the owner")
		resp, body = e.do(t, ada, http.MethodPost, reclaim, fromUs)
		wantPage(t, resp, body, http.StatusForbidden, "You are not the owner")

		// The platform makes Ada owner: her next sign-in ends on the offer.
		if err := e.Sim.SetOwner(e.Ada.ID, true); err != nil {
			t.Fatal(err)
		}
		resp, body = e.get(t, ada, ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID))
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != reclaim {
			t.Fatalf("sign-in of a platform owner: %d to %q, want the offer\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		tok, err := e.Store.UserToken(ctx, e.Ada.ID, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		e.remember(tok.Token.Reveal(), tok.Refresh.Reveal())
		resp, body = e.get(t, ada, reclaim)
		wantPage(t, resp, body, http.StatusOK, `action="`+reclaim+`"`)
		// From another site: refused, nothing changes.
		resp, _ = e.do(t, ada, http.MethodPost, reclaim, http.Header{"Sec-Fetch-Site": {"cross-site"}})
		if resp.StatusCode != http.StatusForbidden || accountOf(t, e, e.Ada.ID).Role != extension.RoleMember {
			t.Fatalf("cross-site POST: %d", resp.StatusCode)
		}
		// The platform takes it back before the POST: the POST asks again and refuses.
		if err := e.Sim.SetOwner(e.Ada.ID, false); err != nil {
			t.Fatal(err)
		}
		resp, body = e.do(t, ada, http.MethodPost, reclaim, fromUs)
		wantPage(t, resp, body, http.StatusForbidden, "You are not the owner")
		if err := e.Sim.SetOwner(e.Ada.ID, true); err != nil {
			t.Fatal(err)
		}
		before := e.hitCount("GET /v2/projects/{id}/memberships/self")
		resp, _ = e.do(t, ada, http.MethodPost, reclaim, fromUs)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.appPath() {
			t.Fatalf("reclaim: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if n := e.hitCount("GET /v2/projects/{id}/memberships/self") - before; n != 1 {
			t.Errorf("%d platform checks for the POST, want 1", n)
		}
		if a, b := accountOf(t, e, e.Ada.ID), accountOf(t, e, e.Bob.ID); a.Role != extension.RoleOwner || b.Role != extension.RoleOwner {
			t.Errorf("after the reclaim: Ada %s, Bob %s; want both owners", a.Role, b.Role)
		}
		evs, _, err := e.Store.AuditEvents(ctx, e.Instance.ID, extension.AuditFilter{Kind: extension.AuditOwnershipReclaimed}, extension.AuditPage{})
		if err != nil || len(evs) != 1 || evs[0].ActorName != extension.ActorPlatform || evs[0].Detail["account"] != accountOf(t, e, e.Ada.ID).ID {
			t.Errorf("audit: %+v, %v", evs, err)
		}
		// An owner has nothing to reclaim: on to the dashboard, and no offer at sign-in.
		resp, _ = e.get(t, ada, reclaim)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.appPath() {
			t.Errorf("the page for an owner: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		e.signIn(t, ada, e.Ada)
	})
}

// Without a usable token of the user the page asks for a fresh sign-in; a local account
// cannot reclaim at all; without a session the page is the sign-in page's.
func TestReclaimRefused(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	registerReclaim(e)
	reclaim := atrek.ReclaimPath(e.Instance.ID)
	ctx := context.Background()
	e.signIn(t, e.newBrowser(t), e.Bob)
	if err := e.Sim.SetOwner(e.Ada.ID, true); err != nil {
		t.Fatal(err)
	}
	ada := e.newBrowser(t)
	resp, _ := e.get(t, ada, ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID))
	if resp.Header.Get("Location") != reclaim {
		t.Fatalf("sign-in: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := e.Store.UserToken(ctx, e.Ada.ID, e.Instance.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.remember(tok.Token.Reveal(), tok.Refresh.Reveal())
	if err := e.Store.DeleteUserToken(ctx, e.Ada.ID, e.Instance.ID); err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, ada, http.MethodPost, reclaim, fromUs)
	wantPage(t, resp, body, http.StatusUnauthorized, "sign in again")
	if accountOf(t, e, e.Ada.ID).Role == extension.RoleOwner {
		t.Error("reclaimed without the platform's word")
	}

	owner := accountOf(t, e, e.Bob.ID)
	_, invite, err := e.Store.CreateInvitation(ctx, e.Instance.ID, owner.ID, "lena@example.test", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	lena, err := e.Store.AcceptInvitation(ctx, invite, "Lena Local", hash)
	if err != nil {
		t.Fatal(err)
	}
	local := e.newBrowser(t)
	e.get(t, local, "/test/local/"+lena.ID)
	resp, body = e.do(t, local, http.MethodPost, reclaim, fromUs)
	wantPage(t, resp, body, http.StatusForbidden, "Only for control panel sign-in")

	resp, _ = e.get(t, e.newBrowser(t), reclaim)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != e.appPath()+"/login" {
		t.Errorf("without a session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}
