package mstudio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// The contributor's view of the platform: the instances of our extension, the log of
// webhook executions, and the action that resumes halted ones. These calls take a
// contributor's API token (a user token of a member of the contributor), never an
// instance token.

// ListedInstance is an extension instance as the platform lists it, with the fields the
// reconciliation reads beside Instance's.
type ListedInstance struct {
	Instance
	PendingInstallation    bool `json:"pendingInstallation"`
	PendingRemoval         bool `json:"pendingRemoval"`
	WebhookExecutionHalted bool `json:"webhookExecutionHalted"`
}

// Webhook execution states, as the platform's execution log names them.
const (
	ExecutionQueued     = "queued"
	ExecutionRunning    = "running"
	ExecutionHalted     = "halted"
	ExecutionFailed     = "failed"
	ExecutionSuccessful = "successful"
)

// WebhookExecution is one entry of the platform's webhook execution log
// (MarketplaceExtensionInstanceWebhookExecution).
type WebhookExecution struct {
	ID                  string `json:"id"`
	ExtensionInstanceID string `json:"extensionInstanceId"`
	ExtensionID         string `json:"extensionId"`
	ContributorID       string `json:"contributorId"`
	Kind                string `json:"kind"`  // extensionAddedToContext, instanceUpdated, secretRotated, instanceRemovedFromContext
	State               string `json:"state"` // one of the Execution… states
	Attempts            int    `json:"attempts"`
	// NextScheduledExecution is kept as sent (RFC 3339 expected): one odd date must not
	// make the whole log unreadable. See Next.
	NextScheduledExecution string `json:"nextScheduledExecution"`
}

// Next is when the platform tries again; zero when none is scheduled or the date is
// not one.
func (ex WebhookExecution) Next() time.Time {
	t, err := time.Parse(time.RFC3339Nano, ex.NextScheduledExecution)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// ExecutionFilter narrows the execution log; empty fields do not filter.
type ExecutionFilter struct {
	ExtensionID string
	InstanceID  string
	States      []string
}

// listPageSize is how many entries the client asks for per page of a list.
const listPageSize = 100

// maxListPages bounds a listing: a platform that ignored skip would otherwise send the
// first page forever. 1000 pages of 100 are far more than any extension has.
const maxListPages = 1000

// ErrContributorToken wraps the platform's refusal of the contributor token (401, 403),
// which retrying cannot mend.
var ErrContributorToken = errors.New("the platform refused the contributor token")

// ExtensionInstances lists the instances of the extension that the contributor's token
// sees (GET /v2/extension-instances?extensionId=…), every page. Whether a contributor
// token lists every instance of its own extension there, or only those in contexts its
// user can see, is UNVERIFIED; the simulator lists every one.
func (c *Client) ExtensionInstances(ctx context.Context, token extension.Secret, extensionID string) ([]ListedInstance, error) {
	if err := requireUUID("extension id", extensionID); err != nil {
		return nil, fmt.Errorf("list extension instances: %w", err)
	}
	var out []ListedInstance
	err := c.listPages(ctx, token, "/v2/extension-instances", nil, url.Values{"extensionId": {extensionID}},
		func(data []byte) error {
			page, err := DecodeInstanceList(data)
			out = append(out, page...)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("list extension instances: %w", err)
	}
	return out, nil
}

// WebhookExecutions reads the contributor's webhook execution log
// (GET /v2/contributors/{contributorId}/webhook-executions), every page, narrowed by the
// filter. The filter is applied again to what arrives, in case the platform ignores a
// parameter.
func (c *Client) WebhookExecutions(ctx context.Context, token extension.Secret, contributorID string, f ExecutionFilter) ([]WebhookExecution, error) {
	if err := requireUUID("contributor id", contributorID); err != nil {
		return nil, fmt.Errorf("list webhook executions: %w", err)
	}
	q := url.Values{}
	if f.ExtensionID != "" {
		q.Set("extensionId", f.ExtensionID)
	}
	if f.InstanceID != "" {
		q.Set("extensionInstanceId", f.InstanceID)
	}
	for _, s := range f.States {
		q.Add("state", s)
	}
	var out []WebhookExecution
	err := c.listPages(ctx, token, "/v2/contributors/{contributorId}/webhook-executions", []string{contributorID}, q,
		func(data []byte) error {
			page, err := DecodeExecutionList(data)
			for _, ex := range page {
				if (f.ExtensionID == "" || strings.EqualFold(ex.ExtensionID, f.ExtensionID)) &&
					(f.InstanceID == "" || strings.EqualFold(ex.ExtensionInstanceID, f.InstanceID)) &&
					(len(f.States) == 0 || slices.Contains(f.States, ex.State)) {
					out = append(out, ex)
				}
			}
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("list webhook executions: %w", err)
	}
	return out, nil
}

// ResumeWebhookExecution asks the platform to resume the instance's halted webhooks
// (POST /v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/
// {extensionInstanceId}/actions/resume-webhook-execution, 204). It is not repeated once
// it may have reached the platform: a resume sets the queued webhook going, and whether
// a second one is harmless is UNVERIFIED. The caller learns the outcome of a lost answer
// from the next look at the execution log.
func (c *Client) ResumeWebhookExecution(ctx context.Context, token extension.Secret, contributorID, extensionID, instanceID string) error {
	for _, id := range [][2]string{{"contributor id", contributorID}, {"extension id", extensionID}, {"instance id", instanceID}} {
		if err := requireUUID(id[0], id[1]); err != nil {
			return fmt.Errorf("resume webhook execution: %w", err)
		}
	}
	if token.IsZero() {
		return fmt.Errorf("resume webhook execution: %w: no contributor token", ErrInvalidArgument)
	}
	_, err := c.do(ctx, call{method: http.MethodPost,
		route:  "/v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/{extensionInstanceId}/actions/resume-webhook-execution",
		params: []string{contributorID, extensionID, instanceID}, token: token.Reveal()})
	if err != nil {
		return fmt.Errorf("resume webhook execution: %w", refusedToken(err))
	}
	return nil
}

// listPages reads every page of a list route with limit and skip, handing each answer's
// body to page. It stops at a short page, at the total the X-Pagination-TotalCount header
// names, or at maxListPages.
func (c *Client) listPages(ctx context.Context, token extension.Secret, route string, params []string, q url.Values, page func([]byte) error) error {
	if token.IsZero() {
		return fmt.Errorf("%w: no contributor token", ErrInvalidArgument)
	}
	skip := 0
	for range maxListPages {
		pq := url.Values{}
		for k, v := range q {
			pq[k] = v
		}
		pq.Set("limit", strconv.Itoa(listPageSize))
		pq.Set("skip", strconv.Itoa(skip))
		var raw json.RawMessage
		var header http.Header
		_, err := c.do(ctx, call{method: http.MethodGet, route: route, params: params, query: pq, token: token.Reveal(), out: &raw, header: &header})
		if err != nil {
			return refusedToken(err)
		}
		if err := page(raw); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		// The platform's skip counts every entry it sent, also those page dropped (an
		// entry without a usable id): counting only the kept ones would end the listing
		// early, and every instance after it would look like a missed removal.
		var entries []json.RawMessage
		if err := decodeList(raw, &entries); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		n := len(entries)
		skip += n
		// A page is short against the limit the platform applied, which it may have
		// capped below ours (X-Pagination-Limit says so).
		limit := listPageSize
		if l, err := strconv.Atoi(header.Get("X-Pagination-Limit")); err == nil && l > 0 && l < limit {
			limit = l
		}
		total, err := strconv.Atoi(header.Get("X-Pagination-TotalCount"))
		switch {
		case n == 0, n < limit, err == nil && skip >= total:
			return nil
		}
	}
	return fmt.Errorf("more than %d pages: the platform seems to ignore skip", maxListPages)
}

// refusedToken marks a 401 or 403 answer as ErrContributorToken.
func refusedToken(err error) error {
	var apiErr *Error
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", ErrContributorToken, err)
	}
	return err
}

// maxListEntries bounds one answer's entries, so a hostile answer cannot make us hold
// more than the body limit already allows in decoded form.
const maxListEntries = 10_000

// DecodeInstanceList decodes a page of the instance list: a JSON array, as the platform's
// spec says, or an object with the array under "items" (tolerated). Entries without an
// id are dropped; ids are lowercased.
func DecodeInstanceList(data []byte) ([]ListedInstance, error) {
	var list []ListedInstance
	if err := decodeList(data, &list); err != nil {
		return nil, err
	}
	out := list[:0]
	for _, in := range list {
		if in.ID = strings.ToLower(strings.TrimSpace(in.ID)); IsUUID(in.ID) {
			in.ExtensionID = strings.ToLower(in.ExtensionID)
			out = append(out, in)
		}
	}
	return out, nil
}

// DecodeExecutionList decodes a page of the execution log, tolerantly like
// DecodeInstanceList. Entries without an instance id are dropped; ids are lowercased.
func DecodeExecutionList(data []byte) ([]WebhookExecution, error) {
	var list []WebhookExecution
	if err := decodeList(data, &list); err != nil {
		return nil, err
	}
	out := list[:0]
	for _, ex := range list {
		ex.ExtensionInstanceID = strings.ToLower(strings.TrimSpace(ex.ExtensionInstanceID))
		if !IsUUID(ex.ExtensionInstanceID) {
			continue
		}
		ex.ExtensionID, ex.ContributorID = strings.ToLower(ex.ExtensionID), strings.ToLower(ex.ContributorID)
		ex.State = strings.ToLower(ex.State)
		out = append(out, ex)
	}
	return out, nil
}

// decodeList decodes an array, or an object's "items" array, into list.
func decodeList[T any](data []byte, list *[]T) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		var wrapped struct {
			Items *[]T `json:"items"`
		}
		if err := json.Unmarshal(data, &wrapped); err != nil {
			return err
		}
		if wrapped.Items == nil {
			return errors.New("want a JSON array (or an object with items)")
		}
		*list = *wrapped.Items
	} else if err := json.Unmarshal(data, list); err != nil {
		return err
	}
	if len(*list) > maxListEntries {
		return fmt.Errorf("%d entries in one page: more than %d", len(*list), maxListEntries)
	}
	return nil
}
