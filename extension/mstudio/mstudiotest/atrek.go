package mstudiotest

import (
	"net/http"
	"time"
	"unicode/utf8"
)

// retrievalKeyLen is the length of an access token retrieval key: the spec fixes both
// minLength and maxLength of the request field at 37.
const retrievalKeyLen = 37

// retrievalKey is an unredeemed ATReK.
type retrievalKey struct {
	instanceID string
	userID     string
	expires    time.Time
}

// NewRetrievalKey mints a single-use access token retrieval key for the user in the
// instance, as the control panel does when the user clicks through to the extension.
// The key works for Options.RetrievalKeyTTL.
func (s *Server) NewRetrievalKey(instanceID, userID string) (string, error) {
	if _, err := s.usableInstance(instanceID, userID); err != nil {
		return "", err
	}
	now := s.now()
	key := randomToken(retrievalKeyLen)
	st := s.sso
	st.mu.Lock()
	defer st.mu.Unlock()
	st.pruneLocked(now)
	st.keys[key] = &retrievalKey{instanceID: instanceID, userID: userID, expires: now.Add(s.opts.RetrievalKeyTTL)}
	return key, nil
}

// postCreateRetrievalKey serves POST
// /v2/extension-instances/{id}/actions/create-access-token-retrieval-key for a user's
// own token: the key is for the user the token stands for.
func (s *Server) postCreateRetrievalKey(w http.ResponseWriter, r *http.Request) {
	g, ok := s.userGrant(w, r)
	if !ok {
		return
	}
	key, err := s.NewRetrievalKey(r.PathValue("id"), g.userID)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"accessTokenRetrievalKey": key, "userId": g.userID})
}

// postAuthenticateRetrievalKey serves POST /v2/authenticate-token-retrieval-key, without
// authentication: the key is the credential. It answers a user token bound to the
// key's instance, with the instance's scopes, and a refresh token.
//
// Choices where the platform's behaviour is UNVERIFIED:
//   - Every refusal of the key itself (unknown, used, expired, or for another user) is
//     400 ValidationError on accessTokenRetrievalKey, the only client error the spec
//     lists for this route, with one message for all, so the answer tells nothing
//     about which keys exist. The reason goes to the simulator's log.
//   - A key is consumed before the answer is written: a second use fails even if the
//     first answer never arrived.
//   - A wrong userId is refused but does not consume the key. The key is the secret;
//     the user id travels beside it in the same URL, so burning the key would protect
//     nothing and only punish a backend for a bug it is being told about.
func (s *Server) postAuthenticateRetrievalKey(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Key    string `json:"accessTokenRetrievalKey"`
		UserID string `json:"userId"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	var issues []ValidationIssue
	if utf8.RuneCountInString(body.Key) != retrievalKeyLen {
		issues = append(issues, ValidationIssue{Message: "accessTokenRetrievalKey must be exactly 37 characters", Path: "accessTokenRetrievalKey", Type: "length"})
	}
	if !isUUID(body.UserID) {
		issues = append(issues, ValidationIssue{Message: "userId must be a UUID", Path: "userId", Type: "format"})
	}
	if len(issues) > 0 {
		writeValidation(w, issues...)
		return
	}

	now := s.now()
	st := s.sso
	st.mu.Lock()
	defer st.mu.Unlock()
	k, ok := st.keys[body.Key]
	reason := ""
	switch {
	case !ok:
		reason = "unknown or already used"
	case k.userID != body.UserID:
		reason = "issued to another user"
	case !now.Before(k.expires):
		reason = "expired"
		delete(st.keys, body.Key)
	default:
		delete(st.keys, body.Key)
	}
	if reason != "" {
		s.opts.Logger.Info("simulator: access token retrieval key refused", "reason", reason, "user_id", body.UserID)
		writeValidation(w, ValidationIssue{
			Message: "the access token retrieval key is not valid for this user (unknown, used or expired)",
			Path:    "accessTokenRetrievalKey", Type: "invalid",
		})
		return
	}
	in, err := s.usableInstance(k.instanceID, k.userID)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	g := grant{userID: k.userID, instanceID: in.ID, scopes: cloneScopes(in.Scopes)}
	token, expires := s.issueToken(g, s.opts.UserTokenTTL)
	refresh := st.newRefreshLocked(now, refreshSession, "", g, nil)
	writeJSON(w, http.StatusOK, map[string]any{"token": token, "refreshToken": refresh, "expiresAt": expires.UTC()})
}
