package mstudiotest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/google/uuid"
)

// Errors of the trigger API.
var (
	ErrUnknownCall     = errors.New("mstudiotest: unknown lifecycle call")
	ErrUnknownInstance = errors.New("mstudiotest: no such extension instance")
	ErrInstanceExists  = errors.New("mstudiotest: extension instance exists")
	ErrInvalidCall     = errors.New("mstudiotest: invalid call")
)

// CallRequest is the body of POST /internal/calls/{call}, shaped like the platform's
// local dev server's. Every field is optional; what an event does not use is ignored.
type CallRequest struct {
	ExtensionInstanceID string `json:"extensionInstanceId,omitempty"` // required but for extensionAddedToContext
	Context             string `json:"context,omitempty"`             // "project" (default) or "customer"; added only
	ContextAggregateID  string `json:"contextAggregateId,omitempty"`  // the project or customer id; added only
	// ConsentedScopes replaces the instance's scopes when not nil (added: default
	// DefaultScopes).
	ConsentedScopes           []string `json:"consentedScopes,omitempty"`
	ExtensionInstanceDisabled *bool    `json:"extensionInstanceDisabled,omitempty"`
	VariantKey                *string  `json:"variantKey,omitempty"`
	// ExtensionID and ContributorID put other ids into this event's meta, as the local
	// dev server allows: a way to test that a backend refuses foreign deliveries.
	ExtensionID   string `json:"extensionId,omitempty"`
	ContributorID string `json:"contributorId,omitempty"`
}

// CallResult is the answer to a call: the outcome of the event's first delivery
// attempt. When the attempt failed the event keeps being retried in the background.
type CallResult struct {
	StatusCode  int    `json:"statusCode"` // 0: no answer (see Error)
	Body        string `json:"body"`       // the receiver's answer, at most 64 KiB
	Successful  bool   `json:"successful"`
	InstanceID  string `json:"extensionInstanceId"`
	ExecutionID string `json:"executionId"`
	// Queued reports that earlier events of the instance are still pending, so this one
	// waits behind them and nothing was sent yet: StatusCode, Body and Successful are
	// empty. See Executions.
	Queued bool   `json:"queued,omitempty"`
	Error  string `json:"error,omitempty"` // why the attempt got no answer, or none was made
}

// Trigger changes an instance as the platform would (install, update, rotate its secret,
// remove it) and sends the lifecycle webhook that says so. It returns once the first
// attempt is answered; retries continue in the background. call is a trigger name such
// as "extensionAddedToContext" (any of the platform's names for the event works).
func (s *Server) Trigger(ctx context.Context, call string, req CallRequest) (CallResult, error) {
	k, ok := lookupKind(call)
	if !ok {
		return CallResult{}, fmt.Errorf("%w %q", ErrUnknownCall, call)
	}
	sd := s.sender
	sd.trigger.Lock()
	sd.mu.Lock()
	closed := sd.closed
	sd.mu.Unlock()
	if closed {
		sd.trigger.Unlock()
		return CallResult{}, ErrClosed
	}
	ev, err := s.applyCall(k, req)
	var (
		ex     *execution
		first  <-chan attemptResult
		queued bool
	)
	if err == nil {
		ex, first, queued, err = sd.enqueue(ev)
	}
	sd.trigger.Unlock()
	if err != nil {
		return CallResult{}, err
	}
	out := CallResult{InstanceID: ev.instanceID, ExecutionID: ex.rec.ID, Queued: queued}
	if queued {
		return out, nil
	}
	select {
	case res := <-first:
		out.StatusCode, out.Body, out.Successful = res.status, res.body, res.successful()
		if res.err != nil && res.status == 0 {
			out.Error = res.err.Error()
		}
		return out, nil
	case <-ctx.Done():
		return out, ctx.Err() // the event stays queued
	case <-sd.ctx.Done():
		return out, ErrClosed
	}
}

// applyCall makes the change a call stands for and returns the event that reports it.
func (s *Server) applyCall(k lifecycleKind, req CallRequest) (event, error) {
	var (
		in  Instance
		err error
	)
	id := req.ExtensionInstanceID
	if id != "" && !isUUID(id) {
		return event{}, fmt.Errorf("%w: extensionInstanceId must be a UUID", ErrInvalidCall)
	}
	if k.call == CallExtensionAddedToContext {
		in, err = s.install(id, req)
	} else {
		if id == "" {
			return event{}, fmt.Errorf("%w: extensionInstanceId is required", ErrInvalidCall)
		}
		if old, ok := s.Instance(id); !ok || old.Removed {
			return event{}, fmt.Errorf("%w: %s", ErrUnknownInstance, id)
		}
		in, err = s.UpdateInstance(id, func(in *Instance) {
			switch k.call {
			case CallInstanceUpdated:
				if req.ConsentedScopes != nil {
					in.Scopes = slices.Clone(req.ConsentedScopes)
				}
				if req.ExtensionInstanceDisabled != nil {
					in.Disabled = *req.ExtensionInstanceDisabled
				}
				if req.VariantKey != nil {
					in.VariantKey = *req.VariantKey
				}
			case CallInstanceRemovedFromContext:
				in.Removed = true
			}
		})
		if err == nil && k.call == CallSecretRotated {
			in.PendingSecret, err = s.NewPendingSecret(id)
		}
	}
	if err != nil {
		return event{}, err
	}
	ev := s.eventOf(k, in)
	if k.secret {
		ev.secret = in.PendingSecret
	}
	if req.ExtensionID != "" {
		ev.extensionID = req.ExtensionID
	}
	if req.ContributorID != "" {
		ev.contributorID = req.ContributorID
	}
	return ev, nil
}

// install creates the instance of an extensionAddedToContext call.
func (s *Server) install(id string, req CallRequest) (Instance, error) {
	switch {
	case req.Context != "" && req.Context != "project" && req.Context != "customer":
		return Instance{}, fmt.Errorf("%w: context must be project or customer", ErrInvalidCall)
	case req.ContextAggregateID != "" && !isUUID(req.ContextAggregateID):
		return Instance{}, fmt.Errorf("%w: contextAggregateId must be a UUID", ErrInvalidCall)
	}
	if old, ok := s.Instance(id); ok && !old.Removed {
		return Instance{}, fmt.Errorf("%w: %s", ErrInstanceExists, id)
	}
	spec := InstanceSpec{ID: id, ContextKind: req.Context, ContextID: req.ContextAggregateID, Scopes: slices.Clone(req.ConsentedScopes)}
	if req.ExtensionInstanceDisabled != nil {
		spec.Disabled = *req.ExtensionInstanceDisabled
	}
	if req.VariantKey != nil {
		spec.VariantKey = *req.VariantKey
	}
	return s.CreateInstance(spec)
}

// eventOf is the event of kind k about the instance as it is now, without secret.
func (s *Server) eventOf(k lifecycleKind, in Instance) event {
	return event{
		kind: k, instanceID: in.ID, extensionID: s.opts.ExtensionID, contributorID: s.opts.ContributorID,
		contextKind: in.ContextKind, contextID: in.ContextID, scopes: slices.Clone(in.Scopes),
		enabled: !in.Disabled, variantKey: in.VariantKey,
	}
}

// DryRunResult is the answer of a dry run, in the shape of the platform's.
type DryRunResult struct {
	Successful   bool   `json:"successful"`
	RouteCalled  string `json:"routeCalled"`
	ResponseCode int    `json:"responseCode,omitempty"`
	ResponseBody string `json:"responseBody,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// DryRun delivers one webhook of the kind at once, as the platform's dry run does: to the
// webhook URL with dry-run=true&executing-user-id= appended, signed like a real one,
// outside the instance's queue, with a random secret that never works, changing nothing.
// The instance may be unknown (then its context is made up); userID defaults to the
// first test user.
func (s *Server) DryRun(ctx context.Context, kind, instanceID, userID string) (DryRunResult, error) {
	k, ok := lookupKind(kind)
	if !ok {
		return DryRunResult{}, fmt.Errorf("%w %q", ErrUnknownCall, kind)
	}
	if instanceID == "" {
		instanceID = uuid.NewString()
	}
	if users := s.Users(); userID == "" && len(users) > 0 {
		userID = users[0].ID
	}
	if !isUUID(instanceID) || !isUUID(userID) {
		return DryRunResult{}, fmt.Errorf("%w: instance and user ids must be UUIDs", ErrInvalidCall)
	}
	in, ok := s.Instance(instanceID)
	if !ok {
		in = Instance{ID: instanceID, ContextKind: "project", ContextID: uuid.NewString(), Scopes: DefaultScopes}
	}
	ev := s.eventOf(k, in)
	ev.dryRunUser = userID
	if k.secret {
		ev.secret = randomToken(43)
	}
	res := s.sender.deliver(ctx, ev)
	out := DryRunResult{Successful: res.successful(), RouteCalled: s.sender.target(ev), ResponseCode: res.status, ResponseBody: res.body}
	if res.err != nil && res.status == 0 {
		out.ErrorMessage = res.err.Error()
	}
	return out, nil
}

// postCall serves POST /internal/calls/{call}.
func (s *Server) postCall(w http.ResponseWriter, r *http.Request) {
	var req CallRequest
	// The local dev server's callers post {} or nothing at all for "all defaults".
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeValidation(w, ValidationIssue{Message: "body is not a JSON call: " + err.Error(), Path: "", Type: "invalid"})
		return
	}
	res, err := s.Trigger(r.Context(), r.PathValue("call"), req)
	if err != nil {
		writeTriggerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// postDryRun serves POST /internal/dry-run/{kind}?instanceId=&userId=.
func (s *Server) postDryRun(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	res, err := s.DryRun(r.Context(), r.PathValue("kind"), q.Get("instanceId"), q.Get("userId"))
	if err != nil {
		writeTriggerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func writeTriggerError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrUnknownCall), errors.Is(err, ErrUnknownInstance):
		writeError(w, http.StatusNotFound, "NotFound", err.Error())
	case errors.Is(err, ErrInstanceExists):
		writeError(w, http.StatusConflict, "Conflict", err.Error())
	case errors.Is(err, ErrInvalidCall):
		writeValidation(w, ValidationIssue{Message: err.Error(), Path: "", Type: "invalid"})
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "Unavailable", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
	}
}
