package atrek_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// fragmentEnv is the shared app (apptest: the simulator over HTTP, a SQLite store, the
// real client, one fake clock) and a verifier that fetches the simulator's session_token
// keys through the real client and key cache.
type fragmentEnv struct {
	*apptest.App
	Verifier *atrek.SessionTokenVerifier
	Instance mstudiotest.Instance // installed at the simulator and here
	User     mstudiotest.User     // has access to every context
}

// routeKeys is the simulator's public-key route, any serial.
const routeKeys = "GET /v2/public-keys/{serial}"

func newFragmentEnv(t testing.TB) *fragmentEnv {
	t.Helper()
	e := &fragmentEnv{App: apptest.New(t, apptest.Options{})}
	e.Verifier = e.newVerifier(t, e.Client, atrek.VerifierOptions{Client: e.Client, ExtensionSecret: extension.Secret(e.Sim.ExtensionSecret())})
	e.Instance = e.Install(t, mstudiotest.InstanceSpec{})
	e.User = e.App.User(t, "Ada Admin")
	return e
}

// deadClient is a platform client of a platform that does not answer.
func deadClient(t testing.TB) *mstudio.Client {
	t.Helper()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	c, err := mstudio.New(dead.URL, mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newVerifier returns a verifier with a key cache of its own, fetching through keyClient,
// on the env's store and clock.
func (e *fragmentEnv) newVerifier(t testing.TB, keyClient *mstudio.Client, opts atrek.VerifierOptions) *atrek.SessionTokenVerifier {
	t.Helper()
	opts.Now = e.Clock.Now
	keys := mstudio.NewKeyCache(keyClient, mstudio.PurposeSessionToken, mstudio.KeyCacheOptions{})
	v, err := atrek.NewSessionTokenVerifier(keys, e.Store, e.Sim.ExtensionID(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// setEnabled disables or enables the instance in the store only: the simulator still
// signs tokens for it, so the verifier's own check is what refuses.
func (e *fragmentEnv) setEnabled(t testing.TB, in mstudiotest.Instance, enabled bool) {
	t.Helper()
	e.Apply(t, extension.LifecycleEvent{Kind: extension.EventUpdated, InstanceID: in.ID,
		ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.Scopes, Enabled: &enabled})
}

func (e *fragmentEnv) remove(t testing.TB, in mstudiotest.Instance) {
	t.Helper()
	e.Apply(t, extension.LifecycleEvent{Kind: extension.EventRemoved, InstanceID: in.ID,
		ContextKind: in.ContextKind, ContextID: in.ContextID, Enabled: new(false)})
}

// token is a genuine session token of the env's user in the instance.
func (e *fragmentEnv) token(t testing.TB, in mstudiotest.Instance) string {
	t.Helper()
	raw, err := e.Sim.NewSessionToken(in.ID, e.User.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// forge builds a token from a header and claims, signed by the method with the key.
func forge(t testing.TB, header, claims map[string]any, method jwt.SigningMethod, key any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	sig, err := method.Sign(input, key)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// claimsOf decodes a token's claims, unverified, for a forgery to start from.
func claimsOf(t testing.TB, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// resign re-signs a genuine token's claims, changed by edit, as the simulator would:
// EdDSA with its current session_token key, kid set to the key's serial.
func (e *fragmentEnv) resign(t testing.TB, raw string, edit func(claims, header map[string]any)) string {
	t.Helper()
	key := e.Sim.SessionTokenKey()
	claims := claimsOf(t, raw)
	header := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": key.Serial}
	if edit != nil {
		edit(claims, header)
	}
	return forge(t, header, claims, jwt.SigningMethodEdDSA, key.Private)
}

// assertRefused checks that Verify refuses raw with want and that the error text carries
// no piece of the token.
func assertRefused(t *testing.T, v *atrek.SessionTokenVerifier, raw string, want error) {
	t.Helper()
	claims, in, err := v.Verify(t.Context(), raw)
	if !errors.Is(err, want) {
		t.Fatalf("Verify: error %v, want %v", err, want)
	}
	if claims != nil || in != nil {
		t.Errorf("Verify refused but returned claims %v, instance %v", claims, in)
	}
	assertNoToken(t, err.Error(), raw)
}

// assertNoToken checks that text holds neither the token nor one of its parts.
func assertNoToken(t *testing.T, text, raw string) {
	t.Helper()
	if raw == "" {
		return
	}
	for _, piece := range append(strings.Split(raw, "."), raw) {
		if len(piece) >= 8 && strings.Contains(text, piece) {
			t.Errorf("text %q contains a piece of the token", text)
		}
	}
}

func TestVerifyValid(t *testing.T) {
	e := newFragmentEnv(t)
	variant := e.Install(t, mstudiotest.InstanceSpec{ContextKind: "customer", VariantKey: "premium", Scopes: []string{"customer:read"}})
	for _, tc := range []struct {
		name string
		in   mstudiotest.Instance
	}{{"project instance", e.Instance}, {"customer instance with variant", variant}} {
		t.Run(tc.name, func(t *testing.T) {
			raw := e.token(t, tc.in)
			claims, in, err := e.Verifier.Verify(t.Context(), raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if in.ID != tc.in.ID || !in.Enabled {
				t.Errorf("instance = %s (enabled %v), want %s enabled", in.ID, in.Enabled, tc.in.ID)
			}
			var wantVariant *string
			if tc.in.VariantKey != "" {
				wantVariant = &tc.in.VariantKey
			}
			want := atrek.SessionClaims{
				ExtensionID: e.Sim.ExtensionID(), InstanceID: tc.in.ID, ContextID: tc.in.ContextID,
				Context: tc.in.ContextKind, Scopes: tc.in.Scopes, PublicKeySerial: e.Sim.SessionTokenKey().Serial,
				VariantKey: wantVariant,
			}
			got := *claims
			got.SessionID, got.RegisteredClaims = "", jwt.RegisteredClaims{}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if claims.UserID() != e.User.ID {
				t.Errorf("UserID() = %q, want %q", claims.UserID(), e.User.ID)
			}
			if _, err := uuid.Parse(claims.SessionID); err != nil {
				t.Errorf("SessionID = %q, want a UUID", claims.SessionID)
			}
			if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life != time.Minute {
				t.Errorf("exp - iat = %v, want the simulator's 1m", life)
			}
		})
	}
}

// TestVerifyAcceptsVariants: what the platform may do differently and still be the
// platform: alg "Ed25519", the serial only in kid, ids in upper case, a rotated key.
func TestVerifyAcceptsVariants(t *testing.T) {
	e := newFragmentEnv(t)
	raw := e.token(t, e.Instance)
	tests := []struct {
		name string
		raw  func(t *testing.T) string
	}{
		{"alg Ed25519", func(t *testing.T) string {
			key := e.Sim.SessionTokenKey()
			return forge(t, map[string]any{"alg": "Ed25519", "typ": "JWT"}, claimsOf(t, raw), jwt.SigningMethodEdDSA, key.Private)
		}},
		{"serial only in kid", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { delete(c, "publicKeySerial") })
		}},
		{"no kid", func(t *testing.T) string {
			return e.resign(t, raw, func(_, h map[string]any) { delete(h, "kid") })
		}},
		{"kid disagrees with publicKeySerial", func(t *testing.T) string {
			return e.resign(t, raw, func(_, h map[string]any) { h["kid"] = "another-key-id" })
		}},
		{"ids in upper case", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) {
				for _, k := range []string{"extensionId", "extensionInstanceId", "sub", "publicKeySerial"} {
					c[k] = strings.ToUpper(c[k].(string))
				}
			})
		}},
		{"no iat", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { delete(c, "iat") })
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			claims, in, err := e.Verifier.Verify(t.Context(), tc.raw(t))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if in.ID != e.Instance.ID || claims.InstanceID != e.Instance.ID {
				t.Errorf("instance %s, claim %s; want %s", in.ID, claims.InstanceID, e.Instance.ID)
			}
		})
	}

	t.Run("rotated key", func(t *testing.T) {
		old := e.token(t, e.Instance)
		if _, err := e.Sim.RotateKey(mstudiotest.PurposeSessionToken); err != nil {
			t.Fatal(err)
		}
		for name, raw := range map[string]string{"old serial": old, "new serial": e.token(t, e.Instance)} {
			if _, _, err := e.Verifier.Verify(t.Context(), raw); err != nil {
				t.Errorf("%s: Verify: %v", name, err)
			}
		}
	})
}

// TestVerifyTime moves the fake clock around a 60 s token with the 5 s leeway.
func TestVerifyTime(t *testing.T) {
	tests := []struct {
		name    string
		advance time.Duration
		want    error // nil: accepted
	}{
		{"fresh", 0, nil},
		{"just before exp", 59 * time.Second, nil},
		{"past exp within the leeway", 64 * time.Second, nil},
		{"past exp and the leeway", 66 * time.Second, atrek.ErrSessionTokenExpired},
		{"an hour later", time.Hour, atrek.ErrSessionTokenExpired},
		{"issued in our future within the leeway", -4 * time.Second, nil},
		{"issued in our future beyond the leeway", -10 * time.Second, atrek.ErrSessionTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFragmentEnv(t)
			raw := e.token(t, e.Instance)
			e.Clock.Advance(tc.advance)
			if tc.want != nil {
				assertRefused(t, e.Verifier, raw, tc.want)
				return
			}
			if _, _, err := e.Verifier.Verify(t.Context(), raw); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// TestVerifyRefusesForgeries: tokens the platform did not sign as they are, whatever
// they claim. Each is refused with a sentinel, and no error text quotes the token.
func TestVerifyRefusesForgeries(t *testing.T) {
	e := newFragmentEnv(t)
	raw := e.token(t, e.Instance)
	key := e.Sim.SessionTokenKey()
	pub := key.Public()
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	header := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": key.Serial} }
	claims := claimsOf(t, raw)
	parts := strings.Split(raw, ".")
	invalid := atrek.ErrSessionTokenInvalid

	tests := []struct {
		name string
		raw  func(t *testing.T) string
		want error
	}{
		{"alg none", func(t *testing.T) string {
			return forge(t, header("none"), claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
		}, invalid},
		{"alg none with the genuine signature", func(t *testing.T) string {
			none := forge(t, header("none"), claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
			return strings.TrimSuffix(none, ".") + "." + parts[2]
		}, invalid},
		{"alg None", func(t *testing.T) string {
			return forge(t, header("None"), claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
		}, invalid},
		{"no alg", func(t *testing.T) string {
			return forge(t, map[string]any{"typ": "JWT"}, claims, jwt.SigningMethodEdDSA, key.Private)
		}, invalid},
		{"alg eddsa in lower case", func(t *testing.T) string {
			return forge(t, header("eddsa"), claims, jwt.SigningMethodEdDSA, key.Private)
		}, invalid},
		{"HS256 keyed with the public key", func(t *testing.T) string {
			return forge(t, header("HS256"), claims, jwt.SigningMethodHS256, []byte(pub))
		}, invalid},
		{"HS256 keyed with the public key in base64", func(t *testing.T) string {
			return forge(t, header("HS256"), claims, jwt.SigningMethodHS256, []byte(base64.StdEncoding.EncodeToString(pub)))
		}, invalid},
		{"HS256 keyed with the public key in PEM", func(t *testing.T) string {
			return forge(t, header("HS256"), claims, jwt.SigningMethodHS256, pemKey)
		}, invalid},
		{"HS384", func(t *testing.T) string {
			return forge(t, header("HS384"), claims, jwt.SigningMethodHS384, []byte(pub))
		}, invalid},
		{"HS512", func(t *testing.T) string {
			return forge(t, header("HS512"), claims, jwt.SigningMethodHS512, []byte(pub))
		}, invalid},
		{"RS256", func(t *testing.T) string { return forge(t, header("RS256"), claims, jwt.SigningMethodRS256, rsaKey) }, invalid},
		{"PS256", func(t *testing.T) string { return forge(t, header("PS256"), claims, jwt.SigningMethodPS256, rsaKey) }, invalid},
		{"ES256", func(t *testing.T) string { return forge(t, header("ES256"), claims, jwt.SigningMethodES256, ecKey) }, invalid},
		{"alg in two spellings", func(t *testing.T) string {
			h := header("HS256")
			h["ALG"] = "EdDSA"
			return forge(t, h, claims, jwt.SigningMethodHS256, []byte(pub))
		}, invalid},
		{"critical header extension", func(t *testing.T) string {
			return e.resign(t, raw, func(_, h map[string]any) { h["crit"] = []string{"exp"} })
		}, invalid},
		{"signed by another key under the platform's serial", func(t *testing.T) string {
			return forge(t, header("EdDSA"), claims, jwt.SigningMethodEdDSA, otherKey)
		}, invalid},
		{"signed by another key, alg Ed25519", func(t *testing.T) string {
			return forge(t, header("Ed25519"), claims, jwt.SigningMethodEdDSA, otherKey)
		}, invalid},
		{"claims changed after signing", func(t *testing.T) string {
			c := claimsOf(t, raw)
			c["extensionInstanceId"] = uuid.NewString()
			p, _ := json.Marshal(c)
			return parts[0] + "." + b64(p) + "." + parts[2]
		}, invalid},
		{"signature of another token", func(t *testing.T) string {
			other := strings.Split(e.token(t, e.Instance), ".")
			return parts[0] + "." + parts[1] + "." + other[2]
		}, invalid},
		{"signature with a bit flipped", func(t *testing.T) string {
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[10] ^= 1
			return parts[0] + "." + parts[1] + "." + b64(sig)
		}, invalid},
		{"signature with its unused base64 bits set", func(t *testing.T) string {
			// Decodes to the same 64 bytes unless the decoding is strict.
			last := strings.IndexByte(base64URLAlphabet, parts[2][len(parts[2])-1])
			return raw[:len(raw)-1] + string(base64URLAlphabet[last^1])
		}, invalid},
		{"signature padded", func(t *testing.T) string { return raw + "==" }, invalid},
		{"serial not a UUID", func(t *testing.T) string {
			// The simulator's key server answers "latest" with its current key.
			return e.resign(t, raw, func(c, h map[string]any) { c["publicKeySerial"], h["kid"] = "latest", "latest" })
		}, invalid},
		{"serial a path", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["publicKeySerial"] = "../../v2/public-keys/" + key.Serial })
		}, invalid},
		{"serial unknown", func(t *testing.T) string {
			return e.resign(t, raw, func(c, h map[string]any) { c["publicKeySerial"], h["kid"] = uuid.NewString(), nil })
		}, invalid},
		{"no serial", func(t *testing.T) string {
			return e.resign(t, raw, func(c, h map[string]any) { delete(c, "publicKeySerial"); delete(h, "kid") })
		}, invalid},
		{"serial not a string", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["publicKeySerial"] = 42 })
		}, invalid},
		{"no exp", func(t *testing.T) string { return e.resign(t, raw, func(c, _ map[string]any) { delete(c, "exp") }) }, invalid},
		{"lives an hour", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["exp"] = c["iat"].(float64) + 3600 })
		}, invalid},
		{"lives an hour, no iat", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["exp"] = c["iat"].(float64) + 3600; delete(c, "iat") })
		}, invalid},
		{"not before in a minute", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["nbf"] = c["iat"].(float64) + 60 })
		}, invalid},
		{"exp a string", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["exp"] = "tomorrow" })
		}, invalid},
		{"scopes not a list", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["scopes"] = "project:read" })
		}, invalid},
		{"sub not a user id", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["sub"] = "ada" })
		}, invalid},
		{"instance id not a UUID", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["extensionInstanceId"] = "' OR 1=1 --" })
		}, invalid},
		{"another extension", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["extensionId"] = uuid.NewString() })
		}, atrek.ErrForeignExtension},
		{"no extension id", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { delete(c, "extensionId") })
		}, atrek.ErrForeignExtension},
		{"too long", func(t *testing.T) string {
			return e.resign(t, raw, func(c, _ map[string]any) { c["padding"] = strings.Repeat("x", 9000) })
		}, invalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertRefused(t, e.Verifier, tc.raw(t), tc.want)
		})
	}
	if n := e.SimHits(routeKeys); n != 2 {
		// The genuine key once, the unknown serial once; never "latest" or a path.
		t.Errorf("key server got %d requests, want 2", n)
	}
	// The genuine token still verifies: nothing above poisoned the cache.
	if _, _, err := e.Verifier.Verify(t.Context(), raw); err != nil {
		t.Errorf("Verify(genuine) after the forgeries: %v", err)
	}
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestVerifyRefusesMalformed(t *testing.T) {
	e := newFragmentEnv(t)
	tests := []struct {
		name, raw string
		want      error
	}{
		{"empty", "", atrek.ErrSessionTokenMissing},
		{"words", "not a token", atrek.ErrSessionTokenInvalid},
		{"one dot", "eyJhbGciOiJFZERTQSJ9.e30", atrek.ErrSessionTokenInvalid},
		{"four parts", "eyJhbGciOiJFZERTQSJ9.e30.c2ln.c2ln", atrek.ErrSessionTokenInvalid},
		{"dots only", "..", atrek.ErrSessionTokenInvalid},
		{"header not base64", "!!!.e30.c2ln", atrek.ErrSessionTokenInvalid},
		{"header not JSON", b64([]byte("EdDSA")) + ".e30.c2ln", atrek.ErrSessionTokenInvalid},
		{"header null", b64([]byte("null")) + ".e30.c2ln", atrek.ErrSessionTokenInvalid},
		{"payload not JSON", "eyJhbGciOiJFZERTQSJ9." + b64([]byte("{")) + ".c2ln", atrek.ErrSessionTokenInvalid},
		{"bearer prefix", "Bearer " + e.token(t, e.Instance), atrek.ErrSessionTokenInvalid},
		{"surrounding space", " " + e.token(t, e.Instance) + " ", atrek.ErrSessionTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertRefused(t, e.Verifier, tc.raw, tc.want)
		})
	}
}

// TestVerifyInstance: a genuine token is refused when the instance here is unknown,
// disabled or removed, whatever the platform thinks.
func TestVerifyInstance(t *testing.T) {
	e := newFragmentEnv(t)
	unknown, err := e.Sim.CreateInstance(mstudiotest.InstanceSpec{}) // never reached our store
	if err != nil {
		t.Fatal(err)
	}
	disabled := e.Install(t, mstudiotest.InstanceSpec{})
	e.setEnabled(t, disabled, false)
	removed := e.Install(t, mstudiotest.InstanceSpec{})
	reenabled := e.Install(t, mstudiotest.InstanceSpec{})
	e.setEnabled(t, reenabled, false)
	e.setEnabled(t, reenabled, true)
	// Tokens are minted before the removal: the simulator signs none for a removed instance.
	rawRemoved := e.token(t, removed)
	e.remove(t, removed)

	for _, tc := range []struct {
		name string
		raw  string
		want error
	}{
		{"unknown", e.token(t, unknown), extension.ErrNotFound},
		{"disabled", e.token(t, disabled), extension.ErrDisabled},
		{"removed", rawRemoved, extension.ErrRemoved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertRefused(t, e.Verifier, tc.raw, atrek.ErrInstanceUnavailable)
			assertRefused(t, e.Verifier, tc.raw, tc.want)
		})
	}
	t.Run("enabled again", func(t *testing.T) {
		if _, _, err := e.Verifier.Verify(t.Context(), e.token(t, reenabled)); err != nil {
			t.Errorf("Verify: %v", err)
		}
	})
}

// TestVerifyKeyServerDown: a serial not yet cached while the platform does not answer is
// our outage, not the caller's fault; a cached one keeps working.
func TestVerifyKeyServerDown(t *testing.T) {
	e := newFragmentEnv(t)
	raw := e.token(t, e.Instance)
	if _, _, err := e.Verifier.Verify(t.Context(), raw); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	cold := e.newVerifier(t, deadClient(t), atrek.VerifierOptions{})
	_, _, err := cold.Verify(t.Context(), raw)
	if !errors.Is(err, atrek.ErrSessionKeyUnavailable) {
		t.Fatalf("Verify with the key server down: %v, want %v", err, atrek.ErrSessionKeyUnavailable)
	}
	assertNoToken(t, err.Error(), raw)
	if _, _, err := e.Verifier.Verify(t.Context(), raw); err != nil {
		t.Errorf("Verify with a cached key: %v", err)
	}
}

func TestNewSessionTokenVerifierRefusesMisconfiguration(t *testing.T) {
	e := newFragmentEnv(t)
	keys := mstudio.NewKeyCache(e.Client, mstudio.PurposeSessionToken, mstudio.KeyCacheOptions{})
	for name, build := range map[string]func() (*atrek.SessionTokenVerifier, error){
		"no extension id": func() (*atrek.SessionTokenVerifier, error) {
			return atrek.NewSessionTokenVerifier(keys, e.Store, "", atrek.VerifierOptions{})
		},
		"extension id bad": func() (*atrek.SessionTokenVerifier, error) {
			return atrek.NewSessionTokenVerifier(keys, e.Store, "ext", atrek.VerifierOptions{})
		},
		"no keys": func() (*atrek.SessionTokenVerifier, error) {
			return atrek.NewSessionTokenVerifier(nil, e.Store, e.Sim.ExtensionID(), atrek.VerifierOptions{})
		},
		"no store": func() (*atrek.SessionTokenVerifier, error) {
			return atrek.NewSessionTokenVerifier(keys, nil, e.Sim.ExtensionID(), atrek.VerifierOptions{})
		},
	} {
		if v, err := build(); err == nil {
			t.Errorf("%s: got verifier %p, want an error", name, v)
		}
	}
}

// TestMiddleware sends requests over HTTP through Echo: the handler sees the verified
// user and instance; refusals get their status, and no answer quotes the token.
func TestMiddleware(t *testing.T) {
	e := newFragmentEnv(t)
	disabled := e.Install(t, mstudiotest.InstanceSpec{})
	e.setEnabled(t, disabled, false)

	ec := httpfront.New(httpfront.Options{})
	ec.GET("/fragment/whoami", func(c echo.Context) error {
		claims, in, ok := atrek.FragmentFrom(c)
		if !ok {
			return errors.New("no fragment in the request")
		}
		return c.JSON(http.StatusOK, map[string]any{"user": claims.UserID(), "instance": in.ID, "scopes": claims.Scopes})
	}, e.Verifier.Middleware())
	ec.GET("/open", func(c echo.Context) error {
		if _, _, ok := atrek.FragmentFrom(c); ok {
			return errors.New("a fragment outside the middleware")
		}
		return c.NoContent(http.StatusNoContent)
	})
	srv := httptest.NewServer(ec)
	t.Cleanup(srv.Close)

	raw := e.token(t, e.Instance)
	tests := []struct {
		name    string
		headers map[string][]string
		status  int
	}{
		{"valid", map[string][]string{"X-Session-Token": {raw}}, http.StatusOK},
		{"missing", nil, http.StatusUnauthorized},
		{"empty", map[string][]string{"X-Session-Token": {""}}, http.StatusUnauthorized},
		{"in Authorization only", map[string][]string{"Authorization": {"Bearer " + raw}}, http.StatusUnauthorized},
		{"twice", map[string][]string{"X-Session-Token": {raw, raw}}, http.StatusUnauthorized},
		{"HS256 with the public key", map[string][]string{"X-Session-Token": {forge(t,
			map[string]any{"alg": "HS256", "kid": e.Sim.SessionTokenKey().Serial}, claimsOf(t, raw),
			jwt.SigningMethodHS256, []byte(e.Sim.SessionTokenKey().Public()))}}, http.StatusUnauthorized},
		{"another extension", map[string][]string{"X-Session-Token": {e.resign(t, raw, func(c, _ map[string]any) {
			c["extensionId"] = uuid.NewString()
		})}}, http.StatusForbidden},
		{"disabled instance", map[string][]string{"X-Session-Token": {e.token(t, disabled)}}, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/fragment/whoami", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, vs := range tc.headers {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			status, body, h := do(t, req)
			if status != tc.status {
				t.Fatalf("status %d, want %d; body %s", status, tc.status, body)
			}
			if cc, vary := h.Get("Cache-Control"), h.Get("Vary"); cc != "private, no-store" || !strings.EqualFold(vary, atrek.HeaderSessionToken) {
				t.Errorf("Cache-Control %q, Vary %q; want private, no-store and %s", cc, vary, atrek.HeaderSessionToken)
			}
			if status == http.StatusOK {
				want := map[string]any{"user": e.User.ID, "instance": e.Instance.ID, "scopes": []any{"project:read", "customer:read"}}
				var got map[string]any
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("handler saw (-want +got):\n%s", diff)
				}
				return
			}
			for _, vs := range tc.headers {
				for _, v := range vs {
					assertNoToken(t, body, v)
				}
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		e.Clock.Advance(2 * time.Minute)
		t.Cleanup(func() { e.Clock.Advance(-2 * time.Minute) })
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/fragment/whoami", nil)
		req.Header.Set(atrek.HeaderSessionToken, raw)
		status, body, _ := do(t, req)
		if status != http.StatusUnauthorized || !strings.Contains(body, "expired") {
			t.Errorf("got %d %s, want 401 saying expired", status, body)
		}
	})
	t.Run("outside the middleware", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/open", nil)
		if status, body, _ := do(t, req); status != http.StatusNoContent {
			t.Errorf("got %d %s, want 204", status, body)
		}
	})
	t.Run("key server down", func(t *testing.T) {
		cold := e.newVerifier(t, deadClient(t), atrek.VerifierOptions{})
		ec := httpfront.New(httpfront.Options{})
		ec.GET("/f", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, cold.Middleware())
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/f", nil)
		req.Header.Set(atrek.HeaderSessionToken, raw)
		ec.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("got %d %s, want 503", rec.Code, rec.Body)
		}
	})
}

func do(t *testing.T, req *http.Request) (int, string, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestAccessToken exchanges a verified session token at the simulator for a token that
// reads the instance there as the user.
func TestAccessToken(t *testing.T) {
	e := newFragmentEnv(t)
	raw := e.token(t, e.Instance)
	tok, expiry, err := e.Verifier.AccessToken(t.Context(), raw)
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	if want := e.Clock.Now().Add(time.Minute); !expiry.Equal(want) {
		t.Errorf("expiry = %v, want %v", expiry, want)
	}
	in, err := e.Client.Instance(t.Context(), tok, e.Instance.ID)
	if err != nil {
		t.Fatalf("GET /v2/extension-instances/%s with the exchanged token: %v", e.Instance.ID, err)
	}
	if in.ID != e.Instance.ID {
		t.Errorf("instance %s, want %s", in.ID, e.Instance.ID)
	}
	if self, err := e.Client.User(t.Context(), tok, "self"); err != nil || self.ID != e.User.ID {
		t.Errorf("User(self) = %+v, %v; want user %s", self, err, e.User.ID)
	}

	const route = "POST /v2/authenticate-session-token"
	before := e.SimHits(route)
	forged := e.resign(t, raw, func(c, _ map[string]any) { c["extensionId"] = uuid.NewString() })
	tests := []struct {
		name     string
		verifier *atrek.SessionTokenVerifier
		raw      string
		want     error // nil: any error
		exchange bool  // reaches the platform
	}{
		{"not verified", e.Verifier, forged, atrek.ErrForeignExtension, false},
		{"no client", e.newVerifier(t, e.Client, atrek.VerifierOptions{ExtensionSecret: extension.Secret(e.Sim.ExtensionSecret())}), raw, atrek.ErrExchangeUnavailable, false},
		{"no secret", e.newVerifier(t, e.Client, atrek.VerifierOptions{Client: e.Client}), raw, atrek.ErrExchangeUnavailable, false},
		{"wrong secret", e.newVerifier(t, e.Client, atrek.VerifierOptions{Client: e.Client, ExtensionSecret: "not-the-secret-of-this-extension"}), raw, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := e.SimHits(route)
			tok, _, err := tc.verifier.AccessToken(t.Context(), tc.raw)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("AccessToken: error %v, want %v", err, tc.want)
			}
			if !tok.IsZero() {
				t.Error("a refused exchange returned a token")
			}
			assertNoToken(t, err.Error(), tc.raw)
			for _, s := range []string{e.Sim.ExtensionSecret(), "not-the-secret-of-this-extension"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error text %q contains the secret", err)
				}
			}
			if got := e.SimHits(route) - n; got != map[bool]int{false: 0, true: 1}[tc.exchange] {
				t.Errorf("%d exchanges reached the platform, want reached=%v", got, tc.exchange)
			}
		})
	}
	if n := e.SimHits(route) - before; n != 1 {
		t.Errorf("%d refused exchanges reached the platform, want 1", n)
	}
}
