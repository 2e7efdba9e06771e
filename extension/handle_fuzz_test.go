package extension_test

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
)

// FuzzValidSessionHandle: a handle is valid exactly when it is 32 lower-case hex digits,
// that is the hex of 16 bytes, which encodes back to the very handle; a fresh random
// handle always is.
func FuzzValidSessionHandle(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef")
	f.Add("0123456789ABCDEF0123456789ABCDEF")
	f.Add("0123456789abcdef0123456789abcde")
	f.Add("0123456789abcdef0123456789abcdeg")
	f.Add("0123456789abcdef0123456789abcdef\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		valid := extension.ValidSessionHandle(s)
		raw, err := hex.DecodeString(s)
		want := err == nil && len(raw) == 16 && s == strings.ToLower(s)
		if valid != want {
			t.Fatalf("ValidSessionHandle(%q) = %v, want %v", s, valid, want)
		}
		if valid && hex.EncodeToString(raw) != s {
			t.Fatalf("%q does not encode back", s)
		}
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		fresh := hex.EncodeToString(b)
		if !extension.ValidSessionHandle(fresh) {
			t.Fatalf("fresh handle %q refused", fresh)
		}
	})
}
