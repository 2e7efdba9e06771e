package mstudio

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// OAuthToken is the answer of the OAuth2 token endpoint: an access token of the user who
// consented, usable like any API token, and the refresh token that renews it.
type OAuthToken struct {
	AccessToken  extension.Secret
	RefreshToken extension.Secret
	ExpiresAt    time.Time
	Scope        string // the scopes granted, space-separated; empty when not said
}

// AuthorizeRequest is what an authorization request (spec section 8.1) carries besides
// response_type=code and code_challenge_method=S256.
type AuthorizeRequest struct {
	ClientID      string // the extension id
	RedirectURI   string // compared by exact string at the token endpoint
	Scope         string // space-separated, such as "user:read project:read"
	State         string
	CodeChallenge string // PKCEChallenge of the verifier
}

// AuthorizeURL returns the platform's authorization endpoint (GET /v2/oauth2/authorize)
// for r, where the browser is sent to sign in and consent.
func (c *Client) AuthorizeURL(r AuthorizeRequest) string {
	u := *c.base
	u.Path += "/v2/oauth2/authorize"
	u.RawPath = ""
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {r.ClientID},
		"redirect_uri":          {r.RedirectURI},
		"state":                 {r.State},
		"code_challenge":        {r.CodeChallenge},
		"code_challenge_method": {"S256"},
	}
	if r.Scope != "" {
		q.Set("scope", r.Scope)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// PKCEChallenge returns the S256 code challenge of a PKCE code verifier (RFC 7636 4.2).
func PKCEChallenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ExchangeAuthorizationCode trades an authorization code for the user's tokens
// (POST /v2/oauth2/token, form-encoded). redirectURI must be the one of the authorization
// request, byte for byte, and verifier the PKCE verifier whose challenge it sent. With a
// client secret the client authenticates with HTTP Basic; without one it names itself
// with client_id in the body, as a public client.
//
// A code is single use, so the exchange is sent again only when no connection was made.
// The platform's refusal (a used, expired or unknown code, a wrong verifier or redirect
// URI) is an *Error with status 400 and Type "invalid_grant".
func (c *Client) ExchangeAuthorizationCode(ctx context.Context, code, redirectURI, verifier, clientID string, clientSecret extension.Secret) (OAuthToken, error) {
	if code == "" || redirectURI == "" || verifier == "" || clientID == "" {
		return OAuthToken{}, fmt.Errorf("exchange authorization code: %w: code, redirect URI, verifier and client id are required", ErrInvalidArgument)
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
	cl := call{method: http.MethodPost, route: "/v2/oauth2/token", form: form, sensitive: []string{code, verifier}}
	if clientSecret.IsZero() {
		form.Set("client_id", clientID)
	} else {
		// RFC 6749 2.3.1: both parts form-encoded before they are joined.
		creds := url.QueryEscape(clientID) + ":" + url.QueryEscape(clientSecret.Reveal())
		cl.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(creds))
		cl.sensitive = append(cl.sensitive, clientSecret.Reveal())
	}
	var out struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
		Scope        string `json:"scope"`
	}
	cl.out = &out
	// The token's life counts from before the request, so the expiry errs on the early side.
	sent := time.Now()
	if _, err := c.do(ctx, cl); err != nil {
		return OAuthToken{}, fmt.Errorf("exchange authorization code: %w", err)
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		return OAuthToken{}, errors.New("exchange authorization code: answer lacks access_token or expires_in")
	}
	if !strings.EqualFold(out.TokenType, "bearer") {
		return OAuthToken{}, fmt.Errorf("exchange authorization code: token_type %q, want bearer", out.TokenType)
	}
	return OAuthToken{
		AccessToken:  extension.Secret(out.AccessToken),
		RefreshToken: extension.Secret(out.RefreshToken),
		ExpiresAt:    sent.Add(secondsUpTo(float64(out.ExpiresIn), 365*24*time.Hour)),
		Scope:        out.Scope,
	}, nil
}
