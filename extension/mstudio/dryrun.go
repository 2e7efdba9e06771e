package mstudio

import (
	"context"
	"fmt"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
)

// DryRunResult is the platform's answer to a dry run of a webhook: whether the
// extension's endpoint answered 2xx, the URL it called, and the endpoint's answer.
type DryRunResult struct {
	Successful   bool   `json:"successful"`
	RouteCalled  string `json:"routeCalled"`
	ResponseCode int    `json:"responseCode"`
	ResponseBody string `json:"responseBody"`
	ErrorMessage string `json:"errorMessage"`
}

// DryRunWebhook has the platform deliver one webhook of kind (a MarketplaceWebhookKind
// such as "extension-added-to-context") to the extension's configured webhook URL at once,
// signed like a real one, with ?dry-run=true&executing-user-id= appended (POST
// /v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/{id}/actions/dry-run/{kind};
// spec 3.8). The token is a contributor member's own API token; the instance may be made
// up. Nothing is stored anywhere, so the call may be repeated.
func (c *Client) DryRunWebhook(ctx context.Context, token extension.Secret, contributorID, extensionID, instanceID, kind string) (DryRunResult, error) {
	var out DryRunResult
	if token.IsZero() {
		return out, fmt.Errorf("dry-run webhook: %w: no contributor token", ErrInvalidArgument)
	}
	for _, id := range []struct{ what, v string }{{"contributor id", contributorID}, {"extension id", extensionID}, {"instance id", instanceID}} {
		if err := requireUUID(id.what, id.v); err != nil {
			return out, fmt.Errorf("dry-run webhook: %w", err)
		}
	}
	_, err := c.do(ctx, call{
		method: http.MethodPost,
		route:  "/v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/{extensionInstanceId}/actions/dry-run/{webhookKind}",
		params: []string{contributorID, extensionID, instanceID, kind}, token: token.Reveal(), out: &out, idempotent: true,
	})
	if err != nil {
		return DryRunResult{}, fmt.Errorf("dry-run webhook: %w", err)
	}
	return out, nil
}
