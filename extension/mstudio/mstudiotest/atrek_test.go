package mstudiotest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// This file holds the helpers of the single sign-on tests (ATReK, refresh, session
// tokens, OAuth2), all prefixed sso, and the tests of ATReK and refresh.

// newSSOSim starts a simulator on a fake clock behind a real HTTP server. It returns
// the simulator, its base URL and the clock.
func newSSOSim(t *testing.T, opts Options) (*Server, string, *extensiontest.Clock) {
	t.Helper()
	clock := extensiontest.NewClock(time.Date(2025, 5, 6, 7, 8, 9, 0, time.UTC))
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	sim, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL, clock
}

// ssoResponse is an answer read in full.
type ssoResponse struct {
	status int
	header http.Header
	body   []byte
}

// ssoDo sends a request with a JSON body (none when body is nil) and reads the answer.
func ssoDo(t *testing.T, method, url string, header map[string]string, body any) ssoResponse {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return ssoSend(t, http.DefaultClient, req)
}

func ssoSend(t *testing.T, c *http.Client, req *http.Request) ssoResponse {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", req.Method, req.URL.Path, err)
	}
	return ssoResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// ssoDecode decodes a JSON answer that must have the status.
func ssoDecode(t *testing.T, r ssoResponse, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %s: %v", r.body, err)
	}
}

// ssoCheckError reports a failure unless r is the platform's error body with the
// status and type.
func ssoCheckError(t *testing.T, r ssoResponse, status int, typ string) {
	t.Helper()
	var eb struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
		return
	}
	if err := json.Unmarshal(r.body, &eb); err != nil || eb.Type != typ || eb.Message == "" {
		t.Errorf("body = %s, want {type: %q, message}", r.body, typ)
	}
}

// ssoToken is the X-Access-Token header with the token.
func ssoToken(token string) map[string]string { return map[string]string{"X-Access-Token": token} }

// ssoUser returns a test user with or without access to every context.
func ssoUser(t *testing.T, sim *Server, access bool) User {
	t.Helper()
	for _, u := range sim.Users() {
		if u.Access == access {
			return u
		}
	}
	t.Fatalf("no test user with access = %v", access)
	return User{}
}

// ssoInstance creates an instance, marked removed when removed is set.
func ssoInstance(t *testing.T, sim *Server, spec InstanceSpec, removed bool) Instance {
	t.Helper()
	in, err := sim.CreateInstance(spec)
	if err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	if removed {
		if in, err = sim.UpdateInstance(in.ID, func(in *Instance) { in.Removed = true }); err != nil {
			t.Fatalf("UpdateInstance: %v", err)
		}
	}
	return in
}

// ssoSession is the answer of the ATReK exchange and of a refresh.
type ssoSession struct {
	Token        string    `json:"token"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
}

func ssoRedeem(t *testing.T, base, key, userID string) ssoResponse {
	t.Helper()
	return ssoDo(t, "POST", base+"/v2/authenticate-token-retrieval-key", nil,
		map[string]string{"accessTokenRetrievalKey": key, "userId": userID})
}

func ssoNewKey(t *testing.T, sim *Server, instanceID, userID string) string {
	t.Helper()
	key, err := sim.NewRetrievalKey(instanceID, userID)
	if err != nil {
		t.Fatalf("NewRetrievalKey: %v", err)
	}
	return key
}

func TestRetrievalKeyCreate(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{})
	ada, otto := ssoUser(t, sim, true), ssoUser(t, sim, false)
	live := ssoInstance(t, sim, InstanceSpec{}, false)
	disabled := ssoInstance(t, sim, InstanceSpec{Disabled: true}, false)
	removed := ssoInstance(t, sim, InstanceSpec{}, true)
	bound, _ := sim.issueToken(grant{userID: ada.ID, instanceID: live.ID, scopes: live.Scopes}, time.Hour)
	instanceToken, _ := sim.issueToken(grant{instanceID: live.ID, scopes: live.Scopes}, time.Hour)

	tests := []struct {
		name       string
		instanceID string
		header     map[string]string
		wantStatus int
		wantType   string
	}{
		{"user with access", live.ID, ssoToken(ada.Token), 200, ""},
		{"bearer header", live.ID, map[string]string{"Authorization": "Bearer " + ada.Token}, 200, ""},
		{"no token", live.ID, nil, 401, "Unauthorized"},
		{"user without access", live.ID, ssoToken(otto.Token), 403, "PermissionDenied"},
		{"user token bound to an instance", live.ID, ssoToken(bound), 403, "PermissionDenied"},
		{"instance token", live.ID, ssoToken(instanceToken), 403, "PermissionDenied"},
		{"disabled instance", disabled.ID, ssoToken(ada.Token), 403, "PermissionDenied"},
		{"removed instance", removed.ID, ssoToken(ada.Token), 404, "NotFound"},
		{"unknown instance", "0b5d2c1e-0000-4000-8000-000000000000", ssoToken(ada.Token), 404, "NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ssoDo(t, "POST", base+"/v2/extension-instances/"+tt.instanceID+"/actions/create-access-token-retrieval-key", tt.header, nil)
			if tt.wantStatus != 200 {
				ssoCheckError(t, r, tt.wantStatus, tt.wantType)
				return
			}
			var got struct {
				Key    string `json:"accessTokenRetrievalKey"`
				UserID string `json:"userId"`
			}
			ssoDecode(t, r, 200, &got)
			if len(got.Key) != 37 || got.UserID != ada.ID {
				t.Errorf("got key of %d characters for %s, want 37 for %s", len(got.Key), got.UserID, ada.ID)
			}
			// The key from the route is as good as one from the Go API.
			var s ssoSession
			ssoDecode(t, ssoRedeem(t, base, got.Key, ada.ID), 200, &s)
		})
	}
}

func TestRetrievalKeyRedeem(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{UserTokenTTL: 30 * time.Minute})
	ada := ssoUser(t, sim, true)
	tests := []struct {
		name        string
		scopes      []string
		wantProject int // status of reading the instance's project with the user token
	}{
		{"with project:read", []string{"project:read"}, 200},
		{"without project:read", []string{"customer:read"}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ssoInstance(t, sim, InstanceSpec{Scopes: tt.scopes}, false)
			var s ssoSession
			ssoDecode(t, ssoRedeem(t, base, ssoNewKey(t, sim, in.ID, ada.ID), ada.ID), 200, &s)
			if s.Token == "" || s.RefreshToken == "" || s.Token == s.RefreshToken {
				t.Errorf("token and refresh token must be set and differ")
			}
			if want := clock.Now().Add(30 * time.Minute); !s.ExpiresAt.Equal(want) {
				t.Errorf("expiresAt = %v, want %v", s.ExpiresAt, want)
			}
			r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, ssoToken(s.Token), nil)
			if r.status != tt.wantProject {
				t.Errorf("read project: status %d, want %d (body %s)", r.status, tt.wantProject, r.body)
			}
			// Bound to the instance: another project is out of reach, whatever the user may do.
			other := ssoInstance(t, sim, InstanceSpec{Scopes: tt.scopes}, false)
			if r := ssoDo(t, "GET", base+"/v2/projects/"+other.ContextID, ssoToken(s.Token), nil); r.status != 403 {
				t.Errorf("read another project: status %d, want 403", r.status)
			}
		})
	}
}

func TestRetrievalKeyRefused(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{RetrievalKeyTTL: 30 * time.Second})
	ada, bob := ssoUser(t, sim, true), sim.Users()[1]
	if bob.ID == ada.ID || !bob.Access {
		t.Fatalf("want two different test users with access")
	}
	in := ssoInstance(t, sim, InstanceSpec{}, false)

	t.Run("single use", func(t *testing.T) {
		key := ssoNewKey(t, sim, in.ID, ada.ID)
		if r := ssoRedeem(t, base, key, ada.ID); r.status != 200 {
			t.Fatalf("first use: status %d, want 200 (body %s)", r.status, r.body)
		}
		ssoCheckError(t, ssoRedeem(t, base, key, ada.ID), 400, "ValidationError")
	})
	t.Run("expiry", func(t *testing.T) {
		early, late := ssoNewKey(t, sim, in.ID, ada.ID), ssoNewKey(t, sim, in.ID, ada.ID)
		clock.Advance(29 * time.Second)
		if r := ssoRedeem(t, base, early, ada.ID); r.status != 200 {
			t.Errorf("just before expiry: status %d, want 200 (body %s)", r.status, r.body)
		}
		clock.Advance(time.Second)
		ssoCheckError(t, ssoRedeem(t, base, late, ada.ID), 400, "ValidationError")
	})
	t.Run("wrong user id refused without using the key", func(t *testing.T) {
		key := ssoNewKey(t, sim, in.ID, ada.ID)
		ssoCheckError(t, ssoRedeem(t, base, key, bob.ID), 400, "ValidationError")
		if r := ssoRedeem(t, base, key, ada.ID); r.status != 200 {
			t.Errorf("right user after a wrong one: status %d, want 200 (body %s)", r.status, r.body)
		}
	})
	t.Run("instance disabled after the click", func(t *testing.T) {
		other := ssoInstance(t, sim, InstanceSpec{}, false)
		key := ssoNewKey(t, sim, other.ID, ada.ID)
		if _, err := sim.UpdateInstance(other.ID, func(in *Instance) { in.Disabled = true }); err != nil {
			t.Fatal(err)
		}
		ssoCheckError(t, ssoRedeem(t, base, key, ada.ID), 403, "PermissionDenied")
	})

	malformed := []struct {
		name     string
		key      string
		userID   string
		wantPath string
	}{
		{"unknown key", strings.Repeat("k", 37), ada.ID, "accessTokenRetrievalKey"},
		{"key too short", strings.Repeat("k", 36), ada.ID, "accessTokenRetrievalKey"},
		{"key too long", strings.Repeat("k", 38), ada.ID, "accessTokenRetrievalKey"},
		{"user id not a uuid", strings.Repeat("k", 37), "ada", "userId"},
		{"user id missing", strings.Repeat("k", 37), "", "userId"},
	}
	for _, tt := range malformed {
		t.Run(tt.name, func(t *testing.T) {
			var got struct {
				Type   string            `json:"type"`
				Issues []ValidationIssue `json:"validationErrors"`
			}
			ssoDecode(t, ssoRedeem(t, base, tt.key, tt.userID), 400, &got)
			if got.Type != "ValidationError" || len(got.Issues) != 1 || got.Issues[0].Path != tt.wantPath {
				t.Errorf("got %+v, want one ValidationError issue on %s", got, tt.wantPath)
			}
		})
	}
}

func TestNewRetrievalKeyRefused(t *testing.T) {
	sim, _, _ := newSSOSim(t, Options{})
	ada, otto := ssoUser(t, sim, true), ssoUser(t, sim, false)
	live := ssoInstance(t, sim, InstanceSpec{}, false)
	removed := ssoInstance(t, sim, InstanceSpec{}, true)
	tests := []struct {
		name, instanceID, userID string
	}{
		{"user without access", live.ID, otto.ID},
		{"unknown user", live.ID, "0b5d2c1e-0000-4000-8000-000000000001"},
		{"removed instance", removed.ID, ada.ID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if key, err := sim.NewRetrievalKey(tt.instanceID, tt.userID); err == nil {
				t.Errorf("NewRetrievalKey = %d characters, want an error", len(key))
			}
		})
	}
}

func TestUserSessionRefreshRotates(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{UserTokenTTL: 10 * time.Minute})
	ada := ssoUser(t, sim, true)
	in := ssoInstance(t, sim, InstanceSpec{Scopes: []string{"project:read"}}, false)
	var first ssoSession
	ssoDecode(t, ssoRedeem(t, base, ssoNewKey(t, sim, in.ID, ada.ID), ada.ID), 200, &first)
	refresh := func(refreshToken string, header map[string]string) ssoResponse {
		return ssoDo(t, "PUT", base+"/v2/users/self/sessions", header, map[string]string{"refreshToken": refreshToken})
	}

	// The access token has expired: refresh works with and without it in the header.
	clock.Advance(11 * time.Minute)
	var second, third ssoSession
	ssoDecode(t, refresh(first.RefreshToken, nil), 200, &second)
	ssoDecode(t, refresh(second.RefreshToken, ssoToken(first.Token)), 200, &third)
	seen := map[string]bool{}
	for _, tok := range []string{first.Token, first.RefreshToken, second.Token, second.RefreshToken, third.Token, third.RefreshToken} {
		if tok == "" || seen[tok] {
			t.Errorf("every refresh must give a new token and a new refresh token")
		}
		seen[tok] = true
	}
	if want := clock.Now().Add(10 * time.Minute); !third.ExpiresAt.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", third.ExpiresAt, want)
	}

	// Same user, instance and scopes as before.
	if r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, ssoToken(third.Token), nil); r.status != 200 {
		t.Errorf("refreshed token reads its project: status %d, want 200 (body %s)", r.status, r.body)
	}
	if r := ssoDo(t, "GET", base+"/v2/customers/"+deriveID(in.ContextID, "customer"), ssoToken(third.Token), nil); r.status != 403 {
		t.Errorf("refreshed token reads a customer: status %d, want 403", r.status)
	}
	// Still bound to the instance, so it is not a user's own token.
	r := ssoDo(t, "POST", base+"/v2/extension-instances/"+in.ID+"/actions/create-access-token-retrieval-key", ssoToken(third.Token), nil)
	ssoCheckError(t, r, 403, "PermissionDenied")

	tests := []struct {
		name  string
		token string
	}{
		{"first refresh token again", first.RefreshToken},
		{"second refresh token again", second.RefreshToken},
		{"an access token", third.Token},
		{"garbage", "not-a-refresh-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ssoCheckError(t, refresh(tt.token, nil), 400, "InvalidRefreshToken")
		})
	}
	t.Run("missing", func(t *testing.T) {
		ssoCheckError(t, refresh("", nil), 400, "ValidationError")
	})
	t.Run("removed instance", func(t *testing.T) {
		if _, err := sim.UpdateInstance(in.ID, func(in *Instance) { in.Removed = true }); err != nil {
			t.Fatal(err)
		}
		ssoCheckError(t, refresh(third.RefreshToken, nil), 404, "NotFound")
	})
}
