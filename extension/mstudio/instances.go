package mstudio

import (
	"context"
	"errors"
	"fmt"

	"github.com/extension-backend/extension-backend/extension"
)

// Instance is the part of the platform's extension instance resource the backend uses.
type Instance struct {
	ID              string             `json:"id"`
	ExtensionID     string             `json:"extensionId"`
	Context         AggregateReference `json:"aggregateReference"`
	ConsentedScopes []string           `json:"consentedScopes"`
	Disabled        bool               `json:"disabled"` // the inverse of the webhooks' state.enabled
	VariantKey      string             `json:"variantKey"`
}

// AggregateReference names the context an instance is installed in.
type AggregateReference struct {
	Aggregate string `json:"aggregate"` // "project" or "customer"
	Domain    string `json:"domain"`
	ID        string `json:"id"`
}

// Instance reads an extension instance (GET /v2/extension-instances/{id}), with the
// instance's own token or a user's.
func (c *Client) Instance(ctx context.Context, token extension.Secret, id string) (Instance, error) {
	var in Instance
	if err := requireUUID("instance id", id); err != nil {
		return in, fmt.Errorf("get extension instance: %w", err)
	}
	if err := c.get(ctx, token, "/v2/extension-instances/{id}", id, &in); err != nil {
		return Instance{}, fmt.Errorf("get extension instance: %w", err)
	}
	if in.ID == "" {
		return Instance{}, errors.New("get extension instance: answer has no id")
	}
	return in, nil
}
