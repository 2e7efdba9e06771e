package mstudiotest

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Instance is an extension instance as the simulated platform keeps it.
type Instance struct {
	ID            string    `json:"id"`
	ContextKind   string    `json:"contextKind"` // "project" or "customer"
	ContextID     string    `json:"contextId"`
	Scopes        []string  `json:"consentedScopes"`
	Disabled      bool      `json:"disabled"`
	Removed       bool      `json:"removed"`
	VariantKey    string    `json:"variantKey,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	Secret        string    `json:"secret"`        // the current instance secret
	PendingSecret string    `json:"pendingSecret"` // sent in a webhook that has not succeeded yet
	// SecretUsableAt is when Secret starts to work: the 2xx of its webhook plus the
	// activation delay. Zero while its webhook has not succeeded.
	SecretUsableAt time.Time `json:"secretUsableAt"`
}

// InstanceSpec describes a new instance; empty fields get plausible values.
type InstanceSpec struct {
	ID          string
	ContextKind string // default "project"
	ContextID   string
	Scopes      []string // default project:read, customer:read
	Disabled    bool
	VariantKey  string
}

// DefaultScopes are the scopes an instance consents to unless told otherwise.
var DefaultScopes = []string{"project:read", "customer:read"}

// CreateInstance registers a new instance with a fresh secret, pending until a webhook
// carrying it succeeds. It does not send anything: see Trigger.
func (s *Server) CreateInstance(spec InstanceSpec) (Instance, error) {
	in := &Instance{
		ID: spec.ID, ContextKind: spec.ContextKind, ContextID: spec.ContextID,
		Scopes: spec.Scopes, Disabled: spec.Disabled, VariantKey: spec.VariantKey,
		CreatedAt: s.now().UTC(), PendingSecret: randomToken(43),
	}
	if in.ID == "" {
		in.ID = uuid.NewString()
	}
	if in.ContextKind == "" {
		in.ContextKind = "project"
	}
	if in.ContextKind != "project" && in.ContextKind != "customer" {
		return Instance{}, errorf("context %q: want project or customer", in.ContextKind)
	}
	if in.ContextID == "" {
		in.ContextID = uuid.NewString()
	}
	if in.Scopes == nil {
		in.Scopes = slices.Clone(DefaultScopes)
	}
	if !isUUID(in.ID) || !isUUID(in.ContextID) {
		return Instance{}, errorf("instance and context ids must be UUIDs")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.instances[in.ID]; ok && !old.Removed {
		return Instance{}, errorf("instance %s exists", in.ID)
	}
	s.instances[in.ID] = in
	return *in, s.saveStateLocked()
}

// Instance returns a copy of the instance with the id.
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return *in, true
}

// Instances lists every instance, removed ones included, oldest first.
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, *in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// UpdateInstance changes an instance under the simulator's lock and saves the state.
func (s *Server) UpdateInstance(id string, change func(*Instance)) (Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[id]
	if !ok {
		return Instance{}, errorf("no instance %s", id)
	}
	change(in)
	if in.Disabled || in.Removed {
		// Every token of the instance dies with it, and stays dead if it is enabled again.
		for token, g := range s.grants {
			if g.instanceID == id {
				delete(s.grants, token)
			}
		}
	}
	return *in, s.saveStateLocked()
}

// NewPendingSecret gives the instance a new secret, pending until a SecretRotated
// webhook carrying it succeeds; the old one works until then.
func (s *Server) NewPendingSecret(id string) (string, error) {
	secret := randomToken(43)
	_, err := s.UpdateInstance(id, func(in *Instance) { in.PendingSecret = secret })
	return secret, err
}

// secretDelivered is called when a webhook carrying secret got a 2xx: the secret
// replaces the old one, which stops working at once, and works itself after the
// activation delay.
func (s *Server) secretDelivered(id, secret string) {
	_, err := s.UpdateInstance(id, func(in *Instance) {
		if secret == "" || secret != in.PendingSecret {
			return
		}
		in.Secret, in.PendingSecret = secret, ""
		in.SecretUsableAt = s.now().Add(max(s.opts.SecretActivationDelay, 0)).UTC()
	})
	if err != nil {
		s.opts.Logger.Warn("simulator: activate secret", "instance_id", id, "error", err.Error())
	}
}

type stateFile struct {
	Instances []Instance `json:"instances"`
}

func (s *Server) loadState() error {
	if s.opts.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return errorf("state file: %v", err)
	}
	var st stateFile
	if err := json.Unmarshal(data, &st); err != nil {
		return errorf("state file %s: %v", s.opts.StateFile, err)
	}
	for i := range st.Instances {
		in := st.Instances[i]
		s.instances[in.ID] = &in
	}
	return nil
}

// saveStateLocked writes the instances to the state file; s.mu must be held.
func (s *Server) saveStateLocked() error {
	if s.opts.StateFile == "" {
		return nil
	}
	st := stateFile{}
	for _, in := range s.instances {
		st.Instances = append(st.Instances, *in)
	}
	sort.Slice(st.Instances, func(i, j int) bool { return st.Instances[i].CreatedAt.Before(st.Instances[j].CreatedAt) })
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return errorf("state file: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.opts.StateFile), 0o700); err != nil {
		return errorf("state file: %v", err)
	}
	return writeFileAtomic(s.opts.StateFile, data)
}

// writeFileAtomic replaces a file through a rename, so a crash never leaves half of it.
func writeFileAtomic(file string, data []byte) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return errorf("write %s: %v", file, err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return errorf("write %s: %v", file, err)
	}
	return nil
}

// getInstance serves GET /v2/extension-instances/{id} in the platform's
// MarketplaceExtensionInstance shape, to the instance's own token or a user with access.
func (s *Server) getInstance(w http.ResponseWriter, r *http.Request) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return
	}
	id := r.PathValue("id")
	in, found := s.Instance(id)
	if !found || in.Removed {
		writeError(w, http.StatusNotFound, "NotFound", "extension instance not found")
		return
	}
	// An instance reads itself; a user needs access to the instance's context, whatever
	// instance their token is bound to.
	allowed := g.userID == "" && g.instanceID == id
	if g.contributorID != "" { // the contributor reads the instances of its extensions
		allowed = strings.EqualFold(g.contributorID, s.opts.ContributorID)
	}
	if g.userID != "" {
		allowed = s.mayRead(grant{userID: g.userID}, in.ContextKind, in.ContextID, "")
	}
	if !allowed {
		forbidden(w, "no access to this extension instance")
		return
	}
	writeJSON(w, http.StatusOK, s.instanceBody(in))
}

// instanceBody is the instance in the platform's MarketplaceExtensionInstance shape.
// pendingInstallation holds while no webhook carrying its first secret succeeded.
func (s *Server) instanceBody(in Instance) map[string]any {
	halted, next := s.WebhookStatus(in.ID)
	body := map[string]any{
		"id":                     in.ID,
		"extensionId":            s.opts.ExtensionID,
		"extensionName":          "Simulated Extension",
		"contributorId":          s.opts.ContributorID,
		"contributorName":        "Simulated Contributor",
		"aggregateReference":     map[string]string{"aggregate": in.ContextKind, "domain": aggregateDomain(in.ContextKind), "id": in.ContextID},
		"consentedScopes":        in.Scopes,
		"disabled":               in.Disabled,
		"pendingInstallation":    in.Secret == "",
		"pendingRemoval":         false,
		"webhookExecutionHalted": halted,
		"chargeability":          map[string]any{"isChargeable": false, "reasons": map[string]bool{"isNonChargeableCustomer": false, "isOwnExtension": true}},
		"createdAt":              in.CreatedAt,
		"variantKey":             in.VariantKey,
	}
	if !next.IsZero() {
		body["nextScheduledWebhookExecution"] = next.UTC()
	}
	return body
}

func aggregateDomain(kind string) string {
	if kind == "customer" {
		return "customer"
	}
	return "project"
}

// getProject serves GET /v2/projects/{id}: a plausible project, for a token with
// project:read on it (or a user with access).
func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authorizeContext(w, r, "project", id, "project:read") {
		return
	}
	s.mu.Lock()
	description, ok := s.descriptions[id]
	s.mu.Unlock()
	if !ok {
		description = "Project " + id[:8]
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":          id,
		"shortId":     "p-" + id[:6],
		"description": description,
		"customerId":  deriveID(id, "customer"),
		"enabled":     true,
		"readiness":   "ready",
		"createdAt":   time.Date(2024, 1, 15, 9, 30, 0, 0, time.UTC),
	})
}

// maxProjectDescription bounds a project's description, as the platform's form does.
const maxProjectDescription = 255

// patchProject serves PATCH /v2/projects/{id} with {"description": "…"}: the project's
// name as users see it. An instance token needs the scope project:write on the project;
// the answer is 204, as the platform's.
func (s *Server) patchProject(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authorizeContext(w, r, "project", id, "project:write") {
		return
	}
	var body struct {
		Description *string `json:"description"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil || body.Description == nil {
		writeError(w, http.StatusBadRequest, "ValidationError", "the body must be {\"description\": \"…\"}")
		return
	}
	d := strings.TrimSpace(*body.Description)
	if d == "" || utf8.RuneCountInString(d) > maxProjectDescription || !utf8.ValidString(d) {
		writeError(w, http.StatusBadRequest, "ValidationError", "description: 1 to 255 characters")
		return
	}
	s.mu.Lock()
	s.descriptions[id] = d
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// getCustomer serves GET /v2/customers/{id} like getProject does projects.
func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authorizeContext(w, r, "customer", id, "customer:read") {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"customerId":     id,
		"customerNumber": "C-" + id[:6],
		"name":           "Organisation " + id[:8],
		"createdAt":      time.Date(2023, 6, 1, 8, 0, 0, 0, time.UTC),
	})
}

func (s *Server) authorizeContext(w http.ResponseWriter, r *http.Request, kind, id, scope string) bool {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return false
	}
	if !isUUID(id) {
		writeError(w, http.StatusNotFound, "NotFound", kind+" not found")
		return false
	}
	if !s.mayRead(g, kind, id, scope) {
		forbidden(w, "the token may not read this "+kind+" (scope "+scope+" on it is needed)")
		return false
	}
	return true
}

// deriveID makes a stable UUID from another, so a project always names the same customer.
func deriveID(id, what string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(what+":"+id)).String()
}
