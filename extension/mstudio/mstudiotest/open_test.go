package mstudiotest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestOpenRefusalIsAPage: a click the control panel would not offer (a user without
// access, a removed or disabled instance) gets a small HTML page, as a browser would get
// there, not the simulator's JSON error body.
func TestOpenRefusalIsAPage(t *testing.T) {
	sim, url := newCoreSim(t, Options{FrontendURL: "http://ext.test/sso?k=:accessTokenRetrievalKey&u=:userId"})
	active, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	disabled, err := sim.CreateInstance(InstanceSpec{Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	var otto User
	for _, u := range sim.Users() {
		if !u.Access {
			otto = u
		}
	}
	if otto.ID == "" {
		t.Fatal("the simulator has no user without access")
	}
	tests := []struct {
		name, instanceID, userID string
		status                   int
		want                     []string
	}{
		{"user without access", active.ID, otto.ID, http.StatusForbidden, []string{"No access", otto.Name, "GET /internal/users"}},
		{"unknown user", active.ID, "00000000-0000-4000-8000-000000000000", http.StatusForbidden, []string{"No access", "This user"}},
		{"unknown instance", "00000000-0000-4000-8000-000000000001", "", http.StatusNotFound, []string{"Extension not found"}},
		{"disabled instance", disabled.ID, "", http.StatusForbidden, []string{"Extension disabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(sim.OpenURL(url, tt.instanceID, tt.userID))
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("got %d %s, want %d text/html", resp.StatusCode, resp.Header.Get("Content-Type"), tt.status)
			}
			if !strings.HasPrefix(string(page), "<!doctype html>") || strings.Contains(string(page), `"type"`) {
				t.Errorf("not a page:\n%s", page)
			}
			for _, want := range tt.want {
				if !strings.Contains(string(page), want) {
					t.Errorf("page lacks %q:\n%s", want, page)
				}
			}
		})
	}
}
