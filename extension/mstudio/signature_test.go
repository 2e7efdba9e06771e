package mstudio_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// signatureVector is a delivery signed by the platform itself (testdata, taken from
// mittwald's own verifier tests).
type signatureVector struct {
	Serial             string `json:"serial"`
	Algorithm          string `json:"algorithm"`
	PublicKeyRawBase64 string `json:"publicKeyRawBase64"`
	SignatureBase64    string `json:"signatureBase64"`
	Body               string `json:"body"`
}

func loadVector(t testing.TB) signatureVector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "mstudio-upstream-webhook-signature-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v signatureVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// PublicKey returns the platform key the vector is signed with.
func (v signatureVector) PublicKey(t testing.TB) ed25519.PublicKey {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(v.PublicKeyRawBase64)
	if err != nil || len(k) != ed25519.PublicKeySize {
		t.Fatalf("vector public key: %d bytes, %v", len(k), err)
	}
	return k
}

// Signature returns the vector's raw signature.
func (v signatureVector) Signature(t testing.TB) []byte {
	t.Helper()
	s, err := base64.StdEncoding.DecodeString(v.SignatureBase64)
	if err != nil || len(s) != ed25519.SignatureSize {
		t.Fatalf("vector signature: %d bytes, %v", len(s), err)
	}
	return s
}

// Header returns the three signature headers the platform sent.
func (v signatureVector) Header() http.Header {
	h := http.Header{}
	h.Set(mstudio.HeaderSerial, v.Serial)
	h.Set(mstudio.HeaderAlgorithm, v.Algorithm)
	h.Set(mstudio.HeaderSignature, v.SignatureBase64)
	return h
}

// newVectorKeys returns the real KeyCache against a key server that holds the vector's
// key only, and the number of fetches that reached it.
func newVectorKeys(t testing.TB, v signatureVector) (*mstudio.KeyCache, *atomic.Int64) {
	t.Helper()
	serial, key := v.Serial, v.PublicKey(t)
	fetches := new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/public-keys/{serial}", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.PathValue("serial") != serial {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"type": "NotFound", "message": "no such key"})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"serial": serial, "algorithm": "Ed25519", "key": base64.StdEncoding.EncodeToString(key)})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client, err := mstudio.New(srv.URL, mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return mstudio.NewKeyCache(client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}), fetches
}

func TestVerifyRealVector(t *testing.T) {
	v := loadVector(t)
	keys, fetches := newVectorKeys(t, v)
	ctx := context.Background()
	body := []byte(v.Body)

	if err := mstudio.Verify(ctx, keys, v.Header(), body); err != nil {
		t.Fatalf("Verify(real vector) = %v, want nil", err)
	}
	// The serial is a UUID: its case does not matter, and the cached key serves it.
	h := v.Header()
	h.Set(mstudio.HeaderSerial, strings.ToUpper(v.Serial))
	if err := mstudio.Verify(ctx, keys, h, body); err != nil {
		t.Errorf("Verify(serial in upper case) = %v, want nil", err)
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("key fetches = %d, want 1 (the key is cached by serial)", got)
	}

	t.Run("every one-byte change to the body fails", func(t *testing.T) {
		for i := range body {
			for _, mask := range []byte{0x01, 0x80} {
				changed := []byte(v.Body)
				changed[i] ^= mask
				if err := mstudio.Verify(ctx, keys, v.Header(), changed); !errors.Is(err, mstudio.ErrSignatureInvalid) {
					t.Fatalf("body byte %d ^ %#x: Verify = %v, want ErrSignatureInvalid", i, mask, err)
				}
			}
		}
		for _, changed := range [][]byte{body[:len(body)-1], append([]byte(v.Body), ' '), append([]byte(v.Body), '\n'), append([]byte(" "), body...)} {
			if err := mstudio.Verify(ctx, keys, v.Header(), changed); !errors.Is(err, mstudio.ErrSignatureInvalid) {
				t.Errorf("body of %d bytes (was %d): Verify = %v, want ErrSignatureInvalid", len(changed), len(body), err)
			}
		}
	})

	t.Run("every one-byte change to the signature fails", func(t *testing.T) {
		sig := v.Signature(t)
		for i := range sig {
			for _, mask := range []byte{0x01, 0x80} {
				changed := append([]byte(nil), sig...)
				changed[i] ^= mask
				h := v.Header()
				h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(changed))
				if err := mstudio.Verify(ctx, keys, h, body); !errors.Is(err, mstudio.ErrSignatureInvalid) {
					t.Fatalf("signature byte %d ^ %#x: Verify = %v, want ErrSignatureInvalid", i, mask, err)
				}
			}
		}
	})

	t.Run("every one-character change to the signature header fails", func(t *testing.T) {
		// Decoding is strict: even a change in the unused low bits of the last character,
		// which a lenient decoder maps to the same bytes, is refused.
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
		for i := range len(v.SignatureBase64) {
			for _, c := range []byte(alphabet) {
				if c == v.SignatureBase64[i] {
					continue
				}
				changed := []byte(v.SignatureBase64)
				changed[i] = c
				h := v.Header()
				h.Set(mstudio.HeaderSignature, string(changed))
				if err := mstudio.Verify(ctx, keys, h, body); err == nil {
					t.Fatalf("signature header %q verified, want it refused", changed)
				}
			}
		}
	})

	t.Run("the signature of another key under the vector's serial fails", func(t *testing.T) {
		_, other, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		h := v.Header()
		h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(other, body)))
		if err := mstudio.Verify(ctx, keys, h, body); !errors.Is(err, mstudio.ErrSignatureInvalid) {
			t.Errorf("Verify = %v, want ErrSignatureInvalid", err)
		}
	})
}

// TestSignIsWhatVerifyReads: Sign writes the platform's three headers, padded standard
// base64 of 88 characters, and Verify accepts exactly that body under the signing key.
func TestSignIsWhatVerifyReads(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, body := uuid.NewString(), []byte(`{"kind":"InstanceUpdated"}`)
	h := http.Header{}
	mstudio.Sign(h, serial, priv, body)
	if h.Get(mstudio.HeaderSerial) != serial || h.Get(mstudio.HeaderAlgorithm) != "Ed25519" {
		t.Errorf("headers = %v, want the serial and Ed25519", h)
	}
	if s := h.Get(mstudio.HeaderSignature); len(s) != 88 || !strings.HasSuffix(s, "==") {
		t.Errorf("signature header %q: want padded standard base64 of 64 bytes (88 characters)", s)
	}
	sig, err := mstudio.ParseSignature(h)
	if err != nil || sig.Serial != serial {
		t.Fatalf("ParseSignature = %+v, %v", sig, err)
	}
	if err := sig.Check(pub, body); err != nil {
		t.Errorf("Check(signed body) = %v, want nil", err)
	}
	if err := sig.Check(pub, append(body, ' ')); !errors.Is(err, mstudio.ErrSignatureInvalid) {
		t.Errorf("Check(other body) = %v, want ErrSignatureInvalid", err)
	}
	if err := sig.Check(pub[:16], body); !errors.Is(err, mstudio.ErrSignatureInvalid) {
		t.Errorf("Check(short key) = %v, want ErrSignatureInvalid", err)
	}
}

// FuzzVerify: Verify never panics, and accepts nothing but the platform's own signature
// over the platform's own body (the signature encoding may vary in padding and spaces).
func FuzzVerify(f *testing.F) {
	v := loadVector(f)
	keys, _ := newVectorKeys(f, v)
	body, sig := []byte(v.Body), v.Signature(f)
	// Warm the cache, so the fuzzer spends its time in Verify.
	if err := mstudio.Verify(context.Background(), keys, v.Header(), body); err != nil {
		f.Fatalf("the vector does not verify: %v", err)
	}

	f.Add(body, v.SignatureBase64, "Ed25519")
	f.Add(body, base64.RawStdEncoding.EncodeToString(sig), "Ed25519")
	f.Add(body, " "+v.SignatureBase64+" ", "ed25519")
	f.Add(body, v.SignatureBase64, "RSA")
	f.Add(body[:len(body)-1], v.SignatureBase64, "Ed25519")
	f.Add(append([]byte(v.Body), '\n'), v.SignatureBase64, "Ed25519")
	f.Add(bytes.Replace(body, []byte("new secret"), []byte("new secreT"), 1), v.SignatureBase64, "Ed25519")
	f.Add(body, v.SignatureBase64[:len(v.SignatureBase64)-4], "Ed25519")
	f.Add(body, base64.URLEncoding.EncodeToString(sig), "Ed25519")
	f.Add([]byte{}, "", "")
	f.Add([]byte(`{"apiVersion":"v1","kind":"SecretRotated"}`), v.SignatureBase64, "Ed25519")

	f.Fuzz(func(t *testing.T, got []byte, sigHeader, algorithm string) {
		h := http.Header{}
		h.Set(mstudio.HeaderSerial, v.Serial)
		h.Set(mstudio.HeaderAlgorithm, algorithm)
		h.Set(mstudio.HeaderSignature, sigHeader)
		err := mstudio.Verify(context.Background(), keys, h, got)
		if err == nil {
			if !bytes.Equal(got, body) {
				t.Fatalf("Verify accepted a body that differs from the signed one: %q", got)
			}
			if !bytes.Equal(decodeLoosely(sigHeader), sig) {
				t.Fatalf("Verify accepted signature header %q, which is not the platform's signature", sigHeader)
			}
			if !strings.EqualFold(strings.TrimSpace(algorithm), mstudio.Algorithm) {
				t.Fatalf("Verify accepted algorithm %q", algorithm)
			}
			return
		}
		if bytes.Equal(got, body) && sigHeader == v.SignatureBase64 && algorithm == mstudio.Algorithm {
			t.Fatalf("Verify refused the platform's own delivery: %v", err)
		}
		for _, known := range []error{mstudio.ErrSignatureMissing, mstudio.ErrAlgorithm, mstudio.ErrSignatureMalformed, mstudio.ErrSignatureInvalid} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("Verify failed with an unexpected error: %v", err)
	})
}

// decodeLoosely decodes a signature header the ways the platform may send it.
func decodeLoosely(s string) []byte {
	s = strings.TrimSpace(s)
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b
	}
	b, _ := base64.RawStdEncoding.DecodeString(s)
	return b
}
