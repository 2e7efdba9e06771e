package atrek_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/golang-jwt/jwt/v5"
)

// FuzzSessionToken feeds arbitrary strings to the verifier: nothing panics, every refusal
// is one of the package's sentinels without the input in its text, and nothing verifies
// unless it is byte for byte one of the tokens the simulator's key genuinely signed.
// The clock stands still, so the genuine seeds stay valid however long the run.
func FuzzSessionToken(f *testing.F) {
	e := newFragmentEnv(f)
	raw := e.token(f, e.Instance)
	key := e.Sim.SessionTokenKey()
	claims := claimsOf(f, raw)
	genuine := map[string]bool{
		raw: true,
		forge(f, map[string]any{"alg": "Ed25519", "typ": "JWT"}, claims, jwt.SigningMethodEdDSA, key.Private): true,
		e.resign(f, raw, func(c, _ map[string]any) { delete(c, "publicKeySerial") }):                          true, // serial in kid only
	}
	for g := range genuine {
		f.Add(g)
	}

	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	header := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": key.Serial}
	parts := strings.Split(raw, ".")
	for _, s := range []string{
		forge(f, header, claims, jwt.SigningMethodEdDSA, otherKey),
		forge(f, map[string]any{"alg": "none"}, claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		forge(f, map[string]any{"alg": "HS256", "kid": key.Serial}, claims, jwt.SigningMethodHS256, []byte(key.Public())),
		e.resign(f, raw, func(c, _ map[string]any) { c["extensionId"] = "00000000-0000-0000-0000-000000000000" }),
		e.resign(f, raw, func(c, _ map[string]any) { c["exp"] = 1e300 }),
		e.resign(f, raw, func(c, _ map[string]any) { c["iat"], c["nbf"] = -1e300, "x" }),
		e.resign(f, raw, func(c, _ map[string]any) { c["publicKeySerial"] = "latest" }),
		parts[0] + "." + parts[1] + ".",
		parts[0] + ".." + parts[2],
		raw + "=",
		"", ".", "..", "...", "e30.e30.e30", "null.null.null",
	} {
		f.Add(s)
	}

	sentinels := []error{
		atrek.ErrSessionTokenMissing, atrek.ErrSessionTokenInvalid, atrek.ErrSessionTokenExpired,
		atrek.ErrForeignExtension, atrek.ErrInstanceUnavailable, atrek.ErrSessionKeyUnavailable,
	}
	f.Fuzz(func(t *testing.T, s string) {
		claims, in, err := e.Verifier.Verify(t.Context(), s)
		if genuine[s] {
			if err != nil {
				t.Fatalf("a genuine token was refused: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("verified a token nobody signed: %q (user %s, instance %s)", s, claims.UserID(), in.ID)
		}
		if claims != nil || in != nil {
			t.Errorf("refused with %v but returned claims or an instance", err)
		}
		known := false
		for _, want := range sentinels {
			known = known || errors.Is(err, want)
		}
		if !known {
			t.Errorf("error %v is none of the package's sentinels", err)
		}
		// Short inputs without a dot may well be words of an error text by chance.
		if len(s) >= 16 && strings.Contains(s, ".") && strings.Contains(err.Error(), s) {
			t.Errorf("error text %q contains the input", err)
		}
	})
}
