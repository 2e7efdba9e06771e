package mstudio

// Ed25519 verification with the platform's keys. Every webhook delivery costs one
// verification, the largest single part of the webhook path's CPU. crypto/ed25519
// decodes the public key and builds its tables on every call (57 µs on the 2-core test
// machine); curve25519-voi verifies against a key expanded once (28 µs), under the same
// rules as crypto/ed25519 (its VerifyOptionsStdLib preset). FuzzVerifyMatchesStdlib holds
// the two to the same answer for any key, message and signature.

import (
	"crypto/ed25519"
	"sync/atomic"

	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
)

// stdlibRules makes curve25519-voi accept exactly what crypto/ed25519 accepts:
// cofactorless verification, small-order and non-canonical keys allowed, S canonical.
// A copy: the preset is an exported variable that any package could change.
var stdlibRules = &voi.Options{Verify: func() *voi.VerifyOptions { v := *voi.VerifyOptionsStdLib; return &v }()}

// maxExpandedKeys bounds the expanded keys kept. The platform has a key or two in use;
// tests and the simulator make more. When the set is full it starts over.
const maxExpandedKeys = 32

// expandedKeys maps a public key's bytes to its expanded form, or to nil where it has
// none (a key that does not decode: crypto/ed25519 decides). The map is never changed
// once stored, so lookups take no lock.
var expandedKeys atomic.Pointer[map[string]*voi.ExpandedPublicKey]

// verifyEd25519 reports whether sig is key's Ed25519 signature of msg, as
// crypto/ed25519.Verify does.
func verifyEd25519(key ed25519.PublicKey, msg, sig []byte) bool {
	if len(key) != ed25519.PublicKeySize {
		return false
	}
	if x := expanded(key); x != nil {
		return voi.VerifyExpandedWithOptions(x, msg, sig, stdlibRules)
	}
	return ed25519.Verify(key, msg, sig)
}

// expanded returns key's expanded form, expanding and keeping it on first use; nil if
// the key does not decode.
func expanded(key ed25519.PublicKey) *voi.ExpandedPublicKey {
	var known map[string]*voi.ExpandedPublicKey
	if p := expandedKeys.Load(); p != nil {
		known = *p
		if x, ok := known[string(key)]; ok {
			return x
		}
	}
	x, err := voi.NewExpandedPublicKey(voi.PublicKey(key))
	if err != nil {
		x = nil
	}
	// Copy on write: two first uses at once may each store a copy without the other's
	// key, which only costs that key one more expansion.
	next := make(map[string]*voi.ExpandedPublicKey, len(known)+1)
	if len(known) < maxExpandedKeys {
		for k, v := range known {
			next[k] = v
		}
	}
	next[string(key)] = x
	expandedKeys.Store(&next)
	return x
}
