package mstudiotest

import (
	"crypto/subtle"
	"net/http"
)

// postInstanceToken serves POST /v2/extension-instances/{id}/tokens: the instance secret
// alone authenticates. A secret works only once the webhook that delivered it got a 2xx
// plus the activation delay; the previous one stops working at that 2xx.
func (s *Server) postInstanceToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Secret string `json:"extensionInstanceSecret"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Secret == "" {
		writeValidation(w, ValidationIssue{Message: "extensionInstanceSecret is required", Path: "extensionInstanceSecret", Type: "required"})
		return
	}
	in, ok := s.Instance(r.PathValue("id"))
	switch {
	case !ok || in.Removed:
		writeError(w, http.StatusNotFound, "NotFound", "extension instance not found")
		return
	case in.Disabled:
		forbidden(w, "the extension instance is disabled")
		return
	case in.Secret == "" || subtle.ConstantTimeCompare([]byte(body.Secret), []byte(in.Secret)) != 1:
		forbidden(w, "the extension instance secret is not valid")
		return
	case s.now().Before(in.SecretUsableAt):
		forbidden(w, "the extension instance secret is not active yet")
		return
	}
	token, expiry := s.issueToken(grant{instanceID: in.ID, scopes: in.Scopes}, s.opts.InstanceTokenTTL)
	writeJSON(w, http.StatusCreated, map[string]any{"publicToken": token, "expiry": expiry.UTC()})
}
