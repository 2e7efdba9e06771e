package mstudio

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
)

// Project is the part of a platform project the extension uses.
type Project struct {
	ID          string `json:"id"`
	ShortID     string `json:"shortId"`
	Description string `json:"description"` // the name users gave the project
	CustomerID  string `json:"customerId"`
}

// Customer is the part of a platform customer (an organisation in the control panel) the
// extension uses.
type Customer struct {
	ID             string `json:"customerId"`
	Name           string `json:"name"`
	CustomerNumber string `json:"customerNumber"`
}

// Project reads a project (GET /v2/projects/{id}); an instance token needs the scope
// project:read.
func (c *Client) Project(ctx context.Context, token extension.Secret, id string) (Project, error) {
	var p Project
	if err := requireUUID("project id", id); err != nil {
		return p, fmt.Errorf("get project: %w", err)
	}
	if err := c.get(ctx, token, "/v2/projects/{id}", id, &p); err != nil {
		return Project{}, fmt.Errorf("get project: %w", err)
	}
	if p.ID == "" {
		return Project{}, errors.New("get project: answer has no id")
	}
	return p, nil
}

// UpdateProjectDescription sets a project's description, the name its users know it by
// (PATCH /v2/projects/{id}); an instance token needs the scope project:write. Setting a
// value is idempotent, so the call is retried like a read.
func (c *Client) UpdateProjectDescription(ctx context.Context, token extension.Secret, id, description string) error {
	if err := requireUUID("project id", id); err != nil {
		return fmt.Errorf("update project description: %w", err)
	}
	if token.IsZero() {
		return fmt.Errorf("update project description: %w: no access token", ErrInvalidArgument)
	}
	_, err := c.do(ctx, call{method: http.MethodPatch, route: "/v2/projects/{id}", params: []string{id},
		token: token.Reveal(), in: map[string]string{"description": description}, idempotent: true})
	if err != nil {
		return fmt.Errorf("update project description: %w", err)
	}
	return nil
}

// Customer reads a customer (GET /v2/customers/{id}); an instance token needs the scope
// customer:read.
func (c *Client) Customer(ctx context.Context, token extension.Secret, id string) (Customer, error) {
	var cu Customer
	if err := requireUUID("customer id", id); err != nil {
		return cu, fmt.Errorf("get customer: %w", err)
	}
	if err := c.get(ctx, token, "/v2/customers/{id}", id, &cu); err != nil {
		return Customer{}, fmt.Errorf("get customer: %w", err)
	}
	if cu.ID == "" {
		return Customer{}, errors.New("get customer: answer has no customerId")
	}
	return cu, nil
}

// ContextName returns the name users know an instance's context by: a project's
// description or a customer's name. kind is extension.ContextProject or
// extension.ContextCustomer.
func (c *Client) ContextName(ctx context.Context, token extension.Secret, kind, id string) (string, error) {
	switch kind {
	case extension.ContextProject:
		p, err := c.Project(ctx, token, id)
		return p.Description, err
	case extension.ContextCustomer:
		cu, err := c.Customer(ctx, token, id)
		return cu.Name, err
	}
	return "", fmt.Errorf("context name: %w: context kind %q, want %q or %q",
		ErrInvalidArgument, kind, extension.ContextProject, extension.ContextCustomer)
}
