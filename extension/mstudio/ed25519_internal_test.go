package mstudio

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// edgeKeys are public keys at the edges of the encoding rules: the identity (small
// order), the identity spelled with y = p+1 (not canonical), the identity with the sign
// bit of x set, a point of order 8, and bytes that are no point at all.
var edgeKeys = []string{
	"0100000000000000000000000000000000000000000000000000000000000000",
	"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	"0100000000000000000000000000000000000000000000000000000000000080",
	"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
	"0200000000000000000000000000000000000000000000000000000000000000",
}

// identitySignature is R = the identity and S = 0, which verifies under a small-order
// key for any message in crypto/ed25519's rules.
var identitySignature = append(bytes.Clone(mustHex(edgeKeys[0])), make([]byte, 32)...)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestVerifyMatchesStdlibAtEdges: the edge cases agree with crypto/ed25519, and a real
// signature verifies (and no longer does with one bit of message or signature changed).
func TestVerifyMatchesStdlibAtEdges(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte(`{"id":"a delivery"}`)
	sig := ed25519.Sign(priv, msg)
	if !verifyEd25519(pub, msg, sig) {
		t.Fatal("a valid signature did not verify")
	}
	for i := range []int{0, 1} {
		if !verifyEd25519(pub, msg, sig) {
			t.Fatalf("round %d: the expanded key no longer verifies", i)
		}
	}
	bad := bytes.Clone(sig)
	bad[10] ^= 1
	if verifyEd25519(pub, msg, bad) {
		t.Fatal("a changed signature verified")
	}
	if verifyEd25519(pub, append(bytes.Clone(msg), ' '), sig) {
		t.Fatal("a changed message verified")
	}
	// S + L: the same S, not canonical; crypto/ed25519 refuses it.
	nonCanonicalS := bytes.Clone(sig)
	addL(nonCanonicalS[32:])
	if got, want := verifyEd25519(pub, msg, nonCanonicalS), ed25519.Verify(pub, msg, nonCanonicalS); got != want || got {
		t.Fatalf("S+L: got %v, crypto/ed25519 %v; want both false", got, want)
	}
	accepted := 0
	for _, k := range edgeKeys {
		key := mustHex(k)
		for _, s := range [][]byte{identitySignature, sig} {
			got, want := verifyEd25519(key, msg, s), ed25519.Verify(key, msg, s)
			if got != want {
				t.Errorf("key %s: got %v, crypto/ed25519 %v", k, got, want)
			}
			if want {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Error("no edge case verified in crypto/ed25519: the cases do not reach the rules they are for")
	}
	if verifyEd25519(pub[:31], msg, sig) {
		t.Error("a short key verified")
	}
}

// TestExpandedKeysBounded: more keys than are kept start the set over, and every key
// still verifies.
func TestExpandedKeysBounded(t *testing.T) {
	msg := []byte("m")
	for i := range maxExpandedKeys*2 + 3 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !verifyEd25519(pub, msg, ed25519.Sign(priv, msg)) {
			t.Fatalf("key %d did not verify", i)
		}
		if n := len(*expandedKeys.Load()); n > maxExpandedKeys {
			t.Fatalf("%d expanded keys kept, want at most %d", n, maxExpandedKeys)
		}
	}
}

// addL adds the group order L to the little-endian scalar s in place.
func addL(s []byte) {
	l := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	carry := 0
	for i := range s {
		v := int(s[i]) + int(l[i]) + carry
		s[i], carry = byte(v), v>>8
	}
}

// FuzzVerifyMatchesStdlib: for any key, message and signature, verifyEd25519 answers
// as crypto/ed25519.Verify does.
func FuzzVerifyMatchesStdlib(f *testing.F) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	msg := []byte(`{"id":"a delivery"}`)
	f.Add([]byte(pub), msg, ed25519.Sign(priv, msg))
	for _, k := range edgeKeys {
		f.Add(mustHex(k), msg, identitySignature)
	}
	f.Fuzz(func(t *testing.T, key, msg, sig []byte) {
		want := len(key) == ed25519.PublicKeySize && ed25519.Verify(key, msg, sig)
		if got := verifyEd25519(key, msg, sig); got != want {
			t.Fatalf("key %x sig %x: got %v, crypto/ed25519 %v", key, sig, got, want)
		}
	})
}
