package mstudio_test

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/go-cmp/cmp"
)

const (
	testSessionToken    = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLW9mLXRoZS1zZXNzaW9uLXRva2Vu"
	testExtensionSecret = "ext-secret-Hk3pQ8vZ2mN7wR4tY9bC"
)

// TestExchangeSessionToken walks the exchange at the simulator: a session token of a user
// and the extension secret buy a token that reads the instance as that user.
func TestExchangeSessionToken(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{SessionTokenTTL: time.Minute}, mstudiotest.CallRequest{})
	user := env.user(t)
	raw, err := env.Sim.NewSessionToken(env.Instance.ID, user.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.SimURL, mstudio.Options{})
	before := time.Now()
	tok, err := c.ExchangeSessionToken(t.Context(), raw, extension.Secret(env.Sim.ExtensionSecret()))
	if err != nil {
		t.Fatalf("ExchangeSessionToken: %v", err)
	}
	if tok.Token.IsZero() {
		t.Fatal("exchange answered no token")
	}
	if lo, hi := before.Add(30*time.Second), time.Now().Add(90*time.Second); tok.Expiry.Before(lo) || tok.Expiry.After(hi) {
		t.Errorf("Expiry = %v, want about a minute from now", tok.Expiry)
	}
	in, err := c.Instance(t.Context(), tok.Token, env.Instance.ID)
	if err != nil {
		t.Fatalf("Instance with the exchanged token: %v", err)
	}
	if in.ID != env.Instance.ID {
		t.Errorf("Instance(%s).ID = %s", env.Instance.ID, in.ID)
	}
	self, err := c.User(t.Context(), tok.Token, "self")
	if err != nil {
		t.Fatalf("User(self) with the exchanged token: %v", err)
	}
	if self.ID != user.ID {
		t.Errorf("User(self).ID = %s, want %s: the token stands for the session token's user", self.ID, user.ID)
	}
}

// TestExchangeSessionTokenRefused: the simulator's refusals arrive as *mstudio.Error, and
// no error text quotes the session token or the secret.
func TestExchangeSessionTokenRefused(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
	user := env.user(t)
	raw, err := env.Sim.NewSessionToken(env.Instance.ID, user.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		token  string
		secret extension.Secret
		status int
	}{
		{"wrong secret", raw, testExtensionSecret, http.StatusForbidden},
		{"no secret", raw, "", http.StatusForbidden},
		{"token not signed by the platform", testSessionToken, extension.Secret(env.Sim.ExtensionSecret()), http.StatusBadRequest},
		{"token altered", raw[:len(raw)-4] + "AAAA", extension.Secret(env.Sim.ExtensionSecret()), http.StatusBadRequest},
	}
	c := newClient(t, env.SimURL, mstudio.Options{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := c.ExchangeSessionToken(t.Context(), tc.token, tc.secret)
			if got := apiStatus(err); got != tc.status {
				t.Fatalf("error %v (status %d), want status %d", err, got, tc.status)
			}
			if !tok.Token.IsZero() {
				t.Error("a refused exchange returned a token")
			}
			for _, s := range []string{tc.token, env.Sim.ExtensionSecret()} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q contains a credential", err)
				}
			}
		})
	}
}

// TestExchangeSessionTokenRequest checks what goes on the wire: the body, no access token
// header, and an empty secret left out.
func TestExchangeSessionTokenRequest(t *testing.T) {
	const okBody = `{"publicToken":"user-bound","expiry":"2030-01-01T00:00:00Z"}`
	tests := []struct {
		name     string
		secret   extension.Secret
		wantBody map[string]any
	}{
		{"with secret", testExtensionSecret, map[string]any{"sessionToken": testSessionToken, "extensionSecret": testExtensionSecret}},
		{"without secret", "", map[string]any{"sessionToken": testSessionToken}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := newTokenServer(t, answer{http.StatusCreated, okBody})
			tok, err := c.ExchangeSessionToken(t.Context(), testSessionToken, tc.secret)
			if err != nil {
				t.Fatalf("ExchangeSessionToken: %v", err)
			}
			want := mstudio.SessionAccessToken{Token: "user-bound", Expiry: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			if diff := cmp.Diff(want, tok); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
			reqs := ts.recorded()
			if len(reqs) != 1 {
				t.Fatalf("platform got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/v2/authenticate-session-token" {
				t.Errorf("request %s %s, want POST /v2/authenticate-session-token", r.Method, r.Path)
			}
			if diff := cmp.Diff(tc.wantBody, r.Body); diff != "" {
				t.Errorf("request body (-want +got):\n%s", diff)
			}
			for _, h := range []string{"X-Access-Token", "Authorization"} {
				if v := r.Headers.Get(h); v != "" {
					t.Errorf("header %s = %q, want none", h, v)
				}
			}
		})
	}
}

// TestExchangeSessionTokenErrors: bad input is refused before sending; a platform that
// quotes the credentials back, or answers nonsense, yields an error without them; a
// passing outage is retried, since a session token may be exchanged more than once.
func TestExchangeSessionTokenErrors(t *testing.T) {
	t.Run("empty token", func(t *testing.T) {
		var calls atomic.Int32
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
		_, err := newTestClient(t, srv.URL).ExchangeSessionToken(t.Context(), "", testExtensionSecret)
		if !errors.Is(err, mstudio.ErrInvalidArgument) {
			t.Errorf("error = %v, want %v", err, mstudio.ErrInvalidArgument)
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("server got %d requests, want none", n)
		}
	})
	for _, tc := range []struct {
		name   string
		status int
		body   string
	}{
		{"quoted in message", http.StatusForbidden, `{"type":"PermissionDenied","message":"secret ` + testExtensionSecret + ` for ` + testSessionToken + ` is wrong"}`},
		{"quoted in validation error", http.StatusBadRequest, `{"type":"ValidationError","validationErrors":[{"message":"bad token ` + testSessionToken + `","path":"sessionToken","type":"invalid"}]}`},
		{"no publicToken", http.StatusCreated, `{"expiry":"2030-01-01T00:00:00Z"}`},
		{"not json", http.StatusCreated, `created`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newTokenServer(t, answer{tc.status, tc.body})
			tok, err := c.ExchangeSessionToken(t.Context(), testSessionToken, testExtensionSecret)
			if err == nil {
				t.Fatalf("ExchangeSessionToken = %v, nil; want an error", tok)
			}
			for _, s := range []string{testSessionToken, testExtensionSecret} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q contains a credential", err)
				}
			}
		})
	}
	t.Run("503 then 201", func(t *testing.T) {
		ts, c := newTokenServer(t,
			answer{http.StatusServiceUnavailable, `{"type":"Unavailable","message":"later"}`},
			answer{http.StatusCreated, `{"publicToken":"second","expiry":"2030-01-01T00:00:00Z"}`})
		tok, err := c.ExchangeSessionToken(t.Context(), testSessionToken, testExtensionSecret)
		if err != nil {
			t.Fatalf("ExchangeSessionToken: %v", err)
		}
		if tok.Token.Reveal() != "second" {
			t.Errorf("token = %q, want %q", tok.Token.Reveal(), "second")
		}
		if n := ts.calls.Load(); n != 2 {
			t.Errorf("platform got %d calls, want 2", n)
		}
	})
}
