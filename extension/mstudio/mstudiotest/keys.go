package mstudiotest

import (
	"crypto/ed25519"
	"crypto/rand"
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

	"github.com/google/uuid"
)

// Key purposes, as in the platform's public-key endpoint.
const (
	PurposeWebhook      = "webhook"
	PurposeSessionToken = "session_token"
)

// KeyPair is one of the simulator's signing keys.
type KeyPair struct {
	Serial  string
	Private ed25519.PrivateKey
}

// Public returns the public half.
func (k KeyPair) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

type keyStore struct {
	mu   sync.Mutex
	file string
	keys map[string][]KeyPair // purpose → keys, newest last
}

// keyFile is the on-disk form: seeds in base64 by purpose.
type keyFile map[string][]struct {
	Serial string `json:"serial"`
	Seed   string `json:"seed"`
}

func loadOrCreateKeys(file string) (*keyStore, error) {
	ks, err := loadKeys(file)
	if err != nil {
		return nil, err
	}
	changed := false
	for _, purpose := range []string{PurposeWebhook, PurposeSessionToken} {
		if len(ks.keys[purpose]) == 0 {
			ks.keys[purpose] = []KeyPair{newKeyPair()}
			changed = true
		}
	}
	if changed {
		if err := ks.save(); err != nil {
			return nil, err
		}
	}
	return ks, nil
}

// loadKeys reads a key file, if there is one, and creates nothing.
func loadKeys(file string) (*keyStore, error) {
	ks := &keyStore{file: file, keys: map[string][]KeyPair{}}
	if file != "" {
		data, err := os.ReadFile(file)
		switch {
		case err == nil:
			var kf keyFile
			if err := json.Unmarshal(data, &kf); err != nil {
				return nil, errorf("key file %s: %v", file, err)
			}
			for purpose, list := range kf {
				for _, k := range list {
					seed, err := base64.StdEncoding.DecodeString(k.Seed)
					if err != nil || len(seed) != ed25519.SeedSize || !isUUID(k.Serial) {
						return nil, errorf("key file %s: key %q of %s is damaged", file, k.Serial, purpose)
					}
					ks.keys[purpose] = append(ks.keys[purpose], KeyPair{Serial: k.Serial, Private: ed25519.NewKeyFromSeed(seed)})
				}
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, errorf("key file: %v", err)
		}
	}
	return ks, nil
}

func newKeyPair() KeyPair {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return KeyPair{Serial: uuid.NewString(), Private: priv}
}

// save writes the key file; ks.mu must be held once the store is shared.
func (ks *keyStore) save() error {
	if ks.file == "" {
		return nil
	}
	kf := keyFile{}
	for purpose, list := range ks.keys {
		for _, k := range list {
			kf[purpose] = append(kf[purpose], struct {
				Serial string `json:"serial"`
				Seed   string `json:"seed"`
			}{k.Serial, base64.StdEncoding.EncodeToString(k.Private.Seed())})
		}
	}
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return errorf("key file: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(ks.file), 0o700); err != nil {
		return errorf("key file: %v", err)
	}
	return writeFileAtomic(ks.file, data)
}

func (ks *keyStore) latest(purpose string) KeyPair {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	list := ks.keys[purpose]
	return list[len(list)-1]
}

func (ks *keyStore) find(purpose, serial string) (KeyPair, bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	list := ks.keys[purpose]
	if serial == "latest" && len(list) > 0 {
		return list[len(list)-1], true
	}
	for _, k := range list {
		if strings.EqualFold(k.Serial, serial) {
			return k, true
		}
	}
	return KeyPair{}, false
}

// WebhookKey is the key the simulator signs webhooks with now.
func (s *Server) WebhookKey() KeyPair { return s.keys.latest(PurposeWebhook) }

// SessionTokenKey is the key the simulator signs session tokens with now.
func (s *Server) SessionTokenKey() KeyPair { return s.keys.latest(PurposeSessionToken) }

// RotateKey adds a new key for the purpose, which signs from now on; the old key stays
// published under its serial, as the platform's do.
func (s *Server) RotateKey(purpose string) (KeyPair, error) {
	if purpose != PurposeWebhook && purpose != PurposeSessionToken {
		return KeyPair{}, errorf("key purpose %q: want %s or %s", purpose, PurposeWebhook, PurposeSessionToken)
	}
	k := newKeyPair()
	s.keys.mu.Lock()
	defer s.keys.mu.Unlock()
	s.keys.keys[purpose] = append(s.keys.keys[purpose], k)
	return k, s.keys.save()
}

// getPublicKey serves GET /v2/public-keys/{serial}?purpose=&format=raw|spki, without
// authentication, as the platform does.
func (s *Server) getPublicKey(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	purpose := q.Get("purpose")
	if purpose == "" {
		purpose = PurposeWebhook
	}
	format := q.Get("format")
	if format == "" {
		format = "raw"
	}
	switch {
	case purpose != PurposeWebhook && purpose != PurposeSessionToken:
		writeValidation(w, ValidationIssue{Message: "purpose must be webhook or session_token", Path: "purpose", Type: "enum"})
		return
	case format != "raw" && format != "spki":
		writeValidation(w, ValidationIssue{Message: "format must be raw or spki", Path: "format", Type: "enum"})
		return
	}
	k, ok := s.keys.find(purpose, r.PathValue("serial"))
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "no public key with this serial and purpose")
		return
	}
	key := base64.StdEncoding.EncodeToString(k.Public())
	if format == "spki" {
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
			return
		}
		key = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	writeJSON(w, http.StatusOK, map[string]string{"serial": k.Serial, "algorithm": "Ed25519", "key": key})
}

// getLegacyPublicKey answers the deprecated route with a permanent redirect to the new one.
func (s *Server) getLegacyPublicKey(w http.ResponseWriter, r *http.Request) {
	target := "/v2/public-keys/" + url.PathEscape(r.PathValue("serial"))
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	http.Redirect(w, r, target, http.StatusPermanentRedirect)
}

// LoadKeyFile reads a key file written by a simulator (Options.KeyFile) and returns the key
// of the purpose that signs now, so tools can sign as that simulator does.
func LoadKeyFile(file, purpose string) (KeyPair, error) {
	if _, err := os.Stat(file); err != nil {
		return KeyPair{}, errorf("key file: %v", err)
	}
	ks, err := loadKeys(file)
	if err != nil {
		return KeyPair{}, err
	}
	if len(ks.keys[purpose]) == 0 {
		return KeyPair{}, errorf("key file %s has no %s key", file, purpose)
	}
	return ks.latest(purpose), nil
}
