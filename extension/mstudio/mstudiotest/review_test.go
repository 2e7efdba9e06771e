package mstudiotest

import (
	"net/http"
	"testing"
	"time"
)

func TestFaultsRefuseWhatCannotBeAnswered(t *testing.T) {
	_, url := newCoreSim(t, Options{})
	tests := []struct {
		name string
		body map[string]any
		want int
	}{
		{"status outside 400-599", map[string]any{"route": "GET /internal/users", "status": 5}, http.StatusBadRequest},
		{"status 200", map[string]any{"route": "GET /internal/users", "status": 200}, http.StatusBadRequest},
		{"misspelled route", map[string]any{"route": "POST /v2/extension-instance/{id}/tokens", "status": 503}, http.StatusBadRequest},
		{"the reset route itself", map[string]any{"route": "DELETE /internal/faults", "status": 503}, http.StatusBadRequest},
		{"negative latency", map[string]any{"route": "GET /internal/users", "latencyMs": -5}, http.StatusBadRequest},
		{"a real fault", map[string]any{"route": "GET /internal/users", "status": 503, "times": 1}, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := coreDo(t, http.MethodPut, url+"/internal/faults", nil, tt.body).status; got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
	if got := coreDo(t, http.MethodGet, url+"/internal/users", nil, nil).status; got != http.StatusServiceUnavailable {
		t.Errorf("after the real fault: got %d, want 503", got)
	}
	if got := coreDo(t, http.MethodGet, url+"/internal/users", nil, nil).status; got != http.StatusOK {
		t.Errorf("after the fault ran out: got %d, want 200", got)
	}
}

// A project instance with customer:read may read the customer its project names.
func TestProjectInstanceReadsItsCustomer(t *testing.T) {
	sim, url := newCoreSim(t, Options{SecretActivationDelay: -1})
	in, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	sim.secretDelivered(in.ID, in.PendingSecret)
	token, _ := sim.issueToken(grant{instanceID: in.ID, scopes: in.Scopes}, time.Hour)
	h := map[string]string{"X-Access-Token": token}
	if got := coreDo(t, http.MethodGet, url+"/v2/customers/"+deriveID(in.ContextID, "customer"), h, nil).status; got != http.StatusOK {
		t.Errorf("the project's own customer: got %d, want 200", got)
	}
	if got := coreDo(t, http.MethodGet, url+"/v2/customers/"+deriveID(in.ID, "customer"), h, nil).status; got != http.StatusForbidden {
		t.Errorf("another customer: got %d, want 403", got)
	}
}

// GET /internal/open/{id} mints a fresh key per click and follows the frontend template.
func TestOpenFollowsTheFrontendTemplate(t *testing.T) {
	sim, url := newCoreSim(t, Options{FrontendURL: "http://ext.test/sso?k=:accessTokenRetrievalKey&u=:userId&i=:extensionInstanceId&c=:contextId&k2=:context"})
	in, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	sim.secretDelivered(in.ID, in.PendingSecret)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var keys []string
	for range 2 {
		resp, err := noFollow.Get(sim.OpenURL(url, in.ID, ""))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("open: got %d, %v", resp.StatusCode, err)
		}
		q := loc.Query()
		if len(q.Get("k")) != 37 || q.Get("u") != sim.Users()[0].ID || q.Get("i") != in.ID || q.Get("c") != in.ContextID || q.Get("k2") != "project" {
			t.Errorf("open redirected to %s", loc)
		}
		keys = append(keys, q.Get("k"))
	}
	if keys[0] == keys[1] {
		t.Error("two clicks got the same single-use key")
	}
	outsider := sim.Users()[2].ID
	if resp, err := noFollow.Get(sim.OpenURL(url, in.ID, outsider)); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("open for a user without access: got %v, %v; want 403", resp, err)
	}
}
