package mstudiotest

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/extension-backend/extension-backend/extension/mstudio"
)

// corePublicKey is the body of GET /v2/public-keys/{serial}.
type corePublicKey struct {
	Serial    string `json:"serial"`
	Algorithm string `json:"algorithm"`
	Key       string `json:"key"`
}

// coreGetKey asks the key endpoint (path is the route's prefix, for the legacy route) and
// decodes a 200 answer.
func coreGetKey(t *testing.T, base, serial string, q url.Values) (coreResponse, corePublicKey) {
	t.Helper()
	u := base + "/v2/public-keys/" + serial
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	r := coreDo(t, http.MethodGet, u, nil, nil)
	var pk corePublicKey
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &pk); err != nil {
			t.Fatalf("GET %s: body %q: %v", u, r.body, err)
		}
	}
	return r, pk
}

// coreRawKey decodes a raw-format key.
func coreRawKey(t *testing.T, key string) ed25519.PublicKey {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("raw key %q: want standard base64 of %d bytes (err %v)", key, ed25519.PublicKeySize, err)
	}
	return raw
}

// coreSPKIKey decodes an spki-format key: one PEM PUBLIC KEY block parsed by x509.
func coreSPKIKey(t *testing.T, key string) ed25519.PublicKey {
	t.Helper()
	block, rest := pem.Decode([]byte(key))
	if block == nil {
		t.Fatalf("spki key %q is not PEM", key)
	}
	if block.Type != "PUBLIC KEY" {
		t.Errorf("PEM block type = %q, want PUBLIC KEY", block.Type)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		t.Errorf("PEM has trailing data %q", rest)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("ParsePKIXPublicKey: %v", err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		t.Fatalf("ParsePKIXPublicKey = %T, want ed25519.PublicKey", pub)
	}
	return edPub
}

func TestCorePublicKeyRawAndSPKIAgree(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	tests := []struct {
		name    string
		serial  string
		purpose string // "" leaves the parameter out
		want    KeyPair
	}{
		{"webhook", sim.WebhookKey().Serial, PurposeWebhook, sim.WebhookKey()},
		{"session token", sim.SessionTokenKey().Serial, PurposeSessionToken, sim.SessionTokenKey()},
		{"purpose defaults to webhook", sim.WebhookKey().Serial, "", sim.WebhookKey()},
		{"latest webhook", "latest", PurposeWebhook, sim.WebhookKey()},
		{"latest session token", "latest", PurposeSessionToken, sim.SessionTokenKey()},
		{"serial in upper case", strings.ToUpper(sim.WebhookKey().Serial), PurposeWebhook, sim.WebhookKey()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys := map[string]ed25519.PublicKey{}
			for _, format := range []string{"", "raw", "spki"} {
				q := url.Values{}
				if tc.purpose != "" {
					q.Set("purpose", tc.purpose)
				}
				if format != "" {
					q.Set("format", format)
				}
				r, pk := coreGetKey(t, base, tc.serial, q)
				if r.status != http.StatusOK {
					t.Fatalf("format %q: status = %d, want 200 (body %s)", format, r.status, r.body)
				}
				if pk.Serial != tc.want.Serial || pk.Algorithm != "Ed25519" {
					t.Errorf("format %q: serial, algorithm = %q, %q; want %q, Ed25519", format, pk.Serial, pk.Algorithm, tc.want.Serial)
				}
				if format == "spki" {
					keys[format] = coreSPKIKey(t, pk.Key)
				} else {
					keys[format] = coreRawKey(t, pk.Key)
				}
			}
			for format, got := range keys {
				if !got.Equal(tc.want.Public()) {
					t.Errorf("format %q: key = %x, want %x", format, got, tc.want.Public())
				}
			}
		})
	}
}

func TestCorePublicKeyLatestFollowsRotation(t *testing.T) {
	for _, tc := range []struct {
		name, purpose, other string
	}{
		{"webhook", PurposeWebhook, PurposeSessionToken},
		{"session token", PurposeSessionToken, PurposeWebhook},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newCoreSim(t, Options{})
			q := url.Values{"purpose": {tc.purpose}}
			otherQ := url.Values{"purpose": {tc.other}}
			_, old := coreGetKey(t, base, "latest", q)
			_, otherBefore := coreGetKey(t, base, "latest", otherQ)

			rotated, err := sim.RotateKey(tc.purpose)
			if err != nil {
				t.Fatalf("RotateKey: %v", err)
			}
			if rotated.Serial == old.Serial {
				t.Fatalf("RotateKey kept serial %s", old.Serial)
			}

			r, latest := coreGetKey(t, base, "latest", q)
			if r.status != http.StatusOK {
				t.Fatalf("latest: status = %d, want 200", r.status)
			}
			if latest.Serial != rotated.Serial || !coreRawKey(t, latest.Key).Equal(rotated.Public()) {
				t.Errorf("latest after rotation = %s, want the new key %s", latest.Serial, rotated.Serial)
			}
			r, again := coreGetKey(t, base, old.Serial, q)
			if r.status != http.StatusOK {
				t.Fatalf("old serial after rotation: status = %d, want 200", r.status)
			}
			if diff := cmp.Diff(old, again); diff != "" {
				t.Errorf("old serial after rotation (-before +after):\n%s", diff)
			}
			_, otherAfter := coreGetKey(t, base, "latest", otherQ)
			if diff := cmp.Diff(otherBefore, otherAfter); diff != "" {
				t.Errorf("latest %s key changed by rotating %s (-before +after):\n%s", tc.other, tc.purpose, diff)
			}
		})
	}
}

func TestCorePublicKeyErrors(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	tests := []struct {
		name      string
		serial    string
		query     url.Values
		want      int
		wantType  string
		wantField string // the validation error's path
	}{
		{"unknown serial", uuid.NewString(), nil, http.StatusNotFound, "NotFound", ""},
		{"unknown serial as session token", uuid.NewString(), url.Values{"purpose": {PurposeSessionToken}}, http.StatusNotFound, "NotFound", ""},
		{"not a uuid", "not-a-serial", nil, http.StatusNotFound, "NotFound", ""},
		{"webhook serial asked as session token", sim.WebhookKey().Serial, url.Values{"purpose": {PurposeSessionToken}}, http.StatusNotFound, "NotFound", ""},
		{"session token serial asked as webhook", sim.SessionTokenKey().Serial, url.Values{"purpose": {PurposeWebhook}}, http.StatusNotFound, "NotFound", ""},
		{"session token serial with default purpose", sim.SessionTokenKey().Serial, nil, http.StatusNotFound, "NotFound", ""},
		{"bad purpose", sim.WebhookKey().Serial, url.Values{"purpose": {"signing"}}, http.StatusBadRequest, "ValidationError", "purpose"},
		{"purpose in upper case", sim.WebhookKey().Serial, url.Values{"purpose": {"WEBHOOK"}}, http.StatusBadRequest, "ValidationError", "purpose"},
		{"bad format", sim.WebhookKey().Serial, url.Values{"format": {"pem"}}, http.StatusBadRequest, "ValidationError", "format"},
		{"bad format on latest", "latest", url.Values{"format": {"jwk"}}, http.StatusBadRequest, "ValidationError", "format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := coreGetKey(t, base, tc.serial, tc.query)
			eb := coreCheckError(t, r, tc.want, tc.wantType)
			if tc.wantField == "" {
				return
			}
			if len(eb.ValidationErrors) != 1 || eb.ValidationErrors[0].Path != tc.wantField || eb.ValidationErrors[0].Message == "" {
				t.Errorf("validationErrors = %+v, want one for %q with a message", eb.ValidationErrors, tc.wantField)
			}
		})
	}
}

func TestCoreLegacyPublicKeyRedirects(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name         string
		path         string // below /v2/webhook-public-keys/
		wantLocation string
		want         KeyPair
	}{
		{"serial", sim.WebhookKey().Serial, "/v2/public-keys/" + sim.WebhookKey().Serial, sim.WebhookKey()},
		{"latest with purpose and format", "latest?purpose=session_token&format=spki",
			"/v2/public-keys/latest?purpose=session_token&format=spki", sim.SessionTokenKey()},
		{"serial with purpose", sim.SessionTokenKey().Serial + "?purpose=session_token",
			"/v2/public-keys/" + sim.SessionTokenKey().Serial + "?purpose=session_token", sim.SessionTokenKey()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := base + "/v2/webhook-public-keys/" + tc.path
			r := coreDoWith(t, noFollow, http.MethodGet, u, nil, nil)
			if r.status != http.StatusPermanentRedirect {
				t.Errorf("status = %d, want 308", r.status)
			}
			if got := r.header.Get("Location"); got != tc.wantLocation {
				t.Errorf("Location = %q, want %q", got, tc.wantLocation)
			}

			resp, err := http.Get(u)
			if err != nil {
				t.Fatalf("GET %s following redirects: %v", u, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("after redirect: status = %d, want 200", resp.StatusCode)
			}
			if got, want := resp.Request.URL.Path, "/v2/public-keys/"+strings.SplitN(tc.path, "?", 2)[0]; got != want {
				t.Errorf("redirect ended at %s, want %s", got, want)
			}
			var pk corePublicKey
			if err := json.NewDecoder(resp.Body).Decode(&pk); err != nil {
				t.Fatalf("decode: %v", err)
			}
			var got ed25519.PublicKey
			if strings.Contains(tc.path, "format=spki") {
				got = coreSPKIKey(t, pk.Key)
			} else {
				got = coreRawKey(t, pk.Key)
			}
			if pk.Serial != tc.want.Serial || !got.Equal(tc.want.Public()) {
				t.Errorf("key after redirect = %s %x, want %s %x", pk.Serial, got, tc.want.Serial, tc.want.Public())
			}
		})
	}
}

// TestCoreLegacyPublicKeyRedirectKeepsSerial checks that the legacy route's redirect
// keeps the serial one path segment: an escaped "/", "?" or ".." in it must not move the
// redirect to another route or add query parameters.
func TestCoreLegacyPublicKeyRedirectKeepsSerial(t *testing.T) {
	_, base := newCoreSim(t, Options{})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name, serial, wantLocation string
	}{
		{"escaped question mark", "x%3Fpurpose=session_token", "/v2/public-keys/x%3Fpurpose=session_token"},
		{"escaped slash", "a%2Fb", "/v2/public-keys/a%2Fb"},
		{"escaped dot-dot path", "..%2F..%2Finternal%2Fusers", "/v2/public-keys/..%2F..%2Finternal%2Fusers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := coreDoWith(t, noFollow, http.MethodGet, base+"/v2/webhook-public-keys/"+tc.serial, nil, nil)
			if r.status != http.StatusPermanentRedirect {
				t.Errorf("status = %d, want 308", r.status)
			}
			if got := r.header.Get("Location"); got != tc.wantLocation {
				t.Errorf("Location = %q, want %q", got, tc.wantLocation)
			}
			// Followed, it ends at the key route, which does not know the serial.
			coreCheckError(t, coreDo(t, http.MethodGet, base+"/v2/webhook-public-keys/"+tc.serial, nil, nil), http.StatusNotFound, "NotFound")
		})
	}
}

// newCoreClient returns the backend's real API client pointed at the simulator, with short
// retry waits.
func newCoreClient(t *testing.T, base string) *mstudio.Client {
	t.Helper()
	c, err := mstudio.New(base, mstudio.Options{RetryMax: 3, RetryWait: time.Millisecond, MaxRetryWait: 20 * time.Millisecond, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("mstudio.New(%q): %v", base, err)
	}
	return c
}

func TestCoreClientPublicKey(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	c := newCoreClient(t, base)
	tests := []struct {
		name    string
		serial  string
		purpose mstudio.Purpose
		want    ed25519.PublicKey
		wantErr error
	}{
		{"webhook key", sim.WebhookKey().Serial, mstudio.PurposeWebhook, sim.WebhookKey().Public(), nil},
		{"session token key", sim.SessionTokenKey().Serial, mstudio.PurposeSessionToken, sim.SessionTokenKey().Public(), nil},
		{"latest webhook key", "latest", mstudio.PurposeWebhook, sim.WebhookKey().Public(), nil},
		{"unknown serial", uuid.NewString(), mstudio.PurposeWebhook, nil, mstudio.ErrUnknownKey},
		{"webhook serial as session token", sim.WebhookKey().Serial, mstudio.PurposeSessionToken, nil, mstudio.ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.PublicKey(context.Background(), tc.serial, tc.purpose)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("PublicKey error = %v, want %v", err, tc.wantErr)
			}
			if !got.Equal(tc.want) {
				t.Errorf("PublicKey = %x, want %x", got, tc.want)
			}
		})
	}
}

func TestCoreClientKeyCache(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	c := newCoreClient(t, base)
	webhooks := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	sessions := mstudio.NewKeyCache(c, mstudio.PurposeSessionToken, mstudio.KeyCacheOptions{})
	first := sim.WebhookKey()
	rotated, err := sim.RotateKey(PurposeWebhook)
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	tests := []struct {
		name    string
		cache   *mstudio.KeyCache
		serial  string
		want    ed25519.PublicKey
		wantErr error
	}{
		{"webhook key", webhooks, first.Serial, first.Public(), nil},
		{"webhook key again, from the cache", webhooks, first.Serial, first.Public(), nil},
		{"webhook key in upper case", webhooks, strings.ToUpper(first.Serial), first.Public(), nil},
		{"rotated webhook key", webhooks, rotated.Serial, rotated.Public(), nil},
		{"session token key", sessions, sim.SessionTokenKey().Serial, sim.SessionTokenKey().Public(), nil},
		{"session token serial in the webhook cache", webhooks, sim.SessionTokenKey().Serial, nil, mstudio.ErrUnknownKey},
		{"webhook serial in the session cache", sessions, first.Serial, nil, mstudio.ErrUnknownKey},
		{"unknown serial", webhooks, uuid.NewString(), nil, mstudio.ErrUnknownKey},
		{"not a uuid", webhooks, "latest", nil, mstudio.ErrBadSerial},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cache.Key(context.Background(), tc.serial)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Key error = %v, want %v", err, tc.wantErr)
			}
			if !got.Equal(tc.want) {
				t.Errorf("Key = %x, want %x", got, tc.want)
			}
		})
	}
}

// coreKeysOf lists the keys the simulator publishes, by purpose, as serial → public key.
func coreKeysOf(sim *Server) map[string]map[string]string {
	sim.keys.mu.Lock()
	defer sim.keys.mu.Unlock()
	out := map[string]map[string]string{}
	for purpose, list := range sim.keys.keys {
		out[purpose] = map[string]string{}
		for _, k := range list {
			out[purpose][k.Serial] = base64.StdEncoding.EncodeToString(k.Public())
		}
	}
	return out
}

func TestCoreKeyFileStable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "keys.json") // the directory does not exist yet
	first, _ := newCoreSim(t, Options{KeyFile: file})
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("key file not written: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}

	second, base := newCoreSim(t, Options{KeyFile: file})
	if diff := cmp.Diff(coreKeysOf(first), coreKeysOf(second)); diff != "" {
		t.Errorf("keys after reload (-first +second):\n%s", diff)
	}
	for _, k := range []KeyPair{first.WebhookKey(), first.SessionTokenKey()} {
		if k.Serial == "" {
			t.Fatal("a key has no serial")
		}
	}
	if first.WebhookKey().Serial != second.WebhookKey().Serial || !first.WebhookKey().Private.Equal(second.WebhookKey().Private) {
		t.Errorf("webhook key after reload = %s, want %s", second.WebhookKey().Serial, first.WebhookKey().Serial)
	}
	if first.SessionTokenKey().Serial != second.SessionTokenKey().Serial || !first.SessionTokenKey().Private.Equal(second.SessionTokenKey().Private) {
		t.Errorf("session token key after reload = %s, want %s", second.SessionTokenKey().Serial, first.SessionTokenKey().Serial)
	}
	// The reloaded simulator serves the first one's keys.
	r, pk := coreGetKey(t, base, first.WebhookKey().Serial, nil)
	if r.status != http.StatusOK || !coreRawKey(t, pk.Key).Equal(first.WebhookKey().Public()) {
		t.Errorf("second simulator: GET first's webhook key = %d %s, want 200 with the same key", r.status, r.body)
	}

	// A rotation is saved too: a third start knows both keys, the new one as latest.
	old := first.WebhookKey()
	rotated, err := first.RotateKey(PurposeWebhook)
	if err != nil {
		t.Fatalf("RotateKey: %v", err)
	}
	third, base3 := newCoreSim(t, Options{KeyFile: file})
	if diff := cmp.Diff(coreKeysOf(first), coreKeysOf(third)); diff != "" {
		t.Errorf("keys after rotation and reload (-first +third):\n%s", diff)
	}
	if got := third.WebhookKey().Serial; got != rotated.Serial {
		t.Errorf("latest webhook key after reload = %s, want the rotated %s", got, rotated.Serial)
	}
	if r, pk := coreGetKey(t, base3, old.Serial, nil); r.status != http.StatusOK || !coreRawKey(t, pk.Key).Equal(old.Public()) {
		t.Errorf("third simulator: old serial = %d %s, want 200 with the old key", r.status, r.body)
	}
}

func TestCoreKeyFileDamaged(t *testing.T) {
	seed := base64.StdEncoding.EncodeToString(make([]byte, ed25519.SeedSize))
	serial := uuid.NewString()
	tests := []struct {
		name    string
		content string // written to the key file; "<dir>" makes the key file a directory
	}{
		{"empty", ""},
		{"not JSON", "keys!"},
		{"truncated JSON", `{"webhook": [{"serial": "` + serial + `", "seed": "`},
		{"wrong shape", `{"webhook": "` + seed + `"}`},
		{"seed not base64", `{"webhook": [{"serial": "` + serial + `", "seed": "***"}]}`},
		{"seed too short", `{"webhook": [{"serial": "` + serial + `", "seed": "` + base64.StdEncoding.EncodeToString(make([]byte, 16)) + `"}]}`},
		{"seed missing", `{"webhook": [{"serial": "` + serial + `"}]}`},
		{"serial not a uuid", `{"webhook": [{"serial": "key-1", "seed": "` + seed + `"}]}`},
		{"serial missing", `{"session_token": [{"seed": "` + seed + `"}]}`},
		{"a directory", "<dir>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "keys.json")
			var err error
			if tc.content == "<dir>" {
				err = os.Mkdir(file, 0o700)
			} else {
				err = os.WriteFile(file, []byte(tc.content), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			sim, err := New(Options{KeyFile: file})
			if err == nil {
				sim.Close()
				t.Fatalf("New with a damaged key file: no error")
			}
			if !strings.Contains(err.Error(), "key file") {
				t.Errorf("error %q does not say it is about the key file", err)
			}
		})
	}
	t.Run("a good file loads", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "keys.json")
		content := `{"webhook": [{"serial": "` + serial + `", "seed": "` + seed + `"}]}`
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		sim, _ := newCoreSim(t, Options{KeyFile: file})
		want := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
		if k := sim.WebhookKey(); k.Serial != serial || !k.Private.Equal(want) {
			t.Errorf("WebhookKey = %s, want %s from the file", k.Serial, serial)
		}
	})
}

// TestCoreRotateKeyConcurrent rotates keys from several goroutines while the endpoint is
// read; every rotated key must be published and saved.
func TestCoreRotateKeyConcurrent(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	sim, base := newCoreSim(t, Options{KeyFile: file})
	const n = 8
	var wg sync.WaitGroup
	rotated := make([]KeyPair, n)
	for i := range n {
		wg.Go(func() {
			k, err := sim.RotateKey(PurposeWebhook)
			if err != nil {
				t.Errorf("RotateKey: %v", err)
			}
			rotated[i] = k
		})
		wg.Go(func() {
			resp, err := http.Get(base + "/v2/public-keys/latest")
			if err != nil {
				t.Errorf("latest during rotation: %v", err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("latest during rotation: status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	reloaded, err := New(Options{KeyFile: file})
	if err != nil {
		t.Fatalf("reload after concurrent rotations: %v", err)
	}
	defer reloaded.Close()
	saved := coreKeysOf(reloaded)[PurposeWebhook]
	for _, k := range rotated {
		if _, ok := saved[k.Serial]; !ok {
			t.Errorf("rotated key %s is not in the key file", k.Serial)
		}
	}
}
