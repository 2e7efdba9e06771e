package mstudio

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

var (
	// ErrUnknownKey is returned for a serial the platform does not know.
	ErrUnknownKey = errors.New("mstudio: unknown public key serial")
	// ErrKeyUnavailable is returned when a key cannot be had right now: the key server
	// does not answer.
	ErrKeyUnavailable = errors.New("mstudio: public key unavailable")
	// ErrBadSerial is returned for a serial that is not a UUID; it is never sent anywhere.
	ErrBadSerial = errors.New("mstudio: public key serial is not a UUID")
	// ErrTooManyLookups is returned, without asking the platform, for a serial not cached
	// while the client's budget of such lookups, or all clients', is spent: the client's
	// doing, not ours (answer 429 or 401, not 5xx).
	ErrTooManyLookups = errors.New("mstudio: too many lookups of public key serials not cached")
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
	_, key, err := c.publicKey(ctx, serial, purpose)
	return key, err
}

// CurrentPublicKey fetches the key the platform signs with now for the purpose, and its
// serial (the serial "latest" of the same route).
func (c *Client) CurrentPublicKey(ctx context.Context, purpose Purpose) (serial string, key ed25519.PublicKey, err error) {
	serial, key, err = c.publicKey(ctx, "latest", purpose)
	if err != nil {
		return "", nil, err
	}
	if serial, err = CanonicalSerial(serial); err != nil {
		return "", nil, fmt.Errorf("%w: the current %s key has a serial that is not a UUID", ErrKeyUnavailable, purpose)
	}
	return serial, key, nil
}

func (c *Client) publicKey(ctx context.Context, serial string, purpose Purpose) (string, ed25519.PublicKey, error) {
	var out struct {
		Serial    string `json:"serial"`
		Algorithm string `json:"algorithm"`
		Key       string `json:"key"`
	}
	q := url.Values{"purpose": {string(purpose)}, "format": {"raw"}}
	status, err := c.do(ctx, call{method: http.MethodGet, route: "/v2/public-keys/{serial}", params: []string{serial}, query: q, out: &out})
	if status == http.StatusNotFound {
		return "", nil, ErrUnknownKey
	}
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, err)
	}
	if !strings.EqualFold(out.Algorithm, "Ed25519") {
		return "", nil, fmt.Errorf("%w: key %s has algorithm %q, want Ed25519", ErrKeyUnavailable, serial, out.Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(out.Key)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return "", nil, fmt.Errorf("%w: key %s is not base64 of %d bytes", ErrKeyUnavailable, serial, ed25519.PublicKeySize)
	}
	return out.Serial, ed25519.PublicKey(raw), nil
}

// KeyCache holds the platform's public keys of one purpose by serial. A key never changes
// under its serial, so a fetched key is kept for the life of the process. KeepCurrent
// fetches the key the platform signs with now, at start and then periodically, so that
// its deliveries and tokens find their key cached. A serial not cached is fetched once,
// by one lookup that the others share; an unknown serial is remembered briefly. Fetches
// of serials not cached are budgeted per client address and in total: a flood of made-up
// serials from one address spends its own budget, not the one other clients need, and
// the platform sees a bounded number of fetches whatever the flood.
type KeyCache struct {
	purpose     Purpose
	fetch       func(ctx context.Context, serial string) (ed25519.PublicKey, error)
	fetchLatest func(ctx context.Context) (string, ed25519.PublicKey, error)
	now         func() time.Time
	logger      *slog.Logger
	negativeTTL time.Duration
	refresh     time.Duration
	recheck     time.Duration
	// recheckNow asks KeepCurrent for an early look at the current key: a miss refused
	// for budget may be the platform's new key.
	recheckNow chan struct{}
	spent      *RefusalLog // lookups refused because all clients' budget is spent

	mu       sync.Mutex
	keys     map[string]ed25519.PublicKey
	current  string               // the serial of the key the platform signs with now, once known
	unknown  map[string]time.Time // serial → until when it counts as unknown
	inflight map[string]*keyFetch
	misses   *rate.Limiter // fetches of serials not cached, from all clients
	clients  *clientBudgets
}

// keyFetch is one fetch of a serial, shared by every lookup that waits for it.
type keyFetch struct {
	done chan struct{} // closed once key and err are set
	key  ed25519.PublicKey
	err  error
}

// KeyCacheOptions tunes NewKeyCache; the zero value gives production settings.
type KeyCacheOptions struct {
	NegativeTTL time.Duration // how long an unknown serial stays unknown; 0: 30 s
	// MissRate (per second) and MissBurst budget the fetches of serials not in the
	// cache from all clients together; 0: 5 and 20.
	MissRate  rate.Limit
	MissBurst int
	// ClientMissRate and ClientMissBurst budget them per client address (an IPv6 /64
	// counts as one); 0: one per 5 s, and 5.
	ClientMissRate  rate.Limit
	ClientMissBurst int
	// RefreshPeriod is how often KeepCurrent fetches the current key; 0: 10 min.
	RefreshPeriod time.Duration
	// RecheckAfter is the soonest after its last fetch that KeepCurrent looks again
	// because a miss was refused for budget; 0: 1 min.
	RecheckAfter time.Duration
	Logger       *slog.Logger // nil: discard
	// Now is the clock of the negative cache and the budgets; KeepCurrent waits in real
	// time.
	Now func() time.Time
}

// NewKeyCache returns a cache of the client's keys of one purpose.
func NewKeyCache(c *Client, purpose Purpose, opts KeyCacheOptions) *KeyCache {
	return newKeyCache(purpose,
		func(ctx context.Context, serial string) (ed25519.PublicKey, error) {
			return c.PublicKey(ctx, serial, purpose)
		},
		func(ctx context.Context) (string, ed25519.PublicKey, error) { return c.CurrentPublicKey(ctx, purpose) },
		opts)
}

func newKeyCache(purpose Purpose, fetch func(context.Context, string) (ed25519.PublicKey, error),
	fetchLatest func(context.Context) (string, ed25519.PublicKey, error), opts KeyCacheOptions) *KeyCache {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.NegativeTTL, 30*time.Second)
	def(&opts.RefreshPeriod, 10*time.Minute)
	def(&opts.RecheckAfter, time.Minute)
	if opts.MissRate == 0 {
		opts.MissRate = 5
	}
	if opts.MissBurst == 0 {
		opts.MissBurst = 20
	}
	if opts.ClientMissRate == 0 {
		opts.ClientMissRate = rate.Every(5 * time.Second)
	}
	if opts.ClientMissBurst == 0 {
		opts.ClientMissBurst = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &KeyCache{
		purpose:     purpose,
		fetch:       fetch,
		fetchLatest: fetchLatest,
		now:         opts.Now,
		logger:      opts.Logger,
		negativeTTL: opts.NegativeTTL,
		refresh:     opts.RefreshPeriod,
		recheck:     opts.RecheckAfter,
		recheckNow:  make(chan struct{}, 1),
		spent: NewRefusalLog(opts.Logger, "platform key lookups refused: the budget of all clients is spent",
			slog.LevelWarn, time.Minute),
		keys:     map[string]ed25519.PublicKey{},
		unknown:  map[string]time.Time{},
		inflight: map[string]*keyFetch{},
		misses:   rate.NewLimiter(opts.MissRate, opts.MissBurst),
		clients:  newClientBudgets(opts.ClientMissRate, opts.ClientMissBurst),
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

// Key returns the key with the serial: from the cache, or fetched once. A serial not
// cached is fetched only within the budgets of the client address that ctx carries
// (WithClientAddress) and of all clients; beyond them Key fails at once with
// ErrTooManyLookups. A lookup that finds the serial's fetch under way waits for it,
// whatever its budget.
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
	now := kc.now()
	if until, ok := kc.unknown[serial]; ok && now.Before(until) {
		kc.mu.Unlock()
		return nil, ErrUnknownKey
	}
	f, ok := kc.inflight[serial]
	if !ok {
		if err := kc.spendMissLocked(ClientAddress(ctx), now); err != nil {
			kc.mu.Unlock()
			kc.askRecheck()
			return nil, err
		}
		f = &keyFetch{done: make(chan struct{})}
		kc.inflight[serial] = f
		// The fetch belongs to every lookup that waits for it, so one giving up must
		// not cancel it.
		go kc.fetchInto(context.WithoutCancel(ctx), serial, f)
	}
	kc.mu.Unlock()
	select {
	case <-f.done:
		return f.key, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrKeyUnavailable, ctx.Err())
	}
}

// spendMissLocked takes one fetch from the client's budget and one from all clients',
// or none from either. The client's comes first: a flooding address is refused before
// it spends what the others need.
func (kc *KeyCache) spendMissLocked(client string, now time.Time) error {
	b := kc.clients.bucket(client, now)
	if b.TokensAt(now) < 1 {
		return fmt.Errorf("%w: from this client address", ErrTooManyLookups)
	}
	if !kc.misses.AllowN(now, 1) {
		kc.spent.Refused(context.Background(), string(kc.purpose), client)
		return fmt.Errorf("%w: from all clients", ErrTooManyLookups)
	}
	b.AllowN(now, 1)
	return nil
}

func (kc *KeyCache) fetchInto(ctx context.Context, serial string, f *keyFetch) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	k, err := kc.fetch(ctx, serial)
	kc.mu.Lock()
	switch {
	case err == nil:
		kc.keys[serial] = k
	case errors.Is(err, ErrUnknownKey):
		kc.forgetExpiredLocked()
		kc.unknown[serial] = kc.now().Add(kc.negativeTTL)
	}
	delete(kc.inflight, serial)
	kc.mu.Unlock()
	f.key, f.err = k, err
	close(f.done)
}

func (kc *KeyCache) forgetExpiredLocked() {
	now := kc.now()
	for s, until := range kc.unknown {
		if !now.Before(until) {
			delete(kc.unknown, s)
		}
	}
}
