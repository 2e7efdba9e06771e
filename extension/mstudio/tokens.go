package mstudio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// InstanceToken is a user-unbound access token of one extension instance.
type InstanceToken struct {
	Token  extension.Secret
	Expiry time.Time
}

// InstanceToken mints an access token for an extension instance with its instance secret
// (POST /v2/extension-instances/{id}/tokens). The secret alone authenticates the call.
func (c *Client) InstanceToken(ctx context.Context, instanceID string, secret extension.Secret) (InstanceToken, error) {
	if err := requireUUID("instance id", instanceID); err != nil {
		return InstanceToken{}, fmt.Errorf("mint instance token: %w", err)
	}
	in := struct {
		Secret string `json:"extensionInstanceSecret"`
	}{secret.Reveal()}
	var out struct {
		PublicToken string    `json:"publicToken"`
		Expiry      time.Time `json:"expiry"`
	}
	cl := call{
		method: http.MethodPost, route: "/v2/extension-instances/{id}/tokens", params: []string{instanceID},
		in: in, out: &out, sensitive: []string{secret.Reveal()},
		// Minting twice only leaves an unused token behind, so a mint may be repeated
		// like a GET.
		idempotent: true,
	}
	if _, err := c.do(ctx, cl); err != nil {
		return InstanceToken{}, fmt.Errorf("mint instance token: %w", err)
	}
	if out.PublicToken == "" {
		return InstanceToken{}, errors.New("mint instance token: answer has no publicToken")
	}
	return InstanceToken{Token: extension.Secret(out.PublicToken), Expiry: out.Expiry}, nil
}
