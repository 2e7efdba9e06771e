package atrek

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/golang-jwt/jwt/v5"
)

// Errors of session-token verification. None of them, nor any error wrapping them,
// carries the token or a part of it.
var (
	ErrSessionTokenMissing = errors.New("atrek: no session token")
	ErrSessionTokenInvalid = errors.New("atrek: session token not valid")
	ErrSessionTokenExpired = errors.New("atrek: session token expired")
	ErrForeignExtension    = errors.New("atrek: session token of another extension")
	// ErrInstanceUnavailable is returned, wrapped together with extension.ErrNotFound,
	// ErrRemoved or ErrDisabled, for an instance we cannot act in.
	ErrInstanceUnavailable = errors.New("atrek: extension instance not available")
	// ErrSessionKeyUnavailable is our problem, not the caller's: the platform's key could
	// not be had right now.
	ErrSessionKeyUnavailable = errors.New("atrek: session token key unavailable")
	// ErrExchangeUnavailable is returned by AccessToken when no client, or no extension
	// secret where one is needed, is configured.
	ErrExchangeUnavailable = errors.New("atrek: session token exchange not configured")
)

// Signature algorithms a session token may name. The platform signs with Ed25519; whether
// its JOSE header says "EdDSA" or the newer fully-specified "Ed25519" (RFC 9864) is
// unverified, and its own library accepts both, so we do too, and nothing else.
const (
	algEdDSA   = "EdDSA"
	algEd25519 = "Ed25519"
)

const (
	defaultLeeway      = 5 * time.Second
	defaultMaxLifetime = 10 * time.Minute // tokens live 60 s; anything far longer is not the platform's
	maxTokenBytes      = 8 << 10          // real tokens are under 1 KiB; bounds the work on junk
)

// segment is JWT's base64url without padding, strict: a signature whose unused low bits
// are set would otherwise decode to the same bytes, and a string that is not the signed
// token byte for byte would verify.
var segment = base64.RawURLEncoding.Strict()

// SessionClaims are the claims of a frontend fragment's session token (spec section 6.1).
type SessionClaims struct {
	SessionID   string   `json:"sessionId"` // stable per browser session of the control panel
	ExtensionID string   `json:"extensionId"`
	InstanceID  string   `json:"extensionInstanceId"` // lower-cased once verified
	ContextID   string   `json:"contextId"`           // the project or customer id
	Context     string   `json:"context"`             // "project" or "customer"
	Scopes      []string `json:"scopes"`              // as signed up to 60 s ago; the Instance has the webhooks' view
	// AuthenticatableWithoutSecret probably says the token may be exchanged without the
	// extension secret (unverified).
	AuthenticatableWithoutSecret bool    `json:"authenticatableWithoutSecret"`
	PublicKeySerial              string  `json:"publicKeySerial"`
	VariantKey                   *string `json:"variantKey"` // nil when the instance has none
	jwt.RegisteredClaims                 // sub is the user id: see UserID
}

// UserID is the platform user the token was signed for (the sub claim).
func (c *SessionClaims) UserID() string { return c.Subject }

// KeySource finds the platform's session_token keys by serial; *mstudio.KeyCache built
// with mstudio.PurposeSessionToken is one. It must not return keys of another purpose:
// a webhook key must never verify a session token.
type KeySource interface {
	Key(ctx context.Context, serial string) (ed25519.PublicKey, error)
}

// VerifierOptions tunes NewSessionTokenVerifier; the zero value gives production settings
// without the exchange.
type VerifierOptions struct {
	Leeway      time.Duration // clock skew allowed on exp, nbf and iat; 0: 5 s; <0: none
	MaxLifetime time.Duration // longest validity accepted; 0: 10 min
	Now         func() time.Time
	Logger      *slog.Logger // refusals, at a bounded rate; nil: discard
	// Client and ExtensionSecret (EXT_EXTENSION_SECRET) enable AccessToken.
	Client          *mstudio.Client
	ExtensionSecret extension.Secret
}

// SessionTokenVerifier verifies frontend fragments' session tokens and finds the instance
// they are for. It is safe for concurrent use.
type SessionTokenVerifier struct {
	keys        KeySource
	store       *extension.Store
	extensionID string
	leeway      time.Duration
	maxLifetime time.Duration
	now         func() time.Time
	parser      *jwt.Parser
	validator   *jwt.Validator
	refusals    *mstudio.RefusalLog
	// exchange sits behind a pointer so that printing the verifier shows an address, not
	// the secret: fmt cannot call Secret's methods on an unexported field.
	exchange *exchange
}

type exchange struct {
	client *mstudio.Client
	secret extension.Secret
}

// NewSessionTokenVerifier returns a verifier of session tokens for the extension with
// the id, checked against the keys and the instances in the store.
func NewSessionTokenVerifier(keys KeySource, store *extension.Store, extensionID string, opts VerifierOptions) (*SessionTokenVerifier, error) {
	if keys == nil || store == nil {
		return nil, errors.New("atrek: a session token verifier needs keys and a store")
	}
	if !mstudio.IsUUID(extensionID) {
		return nil, errors.New("atrek: session token verifier: extension id is not a UUID")
	}
	v := &SessionTokenVerifier{keys: keys, store: store, extensionID: extensionID,
		leeway: opts.Leeway, maxLifetime: opts.MaxLifetime, now: opts.Now,
		refusals: mstudio.NewRefusalLog(opts.Logger, "session token refused", slog.LevelWarn, time.Minute),
		exchange: &exchange{client: opts.Client, secret: opts.ExtensionSecret}}
	switch {
	case v.leeway == 0:
		v.leeway = defaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.maxLifetime <= 0 {
		v.maxLifetime = defaultMaxLifetime
	}
	if v.now == nil {
		v.now = time.Now
	}
	timing := []jwt.ParserOption{jwt.WithLeeway(v.leeway), jwt.WithTimeFunc(v.now), jwt.WithExpirationRequired(), jwt.WithIssuedAt()}
	v.parser = jwt.NewParser(append(timing, jwt.WithValidMethods([]string{algEdDSA}), jwt.WithStrictDecoding())...)
	v.validator = jwt.NewValidator(timing...)
	return v, nil
}

// Verify checks a session token and returns its claims and the instance it is for. The
// token must be signed by the platform's session_token key its publicKeySerial names,
// with EdDSA; be within exp, nbf and iat (with the leeway) and live no longer than the
// maximum; name our extension; and be for an instance here that is neither removed nor
// disabled.
//
// ctx carries the client's address (mstudio.WithClientAddress): lookups of key serials
// not cached are budgeted per address, and refusals are logged with it, at a bounded
// rate.
func (v *SessionTokenVerifier) Verify(ctx context.Context, raw string) (*SessionClaims, *extension.Instance, error) {
	claims, err := v.verifySignedClaims(ctx, raw)
	if err != nil {
		v.logRefusal(ctx, err)
		return nil, nil, err
	}
	in, err := v.instance(ctx, claims.InstanceID)
	if err != nil {
		v.logRefusal(ctx, err)
		return nil, nil, err
	}
	return claims, in, nil
}

// logRefusal logs a refusal of the caller's making, by a fixed reason, at a bounded
// rate: a flood of forged tokens writes a line a minute, not one a token. Failures of
// ours are the error handler's to log.
func (v *SessionTokenVerifier) logRefusal(ctx context.Context, err error) {
	var reason string
	var it *invalidToken
	switch {
	case errors.As(err, &it):
		reason = it.reason
	case errors.Is(err, ErrSessionTokenMissing):
		reason = "no session token"
	case errors.Is(err, ErrSessionTokenExpired):
		reason = "expired"
	case errors.Is(err, ErrForeignExtension):
		reason = "issued for another extension"
	case errors.Is(err, ErrInstanceUnavailable):
		reason = "instance not available here"
	default:
		return
	}
	v.refusals.Refused(ctx, reason, mstudio.ClientAddress(ctx))
}

func (v *SessionTokenVerifier) verifySignedClaims(ctx context.Context, raw string) (*SessionClaims, error) {
	if raw == "" {
		return nil, ErrSessionTokenMissing
	}
	if len(raw) > maxTokenBytes {
		return nil, invalid(fmt.Sprintf("longer than %d bytes", maxTokenBytes))
	}
	alg, serial, err := peek(raw)
	if err != nil {
		return nil, err
	}
	key, err := v.keys.Key(ctx, serial)
	switch {
	case errors.Is(err, mstudio.ErrUnknownKey), errors.Is(err, mstudio.ErrBadSerial):
		return nil, &invalidToken{reason: "no session_token key with its serial", cause: err}
	case errors.Is(err, mstudio.ErrTooManyLookups):
		// The caller's doing: its address looked up too many serials we do not have.
		return nil, &invalidToken{reason: "too many key serials not known here; try again later", cause: err}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrSessionKeyUnavailable, err)
	}
	claims := new(SessionClaims)
	switch alg {
	case algEdDSA:
		// The key func hands out the one key the serial selected, whatever the header
		// says: with WithValidMethods only EdDSA gets this far.
		_, err = v.parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return key, nil })
	case algEd25519:
		err = v.verifyEd25519(raw, key, claims)
	default: // peek let it through: a bug, refused all the same
		return nil, invalid("alg refused")
	}
	if err != nil {
		return nil, refusal(err)
	}
	if err := v.checkClaims(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// peek reads what is needed before the signature can be checked, all of it unverified:
// the algorithm, which must be an Ed25519 one, and the key serial, which must be a UUID.
// Like the platform's own library it takes the serial from the publicKeySerial claim;
// the header's kid serves only when the claim is absent. A forged serial merely selects
// another of the platform's session_token keys, and the signature still has to verify.
func peek(raw string) (alg, serial string, err error) {
	head, rest, ok := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return "", "", invalid("not three dot-separated parts")
	}
	// A map, as golang-jwt reads the header: a struct would match "ALG" to alg too, and
	// the two readings could differ.
	var h map[string]any
	if b, err := segment.DecodeString(head); err != nil || json.Unmarshal(b, &h) != nil {
		return "", "", invalid("header is not base64url JSON")
	}
	alg, _ = h["alg"].(string)
	if alg != algEdDSA && alg != algEd25519 {
		return "", "", &invalidToken{reason: "alg refused", detail: ": " + clip(alg)}
	}
	if _, ok := h["crit"]; ok {
		// RFC 7515 4.1.11: extensions we do not understand make the token unusable.
		return "", "", invalid("header names critical extensions")
	}
	var p struct {
		PublicKeySerial string `json:"publicKeySerial"`
	}
	if b, err := segment.DecodeString(payload); err != nil || json.Unmarshal(b, &p) != nil {
		return "", "", invalid("payload is not base64url JSON")
	}
	serial = p.PublicKeySerial
	if serial == "" {
		serial, _ = h["kid"].(string)
	}
	// Checked here as well as by the key source: a serial that is not a UUID (such as
	// "latest") must never reach the key server.
	if serial, err = mstudio.CanonicalSerial(serial); err != nil {
		return "", "", invalid("publicKeySerial is not a UUID")
	}
	return alg, serial, nil
}

// verifyEd25519 checks a token whose header says alg "Ed25519". golang-jwt knows this
// name for the EdDSA signature only under "EdDSA", and registering it would change
// every parser in the process; so the signature is checked with the EdDSA method's own
// Verify over the signing input, and the claims with a validator of the same options.
func (v *SessionTokenVerifier) verifyEd25519(raw string, key ed25519.PublicKey, claims *SessionClaims) error {
	dot := strings.LastIndexByte(raw, '.')
	sig, err := segment.DecodeString(raw[dot+1:])
	if err != nil {
		return jwt.ErrTokenMalformed
	}
	if err := jwt.SigningMethodEdDSA.Verify(raw[:dot], sig, key); err != nil {
		return jwt.ErrTokenSignatureInvalid
	}
	payload, err := segment.DecodeString(raw[strings.IndexByte(raw, '.')+1 : dot])
	if err != nil || json.Unmarshal(payload, claims) != nil {
		return jwt.ErrTokenMalformed
	}
	return v.validator.Validate(claims)
}

// checkClaims checks what golang-jwt does not: the lifetime, ids and our extension.
func (v *SessionTokenVerifier) checkClaims(c *SessionClaims) error {
	exp := c.ExpiresAt.Time // required by the parser and the validator
	if c.IssuedAt != nil && exp.Sub(c.IssuedAt.Time) > v.maxLifetime {
		return invalid("lives longer than " + v.maxLifetime.String())
	}
	// Without iat (its presence is unverified), the time left bounds the lifetime.
	if exp.Sub(v.now()) > v.maxLifetime+v.leeway {
		return invalid("expires too far in the future")
	}
	if !mstudio.IsUUID(c.Subject) {
		return invalid("sub is not a user id")
	}
	if !mstudio.IsUUID(c.InstanceID) {
		return invalid("extensionInstanceId is not an instance id")
	}
	// Ids in their canonical lower case: our instance ids are stored so, as the webhooks
	// deliver them, and user ids are compared with what the SSO entry stored.
	c.InstanceID, c.Subject = strings.ToLower(c.InstanceID), strings.ToLower(c.Subject)
	// Ids are UUIDs: compared without regard to case.
	if !strings.EqualFold(c.ExtensionID, v.extensionID) {
		return ErrForeignExtension
	}
	return nil
}

// instance returns the instance if we may act in it.
func (v *SessionTokenVerifier) instance(ctx context.Context, id string) (*extension.Instance, error) {
	in, err := v.store.InstanceByID(ctx, id)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return nil, fmt.Errorf("%w: %w", ErrInstanceUnavailable, extension.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("session token: %w", err)
	case in.Removed():
		return nil, fmt.Errorf("%w: %w", ErrInstanceUnavailable, extension.ErrRemoved)
	case !in.Enabled:
		return nil, fmt.Errorf("%w: %w", ErrInstanceUnavailable, extension.ErrDisabled)
	}
	return in, nil
}

// refusal maps golang-jwt's errors onto ours, without their texts: those may quote
// pieces of the token.
func refusal(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrSessionTokenExpired
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalid("signature does not verify")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalid("not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalid("no exp")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return invalid("malformed")
	}
	return invalid("claims refused")
}

func invalid(reason string) error { return &invalidToken{reason: reason} }

// invalidToken is ErrSessionTokenInvalid for a reason: a fixed text, by which the log
// counts refusals; detail, quoted from the token, stays out of that count.
type invalidToken struct {
	reason, detail string
	cause          error // the key lookup's failure, when that is the reason
}

func (e *invalidToken) Error() string {
	return ErrSessionTokenInvalid.Error() + ": " + e.reason + e.detail
}

func (e *invalidToken) Unwrap() []error {
	if e.cause != nil {
		return []error{ErrSessionTokenInvalid, e.cause}
	}
	return []error{ErrSessionTokenInvalid}
}

// clip quotes an untrusted header value for an error text, shortened.
func clip(s string) string {
	if len(s) > 16 {
		s = s[:16] + "…"
	}
	return strconv.Quote(s)
}
