package mstudiotest

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// User is a test user of the simulated control panel. Their Token is a personal API token
// that authorises user-side calls, such as asking for a single sign-on key.
type User struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Token  string `json:"token"`
	Access bool   `json:"access"` // may act in every project and customer; false: in none
	// Owner makes a user with access the owner of every project and customer (role
	// owner in their memberships); otherwise a member (external, member). SetOwner.
	Owner bool `json:"owner"`
}

// defaultUsers are the simulator's test users: two with access to every context, and one
// outsider for "signed in as a user without access" paths. Ids are fixed, so scripts and
// docs can name them; tokens are new per start.
func defaultUsers() []*User {
	return []*User{
		{ID: "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01", Name: "Ada Admin", Email: "ada@example.test", Access: true},
		{ID: "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e02", Name: "Bob Builder", Email: "bob@example.test", Access: true},
		{ID: "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e03", Name: "Otto Outsider", Email: "otto@example.test", Access: false},
	}
}

// Users lists the test users, tokens included.
func (s *Server) Users() []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]User, len(s.users))
	for i, u := range s.users {
		out[i] = *u
	}
	return out
}

func (s *Server) userByID(id string) (*User, bool) {
	for _, u := range s.users {
		if u.ID == id {
			return u, true
		}
	}
	return nil, false
}

func (s *Server) listUsers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Users())
}

// grant is what an access token stands for.
type grant struct {
	userID        string    // set for user tokens
	instanceID    string    // set for instance tokens and for user tokens bound to an instance
	contributorID string    // set for a contributor's API tokens (lowercase)
	scopes        []string  // the scopes granted; nil for a user's own API token (all the user may do)
	expires       time.Time // zero: never
}

// issueToken mints an access token for g, valid for ttl.
func (s *Server) issueToken(g grant, ttl time.Duration) (string, time.Time) {
	token := randomToken(48)
	now := s.now()
	g.expires = now.Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants[token] = &g
	// Expired grants go now and then, so a long dev or bench run does not grow without
	// bound; every 256th issue pays for the sweep.
	if s.issued++; s.issued%256 == 0 {
		for t, old := range s.grants {
			if !old.expires.IsZero() && !now.Before(old.expires) {
				delete(s.grants, t)
			}
		}
	}
	return token, g.expires
}

// authenticate finds the grant of the request's token (X-Access-Token or Authorization:
// Bearer). Tokens of a disabled or removed instance stop working at once, as the
// platform's do.
func (s *Server) authenticate(r *http.Request) (grant, bool) {
	token := bearer(r)
	if token == "" {
		return grant{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[token]
	if !ok || (!g.expires.IsZero() && !s.now().Before(g.expires)) {
		return grant{}, false
	}
	if g.instanceID != "" {
		in, ok := s.instances[g.instanceID]
		if !ok || in.Removed || in.Disabled {
			return grant{}, false
		}
	}
	return *g, true
}

// mayRead reports whether g may read the context (kind, id) with the scope.
func (s *Server) mayRead(g grant, kind, id, scope string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.userID != "" {
		u, ok := s.userByID(g.userID)
		if !ok || !u.Access {
			return false
		}
		if g.instanceID == "" {
			// A user's own API token may do everything the user may; an OAuth2 token
			// only what its scopes allow.
			return g.scopes == nil || scope == "" || slices.Contains(g.scopes, scope)
		}
	}
	in, ok := s.instances[g.instanceID]
	if !ok {
		return false
	}
	// An instance reads its own context, and a project instance also the customer the
	// project belongs to (the customerId a GET of the project names).
	own := in.ContextKind == kind && in.ContextID == id
	parent := kind == "customer" && in.ContextKind == "project" && deriveID(in.ContextID, "customer") == id
	return (own || parent) && slices.Contains(g.scopes, scope)
}

// getUser serves GET /v2/users/{id} (also "self") to the user's own tokens: the profile
// a backend reads after single sign-on to learn the user's name and e-mail.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return
	}
	id := r.PathValue("id")
	if id == "self" {
		id = g.userID
	}
	if g.userID == "" || id != g.userID {
		forbidden(w, "a user may read only their own profile")
		return
	}
	s.mu.Lock()
	u, found := s.userByID(id)
	var profile map[string]any
	if found {
		first, last, _ := strings.Cut(u.Name, " ")
		profile = map[string]any{
			"userId": u.ID, "email": u.Email,
			"person": map[string]string{"firstName": first, "lastName": last, "title": ""},
		}
	}
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, "NotFound", "user not found")
		return
	}
	writeJSON(w, http.StatusOK, profile)
}

func unauthorized(w http.ResponseWriter) {
	writeError(w, http.StatusUnauthorized, "Unauthorized", "an access token is required (X-Access-Token or Authorization: Bearer)")
}

func forbidden(w http.ResponseWriter, message string) {
	writeError(w, http.StatusForbidden, "PermissionDenied", message)
}
