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
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// This file holds the helpers shared by the core tests (keys, instances, tokens, faults,
// users) and the tests of user tokens and the token headers.

func newCoreClock() *extensiontest.Clock {
	return extensiontest.NewClock(time.Date(2025, 3, 14, 11, 36, 24, 0, time.UTC))
}

// newCoreSim starts a simulator behind a real HTTP server and returns it with the
// server's base URL; both are closed when the test ends.
func newCoreSim(t *testing.T, opts Options) (*Server, string) {
	t.Helper()
	sim, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

// coreResponse is an answer read in full.
type coreResponse struct {
	status int
	header http.Header
	body   []byte
}

// coreDo sends one request through a plain http.Client. body is sent as is when it is a
// string and as JSON otherwise; nil sends none.
func coreDo(t *testing.T, method, url string, header map[string]string, body any) coreResponse {
	t.Helper()
	return coreDoWith(t, http.DefaultClient, method, url, header, body)
}

func coreDoWith(t *testing.T, c *http.Client, method, url string, header map[string]string, body any) coreResponse {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
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
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	return coreResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// coreToken is the X-Access-Token header with the token.
func coreToken(token string) map[string]string { return map[string]string{"X-Access-Token": token} }

// coreErrorBody is the platform's generic error body, with the ValidationError extras.
type coreErrorBody struct {
	Type             string            `json:"type"`
	Message          string            `json:"message"`
	ValidationErrors []ValidationIssue `json:"validationErrors"`
}

// coreCheckError reports a failure unless r has the status and a {type, message} body
// with both set (and the type, when wantType is not empty). It returns the body.
func coreCheckError(t *testing.T, r coreResponse, wantStatus int, wantType string) coreErrorBody {
	t.Helper()
	if r.status != wantStatus {
		t.Errorf("status = %d, want %d (body %s)", r.status, wantStatus, r.body)
	}
	var eb coreErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Errorf("error body %q is not JSON: %v", r.body, err)
		return eb
	}
	if eb.Type == "" || eb.Message == "" {
		t.Errorf("error body = %s, want both type and message", r.body)
	}
	if wantType != "" && eb.Type != wantType {
		t.Errorf("error type = %q, want %q", eb.Type, wantType)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	return eb
}

// coreUsers splits the simulator's test users into those with access and the outsiders.
func coreUsers(t *testing.T, sim *Server) (insiders, outsiders []User) {
	t.Helper()
	for _, u := range sim.Users() {
		if u.Access {
			insiders = append(insiders, u)
		} else {
			outsiders = append(outsiders, u)
		}
	}
	if len(insiders) == 0 || len(outsiders) == 0 {
		t.Fatalf("Users() = %d with access, %d without; want at least one of each", len(insiders), len(outsiders))
	}
	return insiders, outsiders
}

func TestCoreUserTokensReadContexts(t *testing.T) {
	sim, base := newCoreSim(t, Options{SecretActivationDelay: -1})
	insiders, outsiders := coreUsers(t, sim)
	in, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	projectID, customerID := uuid.NewString(), uuid.NewString()

	type tc struct {
		name string
		user User
		path string
		want int
	}
	var tests []tc
	for _, u := range insiders {
		tests = append(tests,
			tc{u.Name + " reads a project", u, "/v2/projects/" + projectID, http.StatusOK},
			tc{u.Name + " reads a customer", u, "/v2/customers/" + customerID, http.StatusOK},
			tc{u.Name + " reads an extension instance", u, "/v2/extension-instances/" + in.ID, http.StatusOK},
			tc{u.Name + " reads the instance's project", u, "/v2/projects/" + in.ContextID, http.StatusOK},
		)
	}
	for _, u := range outsiders {
		tests = append(tests,
			tc{u.Name + " is refused a project", u, "/v2/projects/" + projectID, http.StatusForbidden},
			tc{u.Name + " is refused a customer", u, "/v2/customers/" + customerID, http.StatusForbidden},
			tc{u.Name + " is refused an extension instance", u, "/v2/extension-instances/" + in.ID, http.StatusForbidden},
			tc{u.Name + " is refused the instance's project", u, "/v2/projects/" + in.ContextID, http.StatusForbidden},
		)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := coreDo(t, http.MethodGet, base+tc.path, coreToken(tc.user.Token), nil)
			if tc.want != http.StatusOK {
				coreCheckError(t, r, tc.want, "PermissionDenied")
				return
			}
			if r.status != tc.want {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tc.want, r.body)
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatalf("body %q: %v", r.body, err)
			}
			id, _ := body["id"].(string)
			if strings.HasPrefix(tc.path, "/v2/customers/") {
				id, _ = body["customerId"].(string)
			}
			if want := tc.path[strings.LastIndex(tc.path, "/")+1:]; id != want {
				t.Errorf("id in body = %q, want %q", id, want)
			}
		})
	}
}

func TestCoreListUsers(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	r := coreDo(t, http.MethodGet, base+"/internal/users", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %s)", r.status, r.body)
	}
	var got []User
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if diff := cmp.Diff(sim.Users(), got); diff != "" {
		t.Errorf("GET /internal/users mismatch (-Users() +got):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, u := range got {
		if !isUUID(u.ID) || u.Token == "" || u.Name == "" || u.Email == "" {
			t.Errorf("user %+v: want a UUID id, a name, an email and a token", u)
		}
		if seen[u.Token] {
			t.Errorf("token of %s is shared with another user", u.Name)
		}
		seen[u.Token] = true
	}
	// Tokens are new per start; ids are fixed.
	other, _ := newCoreSim(t, Options{})
	for i, u := range other.Users() {
		if u.ID != got[i].ID {
			t.Errorf("user %d id = %s on a second simulator, want %s", i, u.ID, got[i].ID)
		}
		if u.Token == got[i].Token {
			t.Errorf("user %d has the same token on a second simulator", i)
		}
	}
}

func TestCoreTokenHeaders(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	insiders, _ := coreUsers(t, sim)
	token := insiders[0].Token
	url := base + "/v2/projects/" + uuid.NewString()
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"X-Access-Token", map[string]string{"X-Access-Token": token}, http.StatusOK},
		{"x-access-token lower case", map[string]string{"x-access-token": token}, http.StatusOK},
		{"Authorization Bearer", map[string]string{"Authorization": "Bearer " + token}, http.StatusOK},
		{"Authorization bearer lower case", map[string]string{"Authorization": "bearer " + token}, http.StatusOK},
		{"Authorization BEARER upper case", map[string]string{"Authorization": "BEARER " + token}, http.StatusOK},
		{"no token", nil, http.StatusUnauthorized},
		{"unknown token", map[string]string{"X-Access-Token": "not-a-token"}, http.StatusUnauthorized},
		{"Authorization Basic", map[string]string{"Authorization": "Basic " + token}, http.StatusUnauthorized},
		{"Authorization without scheme", map[string]string{"Authorization": token}, http.StatusUnauthorized},
		{"Bearer without token", map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
		{"token with a suffix", map[string]string{"X-Access-Token": token + "x"}, http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := coreDo(t, http.MethodGet, url, tc.header, nil)
			if tc.want == http.StatusOK {
				if r.status != tc.want {
					t.Errorf("status = %d, want %d (body %s)", r.status, tc.want, r.body)
				}
				return
			}
			coreCheckError(t, r, tc.want, "Unauthorized")
		})
	}
}
