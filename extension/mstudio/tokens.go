package mstudio

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
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
	in := struct {
		Secret string `json:"extensionInstanceSecret"`
	}{secret.Reveal()}
	var out struct {
		PublicToken string    `json:"publicToken"`
		Expiry      time.Time `json:"expiry"`
	}
	if !isUUID(instanceID) {
		return InstanceToken{}, fmt.Errorf("mint instance token: instance id %q is not a UUID", instanceID)
	}
	path := "/v2/extension-instances/" + url.PathEscape(instanceID) + "/tokens"
	cl := call{method: http.MethodPost, path: path, in: in, out: &out, sensitive: []string{secret.Reveal()}}
	if _, err := c.do(ctx, cl); err != nil {
		return InstanceToken{}, fmt.Errorf("mint instance token: %w", err)
	}
	if out.PublicToken == "" {
		return InstanceToken{}, fmt.Errorf("mint instance token: answer has no publicToken")
	}
	return InstanceToken{Token: extension.Secret(out.PublicToken), Expiry: out.Expiry}, nil
}
