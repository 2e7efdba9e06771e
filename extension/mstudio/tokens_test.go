package mstudio_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/go-cmp/cmp"
)

const (
	testInstanceID = "b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
	testSecret     = "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"
)

// tokenRequest is what the platform received for one token call.
type tokenRequest struct {
	Method  string
	Path    string
	Body    map[string]any
	Headers http.Header
}

// recordingTokenServer answers each call with the next of answers (the last one repeats) and
// records every request it received.
type recordingTokenServer struct {
	mu       sync.Mutex
	requests []tokenRequest
	answers  []answer
	calls    atomic.Int32
}

type answer struct {
	status int
	body   string
}

func (s *recordingTokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.calls.Add(1)) - 1
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		body = map[string]any{"<not json>": string(raw)}
	}
	s.mu.Lock()
	s.requests = append(s.requests, tokenRequest{Method: r.Method, Path: r.URL.Path, Body: body, Headers: r.Header.Clone()})
	s.mu.Unlock()
	a := s.answers[min(n, len(s.answers)-1)]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (s *recordingTokenServer) recorded() []tokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tokenRequest(nil), s.requests...)
}

func newTokenServer(t *testing.T, answers ...answer) (*recordingTokenServer, *mstudio.Client) {
	t.Helper()
	ts := &recordingTokenServer{answers: answers}
	srv := newServer(t, ts.ServeHTTP)
	return ts, newTestClient(t, srv.URL)
}

func TestInstanceTokenRequestAndAnswer(t *testing.T) {
	expiry := time.Date(2030, 5, 17, 8, 30, 0, 123456789, time.UTC)
	const token = "eyJhbGciOiJFZERTQSJ9.instance-token.sig"
	ts, c := newTokenServer(t, answer{http.StatusCreated,
		`{"publicToken":"` + token + `","expiry":"` + expiry.Format(time.RFC3339Nano) + `"}`})

	got, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
	if err != nil {
		t.Fatalf("InstanceToken: %v", err)
	}
	if got.Token.Reveal() != token {
		t.Errorf("token = %q, want %q", got.Token.Reveal(), token)
	}
	if !got.Expiry.Equal(expiry) {
		t.Errorf("expiry = %v, want %v", got.Expiry, expiry)
	}

	reqs := ts.recorded()
	if len(reqs) != 1 {
		t.Fatalf("platform got %d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost {
		t.Errorf("method = %s, want %s", r.Method, http.MethodPost)
	}
	if want := "/v2/extension-instances/" + testInstanceID + "/tokens"; r.Path != want {
		t.Errorf("path = %q, want %q", r.Path, want)
	}
	if diff := cmp.Diff(map[string]any{"extensionInstanceSecret": testSecret}, r.Body); diff != "" {
		t.Errorf("request body (-want +got):\n%s", diff)
	}
	for _, h := range []string{"X-Access-Token", "Authorization"} {
		if v := r.Headers.Get(h); v != "" {
			t.Errorf("header %s = %q, want none (the secret alone authenticates)", h, v)
		}
	}
	if ua := r.Headers.Get("User-Agent"); !strings.HasPrefix(ua, "extension-backend/") {
		t.Errorf("User-Agent = %q, want prefix %q", ua, "extension-backend/")
	}
	if ct := r.Headers.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want %q", ct, "application/json")
	}
}

func TestInstanceTokenPlatformErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		want      mstudio.Error
		wantCalls int32
	}{
		{
			name:      "forbidden",
			status:    http.StatusForbidden,
			body:      `{"type":"PermissionDenied","message":"extension instance secret is invalid"}`,
			want:      mstudio.Error{Status: http.StatusForbidden, Type: "PermissionDenied", Message: "extension instance secret is invalid"},
			wantCalls: 1,
		},
		{
			name:      "not found",
			status:    http.StatusNotFound,
			body:      `{"type":"NotFound","message":"extension instance not found"}`,
			want:      mstudio.Error{Status: http.StatusNotFound, Type: "NotFound", Message: "extension instance not found"},
			wantCalls: 1,
		},
		{
			name:      "unauthorized",
			status:    http.StatusUnauthorized,
			body:      `{"type":"Unauthorized","message":"instance disabled"}`,
			want:      mstudio.Error{Status: http.StatusUnauthorized, Type: "Unauthorized", Message: "instance disabled"},
			wantCalls: 1,
		},
		{
			name:   "validation error",
			status: http.StatusBadRequest,
			body: `{"type":"ValidationError","message":"Validation failed","validationErrors":[` +
				`{"message":"must not be empty","path":"extensionInstanceSecret","type":"required","context":{"limit":"1"}},` +
				`{"message":"must be a uuid","path":"extensionInstanceId","type":"format"}]}`,
			want: mstudio.Error{
				Status:  http.StatusBadRequest,
				Type:    "ValidationError",
				Message: "Validation failed",
				ValidationErrors: []mstudio.ValidationError{
					{Message: "must not be empty", Path: "extensionInstanceSecret", Type: "required"},
					{Message: "must be a uuid", Path: "extensionInstanceId", Type: "format"},
				},
			},
			wantCalls: 1,
		},
		{
			name:      "body not json",
			status:    http.StatusForbidden,
			body:      `<html>forbidden</html>`,
			want:      mstudio.Error{Status: http.StatusForbidden},
			wantCalls: 1,
		},
		{
			// A 500 may mean the work was half done: not repeated.
			name:      "server error not retried",
			status:    http.StatusInternalServerError,
			body:      `{"type":"InternalError","message":"boom"}`,
			want:      mstudio.Error{Status: http.StatusInternalServerError, Type: "InternalError", Message: "boom"},
			wantCalls: 1,
		},
		{
			name:      "unavailable retried then given up",
			status:    http.StatusServiceUnavailable,
			body:      `{"type":"Unavailable","message":"later"}`,
			want:      mstudio.Error{Status: http.StatusServiceUnavailable, Type: "Unavailable", Message: "later"},
			wantCalls: 1 + testRetryMax,
		},
		{
			name:      "rate limited retried then given up",
			status:    http.StatusTooManyRequests,
			body:      `{"type":"RateLimitError","message":"too many requests"}`,
			want:      mstudio.Error{Status: http.StatusTooManyRequests, Type: "RateLimitError", Message: "too many requests"},
			wantCalls: 1 + testRetryMax,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := newTokenServer(t, answer{tc.status, tc.body})
			tok, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
			if err == nil {
				t.Fatalf("InstanceToken = %+v, nil; want an error", tok)
			}
			var apiErr *mstudio.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("error %q (%T) is not a *mstudio.Error", err, err)
			}
			if diff := cmp.Diff(tc.want, *apiErr); diff != "" {
				t.Errorf("platform error (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error text %q contains the secret", err)
			}
			if !tok.Token.IsZero() {
				t.Errorf("token = %q, want none", tok.Token.Reveal())
			}
			if got := ts.calls.Load(); got != tc.wantCalls {
				t.Errorf("platform got %d calls, want %d", got, tc.wantCalls)
			}
		})
	}
}

// TestInstanceTokenRetriesThenSucceeds checks that a transient failure is retried with the
// same body (the request body is rewound between attempts).
func TestInstanceTokenRetriesThenSucceeds(t *testing.T) {
	tests := []struct {
		name    string
		answers []answer
	}{
		{"503 then 201", []answer{
			{http.StatusServiceUnavailable, `{"type":"Unavailable","message":"try again"}`},
			{http.StatusCreated, `{"publicToken":"tok-2","expiry":"2030-01-01T00:00:00Z"}`},
		}},
		{"502 twice then 201", []answer{
			{http.StatusBadGateway, ``},
			{http.StatusBadGateway, ``},
			{http.StatusCreated, `{"publicToken":"tok-3","expiry":"2030-01-01T00:00:00Z"}`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := newTokenServer(t, tc.answers...)
			got, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
			if err != nil {
				t.Fatalf("InstanceToken: %v", err)
			}
			var want struct {
				PublicToken string `json:"publicToken"`
			}
			if err := json.Unmarshal([]byte(tc.answers[len(tc.answers)-1].body), &want); err != nil {
				t.Fatal(err)
			}
			if got.Token.Reveal() != want.PublicToken {
				t.Errorf("token = %q, want %q", got.Token.Reveal(), want.PublicToken)
			}
			reqs := ts.recorded()
			if len(reqs) != len(tc.answers) {
				t.Errorf("platform got %d requests, want %d", len(reqs), len(tc.answers))
			}
			for i, r := range reqs {
				if diff := cmp.Diff(map[string]any{"extensionInstanceSecret": testSecret}, r.Body); diff != "" {
					t.Errorf("attempt %d: request body (-want +got):\n%s", i+1, diff)
				}
			}
		})
	}
}

func TestInstanceTokenBadAnswer(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"empty object", `{}`},
		{"no publicToken", `{"expiry":"2030-01-01T00:00:00Z"}`},
		{"empty publicToken", `{"publicToken":"","expiry":"2030-01-01T00:00:00Z"}`},
		{"null publicToken", `{"publicToken":null,"expiry":"2030-01-01T00:00:00Z"}`},
		{"publicToken not a string", `{"publicToken":42,"expiry":"2030-01-01T00:00:00Z"}`},
		{"not json", `created`},
		{"empty body", ``},
		{"bad expiry", `{"publicToken":"tok","expiry":"tomorrow"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTokenServer(t, answer{http.StatusCreated, tc.body})
			tok, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
			if err == nil {
				t.Fatalf("InstanceToken = %q, nil; want an error", tok.Token.Reveal())
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error text %q contains the secret", err)
			}
		})
	}
}

// TestInstanceTokenTransportErrorHidesSecret checks a call to a platform that is gone.
func TestInstanceTokenTransportErrorHidesSecret(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newTestClient(t, srv.URL)
	srv.Close()
	_, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
	if err == nil {
		t.Fatal("InstanceToken against a closed server: got nil error, want one")
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error text %q contains the secret", err)
	}
	var apiErr *mstudio.Error
	if errors.As(err, &apiErr) {
		t.Errorf("transport failure became a platform error %+v", apiErr)
	}
}

// TestInstanceTokenErrorDoesNotEchoSecret: a platform that repeats the submitted value in
// its error body must not carry the secret into our error text (DESIGN: secrets never reach
// an error text).
func TestInstanceTokenErrorDoesNotEchoSecret(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"in message", http.StatusForbidden,
			`{"type":"PermissionDenied","message":"secret ` + testSecret + ` is not valid"}`},
		{"in validation error", http.StatusBadRequest,
			`{"type":"ValidationError","validationErrors":[{"message":"unknown secret ` + testSecret + `","path":"extensionInstanceSecret","type":"invalid"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTokenServer(t, answer{tc.status, tc.body})
			_, err := c.InstanceToken(t.Context(), testInstanceID, extension.Secret(testSecret))
			if err == nil {
				t.Fatal("got nil error, want one")
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error text %q contains the secret", err)
			}
		})
	}
}

// TestInstanceTokenInstanceIDIsOnePathSegment checks that an instance id either reaches the
// platform as exactly one path segment with its value unchanged, or, when it is not a
// platform id (a UUID), is refused before anything is sent.
func TestInstanceTokenInstanceIDIsOnePathSegment(t *testing.T) {
	tests := []struct {
		name string
		id   string
		uuid bool // a platform id: must be sent
	}{
		{"uuid", testInstanceID, true},
		{"slash", "a/b", false},
		{"dot dot slash", "../x", false},
		{"dot dot", "..", false},
		{"space", "a b", false},
		{"question mark", "a?b=c", false},
		{"hash", "a#b", false},
		{"percent", "a%2Fb", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var gotPath, gotRawPath string
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				gotPath, gotRawPath = r.URL.Path, r.URL.EscapedPath()
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, `{"publicToken":"tok","expiry":"2030-01-01T00:00:00Z"}`)
			})
			c := newTestClient(t, srv.URL)
			_, err := c.InstanceToken(t.Context(), tc.id, extension.Secret(testSecret))
			if err != nil {
				if tc.uuid {
					t.Fatalf("InstanceToken: %v", err)
				}
				if n := calls.Load(); n != 0 {
					t.Errorf("id %q refused with %v after %d requests, want none sent", tc.id, err, n)
				}
				return
			}
			if want := "/v2/extension-instances/" + tc.id + "/tokens"; gotPath != want {
				t.Errorf("decoded path = %q, want %q", gotPath, want)
			}
			segs := strings.Split(strings.TrimPrefix(gotRawPath, "/"), "/")
			if len(segs) != 4 {
				t.Errorf("escaped path %q has %d segments, want 4", gotRawPath, len(segs))
			}
			for _, s := range segs {
				if s == "." || s == ".." {
					t.Errorf("escaped path %q has a dot segment", gotRawPath)
				}
			}
		})
	}
}
