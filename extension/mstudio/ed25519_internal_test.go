package mstudio

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"math/big"
	"slices"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	voi "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
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
	if expanded(pub) == nil {
		t.Fatal("a real key was not expanded: verification fell back to crypto/ed25519")
	}
	for i := range 2 {
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
	// The first four edge keys decode, so they take the expanded path; the last does not.
	for i, k := range edgeKeys {
		if got, want := expanded(mustHex(k)) != nil, i < 4; got != want {
			t.Errorf("key %s expanded: %v, want %v", k, got, want)
		}
	}
}

// TestSmallOrderPointsMatchStdlib: every point of small order, in every spelling
// (canonical, the sign bit of x flipped, y+p where that fits), as the key and as R, with
// S of 0, 1, L-1 and L: the answers equal crypto/ed25519's, and those it accepts were
// accepted on the expanded path. (Random inputs almost never verify; this is the side of
// the rules where signatures are accepted.)
func TestSmallOrderPointsMatchStdlib(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	var order8 curve.CompressedEdwardsY
	if _, err := order8.SetBytes(mustHex(edgeKeys[3])); err != nil {
		t.Fatal(err)
	}
	var g, q curve.EdwardsPoint
	if _, err := g.SetCompressedY(&order8); err != nil {
		t.Fatal(err)
	}
	q.Identity()
	var spellings [][]byte
	for range 8 {
		var c curve.CompressedEdwardsY
		c.SetEdwardsPoint(&q)
		canonical := bytes.Clone(c[:])
		spellings = append(spellings, canonical, withSignFlipped(canonical))
		y := littleEndian(canonical)
		y.SetBit(y, 255, 0)
		if yp := y.Add(y, p); yp.BitLen() <= 255 {
			b := littleEndianBytes(yp)
			b[31] |= canonical[31] & 0x80
			spellings = append(spellings, b, withSignFlipped(b))
		}
		q.Add(&q, &g)
	}
	one := make([]byte, 32)
	one[0] = 1
	l := mustHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	lMinus1 := bytes.Clone(l)
	lMinus1[0]--
	accepted := 0
	for _, a := range spellings {
		for _, r := range spellings {
			for _, s := range [][]byte{make([]byte, 32), one, lMinus1, l} {
				for m := range 4 {
					msg := []byte{byte(m)}
					sig := append(bytes.Clone(r), s...)
					want := ed25519.Verify(a, msg, sig)
					if got := verifyEd25519(a, msg, sig); got != want {
						t.Fatalf("A %x R %x S %x: got %v, crypto/ed25519 %v", a, r, s, got, want)
					}
					if want {
						accepted++
						if expanded(a) == nil {
							t.Fatalf("A %x: accepted by the fallback, not the expanded path", a)
						}
					}
				}
			}
		}
	}
	if accepted == 0 {
		t.Fatal("no small-order case verified: the table does not reach the accepting side")
	}
	t.Logf("%d spellings, %d signatures accepted", len(spellings), accepted)
}

func withSignFlipped(b []byte) []byte {
	f := bytes.Clone(b)
	f[31] ^= 0x80
	return f
}

// littleEndian reads b as a little-endian number.
func littleEndian(b []byte) *big.Int {
	r := bytes.Clone(b)
	slices.Reverse(r)
	return new(big.Int).SetBytes(r)
}

// littleEndianBytes writes x as 32 little-endian bytes.
func littleEndianBytes(x *big.Int) []byte {
	b := x.FillBytes(make([]byte, 32))
	slices.Reverse(b)
	return b
}

// TestExpandedKeysBounded: more keys than are kept start the set over, and every key
// still verifies.
func TestExpandedKeysBounded(t *testing.T) {
	expandedKeys.Store(nil) // from an empty set, whatever ran before
	msg := []byte("m")
	for i := range maxExpandedKeys*2 + 3 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !verifyEd25519(pub, msg, ed25519.Sign(priv, msg)) {
			t.Fatalf("key %d did not verify", i)
		}
		n := len(*expandedKeys.Load())
		if n > maxExpandedKeys {
			t.Fatalf("%d expanded keys kept, want at most %d", n, maxExpandedKeys)
		}
		if i == maxExpandedKeys && n != 1 {
			t.Fatalf("after %d keys, %d kept: the set did not start over", i+1, n)
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

// TestVerifiesWithTheExpandedKey: the kept expanded key decides, not crypto/ed25519. With
// another key's expansion kept under a key's bytes, that key's own signature fails and
// the other's passes; a fallback to crypto/ed25519 would answer the other way round.
func TestVerifiesWithTheExpandedKey(t *testing.T) {
	pubA, privA, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubB, privB, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	xB, err := voi.NewExpandedPublicKey(voi.PublicKey(pubB))
	if err != nil {
		t.Fatal(err)
	}
	stand := map[string]*voi.ExpandedPublicKey{string(pubA): xB}
	expandedKeys.Store(&stand)
	t.Cleanup(func() { expandedKeys.Store(nil) })
	msg := []byte("m")
	if verifyEd25519(pubA, msg, ed25519.Sign(privA, msg)) {
		t.Error("verified with the key's own bytes, not the expanded key kept for them")
	}
	if !verifyEd25519(pubA, msg, ed25519.Sign(privB, msg)) {
		t.Error("the expanded key kept was not used")
	}
}
