package mstudiotest

import (
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// sessionTokenIssuer is the iss claim of session tokens. The platform's value is
// UNVERIFIED (ext-bridge strips iss unread); backends should not rely on it.
const sessionTokenIssuer = "mstudio"

// sessionClaims are the claims of a frontend-fragment session token, named as
// @mittwald/ext-bridge decodes them (spec section 6.1).
type sessionClaims struct {
	SessionID                    string   `json:"sessionId"`
	ExtensionID                  string   `json:"extensionId"`
	ExtensionInstanceID          string   `json:"extensionInstanceId"`
	ContextID                    string   `json:"contextId"`
	Context                      string   `json:"context"` // "project" or "customer"
	Scopes                       []string `json:"scopes"`
	AuthenticatableWithoutSecret bool     `json:"authenticatableWithoutSecret"`
	PublicKeySerial              string   `json:"publicKeySerial"`
	VariantKey                   *string  `json:"variantKey"` // null when the instance has none
	jwt.RegisteredClaims
}

// NewSessionToken mints the EdDSA-signed session token the control panel hands to an
// extension's frontend fragment for the user in the instance. An empty sessionID gets a
// random one. The token is valid for Options.SessionTokenTTL.
func (s *Server) NewSessionToken(instanceID, userID, sessionID string) (string, error) {
	return s.newSessionToken(instanceID, userID, sessionID, false)
}

// newSessionToken is NewSessionToken with authenticatableWithoutSecret settable, for
// tests of the exchange without the extension secret. The claim's meaning is
// UNVERIFIED; the simulator reads it as "may be exchanged without extensionSecret".
func (s *Server) newSessionToken(instanceID, userID, sessionID string, withoutSecret bool) (string, error) {
	if sessionID == "" {
		sessionID = uuid.NewString()
	}
	if !isUUID(sessionID) {
		return "", &refusal{http.StatusBadRequest, "ValidationError", "sessionId must be a UUID"}
	}
	in, err := s.usableInstance(instanceID, userID)
	if err != nil {
		return "", err
	}
	key := s.SessionTokenKey()
	now := s.now()
	claims := sessionClaims{
		SessionID:                    sessionID,
		ExtensionID:                  s.opts.ExtensionID,
		ExtensionInstanceID:          in.ID,
		ContextID:                    in.ContextID,
		Context:                      in.ContextKind,
		Scopes:                       cloneScopes(in.Scopes),
		AuthenticatableWithoutSecret: withoutSecret,
		PublicKeySerial:              key.Serial,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    sessionTokenIssuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{s.opts.ExtensionID},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.opts.SessionTokenTTL)),
			ID:        uuid.NewString(),
		},
	}
	if in.VariantKey != "" {
		claims.VariantKey = &in.VariantKey
	}
	token := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	// ext-bridge finds the key by the publicKeySerial claim; kid carries the same serial
	// for verifiers that look in the header (whether the platform sets kid is UNVERIFIED).
	token.Header["kid"] = key.Serial
	signed, err := token.SignedString(key.Private)
	if err != nil {
		return "", errorf("sign session token: %v", err)
	}
	return signed, nil
}

// postSessionToken serves POST /v2/extension-instances/{id}/sessions/{sessionId} for a
// user's own token, as the control panel's frontend asks for a fragment's token.
func (s *Server) postSessionToken(w http.ResponseWriter, r *http.Request) {
	g, ok := s.userGrant(w, r)
	if !ok {
		return
	}
	if !isUUID(r.PathValue("sessionId")) {
		writeValidation(w, ValidationIssue{Message: "sessionId must be a UUID", Path: "sessionId", Type: "format"})
		return
	}
	token, err := s.NewSessionToken(r.PathValue("id"), g.userID, r.PathValue("sessionId"))
	if err != nil {
		writeRefusal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"sessionToken": token})
}

// parseSessionToken verifies a session token the simulator issued: EdDSA only, signed by
// a session_token key it publishes, within exp and nbf by the simulator's clock, for
// this extension.
func (s *Server) parseSessionToken(raw string) (*sessionClaims, error) {
	var claims sessionClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		// The serial comes from the unverified payload, as ext-bridge reads it; a
		// forged serial only selects another of our own keys.
		serial := t.Claims.(*sessionClaims).PublicKeySerial
		k, ok := s.keys.find(PurposeSessionToken, serial)
		if !ok || serial == "latest" {
			return nil, errors.New("unknown public key serial")
		}
		return k.Public(), nil
	},
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithTimeFunc(s.now),
		jwt.WithExpirationRequired(),
		jwt.WithAudience(s.opts.ExtensionID),
	)
	if err != nil {
		return nil, err
	}
	return &claims, nil
}

// postAuthenticateSessionToken serves POST /v2/authenticate-session-token, without
// authentication: a valid session token plus the extension secret buy a user-bound
// access token for the token's instance, valid for Options.SessionTokenTTL.
//
// Choices where the platform's behaviour is UNVERIFIED: a token that does not verify
// (malformed, bad signature, expired) is 400 ValidationError on sessionToken; an
// instance that no longer exists is 404, as the spec lists; a missing or wrong
// extensionSecret is 403 PermissionDenied, like a wrong instance secret at the
// instance token route; a disabled instance or a user without access is 403.
func (s *Server) postAuthenticateSessionToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SessionToken    string `json:"sessionToken"`
		ExtensionSecret string `json:"extensionSecret"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.SessionToken == "" {
		writeValidation(w, ValidationIssue{Message: "sessionToken is required", Path: "sessionToken", Type: "required"})
		return
	}
	claims, err := s.parseSessionToken(body.SessionToken)
	if err != nil {
		s.opts.Logger.Info("simulator: session token refused", "error", err.Error())
		writeValidation(w, ValidationIssue{Message: "the session token is not valid (malformed, wrongly signed or expired)", Path: "sessionToken", Type: "invalid"})
		return
	}
	if !claims.AuthenticatableWithoutSecret &&
		subtle.ConstantTimeCompare([]byte(body.ExtensionSecret), []byte(s.opts.ExtensionSecret)) != 1 {
		forbidden(w, "the extension secret is missing or not valid")
		return
	}
	in, err := s.usableInstance(claims.ExtensionInstanceID, claims.Subject)
	if err != nil {
		writeRefusal(w, err)
		return
	}
	// The instance's scopes now, not those signed into the token: a scope withdrawn in
	// the last minute is withdrawn.
	g := grant{userID: claims.Subject, instanceID: in.ID, scopes: cloneScopes(in.Scopes)}
	token, expiry := s.issueToken(g, s.opts.SessionTokenTTL)
	writeJSON(w, http.StatusCreated, map[string]any{"publicToken": token, "expiry": expiry.UTC()})
}
