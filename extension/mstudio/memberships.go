package mstudio

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
)

// RoleOwner is the platform's role of a project's or customer's owner (the
// MembershipProjectRoles owner, emailadmin, external, notset and the
// MembershipCustomerRoles owner, member, accountant, notset).
const RoleOwner = "owner"

// maxOwnedCustomers bounds the page of the user's owner memberships read: one page.
const maxOwnedCustomers = 1000

// ContextOwner reports whether the token's user owns the project or customer (kind is
// extension.ContextProject or extension.ContextCustomer): for a project, the role of their
// own membership (GET /v2/projects/{id}/memberships/self; an owner of the customer has an
// inherited owner membership); for a customer, whether it is among their memberships with
// the role owner (GET /v2/customer-memberships?role=owner). A user with no membership (403
// or 404 for a project) is no owner; any other failure is an error.
func (c *Client) ContextOwner(ctx context.Context, token extension.Secret, kind, id string) (bool, error) {
	if token.IsZero() {
		return false, fmt.Errorf("context owner: %w: no access token", ErrInvalidArgument)
	}
	if err := requireUUID(kind+" id", id); err != nil {
		return false, fmt.Errorf("context owner: %w", err)
	}
	switch kind {
	case extension.ContextProject:
		var m struct {
			ProjectID string `json:"projectId"`
			Role      string `json:"role"`
		}
		err := c.get(ctx, token, "/v2/projects/{id}/memberships/self", id, &m)
		var apiErr *Error
		switch {
		case errors.As(err, &apiErr) && (apiErr.Status == http.StatusForbidden || apiErr.Status == http.StatusNotFound):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("get own project membership: %w", err)
		}
		return strings.EqualFold(m.ProjectID, id) && m.Role == RoleOwner, nil
	case extension.ContextCustomer:
		var list []struct {
			CustomerID string `json:"customerId"`
			Role       string `json:"role"`
		}
		_, err := c.do(ctx, call{method: http.MethodGet, route: "/v2/customer-memberships", token: token.Reveal(), out: &list,
			query: url.Values{"role": {RoleOwner}, "limit": {fmt.Sprint(maxOwnedCustomers)}}})
		if err != nil {
			return false, fmt.Errorf("list own customer memberships: %w", err)
		}
		for _, m := range list {
			if strings.EqualFold(m.CustomerID, id) && m.Role == RoleOwner {
				return true, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("context owner: %w: context kind %q", ErrInvalidArgument, kind)
}
