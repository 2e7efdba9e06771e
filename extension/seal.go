package extension

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of an encryption key: AES-256.
const KeySize = 32

// sealPrefix versions the sealed format so that a later change can be told apart.
const sealPrefix = "v1"

var (
	// ErrNoKeys is returned when a secret must be sealed or opened but no keys are configured.
	ErrNoKeys = errors.New("extension: no encryption keys configured")
	// ErrUnsealable is returned when a sealed value does not open: unknown key, wrong
	// associated data (a value copied onto another row), or damaged ciphertext.
	ErrUnsealable = errors.New("extension: sealed value cannot be opened")
)

// Keyring seals secrets at rest with AES-256-GCM. The first key seals; every key opens, so
// keys can be rotated by putting a new key first and running rekey before dropping the old.
type Keyring struct {
	keys []sealKey // keys[0] seals
}

type sealKey struct {
	id   string // short fingerprint recorded in each sealed value
	aead cipher.AEAD
}

// NewKeyring builds a keyring from raw 32-byte keys; the first one seals.
func NewKeyring(keys [][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, ErrNoKeys
	}
	kr := &Keyring{}
	seen := map[string]bool{}
	for i, k := range keys {
		if len(k) != KeySize {
			return nil, fmt.Errorf("encryption key %d: %d bytes, want %d", i+1, len(k), KeySize)
		}
		id := KeyID(k)
		if seen[id] {
			return nil, fmt.Errorf("encryption key %d: listed twice", i+1)
		}
		seen[id] = true
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		kr.keys = append(kr.keys, sealKey{id: id, aead: aead})
	}
	return kr, nil
}

// KeyID is the public fingerprint of a key: safe to log and stored beside each sealed value.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("extension-backend key id:"), key...))
	return hex.EncodeToString(sum[:4])
}

// KeyIDs lists the fingerprints of the keyring's keys, the sealing key first.
func (kr *Keyring) KeyIDs() []string {
	if kr == nil {
		return nil
	}
	ids := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		ids[i] = k.id
	}
	return ids
}

// Seal encrypts plain with the first key. aad binds the result to its place (for example
// the row it is stored in): Open with any other aad fails.
func (kr *Keyring) Seal(plain Secret, aad string) (string, error) {
	if kr == nil {
		return "", ErrNoKeys
	}
	k := kr.keys[0]
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := k.aead.Seal(nonce, nonce, []byte(plain.Reveal()), []byte(aad))
	return sealPrefix + "." + k.id + "." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts a value made by Seal with the same aad.
func (kr *Keyring) Open(sealed, aad string) (Secret, error) {
	if kr == nil {
		return "", ErrNoKeys
	}
	k, data, err := kr.parse(sealed)
	if err != nil {
		return "", err
	}
	ns := k.aead.NonceSize()
	if len(data) < ns+k.aead.Overhead() {
		return "", ErrUnsealable
	}
	plain, err := k.aead.Open(nil, data[:ns], data[ns:], []byte(aad))
	if err != nil {
		return "", ErrUnsealable
	}
	return Secret(plain), nil
}

// SealedWithCurrentKey reports whether sealed was made with the sealing key, so rekey can
// skip it.
func (kr *Keyring) SealedWithCurrentKey(sealed string) bool {
	if kr == nil {
		return false
	}
	k, _, err := kr.parse(sealed)
	return err == nil && k.id == kr.keys[0].id
}

func (kr *Keyring) parse(sealed string) (sealKey, []byte, error) {
	prefix, rest, ok := strings.Cut(sealed, ".")
	if !ok || prefix != sealPrefix {
		return sealKey{}, nil, ErrUnsealable
	}
	id, body, ok := strings.Cut(rest, ".")
	if !ok {
		return sealKey{}, nil, ErrUnsealable
	}
	// Strict decoding and a round trip: the decoder would otherwise skip line breaks
	// and ignore stray low bits, so two different strings could open to one value.
	data, err := base64.RawURLEncoding.Strict().DecodeString(body)
	if err != nil || base64.RawURLEncoding.EncodeToString(data) != body {
		return sealKey{}, nil, ErrUnsealable
	}
	for _, k := range kr.keys {
		if k.id == id {
			return k, data, nil
		}
	}
	return sealKey{}, nil, fmt.Errorf("%w: sealed with key %s, which is not configured", ErrUnsealable, id)
}
