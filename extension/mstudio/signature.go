package mstudio

// The webhook signature format (spec 3.2): the platform signs the exact body bytes with
// Ed25519 and sends serial, algorithm and signature in three headers. It lives here, with
// the key cache it needs, so the webhook handler and the simulator share one format
// without the simulator depending on the handler.

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
)

// The platform's signature headers.
const (
	HeaderSerial    = "X-Marketplace-Signature-Serial"
	HeaderAlgorithm = "X-Marketplace-Signature-Algorithm"
	HeaderSignature = "X-Marketplace-Signature"
)

// Algorithm is the only signature algorithm the platform uses, and the only one accepted.
const Algorithm = "Ed25519"

// Verification failures. None of them says anything about the expected signature.
var (
	ErrSignatureMissing   = errors.New("mstudio: signature headers missing")
	ErrAlgorithm          = errors.New("mstudio: signature algorithm is not Ed25519")
	ErrSignatureMalformed = errors.New("mstudio: signature is not base64 of 64 bytes")
	ErrSignatureInvalid   = errors.New("mstudio: signature does not match the body")
)

// KeySource finds the platform's webhook key by serial (a KeyCache in production).
type KeySource interface {
	Key(ctx context.Context, serial string) (ed25519.PublicKey, error)
}

// Verify checks the platform's Ed25519 signature over exactly the body bytes. It returns
// nil only for a well-formed signature by the key with the given serial; key lookup
// errors (ErrUnknownKey, ErrKeyUnavailable, ErrBadSerial) pass
// through unchanged.
func Verify(ctx context.Context, keys KeySource, h http.Header, body []byte) error {
	sig, err := ParseSignature(h)
	if err != nil {
		return err
	}
	key, err := keys.Key(ctx, sig.Serial)
	if err != nil {
		return err
	}
	return sig.Check(key, body)
}

// Signature is the platform's signature of one delivery, read from its headers.
type Signature struct {
	Serial string // the signing key's serial
	bytes  []byte
}

// ParseSignature reads the three signature headers; it fails with ErrSignatureMissing,
// ErrAlgorithm or ErrSignatureMalformed.
func ParseSignature(h http.Header) (Signature, error) {
	serial := strings.TrimSpace(h.Get(HeaderSerial))
	algorithm := strings.TrimSpace(h.Get(HeaderAlgorithm))
	encoded := strings.TrimSpace(h.Get(HeaderSignature))
	if serial == "" || algorithm == "" || encoded == "" {
		return Signature{}, ErrSignatureMissing
	}
	if !strings.EqualFold(algorithm, Algorithm) {
		return Signature{}, ErrAlgorithm
	}
	sig, err := decodeSignature(encoded)
	if err != nil {
		return Signature{}, err
	}
	return Signature{Serial: serial, bytes: sig}, nil
}

// Check verifies the signature over body with key: ErrSignatureInvalid if it does not match.
func (s Signature) Check(key ed25519.PublicKey, body []byte) error {
	if !verifyEd25519(key, body, s.bytes) {
		return ErrSignatureInvalid
	}
	return nil
}

// decodeSignature reads standard base64 with padding, as the platform sends it, and
// tolerates missing padding. Decoding is strict, so one signature has one spelling.
func decodeSignature(s string) ([]byte, error) {
	if len(s) > base64.StdEncoding.EncodedLen(ed25519.SignatureSize) {
		return nil, ErrSignatureMalformed
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		sig, err = base64.RawStdEncoding.Strict().DecodeString(s)
	}
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, ErrSignatureMalformed
	}
	return sig, nil
}

// Sign sets the three signature headers for body as the platform does. The simulator,
// the webhook CLI and tests use it, so they exercise the same format Verify reads.
func Sign(h http.Header, serial string, key ed25519.PrivateKey, body []byte) {
	h.Set(HeaderSerial, serial)
	h.Set(HeaderAlgorithm, Algorithm)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(key, body)))
}
