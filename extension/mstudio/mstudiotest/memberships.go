package mstudiotest

import (
	"net/http"
	"slices"
	"strings"
)

// Memberships: a test user with access to every context is a member of every project and
// customer; with Owner set, their owner. The platform's roles are, for projects, owner,
// emailadmin, external (and notset), for customers owner, member, accountant (and
// notset); a member here has external and member. What an instance-bound user token (one
// from single sign-on) may list is not documented: here, the memberships of the
// instance's own context with the scope that reads it.

const (
	roleOwner          = "owner"
	roleProjectMember  = "external"
	roleCustomerMember = "member"
)

// SetOwner makes a test user the owner of every context they have access to, or not.
func (s *Server) SetOwner(userID string, owner bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.userByID(userID)
	if !ok {
		return errorf("no test user %s", userID)
	}
	u.Owner = owner
	return nil
}

// membershipUser returns the user of a request made with a user's token and whether they
// may see the context (kind, id) with the scope; on false it has answered.
func (s *Server) membershipUser(w http.ResponseWriter, r *http.Request, kind, id, scope string) (User, bool) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return User{}, false
	}
	if g.userID == "" {
		forbidden(w, "memberships of self need a user's token")
		return User{}, false
	}
	if id != "" && !s.mayRead(g, kind, id, scope) {
		forbidden(w, "the user is no member of this "+kind+", or the token may not read it")
		return User{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, found := s.userByID(g.userID)
	if !found || !u.Access {
		forbidden(w, "the user is no member of any "+kind)
		return User{}, false
	}
	return *u, true
}

func membershipPerson(u User) (first, last string) {
	first, last, _ = strings.Cut(u.Name, " ")
	return first, last
}

// getOwnProjectMembership serves GET /v2/projects/{id}/memberships/self.
func (s *Server) getOwnProjectMembership(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !isUUID(id) {
		writeError(w, http.StatusNotFound, "NotFound", "project not found")
		return
	}
	u, ok := s.membershipUser(w, r, "project", id, "project:read")
	if !ok {
		return
	}
	role := roleProjectMember
	if u.Owner {
		role = roleOwner
	}
	first, last := membershipPerson(u)
	writeJSON(w, http.StatusOK, map[string]any{
		"id": deriveID(id+":"+u.ID, "project-membership"), "projectId": id, "userId": u.ID, "role": role,
		"inherited": false, "email": u.Email, "firstName": first, "lastName": last, "mfa": false,
	})
}

// listOwnCustomerMemberships serves GET /v2/customer-memberships[?role=…]: the user's
// memberships of the customers of the simulator's instances (an organisation's own, and
// the one each project belongs to); an instance-bound token sees its instance's only.
func (s *Server) listOwnCustomerMemberships(w http.ResponseWriter, r *http.Request) {
	u, ok := s.membershipUser(w, r, "customer", "", "")
	if !ok {
		return
	}
	g, _ := s.authenticate(r)
	if g.scopes != nil && !slices.Contains(g.scopes, "customer:read") {
		forbidden(w, "the token may not read customers (scope customer:read)")
		return
	}
	role := roleCustomerMember
	if u.Owner {
		role = roleOwner
	}
	if want := r.URL.Query().Get("role"); want != "" && want != role {
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	s.mu.Lock()
	var customers []string
	for _, in := range s.instances {
		if in.Removed || (g.instanceID != "" && in.ID != g.instanceID) {
			continue
		}
		c := in.ContextID
		if in.ContextKind != "customer" {
			c = deriveID(in.ContextID, "customer")
		}
		if !slices.Contains(customers, c) {
			customers = append(customers, c)
		}
	}
	s.mu.Unlock()
	slices.Sort(customers)
	first, last := membershipPerson(u)
	out := make([]map[string]any, 0, len(customers))
	for _, c := range customers {
		out = append(out, map[string]any{
			"id": deriveID(c+":"+u.ID, "customer-membership"), "customerId": c, "userId": u.ID, "role": role,
			"email": u.Email, "firstName": first, "lastName": last, "mfa": false,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
