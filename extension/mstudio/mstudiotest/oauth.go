package mstudiotest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// oauthCode is an authorization code and what it is bound to.
type oauthCode struct {
	clientID    string
	redirectURI string // exactly as given at /authorize; /token must repeat it byte for byte
	challenge   string // the S256 code challenge
	userID      string
	scopes      []string
	expires     time.Time
	used        bool         // presented once; kept until it expires, to notice a replay
	family      *tokenFamily // tokens issued for it, revoked on a replay
}

var (
	// scopePattern is the shape of the platform's scopes: "project:read", "user:write".
	scopePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*$`)
	// verifierPattern is RFC 7636 section 4.1: 43 to 128 unreserved characters.
	verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	// challengePattern is an S256 challenge: the unpadded base64url of a SHA-256.
	challengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// getOAuthAuthorize serves GET /v2/oauth2/authorize for the authorization code flow with
// PKCE. The simulator has no login page: a test user consents at once. The user is, in
// this order, the one whose own token the request carries (X-Access-Token,
// Authorization: Bearer, or the x-access-token cookie the spec mentions), the one named
// by the simulator's extra query parameter user_id or login_hint (a test user's id or
// e-mail), or else the first test user with access.
//
// Choices where the platform's behaviour is UNVERIFIED: the only client is the
// extension (client_id = Options.ExtensionID) and no redirect URIs are registered, so
// any absolute http or https URI without a fragment is accepted, and the code is bound
// to that exact string. PKCE is required, with S256 only.
func (s *Server) getOAuthAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// Until the client and the redirect URI are known to be good, an error is shown,
	// never redirected (RFC 6749 section 4.1.2.1).
	for k, v := range q {
		if len(v) > 1 {
			oauthError(w, http.StatusBadRequest, "invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	if q.Get("client_id") != s.opts.ExtensionID {
		oauthError(w, http.StatusBadRequest, "invalid_request", "client_id is missing or not a known client")
		return
	}
	target, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" || target.Fragment != "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "redirect_uri must be an absolute http or https URI without a fragment")
		return
	}
	state := q.Get("state")
	fail := func(code, description string) {
		oauthRedirect(w, r, target, map[string]string{"error": code, "error_description": description, "state": state})
	}

	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	scopes, scopesOK := parseScopes(q.Get("scope"))
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE with S256)")
		return
	case method != "S256":
		// RFC 7636 makes a missing method mean plain, which is refused too.
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !challengePattern.MatchString(challenge):
		fail("invalid_request", "code_challenge must be the base64url SHA-256 of the code verifier (43 characters)")
		return
	case !scopesOK:
		fail("invalid_scope", "scope must be space-separated scopes such as project:read")
		return
	case q.Get("grant_consent") == "false":
		fail("access_denied", "the user did not consent")
		return
	}
	userID, ok := s.oauthUser(r)
	if !ok {
		fail("access_denied", "no such test user, or the request's token is not a user's own token")
		return
	}

	now := s.now()
	code := randomToken(43)
	st := s.sso
	st.mu.Lock()
	st.pruneLocked(now)
	st.codes[code] = &oauthCode{
		clientID: s.opts.ExtensionID, redirectURI: q.Get("redirect_uri"), challenge: challenge,
		userID: userID, scopes: scopes, expires: now.Add(oauthCodeTTL),
	}
	st.mu.Unlock()
	oauthRedirect(w, r, target, map[string]string{"code": code, "state": state})
}

// oauthUser picks the test user who consents; see getOAuthAuthorize.
func (s *Server) oauthUser(r *http.Request) (string, bool) {
	if bearer(r) == "" {
		if c, err := r.Cookie("x-access-token"); err == nil && c.Value != "" {
			r = r.Clone(r.Context())
			r.Header.Set("X-Access-Token", c.Value)
		}
	}
	if bearer(r) != "" {
		g, ok := s.authenticate(r)
		return g.userID, ok && g.userID != "" && g.instanceID == ""
	}
	hint := r.URL.Query().Get("user_id")
	if hint == "" {
		hint = r.URL.Query().Get("login_hint")
	}
	for _, u := range s.Users() {
		if (hint == "" && u.Access) || (hint != "" && (u.ID == hint || strings.EqualFold(u.Email, hint))) {
			return u.ID, true
		}
	}
	return "", false
}

// parseScopes splits a space-separated scope list, dropping repeats; an empty list is
// valid and grants no scopes.
func parseScopes(s string) ([]string, bool) {
	scopes := []string{}
	for _, sc := range strings.Fields(s) {
		if !scopePattern.MatchString(sc) {
			return nil, false
		}
		if !slices.Contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return scopes, true
}

// oauthRedirect sends the browser back to the client with params added to the query of
// its redirect URI; empty values are left out.
func oauthRedirect(w http.ResponseWriter, r *http.Request, target *url.URL, params map[string]string) {
	u := *target
	q := u.Query()
	for k, v := range params {
		if v != "" {
			q.Set(k, v)
		}
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// oauthError answers with RFC 6749's error body, which the OAuth routes use instead of
// the platform's {type, message}.
func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

// postOAuthToken serves POST /v2/oauth2/token with a form body: the authorization_code
// grant, and the refresh_token grant mittwald's own clients use although the spec's
// enum lacks it. Refresh tokens rotate.
//
// Client authentication: client_id in the body or as the user of HTTP Basic, as
// mittwald's public PKCE clients and the spec do respectively. A Basic password or a
// client_secret is not checked: the simulator's client is public and PKCE binds the
// code (how the platform treats confidential clients is UNVERIFIED).
func (s *Server) postOAuthToken(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "the body is not a valid form")
		return
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 {
			oauthError(w, http.StatusBadRequest, "invalid_request", "parameter "+k+" is repeated")
			return
		}
	}
	clientID, ok := s.oauthClient(w, r)
	if !ok {
		return
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		s.oauthCodeGrant(w, form, clientID)
	case "refresh_token":
		s.oauthRefreshGrant(w, form, clientID)
	case "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}

// oauthClient finds the client the request authenticates as. A failed Basic attempt is
// 401 with WWW-Authenticate, as RFC 6749 section 5.2 demands; other failures are 400.
func (s *Server) oauthClient(w http.ResponseWriter, r *http.Request) (string, bool) {
	bodyID := r.PostForm.Get("client_id")
	user, _, basic := r.BasicAuth()
	if basic {
		id, err := url.QueryUnescape(user)
		if err != nil || id != s.opts.ExtensionID {
			w.Header().Set("WWW-Authenticate", `Basic realm="oauth2"`)
			oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client")
			return "", false
		}
		if bodyID != "" && bodyID != id {
			oauthError(w, http.StatusBadRequest, "invalid_request", "client_id in the body and in the Authorization header differ")
			return "", false
		}
		return id, true
	}
	if bodyID == "" || bodyID != s.opts.ExtensionID {
		oauthError(w, http.StatusBadRequest, "invalid_client", "client_id is missing or not a known client")
		return "", false
	}
	return bodyID, true
}

// oauthCodeGrant redeems an authorization code. Any presentation consumes the code,
// even one that fails on redirect_uri or code_verifier, so a stolen code cannot be used
// to guess; a second presentation also revokes every token issued for it (RFC 6749
// section 4.1.2).
func (s *Server) oauthCodeGrant(w http.ResponseWriter, form url.Values, clientID string) {
	codeValue, redirectURI := form.Get("code"), form.Get("redirect_uri")
	if codeValue == "" || redirectURI == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "code and redirect_uri are required")
		return
	}
	now := s.now()
	st := s.sso
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.codes[codeValue]
	switch {
	case !ok || !now.Before(c.expires):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code is unknown or expired")
		return
	case c.used:
		s.revokeFamily(c.family)
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was already used; the tokens issued for it are revoked")
		return
	}
	c.used = true
	switch {
	case c.clientID != clientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
	case redirectURI != c.redirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the one in the authorization request")
	case !pkceMatches(form.Get("code_verifier"), c.challenge):
		oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
	default:
		c.family = &tokenFamily{}
		s.oauthIssueLocked(w, now, clientID, grant{userID: c.userID, scopes: cloneScopes(c.scopes)}, c.family)
	}
}

// oauthRefreshGrant trades a refresh token for new tokens. A narrower scope may be
// asked for; the token is consumed only once the request is otherwise acceptable.
func (s *Server) oauthRefreshGrant(w http.ResponseWriter, form url.Values, clientID string) {
	token := form.Get("refresh_token")
	if token == "" {
		oauthError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	now := s.now()
	st := s.sso
	st.mu.Lock()
	defer st.mu.Unlock()
	peek, ok := st.refresh[token]
	if !ok || peek.kind != refreshOAuth || peek.clientID != clientID {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, expired, revoked or already used")
		return
	}
	scopes := peek.grant.scopes
	if form.Has("scope") {
		asked, ok := parseScopes(form.Get("scope"))
		if !ok || slices.ContainsFunc(asked, func(sc string) bool { return !slices.Contains(peek.grant.scopes, sc) }) {
			oauthError(w, http.StatusBadRequest, "invalid_scope", "scope may only narrow the scopes granted")
			return
		}
		scopes = asked
	}
	e, ok := st.takeRefreshLocked(now, refreshOAuth, token)
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, expired, revoked or already used")
		return
	}
	s.oauthIssueLocked(w, now, clientID, grant{userID: e.grant.userID, scopes: cloneScopes(scopes)}, e.family)
}

// oauthIssueLocked answers a token response for g; s.sso.mu must be held.
func (s *Server) oauthIssueLocked(w http.ResponseWriter, now time.Time, clientID string, g grant, family *tokenFamily) {
	ttl := s.opts.UserTokenTTL
	access, _ := s.issueToken(g, ttl)
	family.access = append(family.access, access)
	refresh := s.sso.newRefreshLocked(now, refreshOAuth, clientID, g, family)
	body := map[string]any{
		"access_token": access, "token_type": "bearer", "expires_in": int(ttl / time.Second), "refresh_token": refresh,
	}
	if len(g.scopes) > 0 {
		body["scope"] = strings.Join(g.scopes, " ")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, body)
}

// revokeFamily ends every token descended from one code: the access tokens at once,
// the refresh token when it is next presented.
func (s *Server) revokeFamily(f *tokenFamily) {
	if f == nil || f.revoked {
		return
	}
	f.revoked = true
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range f.access {
		delete(s.grants, t)
	}
}

// pkceMatches reports whether verifier hashes to the S256 challenge (RFC 7636 4.6).
func pkceMatches(verifier, challenge string) bool {
	if !verifierPattern.MatchString(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}
