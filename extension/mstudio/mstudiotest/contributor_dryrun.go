package mstudiotest

import (
	"net/http"
	"strings"
)

// The contributor's dry run (spec 3.8): a member of the contributor asks the platform to
// call the extension's webhook URL at once, signed like a real delivery, with
// ?dry-run=true&executing-user-id= appended. `doctor --probe` uses it to have the
// platform itself reach an endpoint.

const contributorDryRunRoute = "POST /v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/{extensionInstanceId}/actions/dry-run/{webhookKind}"

// postContributorDryRun serves the contributor's dry run. The token is an API token of a
// member of the contributor: the simulator's contributor token (ContributorToken, the one
// reconcile uses too), or a test user's own token, where the users with access (Ada, Bob)
// are the contributor's members and the outsider is not. The instance may be made up, as
// on the platform.
func (s *Server) postContributorDryRun(w http.ResponseWriter, r *http.Request) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return
	}
	executingUser, member := g.userID, false
	switch {
	case g.contributorID != "":
		if !strings.EqualFold(g.contributorID, r.PathValue("contributorId")) {
			forbidden(w, "the token is not a member of this contributor")
			return
		}
		member = true
		for _, u := range s.Users() {
			if u.Access {
				executingUser = u.ID // a contributor token acts as one of its members
				break
			}
		}
	case g.userID != "" && g.instanceID == "":
		for _, u := range s.Users() {
			if u.ID == g.userID {
				member = u.Access
			}
		}
	}
	if !member {
		forbidden(w, "only members of the contributor may dry-run its extensions' webhooks")
		return
	}
	if !strings.EqualFold(r.PathValue("contributorId"), s.opts.ContributorID) ||
		!strings.EqualFold(r.PathValue("extensionId"), s.opts.ExtensionID) {
		writeError(w, http.StatusNotFound, "NotFound", "extension not found")
		return
	}
	kind := r.PathValue("webhookKind")
	k, known := lookupKind(kind)
	if !known || kind != k.dryRun {
		writeValidation(w, ValidationIssue{Message: "webhookKind must be a MarketplaceWebhookKind such as extension-added-to-context", Path: "webhookKind", Type: "enum"})
		return
	}
	instanceID := strings.ToLower(r.PathValue("extensionInstanceId"))
	if !isUUID(instanceID) {
		writeValidation(w, ValidationIssue{Message: "must be a UUID", Path: "extensionInstanceId", Type: "format"})
		return
	}
	res, err := s.DryRun(r.Context(), kind, instanceID, executingUser)
	if err != nil {
		writeTriggerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
