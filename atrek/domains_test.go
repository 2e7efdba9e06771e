package atrek_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// TestSSOAllowedDomains: once an owner lists allowed domains, a platform user whose
// address is outside them gets no account at their first sign-in, but a page that says
// why and what to do; existing accounts sign in as before; allowing the domain lets them in.
func TestSSOAllowedDomains(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		ctx := context.Background()
		e.signIn(t, e.HTTP, e.Ada) // the first account: the owner, whatever the settings
		owner := accountOf(t, e, e.Ada.ID)
		setDomains := func(domains ...string) {
			t.Helper()
			st, err := e.Store.InstanceSettings(ctx, e.Instance.ID)
			if err != nil {
				t.Fatal(err)
			}
			st.AllowedDomains = domains
			if _, err := e.Store.UpdateInstanceSettings(ctx, e.Instance.ID, owner.ID, st); err != nil {
				t.Fatal(err)
			}
		}
		setDomains("allowed.test") // Bob's address is bob@example.test

		bob := e.newBrowser(t)
		resp, body := e.get(t, bob, ssoPath(e.key(t, e.Instance.ID, e.Bob.ID), e.Bob.ID, e.Instance.ID))
		wantPage(t, resp, body, http.StatusForbidden, "not one of those allowed for this extension")
		wantPage(t, resp, body, http.StatusForbidden, "Ask an owner of this extension to allow")
		if _, ok := e.sessionCookie(bob); ok {
			t.Error("a session cookie for a user outside the allowed domains")
		}
		if _, _, err := e.Store.EnsurePlatformAccount(ctx, e.Instance.ID, e.Bob.ID, "", "", extension.RoleMember); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Errorf("Bob got an account: %v", err)
		}

		// Ada's address is outside the domains too, but she has an account.
		e.signIn(t, e.newBrowser(t), e.Ada)

		// Without the user's profile the address cannot be checked: try again later.
		if err := e.Sim.InjectFault("GET /v2/users/{id}", mstudiotest.Fault{Status: http.StatusInternalServerError, Times: 1}); err != nil {
			t.Fatal(err)
		}
		resp, body = e.get(t, bob, ssoPath(e.key(t, e.Instance.ID, e.Bob.ID), e.Bob.ID, e.Instance.ID))
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("sign-in without a profile: %d, want 502\n%s", resp.StatusCode, body)
		}

		setDomains("allowed.test", "EXAMPLE.test")
		e.signIn(t, bob, e.Bob)
		if acc := accountOf(t, e, e.Bob.ID); acc.Role != extension.RoleMember || acc.Email != e.Bob.Email {
			t.Errorf("Bob's account %+v, want a member with his address", acc)
		}
	})
}
