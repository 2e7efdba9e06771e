package mstudio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

const (
	// rowCheckInterval is how long a replica trusts its cached token without looking at the
	// shared row. Forget on one replica deletes the row; the others notice at their next
	// look and mint anew (or adopt a newer token another replica stored), so no cache keeps
	// a token of a disabled, removed or rotated instance longer than this.
	rowCheckInterval = 30 * time.Second
	// A replica that lost the lease polls the row this often (doubling, with jitter) for
	// the winner's token; a mint takes about one round trip, so the first looks are quick.
	leaseWaitMin = 10 * time.Millisecond
	leaseWaitMax = 250 * time.Millisecond
	// A refused fresh secret is tried again after these waits (doubling, with jitter): the
	// platform activates a secret "less than a few seconds" after our webhook answered.
	graceWaitMin = 100 * time.Millisecond
	graceWaitMax = 2 * time.Second
	// forgetTimeout bounds the deletion of the shared row in Forget, which the webhook
	// path calls before it answers.
	forgetTimeout = 5 * time.Second
)

// errLeaseLost says another replica took over the mint lease while ours ran out during
// the retries of a refused secret: wait for its token instead of minting a second one.
var errLeaseLost = errors.New("mstudio: mint lease taken over by another replica")

// Broker hands out instance tokens: cached per instance in memory, refreshed before they
// expire, minted at most once at a time per instance within the process (singleflight)
// and across replicas (a lease row in the database, through which the winner shares its
// token, sealed). It reads the instance secret from the store at each mint and never
// keeps it. It is safe for concurrent use.
type Broker struct {
	store         *extension.Store
	client        *Client
	owner         string
	leaseTTL      time.Duration
	grace         time.Duration
	flightTimeout time.Duration
	now           func() time.Time
	logger        *slog.Logger
	flights       singleflight.Group
	mints         *prometheus.CounterVec // nil without a registry

	mu      sync.RWMutex
	entries map[string]*tokenEntry // instance id → its cached token
}

// BrokerOptions tunes NewBroker. The zero value gives production settings.
type BrokerOptions struct {
	Owner    string        // this replica's lease owner id; default random
	LeaseTTL time.Duration // how long a mint lease is held at most; default 15 s
	// Grace: a secret refused within this long after it arrived is retried with backoff;
	// default 15 s; <0: never. When it arrived is the instance's UpdatedAt, which every
	// applied lifecycle event moves, so the window may start a little late, never early.
	Grace  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
	// Registerer receives extension_token_mints_total; nil: not counted.
	Registerer prometheus.Registerer
}

// tokenEntry is the cache slot of one instance. The hot path reads cur without a lock;
// mu orders the installation of a new token against Forget.
type tokenEntry struct {
	cur  atomic.Pointer[cachedToken]
	mu   sync.Mutex
	dead bool // forgotten: a flight that started before must not install its token here
}

// cachedToken is immutable once published.
type cachedToken struct {
	tok        InstanceToken
	refreshAt  time.Time // when the token is due for a refresh
	freshUntil time.Time // served from memory until then: the refresh point or the next row check
}

// NewBroker returns a broker that mints through client with the secrets in store.
func NewBroker(store *extension.Store, client *Client, opts BrokerOptions) *Broker {
	b := &Broker{
		store: store, client: client, owner: opts.Owner,
		leaseTTL: opts.LeaseTTL, grace: opts.Grace, now: opts.Now, logger: opts.Logger,
		entries: map[string]*tokenEntry{}, mints: newMintCounter(opts.Registerer),
	}
	if b.owner == "" {
		var r [12]byte
		_, _ = rand.Read(r[:])
		b.owner = hex.EncodeToString(r[:])
	}
	if b.leaseTTL <= 0 {
		b.leaseTTL = 15 * time.Second
	}
	switch {
	case b.grace == 0:
		b.grace = 15 * time.Second
	case b.grace < 0:
		b.grace = 0
	}
	if b.now == nil {
		b.now = time.Now
	}
	if b.logger == nil {
		b.logger = slog.New(slog.DiscardHandler)
	}
	// A flight may wait out another replica's lease (renewed during its grace retries)
	// and then mint with retries of its own.
	b.flightTimeout = 2*b.leaseTTL + b.grace
	return b
}

// Token returns a valid instance token, from the cache or freshly minted. The token is
// never expired when returned: a cached token past its refresh point is refreshed first.
// An unknown, removed or disabled instance, or one without a secret, fails at once with
// an error wrapping extension.ErrNotFound, ErrRemoved, ErrDisabled or ErrNoSecret, and
// without calling the platform.
func (b *Broker) Token(ctx context.Context, instanceID string) (InstanceToken, error) {
	b.mu.RLock()
	e := b.entries[instanceID]
	b.mu.RUnlock()
	if e != nil {
		if c := e.cur.Load(); c != nil && b.now().Before(c.freshUntil) {
			return c.tok, nil
		}
	}
	// The flight runs detached from this caller: a caller that gives up must not cancel a
	// mint that the others, and the next callers, wait for.
	ch := b.flights.DoChan(instanceID, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.flightTimeout)
		defer cancel()
		return b.fetch(fctx, instanceID)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return InstanceToken{}, r.Err
		}
		return r.Val.(InstanceToken), nil
	case <-ctx.Done():
		return InstanceToken{}, fmt.Errorf("instance token of %s: %w", instanceID, context.Cause(ctx))
	}
}

// Forget drops the cached token of an instance, here and in the shared row, so the next
// Token mints with the instance's current secret: for a caller that finds a token dead
// (a 401); lifecycle events go through Applied. Other replicas keep serving their cached copy until
// they next check the row, within rowCheckInterval (30 s): for a disabled or removed
// instance that copy is dead at the platform anyway, and after a rotation the old token
// stays valid until its expiry.
func (b *Broker) Forget(instanceID string) {
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()
	// The row goes first: a flight that read it before is stopped by drop below from
	// installing what it read; one that reads it after finds nothing.
	if err := b.store.DeleteSharedToken(ctx, instanceID); err != nil {
		b.logger.Warn("forget instance token: shared row kept", "instance_id", instanceID, "error", err.Error())
	}
	b.drop(instanceID)
}

// Applied is the webhook path's hook after a lifecycle event was committed: a rotated
// secret, an update (which may disable the instance or change its scopes) and a removal
// make the cached token useless, so this replica drops its copy. The shared row needs no
// second write: the store deletes it in the transaction that applies the event. An
// install changes nothing here: there is no token yet.
func (b *Broker) Applied(_ context.Context, ev extension.LifecycleEvent) {
	switch ev.Kind {
	case extension.EventSecretRotated, extension.EventRemoved, extension.EventUpdated:
		b.drop(ev.InstanceID)
	}
}

// drop removes the instance's cache slot and marks it dead for flights that hold it.
func (b *Broker) drop(instanceID string) {
	b.mu.Lock()
	e := b.entries[instanceID]
	delete(b.entries, instanceID)
	b.mu.Unlock()
	if e != nil {
		e.mu.Lock()
		e.dead = true
		e.cur.Store(nil)
		e.mu.Unlock()
	}
}

// entry returns the instance's cache slot, made on first use.
func (b *Broker) entry(instanceID string) *tokenEntry {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[instanceID]
	if e == nil {
		e = &tokenEntry{}
		b.entries[instanceID] = e
	}
	return e
}

// install publishes c unless the slot was forgotten since the flight took it.
func (e *tokenEntry) install(c *cachedToken) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.dead {
		return false
	}
	e.cur.Store(c)
	return true
}

// schedule places a token's refresh point: at 80 % of its life or 60 s before expiry,
// whichever comes first, but not before half its life (a token shorter than two minutes
// would otherwise be due before it was issued), and up to a tenth of its life earlier at
// random, so that replicas and instances spread their mints.
func (b *Broker) schedule(tok InstanceToken, issued time.Time) *cachedToken {
	life := tok.Expiry.Sub(issued)
	refresh := issued
	if life > 0 {
		after := max(min(life*8/10, life-time.Minute), life/2)
		if j := life / 10; j > 0 {
			after -= mrand.N(j)
		}
		refresh = issued.Add(after)
	}
	return &cachedToken{tok: tok, refreshAt: refresh, freshUntil: earlier(refresh, b.now().Add(rowCheckInterval))}
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// fetch is one flight: it returns a fresh token of the instance from the cache, the
// shared row, or a mint under the lease, and installs it in the cache.
func (b *Broker) fetch(ctx context.Context, id string) (InstanceToken, error) {
	wait := leaseWaitMin
	for {
		// The instance must be usable before any token is handed out, the shared one
		// included: this is also how a replica learns of a disable seen by another.
		if _, _, err := b.store.InstanceCredentials(ctx, id); err != nil {
			if instanceUnusable(err) {
				b.drop(id)
			}
			return InstanceToken{}, fmt.Errorf("instance token of %s: %w", id, err)
		}
		e := b.entry(id)
		now := b.now()
		prev := e.cur.Load()
		if prev != nil && now.Before(prev.freshUntil) {
			return prev.tok, nil // refreshed by the flight just before this one
		}

		row, err := b.store.SharedToken(ctx, id)
		switch {
		case errors.Is(err, extension.ErrNotFound):
		case errors.Is(err, extension.ErrUnsealable):
			// Sealed with a key that is gone: mint anew, the row is overwritten.
			b.logger.Warn("instance token: shared token does not open, minting anew", "instance_id", id, "error", err.Error())
		case err != nil:
			return InstanceToken{}, fmt.Errorf("instance token of %s: %w", id, err)
		}
		if !row.Token.IsZero() {
			var c *cachedToken
			if prev != nil && prev.tok.Token == row.Token {
				// Our own token, still shared: keep its refresh point, look again later.
				c = &cachedToken{tok: prev.tok, refreshAt: prev.refreshAt, freshUntil: earlier(prev.refreshAt, now.Add(rowCheckInterval))}
			} else {
				c = b.schedule(InstanceToken{Token: row.Token, Expiry: row.ExpiresAt}, row.StoredAt)
			}
			if now.Before(c.refreshAt) {
				if e.install(c) {
					return c.tok, nil
				}
				continue // forgotten meanwhile
			}
		}

		won := false
		if !row.Leased(b.owner, now) {
			if won, err = b.store.LeaseSharedToken(ctx, id, b.owner, b.leaseTTL); err != nil {
				return InstanceToken{}, fmt.Errorf("instance token of %s: %w", id, err)
			}
		}
		if won {
			// Another replica may have stored a fresh token between our read and our
			// lease (storing frees the lease): with the lease held nobody else can store,
			// so one more read settles it, and we use that token instead of minting.
			again, err := b.store.SharedToken(ctx, id)
			if err == nil && !again.Token.IsZero() && again.Token != row.Token {
				b.release(id)
				continue
			}
		}
		if !won {
			// Another replica is minting: wait for its token in the row.
			if err := brokerPause(ctx, wait); err != nil {
				return InstanceToken{}, fmt.Errorf("instance token of %s: waiting for another replica's mint: %w", id, err)
			}
			wait = min(2*wait, leaseWaitMax)
			continue
		}

		tok, err := b.mint(ctx, id)
		if errors.Is(err, errLeaseLost) {
			continue
		}
		if err != nil {
			b.release(id)
			if instanceUnusable(err) {
				b.drop(id)
			} else {
				kind, status := mintFailureKind(err)
				b.mintFailed(id, kind, status)
			}
			return InstanceToken{}, fmt.Errorf("instance token of %s: %w", id, err)
		}
		// PostgreSQL keeps microseconds: cut the rest now, so every replica hands out the
		// same expiry for the same token (a little early, never late).
		tok.Expiry = tok.Expiry.UTC().Truncate(time.Microsecond)
		now = b.now()
		if !tok.Expiry.After(now) {
			b.release(id)
			b.mintFailed(id, MintExpiredOnReply, 0)
			return InstanceToken{}, fmt.Errorf("instance token of %s: the platform sent a token that expired at %s, before our clock's %s",
				id, tok.Expiry.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		}
		b.minted(id)
		stored, err := b.store.PutSharedToken(ctx, id, b.owner, tok.Token, tok.Expiry)
		if err != nil {
			// The token is good; only sharing it failed. The other replicas mint their own
			// once our lease runs out.
			b.logger.Warn("instance token: not shared with other replicas", "instance_id", id, "error", err.Error())
			stored = true
		}
		if !stored {
			// The row was deleted while we minted (Forget: perhaps a rotation, and this
			// token came from the old secret), or our lease ran out: start over.
			continue
		}
		if e.install(b.schedule(tok, now)) {
			return tok, nil
		}
	}
}

// mint asks the platform for a token with the instance's current secret, read from the
// store now. A secret refused shortly after it arrived is probably not active yet: it is
// tried again, re-read each time, until Grace after its arrival.
func (b *Broker) mint(ctx context.Context, id string) (InstanceToken, error) {
	wait := graceWaitMin
	for attempt := 1; ; attempt++ {
		in, secret, err := b.store.InstanceCredentials(ctx, id)
		if err != nil {
			return InstanceToken{}, err
		}
		tok, err := b.client.InstanceToken(ctx, id, secret)
		if err == nil {
			b.logger.Debug("instance token minted", "instance_id", id, "attempt", attempt, "expiry", tok.Expiry)
			return tok, nil
		}
		var apiErr *Error
		if !errors.As(err, &apiErr) || (apiErr.Status != http.StatusUnauthorized && apiErr.Status != http.StatusForbidden) {
			return InstanceToken{}, err
		}
		if !b.now().Before(in.UpdatedAt.Add(b.grace)) {
			return InstanceToken{}, err
		}
		b.logger.Info("instance secret refused shortly after it arrived, trying again",
			"instance_id", id, "attempt", attempt, "status", apiErr.Status)
		if err := brokerPause(ctx, wait); err != nil {
			return InstanceToken{}, fmt.Errorf("waiting for the secret to become active: %w", err)
		}
		wait = min(2*wait, graceWaitMax)
		// The retries may outlast one lease: renew it, or give way to whoever took it.
		won, err := b.store.LeaseSharedToken(ctx, id, b.owner, b.leaseTTL)
		if err != nil {
			return InstanceToken{}, err
		}
		if !won {
			return InstanceToken{}, errLeaseLost
		}
	}
}

// release gives up the lease after a failed mint, so another replica need not wait it
// out. It runs on a context of its own: the flight's may be what failed.
func (b *Broker) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), forgetTimeout)
	defer cancel()
	if err := b.store.ReleaseSharedToken(ctx, id, b.owner); err != nil {
		b.logger.Warn("instance token: lease kept until it runs out", "instance_id", id, "error", err.Error())
	}
}

// instanceUnusable reports whether err says the instance cannot have a token at all.
func instanceUnusable(err error) bool {
	return errors.Is(err, extension.ErrNotFound) || errors.Is(err, extension.ErrRemoved) ||
		errors.Is(err, extension.ErrDisabled) || errors.Is(err, extension.ErrNoSecret)
}

// brokerPause waits between half of d and all of d, or until ctx is done.
func brokerPause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d/2 + mrand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
