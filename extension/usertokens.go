package extension

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// UserToken is a platform user's access and refresh token for one instance, opened, and
// the refresh lease on them.
type UserToken struct {
	Token      Secret
	Refresh    Secret // may be zero: the platform sent none
	ExpiresAt  time.Time
	StoredAt   time.Time
	LeaseOwner string    // who holds the refresh lease; empty: nobody
	LeaseUntil time.Time // when that lease ends; zero: no lease
}

// Leased reports whether a refresh lease other than owner's is in force at now.
func (t UserToken) Leased(owner string, now time.Time) bool {
	return t.LeaseOwner != "" && t.LeaseOwner != owner && now.Before(t.LeaseUntil)
}

// userTokenRow maps the user_tokens table.
type userTokenRow struct {
	InstanceID     string `gorm:"primaryKey"`
	PlatformUserID string `gorm:"primaryKey"`
	SealedToken    string
	SealedRefresh  string
	ExpiresAt      time.Time
	LeaseOwner     string
	LeaseUntil     *time.Time
	UpdatedAt      time.Time
}

func (userTokenRow) TableName() string { return "user_tokens" }

// userTokenAAD binds a sealed user token to its row and its column: a value copied to
// another user's or instance's row, or from the refresh column to the access column, does
// not open. The instance id goes with its length, so no pair of ids reads like another.
func userTokenAAD(kind, userID, instanceID string) string {
	return kind + ":" + strconv.Itoa(len(instanceID)) + ":" + instanceID + ":" + userID
}

const (
	aadUserToken   = "user-token"
	aadUserRefresh = "user-refresh"
)

// UserToken loads a platform user's tokens for an instance. It fails with ErrNotFound
// when there are none, and with an error wrapping ErrUnsealable when they do not open (a
// key dropped since, or a value moved from another row): the user then signs in again.
func (s *Store) UserToken(ctx context.Context, userID, instanceID string) (UserToken, error) {
	var row userTokenRow
	err := s.db.WithContext(ctx).Take(&row, "instance_id = ? AND platform_user_id = ?", instanceID, userID).Error
	if err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return UserToken{}, err
		}
		return UserToken{}, fmt.Errorf("load token of user %s in instance %s: %w", userID, instanceID, err)
	}
	out := UserToken{ExpiresAt: row.ExpiresAt.UTC(), StoredAt: row.UpdatedAt.UTC(), LeaseOwner: row.LeaseOwner}
	if row.LeaseUntil != nil {
		out.LeaseUntil = row.LeaseUntil.UTC()
	}
	if out.Token, err = s.keys.Open(row.SealedToken, userTokenAAD(aadUserToken, userID, instanceID)); err != nil {
		return UserToken{}, fmt.Errorf("open token of user %s in instance %s: %w", userID, instanceID, err)
	}
	if row.SealedRefresh != "" {
		if out.Refresh, err = s.keys.Open(row.SealedRefresh, userTokenAAD(aadUserRefresh, userID, instanceID)); err != nil {
			return UserToken{}, fmt.Errorf("open refresh token of user %s in instance %s: %w", userID, instanceID, err)
		}
	}
	return out, nil
}

// PutUserToken stores a user's tokens for an instance, sealed, and reports whether it did.
//
// With an empty owner it stores them whatever is there: the tokens of a fresh sign-in
// replace older ones, and any refresh lease is dropped, so a refresh still under way
// elsewhere cannot store its older lineage over them (its PutUserToken reports false).
// With an owner it stores them only while owner holds the refresh lease, and releases it
// in the same statement: it reports false, storing nothing, when the lease ran out and
// another replica took it, or the tokens were replaced or deleted meanwhile.
//
// It fails with ErrNotFound when the instance does not exist, or (for a fresh sign-in) is
// disabled or removed.
func (s *Store) PutUserToken(ctx context.Context, userID, instanceID string, token, refresh Secret, expiresAt time.Time, owner string) (bool, error) {
	if userID == "" || instanceID == "" {
		return false, errors.New("store user token: empty user or instance id")
	}
	if token.IsZero() || expiresAt.IsZero() {
		return false, errors.New("store user token: no token or no expiry")
	}
	sealed, sealedRefresh, err := s.sealUserToken(userID, instanceID, token, refresh)
	if err != nil {
		return false, err
	}
	now := s.now().UTC()
	db := s.db.WithContext(ctx)
	var n int64
	if owner == "" {
		res := db.Exec(userTokenSignIn, instanceID, userID, sealed, sealedRefresh, expiresAt.UTC(), now, instanceID)
		err, n = res.Error, res.RowsAffected
	} else {
		res := db.Exec(`UPDATE user_tokens
SET sealed_token = ?, sealed_refresh = ?, expires_at = ?, lease_owner = '', lease_until = NULL, updated_at = ?
WHERE instance_id = ? AND platform_user_id = ? AND lease_owner = ?`, sealed, sealedRefresh, expiresAt.UTC(), now, instanceID, userID, owner)
		err, n = res.Error, res.RowsAffected
	}
	if err != nil {
		if err = translateRef(err); errors.Is(err, ErrNotFound) {
			return false, err
		}
		return false, fmt.Errorf("store token of user %s in instance %s: %w", userID, instanceID, err)
	}
	if owner == "" && n == 0 {
		return false, ErrNotFound // no such instance, or it is disabled or removed
	}
	return n == 1, nil
}

// userTokenSignIn stores a fresh sign-in's tokens over whatever was there, lease
// included, only for a live, enabled instance: a disable applied while a sign-in was under
// way deleted the instance's tokens, and must not see them come back. Its arguments:
// instance, user, sealed token, sealed refresh token, expiry, now, instance.
const userTokenSignIn = `INSERT INTO user_tokens (instance_id, platform_user_id, sealed_token, sealed_refresh, expires_at, lease_owner, lease_until, updated_at)
SELECT ?, ?, ?, ?, ?, '', NULL, ? FROM instances WHERE id = ? AND enabled AND removed_at IS NULL
ON CONFLICT (instance_id, platform_user_id) DO UPDATE SET sealed_token = excluded.sealed_token,
	sealed_refresh = excluded.sealed_refresh, expires_at = excluded.expires_at, lease_owner = '', lease_until = NULL,
	updated_at = excluded.updated_at`

// sealUserToken seals a user's tokens for their row; the refresh token only when there
// is one.
func (s *Store) sealUserToken(userID, instanceID string, token, refresh Secret) (sealed, sealedRefresh string, err error) {
	if sealed, err = s.keys.Seal(token, userTokenAAD(aadUserToken, userID, instanceID)); err != nil {
		return "", "", fmt.Errorf("seal token of user %s in instance %s: %w", userID, instanceID, err)
	}
	if !refresh.IsZero() {
		if sealedRefresh, err = s.keys.Seal(refresh, userTokenAAD(aadUserRefresh, userID, instanceID)); err != nil {
			return "", "", fmt.Errorf("seal refresh token of user %s in instance %s: %w", userID, instanceID, err)
		}
	}
	return sealed, sealedRefresh, nil
}

// LeaseUserTokenRefresh tries to take, or renew, the lease to refresh a user's tokens for
// an instance for ttl, and reports whether owner holds it now: one refresh at a time
// across replicas, as the refresh token rotates and a second use of the old one fails.
// The losers wait for the winner's PutUserToken and read the new tokens. It fails with
// ErrNotFound when there are no tokens to refresh. Times come from the store's clock: the
// replicas' clocks must agree to well within ttl.
func (s *Store) LeaseUserTokenRefresh(ctx context.Context, userID, instanceID, owner string, ttl time.Duration) (bool, error) {
	if owner == "" {
		return false, errors.New("lease user token refresh: empty owner")
	}
	if ttl <= 0 {
		return false, fmt.Errorf("lease user token refresh: ttl %v, want a positive duration", ttl)
	}
	now := s.now().UTC()
	// One conditional UPDATE: the database's row lock decides a race, and PostgreSQL
	// re-evaluates the condition against the row the winner committed.
	res := s.db.WithContext(ctx).Exec(`UPDATE user_tokens SET lease_owner = ?, lease_until = ?
WHERE instance_id = ? AND platform_user_id = ? AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)`,
		owner, now.Add(ttl), instanceID, userID, now, owner)
	if res.Error != nil {
		return false, fmt.Errorf("lease token refresh of user %s in instance %s: %w", userID, instanceID, translate(res.Error))
	}
	if res.RowsAffected == 1 {
		return true, nil
	}
	// Lost, or nothing to lease: only the slow path pays for telling them apart.
	var found []string
	err := s.db.WithContext(ctx).Raw(`SELECT platform_user_id FROM user_tokens WHERE instance_id = ? AND platform_user_id = ?`,
		instanceID, userID).Scan(&found).Error
	if err != nil {
		return false, fmt.Errorf("lease token refresh of user %s in instance %s: %w", userID, instanceID, translate(err))
	}
	if len(found) == 0 {
		return false, ErrNotFound
	}
	return false, nil
}

// ReleaseUserTokenRefresh gives up owner's refresh lease without storing tokens (the
// refresh failed), so another replica can try at once. A lease owner does not hold is left
// alone.
func (s *Store) ReleaseUserTokenRefresh(ctx context.Context, userID, instanceID, owner string) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE user_tokens SET lease_owner = '', lease_until = NULL
WHERE instance_id = ? AND platform_user_id = ? AND lease_owner = ?`, instanceID, userID, owner).Error
	if err != nil {
		return fmt.Errorf("release token refresh lease of user %s in instance %s: %w", userID, instanceID, translate(err))
	}
	return nil
}

// DeleteUserToken deletes a user's tokens for an instance, say after the platform refused
// the refresh token; the user signs in again. Deleting missing tokens is not an error.
func (s *Store) DeleteUserToken(ctx context.Context, userID, instanceID string) error {
	err := s.db.WithContext(ctx).Exec(`DELETE FROM user_tokens WHERE instance_id = ? AND platform_user_id = ?`, instanceID, userID).Error
	if err != nil {
		return fmt.Errorf("delete token of user %s in instance %s: %w", userID, instanceID, translate(err))
	}
	return nil
}

// DeleteUserTokens deletes every user's tokens for an instance, leases included: on its
// removal or when it is disabled, so that nothing acts in it for a user any more. A
// refresh under way then fails to store (PutUserToken reports false).
func (s *Store) DeleteUserTokens(ctx context.Context, instanceID string) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM user_tokens WHERE instance_id = ?`, instanceID).Error; err != nil {
		return fmt.Errorf("delete user tokens of instance %s: %w", instanceID, translate(err))
	}
	return nil
}
