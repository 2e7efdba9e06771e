package mstudio_test

import (
	"errors"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// ContextOwner asks the simulator over HTTP, with a user token from single sign-on,
// whether the user owns the instance's project or organisation: no until the platform
// makes them owner, yes then; another context, and an instance token, are no owner.
func TestContextOwner(t *testing.T) {
	for _, kind := range []string{extension.ContextProject, extension.ContextCustomer} {
		t.Run(kind, func(t *testing.T) {
			env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{Context: kind})
			c := newClient(t, env.SimURL, mstudio.Options{})
			tok := env.userToken(t).Token
			ctx, id := t.Context(), env.Instance.ContextID
			if owner, err := c.ContextOwner(ctx, tok, kind, id); err != nil || owner {
				t.Fatalf("before: owner %v, %v; want a member", owner, err)
			}
			if err := env.Sim.SetOwner(env.user(t).ID, true); err != nil {
				t.Fatal(err)
			}
			if owner, err := c.ContextOwner(ctx, tok, kind, id); err != nil || !owner {
				t.Fatalf("after SetOwner: owner %v, %v", owner, err)
			}
			other := "00000000-0000-4000-8000-000000000001"
			if owner, err := c.ContextOwner(ctx, tok, kind, other); err != nil || owner {
				t.Errorf("another %s: owner %v, %v", kind, owner, err)
			}
			if owner, err := c.ContextOwner(ctx, env.instanceToken(t), kind, id); owner || (kind == extension.ContextCustomer && apiStatus(err) != 403) {
				t.Errorf("an instance token: owner %v, %v", owner, err)
			}
			for _, bad := range []struct {
				tok      extension.Secret
				kind, id string
			}{{"", kind, id}, {tok, kind, "../x"}, {tok, "server", id}} {
				if _, err := c.ContextOwner(ctx, bad.tok, bad.kind, bad.id); !errors.Is(err, mstudio.ErrInvalidArgument) {
					t.Errorf("%q %q: %v", bad.kind, bad.id, err)
				}
			}
		})
	}
}
