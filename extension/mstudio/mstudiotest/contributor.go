package mstudiotest

// The contributor's routes: the list of the extension's instances, the webhook execution
// log, and the resume action, for a contributor's API token. The simulator issues one
// for its own contributor (ContributorToken); IssueContributorToken makes tokens of other
// contributors, which may see none of this extension.

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// IssueContributorToken makes an API token of a member of the contributor, which never
// expires. The simulator's own contributor already has one (ContributorToken).
func (s *Server) IssueContributorToken(contributorID string) string {
	token := randomToken(48)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[token] = &grant{contributorID: strings.ToLower(contributorID)}
	return token
}

// ContributorToken is the API token of a member of the simulated extension's contributor.
func (s *Server) ContributorToken() string { return s.opts.ContributorToken }

// contributorCounters count the resume action's requests.
type contributorCounters struct {
	resumeRequests atomic.Int64 // every request that reached the route
	resumes        atomic.Int64 // those that resumed a halted execution
}

// ResumeRequests counts the requests that reached the resume action, refused or not.
func (s *Server) ResumeRequests() int { return int(s.contrib.resumeRequests.Load()) }

// Resumes counts the resume actions that resumed a halted execution.
func (s *Server) Resumes() int { return int(s.contrib.resumes.Load()) }

func (s *Server) contributorRoutes() {
	s.handle("GET /v2/extension-instances", s.listInstances)
	s.handle("GET /v2/contributors/{contributorId}/webhook-executions", s.listWebhookExecutions)
	s.handle("POST /v2/contributors/{contributorId}/extensions/{extensionId}/extension-instances/{instanceId}/actions/resume-webhook-execution",
		s.postResumeWebhookExecution)
}

// contributorGrant authenticates a contributor's token for the contributor of the path
// (or any, when cid is empty): 401 without a valid token, 403 for a token of someone
// else. On failure it has answered.
func (s *Server) contributorGrant(w http.ResponseWriter, r *http.Request, cid string) (grant, bool) {
	g, ok := s.authenticate(r)
	switch {
	case !ok:
		unauthorized(w)
		return grant{}, false
	case g.contributorID == "":
		forbidden(w, "this route takes an API token of a member of the contributor")
		return grant{}, false
	case cid != "" && !strings.EqualFold(cid, g.contributorID):
		forbidden(w, "the token is not a member of this contributor")
		return grant{}, false
	}
	return g, true
}

// page reads limit, skip and page (1-based) of a list request; ok false means it has
// answered 400.
func page(w http.ResponseWriter, r *http.Request, n int) (from, to int, ok bool) {
	q := r.URL.Query()
	num := func(name string, def int) (int, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 {
			writeValidation(w, ValidationIssue{Message: name + " must be a number of at least 0", Path: name, Type: "invalid"})
			return 0, false
		}
		return i, true
	}
	limit, ok1 := num("limit", 1000)
	skip, ok2 := num("skip", 0)
	pg, ok3 := num("page", 0)
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, false
	}
	if limit == 0 {
		limit = 1000
	}
	if pg > 0 && q.Get("skip") == "" {
		skip = (pg - 1) * limit
	}
	h := w.Header()
	h.Set("X-Pagination-Limit", strconv.Itoa(limit))
	h.Set("X-Pagination-Skip", strconv.Itoa(skip))
	h.Set("X-Pagination-Page", strconv.Itoa(skip/limit+1))
	h.Set("X-Pagination-TotalCount", strconv.Itoa(n))
	from, to = min(skip, n), min(skip+limit, n)
	return from, to, true
}

// listInstances serves GET /v2/extension-instances: for a contributor's token the
// instances of its own extension (extensionId, when given, must be it); for a user's
// token those in contexts the user may act in. Filters: extensionId, context, contextId.
// Removed instances are listed while their removal webhook is still pending
// (pendingRemoval), as the platform keeps them until it was delivered.
func (s *Server) listInstances(w http.ResponseWriter, r *http.Request) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return
	}
	q := r.URL.Query()
	extensionID := strings.ToLower(q.Get("extensionId"))
	switch {
	case g.instanceID != "":
		forbidden(w, "an instance token cannot list extension instances")
		return
	case g.contributorID != "" && (g.contributorID != strings.ToLower(s.opts.ContributorID) ||
		(extensionID != "" && extensionID != strings.ToLower(s.opts.ExtensionID))):
		forbidden(w, "a contributor lists only the instances of its own extensions")
		return
	case g.userID != "":
		s.mu.Lock()
		u, found := s.userByID(g.userID)
		access := found && u.Access
		s.mu.Unlock()
		if !access {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
	}
	var list []map[string]any
	if extensionID == "" || extensionID == strings.ToLower(s.opts.ExtensionID) {
		for _, in := range s.Instances() {
			pendingRemoval := in.Removed && s.removalPending(in.ID)
			if (in.Removed && !pendingRemoval) ||
				(q.Get("context") != "" && q.Get("context") != in.ContextKind) ||
				(q.Get("contextId") != "" && !strings.EqualFold(q.Get("contextId"), in.ContextID)) {
				continue
			}
			body := s.instanceBody(in)
			body["pendingRemoval"] = pendingRemoval
			list = append(list, body)
		}
	}
	from, to, ok := page(w, r, len(list))
	if !ok {
		return
	}
	out := list[from:to]
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}

// removalPending reports whether the instance's removal webhook waits in its queue.
func (s *Server) removalPending(instanceID string) bool {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	q := sd.queues[instanceID]
	if q == nil {
		return false
	}
	return slices.ContainsFunc(q.items, func(ex *execution) bool {
		return ex.rec.Kind == CallInstanceRemovedFromContext && ex.rec.State != ExecutionSuccessful && !ex.dropped
	})
}

// listWebhookExecutions serves GET /v2/contributors/{contributorId}/webhook-executions in
// the platform's ExtensionInstanceWebhookExecution shape (without the simulator's own
// fields), oldest first, with the filters extensionId, extensionInstanceId and state
// (repeatable).
func (s *Server) listWebhookExecutions(w http.ResponseWriter, r *http.Request) {
	cid := r.PathValue("contributorId")
	if !isUUID(cid) {
		writeError(w, http.StatusNotFound, "NotFound", "contributor not found")
		return
	}
	if _, ok := s.contributorGrant(w, r, cid); !ok {
		return
	}
	q := r.URL.Query()
	states := q["state"]
	for _, st := range states {
		switch ExecutionState(st) {
		case ExecutionQueued, ExecutionRunning, ExecutionSuccessful, ExecutionFailed, ExecutionHalted:
		default:
			writeValidation(w, ValidationIssue{Message: "unknown state " + strconv.Quote(st), Path: "state", Type: "enum"})
			return
		}
	}
	var list []map[string]any
	for _, ex := range s.Executions(q.Get("extensionInstanceId")) {
		if !strings.EqualFold(ex.ContributorID, cid) ||
			(q.Get("extensionId") != "" && !strings.EqualFold(q.Get("extensionId"), ex.ExtensionID)) ||
			(len(states) > 0 && !slices.Contains(states, string(ex.State))) {
			continue
		}
		e := map[string]any{
			"id": ex.ID, "extensionInstanceId": ex.ExtensionInstanceID, "extensionId": ex.ExtensionID,
			"contributorId": ex.ContributorID, "kind": ex.Kind, "state": ex.State, "attempts": ex.Attempts,
		}
		if !ex.NextScheduledExecution.IsZero() {
			e["nextScheduledExecution"] = ex.NextScheduledExecution.UTC()
		}
		list = append(list, e)
	}
	from, to, ok := page(w, r, len(list))
	if !ok {
		return
	}
	out := list[from:to]
	if out == nil {
		out = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, out)
}

// postResumeWebhookExecution serves the resume action: the instance's halted execution
// is retried now, and its queue behind it. 204 on success; 404 for an unknown instance;
// 412 when nothing of the instance is halted (the platform's answer there is UNVERIFIED).
func (s *Server) postResumeWebhookExecution(w http.ResponseWriter, r *http.Request) {
	s.contrib.resumeRequests.Add(1)
	cid, eid, iid := r.PathValue("contributorId"), r.PathValue("extensionId"), r.PathValue("instanceId")
	if !isUUID(cid) || !isUUID(eid) || !isUUID(iid) {
		writeError(w, http.StatusNotFound, "NotFound", "not found")
		return
	}
	if _, ok := s.contributorGrant(w, r, cid); !ok {
		return
	}
	if !strings.EqualFold(eid, s.opts.ExtensionID) || !strings.EqualFold(cid, s.opts.ContributorID) {
		forbidden(w, "the extension does not belong to this contributor")
		return
	}
	iid = strings.ToLower(iid)
	if _, found := s.Instance(iid); !found {
		writeError(w, http.StatusNotFound, "NotFound", "extension instance not found")
		return
	}
	sd := s.sender
	sd.mu.Lock()
	var halted string
	if q := sd.queues[iid]; q != nil && len(q.items) > 0 && q.items[0].rec.State == ExecutionHalted {
		halted = q.items[0].rec.ID
	}
	sd.mu.Unlock()
	if halted == "" {
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "the webhook execution of this instance is not halted")
		return
	}
	if err := s.ResumeExecution(halted); err != nil {
		writeError(w, http.StatusPreconditionFailed, "PreconditionFailed", "the webhook execution of this instance is not halted")
		return
	}
	s.contrib.resumes.Add(1)
	w.WriteHeader(http.StatusNoContent)
}
