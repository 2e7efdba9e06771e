package mstudio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// SessionAccessToken is the access token a frontend fragment's session token buys: bound
// to the token's user and instance, valid for about 60 s. The platform says not to cache
// it, so it lives only as long as the call that needs it.
type SessionAccessToken struct {
	Token  extension.Secret
	Expiry time.Time
}

// ExchangeSessionToken trades a session token, which the platform signed for a user in an
// extension instance, and the extension secret for a user-bound access token
// (POST /v2/authenticate-session-token). The call carries no access token: the session
// token and the secret are the credentials. An empty extension secret is left out of the
// request, for tokens the platform lets us exchange without one.
//
// Neither the session token nor the secret appears in an error text, even when the
// platform quotes them back.
func (c *Client) ExchangeSessionToken(ctx context.Context, sessionToken string, extensionSecret extension.Secret) (SessionAccessToken, error) {
	if sessionToken == "" {
		return SessionAccessToken{}, fmt.Errorf("exchange session token: %w: no session token", ErrInvalidArgument)
	}
	in := struct {
		SessionToken    string `json:"sessionToken"`
		ExtensionSecret string `json:"extensionSecret,omitempty"`
	}{sessionToken, extensionSecret.Reveal()}
	var out struct {
		PublicToken string    `json:"publicToken"`
		Expiry      time.Time `json:"expiry"`
	}
	cl := call{
		method: http.MethodPost, route: "/v2/authenticate-session-token",
		in: in, out: &out, sensitive: []string{sessionToken, extensionSecret.Reveal()},
		// A session token is not single-use (the control panel hands out the same one for
		// 40 s), so a repeated exchange only leaves an unused access token behind.
		idempotent: true,
	}
	if _, err := c.do(ctx, cl); err != nil {
		return SessionAccessToken{}, fmt.Errorf("exchange session token: %w", err)
	}
	if out.PublicToken == "" {
		return SessionAccessToken{}, errors.New("exchange session token: answer has no publicToken")
	}
	return SessionAccessToken{Token: extension.Secret(out.PublicToken), Expiry: out.Expiry}, nil
}
