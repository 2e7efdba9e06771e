package mstudiotest

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Registering instances (POST /internal/instances) makes the simulator know instances
// whose lifecycle webhooks someone else sends: the load generator (`bench webhooks
// --sim`) signs its own installs, and the backend's post-install jobs then find each
// instance and mint its tokens here instead of failing and retrying.

// RegisterSpec is one instance to register: installed, enabled unless Disabled, with a
// secret that works at once (its install webhook is the caller's to send).
type RegisterSpec struct {
	ID          string   `json:"id"`
	ContextKind string   `json:"contextKind,omitempty"` // default "project"
	ContextID   string   `json:"contextId,omitempty"`   // default: a new UUID
	Scopes      []string `json:"consentedScopes,omitempty"`
	VariantKey  string   `json:"variantKey,omitempty"`
	Disabled    bool     `json:"disabled,omitempty"`
	Secret      string   `json:"secret,omitempty"` // default: a new one, in the answer
}

// RegisterRequest is the body of POST /internal/instances.
type RegisterRequest struct {
	Instances []RegisterSpec `json:"instances"`
}

// The bounds of a registration: the load generator registers 1,000 instances by default.
const (
	maxRegister       = 10000
	maxRegisterScopes = 32
	maxRegisterText   = 200 // a secret, a scope, a variant key
)

// RegisterInstances registers instances all at once, or none: it refuses a request with
// an invalid spec, or an id that is installed already or named twice.
func (s *Server) RegisterInstances(specs []RegisterSpec) ([]Instance, error) {
	if len(specs) == 0 || len(specs) > maxRegister {
		return nil, errorf("want 1 to %d instances, got %d", maxRegister, len(specs))
	}
	now := s.now().UTC()
	out := make([]Instance, len(specs))
	seen := make(map[string]bool, len(specs))
	for i, spec := range specs {
		in := Instance{
			// Ids in lower case, as the platform writes them: one instance has one id.
			ID: strings.ToLower(spec.ID), ContextKind: spec.ContextKind, ContextID: strings.ToLower(spec.ContextID), Scopes: spec.Scopes,
			Disabled: spec.Disabled, VariantKey: spec.VariantKey, CreatedAt: now,
			Secret: spec.Secret, SecretUsableAt: now,
		}
		if in.ContextKind == "" {
			in.ContextKind = "project"
		}
		if in.ContextID == "" {
			in.ContextID = uuid.NewString()
		}
		if in.Scopes == nil {
			in.Scopes = slices.Clone(DefaultScopes)
		}
		if in.Secret == "" {
			in.Secret = randomToken(43)
		}
		switch {
		case !isUUID(in.ID) || !isUUID(in.ContextID):
			return nil, errorf("instance %d: the instance and context ids must be UUIDs", i)
		case in.ContextKind != "project" && in.ContextKind != "customer":
			return nil, errorf("instance %d: the context kind must be project or customer", i)
		case len(in.Scopes) > maxRegisterScopes:
			return nil, errorf("instance %d: at most %d scopes", i, maxRegisterScopes)
		case !plainText(in.Secret) || !plainText(in.VariantKey) && in.VariantKey != "":
			return nil, errorf("instance %d: the secret and the variant key must be printable, at most %d bytes", i, maxRegisterText)
		case seen[in.ID]:
			return nil, errorf("instance %s is named twice", in.ID)
		}
		for _, sc := range in.Scopes {
			if !plainText(sc) {
				return nil, errorf("instance %d: a scope must be printable, at most %d bytes", i, maxRegisterText)
			}
		}
		seen[in.ID] = true
		out[i] = in
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range out {
		if old, ok := s.instances[in.ID]; ok && !old.Removed {
			return nil, errorf("instance %s exists", in.ID)
		}
	}
	old := make(map[string]*Instance, len(out))
	for _, in := range out {
		old[in.ID] = s.instances[in.ID]
		s.instances[in.ID] = &in
	}
	if err := s.saveStateLocked(); err != nil {
		// None, as promised: what was there before comes back.
		for id, in := range old {
			if in == nil {
				delete(s.instances, id)
			} else {
				s.instances[id] = in
			}
		}
		return nil, &saveError{err}
	}
	return out, nil
}

// saveError is a failure to keep the simulator's state: the server's fault, not the
// request's.
type saveError struct{ err error }

func (e *saveError) Error() string { return "mstudiotest: keep the state: " + e.err.Error() }
func (e *saveError) Unwrap() error { return e.err }

// plainText: not empty, at most maxRegisterText bytes of printable UTF-8 without spaces.
func plainText(v string) bool {
	if v == "" || len(v) > maxRegisterText || !utf8.ValidString(v) {
		return false
	}
	return !strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == utf8.RuneError })
}

// postInstances serves POST /internal/instances with a RegisterRequest: 201 and the
// instances as registered, with their secrets; 400 with the platform's ValidationError
// body for a request it refuses, nothing registered.
func (s *Server) postInstances(w http.ResponseWriter, r *http.Request) {
	var req RegisterRequest
	if !decodeBody(w, r, &req) {
		return
	}
	ins, err := s.RegisterInstances(req.Instances)
	if se := (*saveError)(nil); errors.As(err, &se) {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "the simulator could not keep its state; see its log"})
		s.opts.Logger.Error("simulator: register instances", "error", err.Error())
		return
	}
	if err != nil {
		writeValidation(w, ValidationIssue{Message: strings.TrimPrefix(err.Error(), "mstudiotest: "), Path: "instances", Type: "invalid"})
		return
	}
	type registered struct {
		ID          string `json:"id"`
		ContextKind string `json:"contextKind"`
		ContextID   string `json:"contextId"`
		Secret      string `json:"secret"`
	}
	answer := make([]registered, len(ins))
	for i, in := range ins {
		answer[i] = registered{in.ID, in.ContextKind, in.ContextID, in.Secret}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"instances": answer})
}
