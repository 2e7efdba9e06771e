package mstudiotest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestRegisterInstances: POST /internal/instances registers installed instances whose
// secrets mint tokens at once; a request with one bad spec registers none of them.
func TestRegisterInstances(t *testing.T) {
	sim, url := newCoreSim(t, Options{})
	a, b := uuid.NewString(), uuid.NewString()
	resp := coreDo(t, http.MethodPost, url+"/internal/instances", nil, RegisterRequest{Instances: []RegisterSpec{
		{ID: a, ContextID: a, Secret: "bench-secret-a", Scopes: []string{"project:read"}},
		{ID: b, ContextKind: "customer"},
	}})
	if resp.status != http.StatusCreated {
		t.Fatalf("POST /internal/instances: %d %s, want 201", resp.status, resp.body)
	}
	var answer struct {
		Instances []struct{ ID, ContextKind, ContextID, Secret string }
	}
	if err := json.Unmarshal(resp.body, &answer); err != nil || len(answer.Instances) != 2 {
		t.Fatalf("answer %s: %v", resp.body, err)
	}
	if got := answer.Instances[0]; got.ID != a || got.ContextKind != "project" || got.ContextID != a || got.Secret != "bench-secret-a" {
		t.Errorf("first instance answered as %+v", got)
	}
	if got := answer.Instances[1]; got.ID != b || got.ContextKind != "customer" || !isUUID(got.ContextID) || len(got.Secret) < 32 {
		t.Errorf("second instance answered as %+v, want a new context id and a new secret", got)
	}
	for _, in := range answer.Instances {
		stored, ok := sim.Instance(in.ID)
		if !ok || stored.Removed || stored.Disabled || stored.Secret != in.Secret {
			t.Errorf("instance %s stored as %+v (found %v)", in.ID, stored, ok)
		}
		// The secret works at once: the caller sends the install itself.
		tok := coreDo(t, http.MethodPost, url+"/v2/extension-instances/"+in.ID+"/tokens", nil,
			map[string]string{"extensionInstanceSecret": in.Secret})
		if tok.status != http.StatusCreated {
			t.Errorf("token for %s: %d %s, want 201", in.ID, tok.status, tok.body)
		}
	}

	c := uuid.NewString()
	refused := []struct {
		name string
		body any
	}{
		{"not JSON", "{"},
		{"no instance", RegisterRequest{}},
		{"installed already", RegisterRequest{Instances: []RegisterSpec{{ID: c}, {ID: a}}}},
		{"named twice", RegisterRequest{Instances: []RegisterSpec{{ID: c}, {ID: c}}}},
		{"id not a UUID", RegisterRequest{Instances: []RegisterSpec{{ID: c}, {ID: "i-1"}}}},
		{"unknown context kind", RegisterRequest{Instances: []RegisterSpec{{ID: c, ContextKind: "server"}}}},
		{"secret with a space", RegisterRequest{Instances: []RegisterSpec{{ID: c, Secret: "a b"}}}},
		{"secret too long", RegisterRequest{Instances: []RegisterSpec{{ID: c, Secret: strings.Repeat("s", 201)}}}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			resp := coreDo(t, http.MethodPost, url+"/internal/instances", nil, tt.body)
			if resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), `"ValidationError"`) {
				t.Errorf("got %d %s, want 400 with a ValidationError", resp.status, resp.body)
			}
			if _, ok := sim.Instance(c); ok {
				t.Errorf("instance %s registered by a refused request", c)
			}
		})
	}
}

// FuzzRegisterInstances: whatever the body, the simulator answers 201 or 400, and with
// 201 every instance it names is registered, installed, with the secret it answers.
func FuzzRegisterInstances(f *testing.F) {
	f.Add(`{"instances":[{"id":"0192b7e4-3c5a-7d21-8f4e-6a1b2c3d4e01","secret":"s3cret"}]}`)
	f.Add(`{"instances":[{"id":"0192b7e4-3c5a-7d21-8f4e-6a1b2c3d4e02","contextKind":"customer","consentedScopes":["a","b"],"variantKey":"v"}]}`)
	f.Add(`{"instances":[]}`)
	f.Add(`{"instances":[{"id":"0192b7e4-3c5a-7d21-8f4e-6a1b2c3d4e03","secret":"\u0000"}]}`)
	f.Add(`[`)
	sim, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(sim.Close)
	f.Fuzz(func(t *testing.T, body string) {
		before := len(sim.Instances())
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/internal/instances", strings.NewReader(body))
		sim.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusBadRequest:
			if after := len(sim.Instances()); after != before {
				t.Fatalf("a refused request changed the instances from %d to %d", before, after)
			}
		case http.StatusCreated:
			var answer struct {
				Instances []struct{ ID, Secret string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || len(answer.Instances) == 0 {
				t.Fatalf("201 with %s: %v", rec.Body, err)
			}
			if after := len(sim.Instances()); after > before+len(answer.Instances) {
				t.Errorf("%d instances registered, %d answered", after-before, len(answer.Instances))
			}
			for _, in := range answer.Instances {
				stored, ok := sim.Instance(in.ID)
				if !ok || stored.Removed || stored.Secret != in.Secret || !plainText(stored.Secret) {
					t.Errorf("instance %s stored as %+v (found %v)", in.ID, stored, ok)
				}
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
