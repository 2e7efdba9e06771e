package mstudiotest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

const ssoSessionID = "3c0d7a4e-9b1f-4f6a-8e2d-5a6b7c8d9e0f"

// ssoMintSession asks the simulator for a session token as the control panel does.
func ssoMintSession(t *testing.T, base, userToken, instanceID string) string {
	t.Helper()
	var got struct {
		SessionToken string `json:"sessionToken"`
	}
	r := ssoDo(t, "POST", base+"/v2/extension-instances/"+instanceID+"/sessions/"+ssoSessionID, ssoToken(userToken), nil)
	ssoDecode(t, r, 200, &got)
	return got.SessionToken
}

// ssoSessionKeys fetches the session_token public key with the serial in both formats
// the platform serves, the way a verifier would.
func ssoSessionKeys(t *testing.T, base, serial string) map[string]ed25519.PublicKey {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	for _, format := range []string{"spki", "raw"} {
		var got struct {
			Serial string `json:"serial"`
			Key    string `json:"key"`
		}
		ssoDecode(t, ssoDo(t, "GET", base+"/v2/public-keys/"+serial+"?purpose=session_token&format="+format, nil, nil), 200, &got)
		if got.Serial != serial {
			t.Errorf("%s key: serial %q, want %q", format, got.Serial, serial)
		}
		switch format {
		case "spki":
			block, _ := pem.Decode([]byte(got.Key))
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("spki key %q is not a PEM PUBLIC KEY", got.Key)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatalf("ParsePKIXPublicKey: %v", err)
			}
			ed, ok := pub.(ed25519.PublicKey)
			if !ok {
				t.Fatalf("spki key is a %T, want ed25519.PublicKey", pub)
			}
			keys[format] = ed
		case "raw":
			raw, err := base64.StdEncoding.DecodeString(got.Key)
			if err != nil || len(raw) != ed25519.PublicKeySize {
				t.Fatalf("raw key %q: %d bytes, %v", got.Key, len(raw), err)
			}
			keys[format] = ed25519.PublicKey(raw)
		}
	}
	return keys
}

// ssoJWTPart decodes one base64url part of a compact JWS into a map.
func ssoJWTPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("part %d: %v", i, err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("part %d: %v", i, err)
	}
	return m
}

func TestSessionTokenClaims(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{})
	ada := ssoUser(t, sim, true)
	serial := sim.SessionTokenKey().Serial
	keys := ssoSessionKeys(t, base, serial)
	if !keys["spki"].Equal(keys["raw"]) {
		t.Fatalf("spki and raw formats give different keys")
	}
	tests := []struct {
		name           string
		spec           InstanceSpec
		wantContext    string
		wantVariantKey any
	}{
		{"project with variant", InstanceSpec{ContextKind: "project", VariantKey: "pro"}, "project", "pro"},
		{"customer without variant", InstanceSpec{ContextKind: "customer", Scopes: []string{"customer:read"}}, "customer", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ssoInstance(t, sim, tt.spec, false)
			token := ssoMintSession(t, base, ada.Token, in.ID)

			wantHeader := map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": serial}
			if diff := cmp.Diff(wantHeader, ssoJWTPart(t, token, 0)); diff != "" {
				t.Errorf("JOSE header (-want +got):\n%s", diff)
			}
			now := float64(clock.Now().Unix())
			scopes := []any{}
			for _, sc := range in.Scopes {
				scopes = append(scopes, sc)
			}
			want := jwt.MapClaims{
				"sub":                          ada.ID,
				"sessionId":                    ssoSessionID,
				"extensionId":                  sim.ExtensionID(),
				"extensionInstanceId":          in.ID,
				"contextId":                    in.ContextID,
				"context":                      tt.wantContext,
				"scopes":                       scopes,
				"authenticatableWithoutSecret": false,
				"publicKeySerial":              serial,
				"variantKey":                   tt.wantVariantKey,
				"iss":                          "mstudio",
				"aud":                          []any{sim.ExtensionID()},
				"iat":                          now,
				"nbf":                          now,
				"exp":                          now + 60,
			}
			for format, key := range keys {
				got := jwt.MapClaims{}
				_, err := jwt.ParseWithClaims(token, got, func(*jwt.Token) (any, error) { return key, nil },
					jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(clock.Now), jwt.WithExpirationRequired(),
					jwt.WithAudience(sim.ExtensionID()), jwt.WithIssuer("mstudio"))
				if err != nil {
					t.Fatalf("verify with the %s key: %v", format, err)
				}
				if jti, _ := got["jti"].(string); uuid.Validate(jti) != nil {
					t.Errorf("jti = %v, want a UUID", got["jti"])
				}
				delete(got, "jti")
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("claims verified with the %s key (-want +got):\n%s", format, diff)
				}
			}
		})
	}
}

func TestSessionTokenExpiry(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{})
	ada := ssoUser(t, sim, true)
	in := ssoInstance(t, sim, InstanceSpec{}, false)
	key := sim.SessionTokenKey().Public()
	minted := clock.Now()
	token := ssoMintSession(t, base, ada.Token, in.ID)
	tests := []struct {
		name     string
		at       time.Duration // after minting
		wantErr  error
		exchange int
	}{
		{"before nbf", -time.Second, jwt.ErrTokenNotValidYet, 400},
		{"at once", 0, nil, 201},
		{"one second left", 59 * time.Second, nil, 201},
		{"at exp", 60 * time.Second, jwt.ErrTokenExpired, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(minted.Add(tt.at))
			_, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return key, nil },
				jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(clock.Now))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("golang-jwt: got %v, want %v", err, tt.wantErr)
			}
			r := ssoDo(t, "POST", base+"/v2/authenticate-session-token", nil,
				map[string]string{"sessionToken": token, "extensionSecret": sim.ExtensionSecret()})
			if r.status != tt.exchange {
				t.Errorf("exchange: status %d, want %d (body %s)", r.status, tt.exchange, r.body)
			}
		})
	}
}

func TestSessionTokenMintRefused(t *testing.T) {
	sim, base, _ := newSSOSim(t, Options{})
	ada, otto := ssoUser(t, sim, true), ssoUser(t, sim, false)
	live := ssoInstance(t, sim, InstanceSpec{}, false)
	disabled := ssoInstance(t, sim, InstanceSpec{Disabled: true}, false)
	removed := ssoInstance(t, sim, InstanceSpec{}, true)
	bound, _ := sim.issueToken(grant{userID: ada.ID, instanceID: live.ID, scopes: live.Scopes}, time.Hour)
	tests := []struct {
		name, instanceID, sessionID string
		header                      map[string]string
		wantStatus                  int
		wantType                    string
	}{
		{"no token", live.ID, ssoSessionID, nil, 401, "Unauthorized"},
		{"user without access", live.ID, ssoSessionID, ssoToken(otto.Token), 403, "PermissionDenied"},
		{"token bound to an instance", live.ID, ssoSessionID, ssoToken(bound), 403, "PermissionDenied"},
		{"session id not a uuid", live.ID, "tab-1", ssoToken(ada.Token), 400, "ValidationError"},
		{"disabled instance", disabled.ID, ssoSessionID, ssoToken(ada.Token), 403, "PermissionDenied"},
		{"removed instance", removed.ID, ssoSessionID, ssoToken(ada.Token), 404, "NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ssoDo(t, "POST", base+"/v2/extension-instances/"+tt.instanceID+"/sessions/"+tt.sessionID, tt.header, nil)
			ssoCheckError(t, r, tt.wantStatus, tt.wantType)
		})
	}
}

// ssoResign signs claims (from a token's payload) with key and method, keeping kid.
func ssoResign(t *testing.T, claims jwt.MapClaims, method jwt.SigningMethod, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = claims["publicKeySerial"]
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestSessionTokenExchange(t *testing.T) {
	sim, base, clock := newSSOSim(t, Options{})
	ada, bob := ssoUser(t, sim, true), sim.Users()[1]
	in := ssoInstance(t, sim, InstanceSpec{Scopes: []string{"project:read"}}, false)
	token := ssoMintSession(t, base, ada.Token, in.ID)
	without, err := sim.newSessionToken(in.ID, ada.ID, "", true)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims(ssoJWTPart(t, token, 1))
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	forged := jwt.MapClaims{}
	for k, v := range claims {
		forged[k] = v
	}
	forged["sub"] = bob.ID
	parts := strings.Split(token, ".")
	forgedPayload := base64.RawURLEncoding.EncodeToString(ssoMust(json.Marshal(forged)))
	gone := ssoInstance(t, sim, InstanceSpec{}, false)
	goneToken := ssoMintSession(t, base, ada.Token, gone.ID)
	if _, err := sim.UpdateInstance(gone.ID, func(in *Instance) { in.Removed = true }); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		token      string
		secret     *string
		wantStatus int
		wantType   string
	}{
		{"with the extension secret", token, ssoPtr(sim.ExtensionSecret()), 201, ""},
		{"without the extension secret", token, nil, 403, "PermissionDenied"},
		{"with a wrong extension secret", token, ssoPtr(sim.ExtensionSecret() + "x"), 403, "PermissionDenied"},
		{"authenticatable without secret", without, nil, 201, ""},
		{"payload changed, signature kept", parts[0] + "." + forgedPayload + "." + parts[2], ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"signed by another key", ssoResign(t, claims, jwt.SigningMethodEdDSA, foreign), ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"HS256 with the extension secret", ssoResign(t, claims, jwt.SigningMethodHS256, []byte(sim.ExtensionSecret())), ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"alg none", ssoResign(t, claims, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"not a JWT", "session-token", ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"empty", "", ssoPtr(sim.ExtensionSecret()), 400, "ValidationError"},
		{"removed instance", goneToken, ssoPtr(sim.ExtensionSecret()), 404, "NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := map[string]any{"sessionToken": tt.token}
			if tt.secret != nil {
				body["extensionSecret"] = *tt.secret
			}
			r := ssoDo(t, "POST", base+"/v2/authenticate-session-token", nil, body)
			if tt.wantStatus != 201 {
				ssoCheckError(t, r, tt.wantStatus, tt.wantType)
				return
			}
			var got struct {
				PublicToken string    `json:"publicToken"`
				Expiry      time.Time `json:"expiry"`
			}
			ssoDecode(t, r, 201, &got)
			if want := clock.Now().Add(60 * time.Second); !got.Expiry.Equal(want) {
				t.Errorf("expiry = %v, want %v", got.Expiry, want)
			}
			// User-bound to the instance: it reads the instance's project as the user.
			project := base + "/v2/projects/" + in.ContextID
			if r := ssoDo(t, "GET", project, ssoToken(got.PublicToken), nil); r.status != 200 {
				t.Errorf("read project: status %d, want 200 (body %s)", r.status, r.body)
			}
			r = ssoDo(t, "POST", base+"/v2/extension-instances/"+in.ID+"/actions/create-access-token-retrieval-key", ssoToken(got.PublicToken), nil)
			ssoCheckError(t, r, 403, "PermissionDenied")
		})
	}
	t.Run("access token lasts 60 s", func(t *testing.T) {
		var got struct {
			PublicToken string `json:"publicToken"`
		}
		ssoDecode(t, ssoDo(t, "POST", base+"/v2/authenticate-session-token", nil,
			map[string]string{"sessionToken": token, "extensionSecret": sim.ExtensionSecret()}), 201, &got)
		clock.Advance(60 * time.Second)
		if r := ssoDo(t, "GET", base+"/v2/projects/"+in.ContextID, ssoToken(got.PublicToken), nil); r.status != 401 {
			t.Errorf("after 60 s: status %d, want 401", r.status)
		}
	})
}

// ssoPtr returns a pointer to v.
func ssoPtr[T any](v T) *T { return &v }

// ssoMust panics on err; for test fixtures only.
func ssoMust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestSessionTokenVerifiesWithExtBridge runs mittwald's own verifier, npm
// @mittwald/ext-bridge, against the simulator: it fetches the key from
// /v2/public-keys/{publicKeySerial} and verifies with jose. It needs node and the
// package installed by
//
//	npm ci --prefix extension/mstudio/mstudiotest/testdata/extbridge
//
// and skips without them, so that go test works offline.
func TestSessionTokenVerifiesWithExtBridge(t *testing.T) {
	dir := filepath.Join("testdata", "extbridge")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@mittwald", "ext-bridge", "package.json")); err != nil {
		t.Skip("@mittwald/ext-bridge is not installed; run: npm ci --prefix extension/mstudio/mstudiotest/testdata/extbridge")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	// jose checks exp and nbf against the real clock, so this simulator runs on it.
	sim, base, _ := newSSOSim(t, Options{Now: time.Now})
	ada := ssoUser(t, sim, true)
	in := ssoInstance(t, sim, InstanceSpec{VariantKey: "pro"}, false)
	token := ssoMintSession(t, base, ada.Token, in.ID)

	run := func(t *testing.T, token string, env ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, node, "verify.mjs")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append(env, "MW_EXT_API_URL="+base, "SESSION_TOKEN="+token)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stderr.String(), err
		}
		return stdout.String(), nil
	}

	t.Run("verify and exchange", func(t *testing.T) {
		out, err := run(t, token, "EXTENSION_SECRET="+sim.ExtensionSecret())
		if err != nil {
			t.Fatalf("node verify.mjs: %v: %s", err, out)
		}
		type claims struct {
			SessionID                    string   `json:"sessionId"`
			UserID                       string   `json:"userId"`
			ExtensionID                  string   `json:"extensionId"`
			ExtensionInstanceID          string   `json:"extensionInstanceId"`
			ContextID                    string   `json:"contextId"`
			Context                      string   `json:"context"`
			Scopes                       []string `json:"scopes"`
			AuthenticatableWithoutSecret bool     `json:"authenticatableWithoutSecret"`
			PublicKeySerial              string   `json:"publicKeySerial"`
			VariantKey                   *string  `json:"variantKey"`
		}
		var got struct {
			Claims    claims `json:"claims"`
			Exchanged struct {
				PublicToken bool      `json:"publicToken"`
				Expiry      time.Time `json:"expiry"`
			} `json:"exchanged"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("verify.mjs printed %q: %v", out, err)
		}
		want := claims{
			SessionID: ssoSessionID, UserID: ada.ID, ExtensionID: sim.ExtensionID(), ExtensionInstanceID: in.ID,
			ContextID: in.ContextID, Context: "project", Scopes: in.Scopes, PublicKeySerial: sim.SessionTokenKey().Serial,
			VariantKey: ssoPtr("pro"),
		}
		if diff := cmp.Diff(want, got.Claims); diff != "" {
			t.Errorf("claims ext-bridge decoded (-want +got):\n%s", diff)
		}
		if !got.Exchanged.PublicToken || got.Exchanged.Expiry.IsZero() {
			t.Errorf("getAccessToken gave %+v, want a publicToken and an expiry", got.Exchanged)
		}
	})

	claims := jwt.MapClaims(ssoJWTPart(t, token, 1))
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	expired := jwt.MapClaims{}
	for k, v := range claims {
		expired[k] = v
	}
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	refused := []struct {
		name     string
		token    string
		wantCode string // jose's error code in verify.mjs's message
	}{
		{"signed by another key", ssoResign(t, claims, jwt.SigningMethodEdDSA, foreign), "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"},
		{"expired", ssoResign(t, expired, jwt.SigningMethodEdDSA, sim.SessionTokenKey().Private), "ERR_JWT_EXPIRED"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, tt.token)
			if err == nil {
				t.Fatalf("ext-bridge accepted the token: %s", out)
			}
			if !strings.Contains(out, tt.wantCode) {
				t.Errorf("ext-bridge refused with %q, want %s", out, tt.wantCode)
			}
		})
	}
}
