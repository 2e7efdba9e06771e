package atrek

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"golang.org/x/sync/singleflight"
)

// ErrSignInAgain says there is no usable token of the user in the instance: none was
// stored, it was deleted, or the platform refused its refresh token. The user must click
// through from the control panel again.
var ErrSignInAgain = errors.New("atrek: no valid user token, sign in again")

const (
	// A refresh that lost the lease to another replica polls the row this often
	// (doubling, with jitter) for that replica's tokens; a refresh is one round trip.
	userTokenWaitMin = 10 * time.Millisecond
	userTokenWaitMax = 250 * time.Millisecond
	// userTokenCleanupTimeout bounds releasing a lease or deleting a refused row, which run
	// on a context of their own: the flight's may be what failed.
	userTokenCleanupTimeout = 5 * time.Second
)

// UserTokens hands out platform user tokens, one per (user, instance), from the store,
// refreshed before they expire. A refresh rotates the refresh token, so it runs at most
// once at a time per user and instance: within the process (singleflight) and across
// replicas (the row's refresh lease). The store row is the only copy: nothing is cached
// in memory, so a sign-in, a deletion or another replica's refresh counts at once. It is
// safe for concurrent use.
type UserTokens struct {
	store         *extension.Store
	client        *mstudio.Client
	owner         string
	leaseTTL      time.Duration
	flightTimeout time.Duration
	now           func() time.Time
	logger        *slog.Logger
	flights       singleflight.Group
}

// UserTokenOptions tunes NewUserTokens. The zero value gives production settings.
type UserTokenOptions struct {
	Owner    string        // this replica's lease owner id; default random
	LeaseTTL time.Duration // how long a refresh lease is held at most; default 15 s
	Now      func() time.Time
	Logger   *slog.Logger
}

// NewUserTokens returns user tokens kept in store and refreshed through client.
func NewUserTokens(store *extension.Store, client *mstudio.Client, opts UserTokenOptions) *UserTokens {
	u := &UserTokens{store: store, client: client, owner: opts.Owner, leaseTTL: opts.LeaseTTL, now: opts.Now, logger: opts.Logger}
	if u.owner == "" {
		var r [12]byte
		_, _ = rand.Read(r[:])
		u.owner = hex.EncodeToString(r[:])
	}
	if u.leaseTTL <= 0 {
		u.leaseTTL = 15 * time.Second
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.logger == nil {
		u.logger = slog.New(slog.DiscardHandler)
	}
	// A flight may wait out another replica's lease and then refresh itself.
	u.flightTimeout = 2 * u.leaseTTL
	return u
}

// Token returns a valid access token of the user in the instance, refreshed first when it
// is due. It fails with an error wrapping ErrSignInAgain when there is none, or when the
// platform refused the refresh token; the stored tokens are deleted then. Any other
// failure of a refresh keeps them, for the next call to try again.
func (u *UserTokens) Token(ctx context.Context, userID, instanceID string) (extension.Secret, error) {
	row, err := u.load(ctx, userID, instanceID)
	if err != nil {
		return "", err
	}
	if u.now().Before(userTokenDue(row, userID, instanceID)) {
		return row.Token, nil
	}
	// The flight runs detached from this caller: one that gives up must not cancel a
	// refresh that the others wait for, and whose rotated refresh token must be stored.
	key := userID + "\x00" + instanceID
	ch := u.flights.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.flightTimeout)
		defer cancel()
		return u.refresh(fctx, userID, instanceID)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(extension.Secret), nil
	case <-ctx.Done():
		return "", fmt.Errorf("user token of %s in instance %s: %w", userID, instanceID, context.Cause(ctx))
	}
}

// load reads the row; missing or unopenable tokens mean the user signs in again.
func (u *UserTokens) load(ctx context.Context, userID, instanceID string) (extension.UserToken, error) {
	row, err := u.store.UserToken(ctx, userID, instanceID)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return row, fmt.Errorf("user token of %s in instance %s: %w", userID, instanceID, ErrSignInAgain)
	case errors.Is(err, extension.ErrUnsealable):
		// Left in place: a replica with a newer keyring may still open it, and the next
		// sign-in overwrites it anyway.
		return row, fmt.Errorf("%w: %w", ErrSignInAgain, err)
	case err != nil:
		return row, fmt.Errorf("user token: %w", err)
	}
	return row, nil
}

// userTokenDue returns when a stored token is due for a refresh: at 80 % of its life or
// 60 s before expiry, whichever comes first, but not before half its life, and up to a
// tenth of its life earlier, so that sessions spread their refreshes. The spread is fixed
// per user and instance, so every replica and every call agrees on it.
func userTokenDue(row extension.UserToken, userID, instanceID string) time.Time {
	life := row.ExpiresAt.Sub(row.StoredAt)
	if life <= 0 {
		return row.StoredAt
	}
	after := max(min(life*8/10, life-time.Minute), life/2)
	if j := life / 10; j > 0 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(userID + "\x00" + instanceID))
		after -= time.Duration(h.Sum64() % uint64(j))
	}
	return row.StoredAt.Add(after)
}

// refresh is one flight: it returns a fresh token of the user in the instance, refreshed
// under the lease here, or stored meanwhile by another replica or a new sign-in.
func (u *UserTokens) refresh(ctx context.Context, userID, instanceID string) (extension.Secret, error) {
	wait := userTokenWaitMin
	for {
		row, err := u.load(ctx, userID, instanceID)
		if err != nil {
			return "", err
		}
		now := u.now()
		if now.Before(userTokenDue(row, userID, instanceID)) {
			return row.Token, nil // refreshed by another flight, replica or sign-in
		}
		won := false
		if !row.Leased(u.owner, now) {
			won, err = u.store.LeaseUserTokenRefresh(ctx, userID, instanceID, u.owner, u.leaseTTL)
			if errors.Is(err, extension.ErrNotFound) {
				return "", fmt.Errorf("user token of %s in instance %s: %w", userID, instanceID, ErrSignInAgain)
			}
			if err != nil {
				return "", fmt.Errorf("user token: %w", err)
			}
		}
		if !won {
			// Another replica is refreshing: wait for its tokens in the row, or for its
			// lease to end.
			if err := userTokenPause(ctx, wait); err != nil {
				return "", fmt.Errorf("user token of %s in instance %s: waiting for another replica's refresh: %w", userID, instanceID, err)
			}
			wait = min(2*wait, userTokenWaitMax)
			continue
		}
		// Another replica may have stored new tokens between our read and our lease
		// (storing frees the lease): with the lease held nobody else can store, so one
		// more read settles it. Refreshing with the refresh token read before would spend
		// a token that is no longer the current one.
		again, err := u.load(ctx, userID, instanceID)
		if err != nil {
			u.release(userID, instanceID)
			return "", err
		}
		if again.Token != row.Token || again.Refresh != row.Refresh {
			u.release(userID, instanceID)
			continue
		}
		tok, retry, err := u.refreshLeased(ctx, userID, instanceID, again)
		if retry {
			continue
		}
		return tok, err
	}
}

// refreshLeased refreshes row at the platform while this replica holds the lease, and
// stores the result. retry says the row changed under it: read it again.
func (u *UserTokens) refreshLeased(ctx context.Context, userID, instanceID string, row extension.UserToken) (tok extension.Secret, retry bool, err error) {
	if row.Refresh.IsZero() {
		// The platform sent no refresh token: the token lives until it expires.
		u.release(userID, instanceID)
		if u.now().Before(row.ExpiresAt) {
			return row.Token, false, nil
		}
		return "", false, fmt.Errorf("user token of %s in instance %s expired and has no refresh token: %w", userID, instanceID, ErrSignInAgain)
	}
	fresh, err := u.client.RefreshUserToken(ctx, row.Token, row.Refresh)
	if err != nil {
		if !userTokenRefused(err) {
			u.release(userID, instanceID)
			return "", false, fmt.Errorf("user token of %s in instance %s: %w", userID, instanceID, err)
		}
		// A new sign-in may have replaced the tokens meanwhile (and dropped our lease):
		// those stay. The store has no conditional delete, so this check narrows the race
		// to the moment between it and the delete.
		if cur, err := u.store.UserToken(ctx, userID, instanceID); err == nil && cur.Token != row.Token {
			return "", true, nil
		}
		u.forget(userID, instanceID)
		return "", false, fmt.Errorf("user token of %s in instance %s: refresh refused: %w: %w", userID, instanceID, ErrSignInAgain, err)
	}
	fresh.ExpiresAt = fresh.ExpiresAt.UTC().Truncate(time.Microsecond)
	if now := u.now(); !fresh.ExpiresAt.After(now) {
		u.release(userID, instanceID)
		return "", false, fmt.Errorf("user token of %s in instance %s: the platform sent a token that expired at %s, before our clock's %s",
			userID, instanceID, fresh.ExpiresAt.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	stored, err := u.store.PutUserToken(ctx, userID, instanceID, fresh.Token, fresh.RefreshToken, fresh.ExpiresAt, u.owner)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return "", false, fmt.Errorf("user token of %s in instance %s: instance gone: %w", userID, instanceID, ErrSignInAgain)
	case err != nil:
		// The new token works, but the rotated refresh token is lost with it: the next
		// refresh is refused and the user signs in again.
		u.release(userID, instanceID)
		u.logger.Warn("user token: refreshed but not stored", "user_id", userID, "instance_id", instanceID, "error", err.Error())
		return fresh.Token, false, nil
	case !stored:
		// Replaced by a sign-in, deleted, or our lease ran out and another replica took
		// it: the row says which.
		return "", true, nil
	}
	u.logger.Debug("user token refreshed", "user_id", userID, "instance_id", instanceID, "expiry", fresh.ExpiresAt)
	return fresh.Token, false, nil
}

// userTokenRefused reports whether the platform refused the refresh token itself.
func userTokenRefused(err error) bool {
	var apiErr *mstudio.Error
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	return false
}

// release gives up the lease after a failed refresh, so another replica need not wait it
// out.
func (u *UserTokens) release(userID, instanceID string) {
	ctx, cancel := context.WithTimeout(context.Background(), userTokenCleanupTimeout)
	defer cancel()
	if err := u.store.ReleaseUserTokenRefresh(ctx, userID, instanceID, u.owner); err != nil {
		u.logger.Warn("user token: lease kept until it runs out", "user_id", userID, "instance_id", instanceID, "error", err.Error())
	}
}

// forget deletes tokens whose refresh the platform refused.
func (u *UserTokens) forget(userID, instanceID string) {
	ctx, cancel := context.WithTimeout(context.Background(), userTokenCleanupTimeout)
	defer cancel()
	if err := u.store.DeleteUserToken(ctx, userID, instanceID); err != nil {
		u.logger.Warn("user token: refused tokens not deleted", "user_id", userID, "instance_id", instanceID, "error", err.Error())
	}
}

// userTokenPause waits between half of d and all of d, or until ctx is done.
func userTokenPause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d/2 + mrand.N(d/2+1))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
