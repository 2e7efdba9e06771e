package mstudio

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

var (
	// ErrUnknownKey is returned for a serial the platform does not know.
	ErrUnknownKey = errors.New("mstudio: unknown public key serial")
	// ErrKeyUnavailable is returned when a key cannot be had right now: the key server
	// does not answer, or too many unknown serials are being looked up.
	ErrKeyUnavailable = errors.New("mstudio: public key unavailable")
	// ErrBadSerial is returned for a serial that is not a UUID; it is never sent anywhere.
	ErrBadSerial = errors.New("mstudio: public key serial is not a UUID")
)

// Purpose says what a platform key signs.
type Purpose string

// Key purposes.
const (
	PurposeWebhook      Purpose = "webhook"
	PurposeSessionToken Purpose = "session_token"
)

// PublicKey fetches the Ed25519 key with the serial and purpose
// (GET /v2/public-keys/{serial}?purpose=…&format=raw). The call needs no token.
func (c *Client) PublicKey(ctx context.Context, serial string, purpose Purpose) (ed25519.PublicKey, error) {
	var out struct {
		Serial    string `json:"serial"`
		Algorithm string `json:"algorithm"`
		Key       string `json:"key"`
	}
	q := url.Values{"purpose": {string(purpose)}, "format": {"raw"}}
	status, err := c.do(ctx, call{method: http.MethodGet, route: "/v2/public-keys/{serial}", params: []string{serial}, query: q, out: &out})
	if status == http.StatusNotFound {
		return nil, ErrUnknownKey
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	if !strings.EqualFold(out.Algorithm, "Ed25519") {
		return nil, fmt.Errorf("%w: key %s has algorithm %q, want Ed25519", ErrKeyUnavailable, serial, out.Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(out.Key)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: key %s is not base64 of %d bytes", ErrKeyUnavailable, serial, ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// KeyCache holds the platform's public keys of one purpose by serial. A key never changes
// under its serial, so a fetched key is kept for the life of the process. Lookups of one
// serial share one fetch; an unknown serial is remembered briefly, and fetches of unknown
// serials are rate-limited, so a flood of made-up serials cannot hammer the platform.
type KeyCache struct {
	fetch       func(ctx context.Context, serial string) (ed25519.PublicKey, error)
	now         func() time.Time
	negativeTTL time.Duration
	misses      *rate.Limiter

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	unknown map[string]time.Time // serial → until when it counts as unknown
	group   singleflight.Group
}

// KeyCacheOptions tunes NewKeyCache; the zero value gives production settings.
type KeyCacheOptions struct {
	NegativeTTL time.Duration // how long an unknown serial stays unknown; 0: 30 s
	MissRate    rate.Limit    // fetches of serials not in the cache per second; 0: 5
	MissBurst   int           // 0: 20
	Now         func() time.Time
}

// NewKeyCache returns a cache of the client's keys of one purpose.
func NewKeyCache(c *Client, purpose Purpose, opts KeyCacheOptions) *KeyCache {
	return newKeyCache(func(ctx context.Context, serial string) (ed25519.PublicKey, error) {
		return c.PublicKey(ctx, serial, purpose)
	}, opts)
}

func newKeyCache(fetch func(context.Context, string) (ed25519.PublicKey, error), opts KeyCacheOptions) *KeyCache {
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 30 * time.Second
	}
	if opts.MissRate == 0 {
		opts.MissRate = 5
	}
	if opts.MissBurst == 0 {
		opts.MissBurst = 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &KeyCache{
		fetch:       fetch,
		now:         opts.Now,
		negativeTTL: opts.NegativeTTL,
		misses:      rate.NewLimiter(opts.MissRate, opts.MissBurst),
		keys:        map[string]ed25519.PublicKey{},
		unknown:     map[string]time.Time{},
	}
}

// CanonicalSerial returns the serial in lower case if it is a UUID in its 36-character
// form, and ErrBadSerial otherwise.
func CanonicalSerial(serial string) (string, error) {
	if !IsUUID(serial) {
		return "", ErrBadSerial
	}
	return strings.ToLower(serial), nil
}

// IsUUID reports whether s is a UUID in its 36-character form, the only form the
// platform's ids take; uuid.Parse alone also takes the braced and urn: forms, which must
// not reach a URL path or a database key.
func IsUUID(s string) bool {
	_, err := uuid.Parse(s)
	return len(s) == 36 && err == nil
}

// Key returns the key with the serial: from the cache, or fetched once.
func (kc *KeyCache) Key(ctx context.Context, serial string) (ed25519.PublicKey, error) {
	serial, err := CanonicalSerial(serial)
	if err != nil {
		return nil, err
	}
	kc.mu.Lock()
	if k, ok := kc.keys[serial]; ok {
		kc.mu.Unlock()
		return k, nil
	}
	if until, ok := kc.unknown[serial]; ok && kc.now().Before(until) {
		kc.mu.Unlock()
		return nil, ErrUnknownKey
	}
	kc.mu.Unlock()

	ch := kc.group.DoChan(serial, func() (any, error) {
		// Another fetch may have finished between the look-up above and this call.
		kc.mu.Lock()
		k, ok := kc.keys[serial]
		until, unknown := kc.unknown[serial]
		kc.mu.Unlock()
		switch {
		case ok:
			return k, nil
		case unknown && kc.now().Before(until):
			return nil, ErrUnknownKey
		}
		if !kc.misses.Allow() {
			return nil, fmt.Errorf("%w: too many lookups of unknown serials", ErrKeyUnavailable)
		}
		// The fetch belongs to every waiter, so one caller giving up must not cancel it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		k, err := kc.fetch(fctx, serial)
		kc.mu.Lock()
		defer kc.mu.Unlock()
		switch {
		case err == nil:
			kc.keys[serial] = k
		case errors.Is(err, ErrUnknownKey):
			kc.forgetExpiredLocked()
			kc.unknown[serial] = kc.now().Add(kc.negativeTTL)
		}
		return k, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(ed25519.PublicKey), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, ctx.Err())
	}
}

func (kc *KeyCache) forgetExpiredLocked() {
	now := kc.now()
	for s, until := range kc.unknown {
		if !now.Before(until) {
			delete(kc.unknown, s)
		}
	}
}
