package mstudio_test

import (
	"errors"
	"io"
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
	testRetrievalKey = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789x" // 37 characters
	testUserID       = "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01"
)

// userToken redeems a fresh retrieval key of the env's instance for a user with access.
func (e *simEnv) userToken(t *testing.T) mstudio.UserToken {
	t.Helper()
	user := e.user(t)
	key, err := e.Sim.NewRetrievalKey(e.Instance.ID, user.ID)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := newClient(t, e.SimURL, mstudio.Options{}).RedeemRetrievalKey(t.Context(), key, user.ID)
	if err != nil {
		t.Fatalf("RedeemRetrievalKey: %v", err)
	}
	return tok
}

// TestRedeemRetrievalKey walks the single sign-on exchange at the simulator: the key buys
// a token of the user, once.
func TestRedeemRetrievalKey(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{UserTokenTTL: time.Hour}, mstudiotest.CallRequest{})
	user := env.user(t)
	key, err := env.Sim.NewRetrievalKey(env.Instance.ID, user.ID)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.SimURL, mstudio.Options{})
	before := time.Now()
	tok, err := c.RedeemRetrievalKey(t.Context(), key, user.ID)
	if err != nil {
		t.Fatalf("RedeemRetrievalKey: %v", err)
	}
	if tok.Token.IsZero() || tok.RefreshToken.IsZero() {
		t.Errorf("token or refresh token empty: %+v", tok)
	}
	if lo, hi := before.Add(time.Hour-time.Minute), time.Now().Add(time.Hour+time.Minute); tok.ExpiresAt.Before(lo) || tok.ExpiresAt.After(hi) {
		t.Errorf("ExpiresAt = %v, want about an hour from now", tok.ExpiresAt)
	}
	got, err := c.User(t.Context(), tok.Token, "self")
	if err != nil {
		t.Fatalf("User(self) with the redeemed token: %v", err)
	}
	if got.ID != user.ID || got.Email != user.Email {
		t.Errorf("User(self) = %+v, want user %s <%s>", got, user.ID, user.Email)
	}

	// The key is single use; the refusal does not quote it.
	_, err = c.RedeemRetrievalKey(t.Context(), key, user.ID)
	if got := apiStatus(err); got != http.StatusBadRequest {
		t.Errorf("second redeem: error %v, status %d, want %d", err, got, http.StatusBadRequest)
	}
	if err != nil && strings.Contains(err.Error(), key) {
		t.Errorf("error text %q contains the key", err)
	}
	if got := env.SimHits("POST /v2/authenticate-token-retrieval-key"); got != 2 {
		t.Errorf("simulator got %d exchanges, want 2", got)
	}
}

// TestRedeemRetrievalKeyBadInput: what cannot be a key or a user id is refused before
// anything is sent, and the text never quotes the key.
func TestRedeemRetrievalKeyBadInput(t *testing.T) {
	tests := []struct {
		name, key, userID string
	}{
		{"empty key", "", testUserID},
		{"key of 36", testRetrievalKey[:36], testUserID},
		{"key of 38", testRetrievalKey + "x", testUserID},
		{"key of 37 bytes but 36 characters", testRetrievalKey[:35] + "é", testUserID},
		{"empty user id", testRetrievalKey, ""},
		{"user id not a uuid", testRetrievalKey, "ada"},
		{"user id braced", testRetrievalKey, "{" + testUserID + "}"},
		{"user id urn", testRetrievalKey, "urn:uuid:" + testUserID},
		{"user id with a slash", testRetrievalKey, testUserID[:35] + "/"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
			_, err := newClient(t, srv.URL, mstudio.Options{}).RedeemRetrievalKey(t.Context(), tc.key, tc.userID)
			if !errors.Is(err, mstudio.ErrInvalidArgument) {
				t.Errorf("error = %v, want %v", err, mstudio.ErrInvalidArgument)
			}
			if tc.key != "" && err != nil && strings.Contains(err.Error(), tc.key) {
				t.Errorf("error text %q contains the key", err)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("server got %d requests, want none", n)
			}
		})
	}
}

// TestUserTokenRequests checks what goes on the wire for the exchange and the refresh.
func TestUserTokenRequests(t *testing.T) {
	const okBody = `{"token":"access-2","refreshToken":"refresh-2","expiresAt":"2030-01-01T00:00:00Z"}`
	want := mstudio.UserToken{Token: "access-2", RefreshToken: "refresh-2", ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	tests := []struct {
		name      string
		call      func(*mstudio.Client) (mstudio.UserToken, error)
		wantReq   tokenRequest
		wantToken string // X-Access-Token
	}{
		{
			name: "redeem",
			call: func(c *mstudio.Client) (mstudio.UserToken, error) {
				return c.RedeemRetrievalKey(t.Context(), testRetrievalKey, testUserID)
			},
			wantReq: tokenRequest{Method: http.MethodPost, Path: "/v2/authenticate-token-retrieval-key",
				Body: map[string]any{"accessTokenRetrievalKey": testRetrievalKey, "userId": testUserID}},
		},
		{
			name: "refresh",
			call: func(c *mstudio.Client) (mstudio.UserToken, error) {
				return c.RefreshUserToken(t.Context(), "access-1", "refresh-1")
			},
			wantReq:   tokenRequest{Method: http.MethodPut, Path: "/v2/users/self/sessions", Body: map[string]any{"refreshToken": "refresh-1"}},
			wantToken: "access-1",
		},
		{
			name: "refresh without an access token",
			call: func(c *mstudio.Client) (mstudio.UserToken, error) {
				return c.RefreshUserToken(t.Context(), "", "refresh-1")
			},
			wantReq: tokenRequest{Method: http.MethodPut, Path: "/v2/users/self/sessions", Body: map[string]any{"refreshToken": "refresh-1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts, c := newTokenServer(t, answer{http.StatusOK, okBody})
			got, err := tc.call(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
			reqs := ts.recorded()
			if len(reqs) != 1 {
				t.Fatalf("platform got %d requests, want 1", len(reqs))
			}
			if got := reqs[0].Headers.Get("X-Access-Token"); got != tc.wantToken {
				t.Errorf("X-Access-Token = %q, want %q", got, tc.wantToken)
			}
			reqs[0].Headers = nil
			if diff := cmp.Diff(tc.wantReq, reqs[0]); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUserTokenBadAnswer: a 200 without all three fields is no token.
func TestUserTokenBadAnswer(t *testing.T) {
	bodies := map[string]string{
		"empty object":     `{}`,
		"no token":         `{"refreshToken":"r","expiresAt":"2030-01-01T00:00:00Z"}`,
		"no refresh token": `{"token":"a","expiresAt":"2030-01-01T00:00:00Z"}`,
		"no expiry":        `{"token":"a","refreshToken":"r"}`,
		"bad expiry":       `{"token":"a","refreshToken":"r","expiresAt":"soon"}`,
		"not json":         `ok`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			_, c := newTokenServer(t, answer{http.StatusOK, body})
			if tok, err := c.RedeemRetrievalKey(t.Context(), testRetrievalKey, testUserID); err == nil {
				t.Errorf("RedeemRetrievalKey = %+v, nil; want an error", tok)
			}
			if tok, err := c.RefreshUserToken(t.Context(), "a", "r"); err == nil {
				t.Errorf("RefreshUserToken = %+v, nil; want an error", tok)
			}
		})
	}
}

// TestRefreshUserToken: refresh tokens rotate at the simulator; the new token works and
// the used refresh token does not, and the refusal quotes neither token.
func TestRefreshUserToken(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
	first := env.userToken(t)
	c := newClient(t, env.SimURL, mstudio.Options{})
	second, err := c.RefreshUserToken(t.Context(), first.Token, first.RefreshToken)
	if err != nil {
		t.Fatalf("RefreshUserToken: %v", err)
	}
	if second.Token == first.Token || second.RefreshToken == first.RefreshToken {
		t.Error("refresh returned the old token or refresh token")
	}
	if _, err := c.User(t.Context(), second.Token, "self"); err != nil {
		t.Errorf("User(self) with the refreshed token: %v", err)
	}
	_, err = c.RefreshUserToken(t.Context(), second.Token, first.RefreshToken)
	if got := apiStatus(err); got != http.StatusBadRequest {
		t.Errorf("refresh with a used refresh token: error %v, status %d, want %d", err, got, http.StatusBadRequest)
	}
	for _, s := range []extension.Secret{first.RefreshToken, second.Token} {
		if err != nil && strings.Contains(err.Error(), s.Reveal()) {
			t.Errorf("error text %q contains a token", err)
		}
	}
	if _, err := c.RefreshUserToken(t.Context(), second.Token, ""); !errors.Is(err, mstudio.ErrInvalidArgument) {
		t.Errorf("refresh without a refresh token: error = %v, want %v", err, mstudio.ErrInvalidArgument)
	}
}

// TestTokensMaskedInErrors: a platform that quotes what it got back must not carry a
// key or token into our error text.
func TestTokensMaskedInErrors(t *testing.T) {
	const access, refresh = "access-token-value", "refresh-token-value"
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		msg := strings.NewReplacer(`"`, `'`).Replace(string(body)) + " with " + r.Header.Get("X-Access-Token")
		io.WriteString(w, `{"type":"ValidationError","message":"got `+msg+`","validationErrors":[{"message":"`+msg+`","path":"x","type":"invalid"}]}`)
	}
	c := newClient(t, newServer(t, echo).URL, mstudio.Options{})
	tests := []struct {
		name    string
		call    func() error
		secrets []string
	}{
		{"redeem", func() error {
			_, err := c.RedeemRetrievalKey(t.Context(), testRetrievalKey, testUserID)
			return err
		}, []string{testRetrievalKey}},
		{"refresh", func() error {
			_, err := c.RefreshUserToken(t.Context(), access, refresh)
			return err
		}, []string{access, refresh}},
		{"user", func() error {
			_, err := c.User(t.Context(), access, testUserID)
			return err
		}, []string{access}},
		{"project", func() error {
			_, err := c.Project(t.Context(), access, testInstanceID)
			return err
		}, []string{access}},
		{"instance", func() error {
			_, err := c.Instance(t.Context(), access, testInstanceID)
			return err
		}, []string{access}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if apiStatus(err) != http.StatusBadRequest {
				t.Fatalf("error = %v, want the platform's 400", err)
			}
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q contains %q", err, s)
				}
			}
		})
	}
}

func TestUser(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
	user := env.user(t)
	tok := env.userToken(t)
	c := newClient(t, env.SimURL, mstudio.Options{})
	first, last, _ := strings.Cut(user.Name, " ")
	want := mstudio.User{ID: user.ID, Email: user.Email, FirstName: first, LastName: last}
	var other string
	for _, u := range env.Sim.Users() {
		if u.ID != user.ID {
			other = u.ID
		}
	}
	tests := []struct {
		name       string
		token      extension.Secret
		id         string
		wantErr    error
		wantStatus int
	}{
		{"self", tok.Token, "self", nil, 0},
		{"own id", tok.Token, user.ID, nil, 0},
		{"another user", tok.Token, other, nil, http.StatusForbidden},
		{"unknown token", "not-a-token", "self", nil, http.StatusUnauthorized},
		{"no token", "", "self", mstudio.ErrInvalidArgument, 0},
		{"id not a uuid", tok.Token, "../self", mstudio.ErrInvalidArgument, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.User(t.Context(), tc.token, tc.id)
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("error = %v, want %v", err, tc.wantErr)
				}
			case tc.wantStatus != 0:
				if apiStatus(err) != tc.wantStatus {
					t.Errorf("error = %v, want status %d", err, tc.wantStatus)
				}
			case err != nil:
				t.Fatalf("User: %v", err)
			default:
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("user (-want +got):\n%s", diff)
				}
			}
		})
	}
}
