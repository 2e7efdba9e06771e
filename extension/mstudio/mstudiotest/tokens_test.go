package mstudiotest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
)

const coreActivationDelay = 2 * time.Second

// newCoreClockSim starts a simulator on a fake clock with the activation delay
// coreActivationDelay and the given instance token lifetime (0: the default).
func newCoreClockSim(t *testing.T, tokenTTL time.Duration) (*Server, string, *extensiontest.Clock) {
	t.Helper()
	clock := newCoreClock()
	sim, base := newCoreSim(t, Options{Now: clock.Now, SecretActivationDelay: coreActivationDelay, InstanceTokenTTL: tokenTTL})
	return sim, base, clock
}

// coreActiveInstance creates an instance and activates its secret as a successful
// ExtensionAddedToContext delivery does: delivered, then the activation delay passed.
func coreActiveInstance(t *testing.T, sim *Server, clock *extensiontest.Clock, spec InstanceSpec) (Instance, string) {
	t.Helper()
	in, err := sim.CreateInstance(spec)
	if err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	secret := in.PendingSecret
	sim.secretDelivered(in.ID, secret)
	clock.Advance(coreActivationDelay)
	in, _ = sim.Instance(in.ID)
	if in.Secret != secret {
		t.Fatalf("secret not activated by secretDelivered")
	}
	return in, secret
}

// coreMint asks POST /v2/extension-instances/{id}/tokens with the secret.
func coreMint(t *testing.T, base, id, secret string) coreResponse {
	t.Helper()
	return coreDo(t, http.MethodPost, base+"/v2/extension-instances/"+id+"/tokens", nil,
		map[string]string{"extensionInstanceSecret": secret})
}

// coreInstanceToken is the 201 body of the token endpoint.
type coreInstanceToken struct {
	PublicToken string    `json:"publicToken"`
	Expiry      time.Time `json:"expiry"`
}

// coreMintOK mints a token and fails the test unless that works.
func coreMintOK(t *testing.T, base, id, secret string) coreInstanceToken {
	t.Helper()
	r := coreMint(t, base, id, secret)
	if r.status != http.StatusCreated {
		t.Fatalf("mint token: status = %d, want 201 (body %s)", r.status, r.body)
	}
	var tok coreInstanceToken
	if err := json.Unmarshal(r.body, &tok); err != nil || tok.PublicToken == "" {
		t.Fatalf("mint token: body %s: want publicToken and expiry (err %v)", r.body, err)
	}
	return tok
}

func TestCoreInstanceSecretActivation(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares an instance and returns its id and the secret to send.
		setup    func(t *testing.T, sim *Server, clock *extensiontest.Clock) (id, secret string)
		want     int
		wantType string
	}{
		{"pending secret, never delivered", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			clock.Advance(time.Hour)
			return in.ID, in.PendingSecret
		}, http.StatusForbidden, "PermissionDenied"},
		{"delivered, just now", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			sim.secretDelivered(in.ID, in.PendingSecret)
			return in.ID, in.PendingSecret
		}, http.StatusForbidden, "PermissionDenied"},
		{"delivered, a moment before the delay", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			sim.secretDelivered(in.ID, in.PendingSecret)
			clock.Advance(coreActivationDelay - time.Millisecond)
			return in.ID, in.PendingSecret
		}, http.StatusForbidden, "PermissionDenied"},
		{"delivered, at the delay", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			sim.secretDelivered(in.ID, in.PendingSecret)
			clock.Advance(coreActivationDelay)
			return in.ID, in.PendingSecret
		}, http.StatusCreated, ""},
		{"delivered, long ago", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			sim.secretDelivered(in.ID, in.PendingSecret)
			clock.Advance(30 * 24 * time.Hour)
			return in.ID, in.PendingSecret
		}, http.StatusCreated, ""},
		{"delivery of another secret does not activate", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := sim.CreateInstance(InstanceSpec{})
			sim.secretDelivered(in.ID, "some-other-secret")
			clock.Advance(time.Hour)
			return in.ID, in.PendingSecret
		}, http.StatusForbidden, "PermissionDenied"},
		{"wrong secret", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			return in.ID, secret + "x"
		}, http.StatusForbidden, "PermissionDenied"},
		{"another instance's secret", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := coreActiveInstance(t, sim, clock, InstanceSpec{})
			_, other := coreActiveInstance(t, sim, clock, InstanceSpec{})
			return in.ID, other
		}, http.StatusForbidden, "PermissionDenied"},
		{"empty secret", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, _ := coreActiveInstance(t, sim, clock, InstanceSpec{})
			return in.ID, ""
		}, http.StatusBadRequest, "ValidationError"},
		{"disabled instance", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			if _, err := sim.UpdateInstance(in.ID, func(in *Instance) { in.Disabled = true }); err != nil {
				t.Fatal(err)
			}
			return in.ID, secret
		}, http.StatusForbidden, "PermissionDenied"},
		{"created disabled", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{Disabled: true})
			return in.ID, secret
		}, http.StatusForbidden, "PermissionDenied"},
		{"removed instance", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			if _, err := sim.UpdateInstance(in.ID, func(in *Instance) { in.Removed = true }); err != nil {
				t.Fatal(err)
			}
			return in.ID, secret
		}, http.StatusNotFound, "NotFound"},
		{"unknown instance", func(t *testing.T, sim *Server, clock *extensiontest.Clock) (string, string) {
			_, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			return uuid.NewString(), secret
		}, http.StatusNotFound, "NotFound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, base, clock := newCoreClockSim(t, 0)
			id, secret := tc.setup(t, sim, clock)
			r := coreMint(t, base, id, secret)
			if tc.want != http.StatusCreated {
				coreCheckError(t, r, tc.want, tc.wantType)
				return
			}
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tc.want, r.body)
			}
			tok := coreMintOK(t, base, id, secret) // and again: a secret mints many tokens
			if g := coreDo(t, http.MethodGet, base+"/v2/extension-instances/"+id, coreToken(tok.PublicToken), nil); g.status != http.StatusOK {
				t.Errorf("minted token on its instance: status = %d, want 200", g.status)
			}
		})
	}

	t.Run("not JSON", func(t *testing.T) {
		sim, base, clock := newCoreClockSim(t, 0)
		in, _ := coreActiveInstance(t, sim, clock, InstanceSpec{})
		r := coreDo(t, http.MethodPost, base+"/v2/extension-instances/"+in.ID+"/tokens", nil, "{secret")
		coreCheckError(t, r, http.StatusBadRequest, "ValidationError")
	})
	t.Run("negative delay activates at once", func(t *testing.T) {
		sim, base := newCoreSim(t, Options{SecretActivationDelay: -1})
		in, _ := sim.CreateInstance(InstanceSpec{})
		if r := coreMint(t, base, in.ID, in.PendingSecret); r.status != http.StatusForbidden {
			t.Errorf("before delivery: status = %d, want 403", r.status)
		}
		sim.secretDelivered(in.ID, in.PendingSecret)
		coreMintOK(t, base, in.ID, in.PendingSecret)
	})
}

func TestCoreInstanceSecretRotation(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 0)
	in, oldSecret := coreActiveInstance(t, sim, clock, InstanceSpec{})
	var newSecret string
	steps := []struct {
		name    string
		action  func(t *testing.T)
		wantOld int
		wantNew int // 0: not checked (there is no new secret yet)
	}{
		{"before rotation", func(t *testing.T) {}, http.StatusCreated, 0},
		{"rotation pending", func(t *testing.T) {
			var err error
			if newSecret, err = sim.NewPendingSecret(in.ID); err != nil {
				t.Fatalf("NewPendingSecret: %v", err)
			}
			if newSecret == oldSecret || newSecret == "" {
				t.Fatalf("NewPendingSecret = %q, want a new secret", newSecret)
			}
		}, http.StatusCreated, http.StatusForbidden},
		{"rotation pending an hour later", func(t *testing.T) { clock.Advance(time.Hour) }, http.StatusCreated, http.StatusForbidden},
		{"stale delivery of the old secret changes nothing", func(t *testing.T) {
			sim.secretDelivered(in.ID, oldSecret)
		}, http.StatusCreated, http.StatusForbidden},
		{"rotation delivered", func(t *testing.T) { sim.secretDelivered(in.ID, newSecret) }, http.StatusForbidden, http.StatusForbidden},
		{"delivered, a moment before the delay", func(t *testing.T) {
			clock.Advance(coreActivationDelay - time.Millisecond)
		}, http.StatusForbidden, http.StatusForbidden},
		{"delivered, at the delay", func(t *testing.T) { clock.Advance(time.Millisecond) }, http.StatusForbidden, http.StatusCreated},
		{"a repeated delivery does not restart the delay", func(t *testing.T) {
			sim.secretDelivered(in.ID, newSecret)
		}, http.StatusForbidden, http.StatusCreated},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.action(t)
			if r := coreMint(t, base, in.ID, oldSecret); r.status != st.wantOld {
				t.Errorf("old secret: status = %d, want %d (body %s)", r.status, st.wantOld, r.body)
			}
			if st.wantNew != 0 {
				if r := coreMint(t, base, in.ID, newSecret); r.status != st.wantNew {
					t.Errorf("new secret: status = %d, want %d (body %s)", r.status, st.wantNew, r.body)
				}
			}
		})
	}
}

// coreContexts is a small world: instances in two projects and one customer, each with
// a token minted from its secret.
type coreContexts struct {
	a, b, customer, noScope Instance
	tokA, tokCustomer       string
	tokNoScope              string
}

func newCoreContexts(t *testing.T, sim *Server, base string, clock *extensiontest.Clock) coreContexts {
	t.Helper()
	var w coreContexts
	var secret string
	w.a, secret = coreActiveInstance(t, sim, clock, InstanceSpec{Scopes: []string{"project:read", "customer:read"}})
	w.tokA = coreMintOK(t, base, w.a.ID, secret).PublicToken
	w.b, _ = coreActiveInstance(t, sim, clock, InstanceSpec{})
	w.customer, secret = coreActiveInstance(t, sim, clock, InstanceSpec{ContextKind: "customer", Scopes: []string{"customer:read"}})
	w.tokCustomer = coreMintOK(t, base, w.customer.ID, secret).PublicToken
	w.noScope, secret = coreActiveInstance(t, sim, clock, InstanceSpec{Scopes: []string{"customer:read"}})
	w.tokNoScope = coreMintOK(t, base, w.noScope.ID, secret).PublicToken
	return w
}

func TestCoreInstanceTokenUse(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 0)
	w := newCoreContexts(t, sim, base, clock)
	tests := []struct {
		name   string
		header map[string]string
		path   string
		want   int
	}{
		{"own instance, X-Access-Token", coreToken(w.tokA), "/v2/extension-instances/" + w.a.ID, http.StatusOK},
		{"own instance, Bearer", map[string]string{"Authorization": "Bearer " + w.tokA}, "/v2/extension-instances/" + w.a.ID, http.StatusOK},
		{"own project, X-Access-Token", coreToken(w.tokA), "/v2/projects/" + w.a.ContextID, http.StatusOK},
		{"own project, Bearer", map[string]string{"Authorization": "Bearer " + w.tokA}, "/v2/projects/" + w.a.ContextID, http.StatusOK},
		{"own customer", coreToken(w.tokCustomer), "/v2/customers/" + w.customer.ContextID, http.StatusOK},
		{"another instance's project", coreToken(w.tokA), "/v2/projects/" + w.b.ContextID, http.StatusForbidden},
		{"another instance", coreToken(w.tokA), "/v2/extension-instances/" + w.b.ID, http.StatusForbidden},
		{"a project id asked as customer", coreToken(w.tokA), "/v2/customers/" + w.a.ContextID, http.StatusForbidden},
		{"a customer id asked as project", coreToken(w.tokCustomer), "/v2/projects/" + w.customer.ContextID, http.StatusForbidden},
		{"a made-up project", coreToken(w.tokA), "/v2/projects/" + uuid.NewString(), http.StatusForbidden},
		{"own project without project:read", coreToken(w.tokNoScope), "/v2/projects/" + w.noScope.ContextID, http.StatusForbidden},
		{"project id not a uuid", coreToken(w.tokA), "/v2/projects/p-123456", http.StatusNotFound},
		{"no token", nil, "/v2/projects/" + w.a.ContextID, http.StatusUnauthorized},
		{"no token on the instance", nil, "/v2/extension-instances/" + w.a.ID, http.StatusUnauthorized},
		{"the secret is not a token", coreToken(w.a.Secret), "/v2/projects/" + w.a.ContextID, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := coreDo(t, http.MethodGet, base+tc.path, tc.header, nil)
			if tc.want != http.StatusOK {
				coreCheckError(t, r, tc.want, "")
				return
			}
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tc.want, r.body)
			}
		})
	}
}

func TestCoreInstanceTokenRevoked(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*Instance)
		wantMint int
	}{
		{"disabled", func(in *Instance) { in.Disabled = true }, http.StatusForbidden},
		{"removed", func(in *Instance) { in.Removed = true }, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, base, clock := newCoreClockSim(t, 0)
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			other, otherSecret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			tok := coreMintOK(t, base, in.ID, secret).PublicToken
			otherTok := coreMintOK(t, base, other.ID, otherSecret).PublicToken
			paths := []string{"/v2/extension-instances/" + in.ID, "/v2/projects/" + in.ContextID}
			for _, p := range paths {
				if r := coreDo(t, http.MethodGet, base+p, coreToken(tok), nil); r.status != http.StatusOK {
					t.Fatalf("GET %s before: status = %d, want 200", p, r.status)
				}
			}
			if _, err := sim.UpdateInstance(in.ID, tc.change); err != nil {
				t.Fatal(err)
			}
			for _, p := range paths {
				coreCheckError(t, coreDo(t, http.MethodGet, base+p, coreToken(tok), nil), http.StatusUnauthorized, "Unauthorized")
				coreCheckError(t, coreDo(t, http.MethodGet, base+p, map[string]string{"Authorization": "Bearer " + tok}, nil), http.StatusUnauthorized, "Unauthorized")
			}
			coreCheckError(t, coreMint(t, base, in.ID, secret), tc.wantMint, "")
			// Another instance's token is not affected.
			if r := coreDo(t, http.MethodGet, base+"/v2/projects/"+other.ContextID, coreToken(otherTok), nil); r.status != http.StatusOK {
				t.Errorf("other instance's token after %s: status = %d, want 200", tc.name, r.status)
			}
		})
	}
}

// TestCoreInstanceTokenStaysRevoked checks that tokens are invalidated, not suspended:
// the platform invalidates every token of an instance when it is disabled (mstudio-api.md
// section 4), so enabling it again must not bring the old tokens back.
func TestCoreInstanceTokenStaysRevoked(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 0)
	in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
	old := coreMintOK(t, base, in.ID, secret).PublicToken
	for _, disabled := range []bool{true, false} {
		if _, err := sim.UpdateInstance(in.ID, func(in *Instance) { in.Disabled = disabled }); err != nil {
			t.Fatal(err)
		}
	}
	fresh := coreMintOK(t, base, in.ID, secret).PublicToken
	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"token minted after enabling again", fresh, http.StatusOK},
		{"token minted before disabling", old, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := coreDo(t, http.MethodGet, base+"/v2/projects/"+in.ContextID, coreToken(tc.token), nil)
			if r.status != tc.want {
				t.Errorf("status = %d, want %d (body %s)", r.status, tc.want, r.body)
			}
		})
	}
}

func TestCoreInstanceTokenExpiry(t *testing.T) {
	const ttl = 10 * time.Minute
	tests := []struct {
		name    string
		ttl     time.Duration // the option; 0: default
		wantTTL time.Duration
		after   time.Duration
		want    int
	}{
		{"just minted", ttl, ttl, 0, http.StatusOK},
		{"a second before expiry", ttl, ttl, ttl - time.Second, http.StatusOK},
		{"at expiry", ttl, ttl, ttl, http.StatusUnauthorized},
		{"after expiry", ttl, ttl, ttl + time.Hour, http.StatusUnauthorized},
		{"default lifetime, a second before", 0, time.Hour, time.Hour - time.Second, http.StatusOK},
		{"default lifetime, at expiry", 0, time.Hour, time.Hour, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, base, clock := newCoreClockSim(t, tc.ttl)
			in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
			tok := coreMintOK(t, base, in.ID, secret)
			if want := clock.Now().Add(tc.wantTTL); !tok.Expiry.Equal(want) {
				t.Errorf("expiry = %v, want %v", tok.Expiry, want)
			}
			clock.Advance(tc.after)
			for _, p := range []string{"/v2/extension-instances/" + in.ID, "/v2/projects/" + in.ContextID} {
				r := coreDo(t, http.MethodGet, base+p, coreToken(tok.PublicToken), nil)
				if r.status != tc.want {
					t.Errorf("GET %s: status = %d, want %d (body %s)", p, r.status, tc.want, r.body)
				}
			}
			// The secret still mints a fresh token.
			fresh := coreMintOK(t, base, in.ID, secret)
			if r := coreDo(t, http.MethodGet, base+"/v2/projects/"+in.ContextID, coreToken(fresh.PublicToken), nil); r.status != http.StatusOK {
				t.Errorf("fresh token: status = %d, want 200", r.status)
			}
		})
	}
}

func TestCoreClientInstanceToken(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 15*time.Minute)
	c := newCoreClient(t, base)
	active, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
	pending, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	disabled, disabledSecret := coreActiveInstance(t, sim, clock, InstanceSpec{})
	if _, err := sim.UpdateInstance(disabled.ID, func(in *Instance) { in.Disabled = true }); err != nil {
		t.Fatal(err)
	}
	removed, removedSecret := coreActiveInstance(t, sim, clock, InstanceSpec{})
	if _, err := sim.UpdateInstance(removed.ID, func(in *Instance) { in.Removed = true }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		id         string
		secret     string
		wantStatus int // 0: success
	}{
		{"active", active.ID, secret, 0},
		{"wrong secret", active.ID, secret + "x", http.StatusForbidden},
		{"pending secret", pending.ID, pending.PendingSecret, http.StatusForbidden},
		{"disabled", disabled.ID, disabledSecret, http.StatusForbidden},
		{"removed", removed.ID, removedSecret, http.StatusNotFound},
		{"unknown instance", uuid.NewString(), secret, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := c.InstanceToken(context.Background(), tc.id, extension.Secret(tc.secret))
			if tc.wantStatus != 0 {
				var apiErr *mstudio.Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("InstanceToken error = %v, want a *mstudio.Error", err)
				}
				if apiErr.Status != tc.wantStatus || apiErr.Type == "" || apiErr.Message == "" {
					t.Errorf("InstanceToken error = %+v, want status %d with type and message", apiErr, tc.wantStatus)
				}
				return
			}
			if err != nil {
				t.Fatalf("InstanceToken: %v", err)
			}
			if want := clock.Now().Add(15 * time.Minute); !tok.Expiry.Equal(want) {
				t.Errorf("Expiry = %v, want %v", tok.Expiry, want)
			}
			r := coreDo(t, http.MethodGet, base+"/v2/projects/"+active.ContextID, coreToken(tok.Token.Reveal()), nil)
			if r.status != http.StatusOK {
				t.Errorf("client's token on the project: status = %d, want 200", r.status)
			}
		})
	}
}
