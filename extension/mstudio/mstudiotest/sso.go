package mstudiotest

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Lifetimes the platform does not publish (UNVERIFIED); these are the simulator's picks.
const (
	// refreshTokenTTL bounds a refresh token that is never used. Long, as refresh tokens
	// usually are, so a developer's dev session survives a night.
	refreshTokenTTL = 30 * 24 * time.Hour
	// oauthCodeTTL is an OAuth2 authorization code's lifetime; RFC 6749 recommends at
	// most ten minutes, a minute is plenty for a redirect.
	oauthCodeTTL = 60 * time.Second
)

// Refresh token kinds: a token from the ATReK flow renews at PUT /v2/users/self/sessions,
// one from OAuth2 at the token endpoint, and neither works at the other's endpoint.
const (
	refreshSession = "session"
	refreshOAuth   = "oauth"
)

// ssoState holds single sign-on keys, refresh tokens, OAuth2 codes and sessions. Its
// lock is taken before Server.mu, never while holding it.
type ssoState struct {
	mu      sync.Mutex
	keys    map[string]*retrievalKey // ATReK → what it may be exchanged for
	refresh map[string]*refreshEntry // refresh token → the grant it renews
	codes   map[string]*oauthCode    // OAuth2 authorization code → its binding
	pruned  time.Time                // when pruneLocked last looked through the maps
}

func newSSOState() *ssoState {
	return &ssoState{
		keys:    map[string]*retrievalKey{},
		refresh: map[string]*refreshEntry{},
		codes:   map[string]*oauthCode{},
	}
}

// refreshEntry is a live refresh token. Using it deletes it, so a rotated token is
// simply unknown afterwards.
type refreshEntry struct {
	kind     string
	grant    grant // the access it renews; expires is ignored
	clientID string
	family   *tokenFamily
	expires  time.Time
}

// tokenFamily collects the access tokens descended from one OAuth2 code, so all of them
// can be revoked when the code is presented a second time (RFC 6749 section 4.1.2).
type tokenFamily struct {
	revoked bool
	access  []string
}

// ssoRoutes registers ATReK, refresh, session-token and OAuth2 routes.
func (s *Server) ssoRoutes() {
	s.handle("POST /v2/extension-instances/{id}/actions/create-access-token-retrieval-key", s.postCreateRetrievalKey)
	s.handle("POST /v2/authenticate-token-retrieval-key", s.postAuthenticateRetrievalKey)
	s.handle("PUT /v2/users/self/sessions", s.putUserSession)

	s.handle("POST /v2/extension-instances/{id}/sessions/{sessionId}", s.postSessionToken)
	s.handle("POST /v2/authenticate-session-token", s.postAuthenticateSessionToken)

	s.handle("GET /v2/oauth2/authorize", s.getOAuthAuthorize)
	s.handle("POST /v2/oauth2/token", s.postOAuthToken)
}

// refusal is a request turned down with the platform's {type, message} body, returned by the Go API
// (NewRetrievalKey, NewSessionToken) and answered as is by the HTTP routes.
type refusal struct {
	status  int
	typ     string
	message string
}

func (e *refusal) Error() string { return "mstudiotest: " + e.message }

func refuseNotFound(message string) error {
	return &refusal{http.StatusNotFound, "NotFound", message}
}

func refuseForbidden(message string) error {
	return &refusal{http.StatusForbidden, "PermissionDenied", message}
}

// writeRefusal answers err with its status and body; anything unexpected is a 500.
func writeRefusal(w http.ResponseWriter, err error) {
	var ae *refusal
	if errors.As(err, &ae) {
		writeError(w, ae.status, ae.typ, ae.message)
		return
	}
	writeError(w, http.StatusInternalServerError, "InternalError", "internal error")
}

// usableInstance returns the instance when a user may act in it: it exists, is neither
// removed nor disabled, and the user exists and has access to its context.
func (s *Server) usableInstance(instanceID, userID string) (Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in, ok := s.instances[instanceID]
	switch {
	case !ok || in.Removed:
		return Instance{}, refuseNotFound("extension instance not found")
	case in.Disabled:
		return Instance{}, refuseForbidden("the extension instance is disabled")
	}
	u, ok := s.userByID(userID)
	if !ok || !u.Access {
		return Instance{}, refuseForbidden("the user has no access to the extension instance's " + in.ContextKind)
	}
	return *in, nil
}

// userGrant returns the grant of a request made with a user's own token (a personal API
// token or an OAuth2 access token): one that stands for a user and is bound to no
// instance. The control panel's actions take nothing else.
func (s *Server) userGrant(w http.ResponseWriter, r *http.Request) (grant, bool) {
	g, ok := s.authenticate(r)
	if !ok {
		unauthorized(w)
		return grant{}, false
	}
	if g.userID == "" || g.instanceID != "" {
		forbidden(w, "this action needs a user's own access token")
		return grant{}, false
	}
	return g, true
}

// newRefreshLocked stores a new refresh token for g; st.mu must be held.
func (st *ssoState) newRefreshLocked(now time.Time, kind, clientID string, g grant, family *tokenFamily) string {
	st.pruneLocked(now)
	token := randomToken(48)
	g.expires = time.Time{}
	st.refresh[token] = &refreshEntry{kind: kind, grant: g, clientID: clientID, family: family, expires: now.Add(refreshTokenTTL)}
	return token
}

// takeRefreshLocked consumes a refresh token of the kind: whatever happens next, the
// token never works again, which is the rotation the platform documents ("the used one
// in this call is no longer valid"). st.mu must be held.
func (st *ssoState) takeRefreshLocked(now time.Time, kind, token string) (*refreshEntry, bool) {
	e, ok := st.refresh[token]
	if !ok || e.kind != kind {
		return nil, false
	}
	delete(st.refresh, token)
	if !now.Before(e.expires) || (e.family != nil && e.family.revoked) {
		return nil, false
	}
	return e, true
}

// pruneEvery is how often pruneLocked looks through the maps at most. Every lookup checks
// the time itself, so an entry kept a little past its expiry works no longer; looking
// through every key and refresh token on every key, token and code made each sign-in
// cost in proportion to all the sign-ins before it (refresh tokens live 30 days).
const pruneEvery = 10 * time.Second

// pruneLocked forgets what has expired, so a long-running simulator does not grow: at
// most once per pruneEvery of the simulator's clock.
func (st *ssoState) pruneLocked(now time.Time) {
	if now.Sub(st.pruned) < pruneEvery && !now.Before(st.pruned) {
		return
	}
	st.pruned = now
	for k, v := range st.keys {
		if !now.Before(v.expires) {
			delete(st.keys, k)
		}
	}
	for k, v := range st.refresh {
		if !now.Before(v.expires) {
			delete(st.refresh, k)
		}
	}
	for k, v := range st.codes {
		if !now.Before(v.expires) {
			delete(st.codes, k)
		}
	}
}

// putUserSession serves PUT /v2/users/self/sessions: a refresh token from the ATReK flow
// buys a new access token with the same user, instance binding and scopes, and a new
// refresh token. The used one stops working, even if this answer is lost.
//
// An X-Access-Token header is accepted and ignored: mittwald's docs send the (possibly
// expired) current token, its Go proxy sends none (UNVERIFIED which the platform needs).
// A refresh token that is unknown, used or expired answers 400 {type, message} as the
// spec lists for this route.
func (s *Server) putUserSession(w http.ResponseWriter, r *http.Request) {
	var body struct {
		RefreshToken string `json:"refreshToken"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.RefreshToken == "" {
		writeValidation(w, ValidationIssue{Message: "refreshToken is required", Path: "refreshToken", Type: "required"})
		return
	}
	now := s.now()
	st := s.sso
	st.mu.Lock()
	defer st.mu.Unlock()
	e, ok := st.takeRefreshLocked(now, refreshSession, body.RefreshToken)
	if !ok {
		writeError(w, http.StatusBadRequest, "InvalidRefreshToken", "the refresh token is unknown, expired or already used")
		return
	}
	in, err := s.usableInstance(e.grant.instanceID, e.grant.userID)
	if err != nil {
		// The platform invalidates every token of a disabled or removed instance; the
		// refresh token is gone with them.
		writeRefusal(w, err)
		return
	}
	// The new token gets the instance's scopes of now: a scope withdrawn since the sign-on
	// stays withdrawn.
	e.grant.scopes = cloneScopes(in.Scopes)
	token, expires := s.issueToken(e.grant, s.opts.UserTokenTTL)
	refresh := st.newRefreshLocked(now, refreshSession, "", e.grant, nil)
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "refreshToken": refresh, "expiresAt": expires.UTC()})
}

// cloneScopes copies scopes and never returns nil: a nil scope list means "everything
// the user may do" to authenticate, which a derived token must not inherit by accident.
func cloneScopes(scopes []string) []string {
	if scopes == nil {
		return []string{}
	}
	return slices.Clone(scopes)
}
