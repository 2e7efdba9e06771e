package extension

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SharedToken is the instance token the replicas share through the instance_tokens table,
// opened, and the mint lease on it. Token is zero while no token was stored (for example
// while the first mint is under way).
type SharedToken struct {
	Token      Secret
	ExpiresAt  time.Time // zero with no token
	StoredAt   time.Time // when the token was stored (with no token: when the row was made)
	LeaseOwner string    // who holds the mint lease; empty: nobody
	LeaseUntil time.Time // when that lease ends; zero: no lease
}

// Leased reports whether a lease other than owner's is in force at now.
func (t SharedToken) Leased(owner string, now time.Time) bool {
	return t.LeaseOwner != "" && t.LeaseOwner != owner && now.Before(t.LeaseUntil)
}

// instanceTokenRow maps the instance_tokens table.
type instanceTokenRow struct {
	InstanceID  string `gorm:"primaryKey"`
	SealedToken string
	ExpiresAt   *time.Time
	LeaseOwner  string
	LeaseUntil  *time.Time
	UpdatedAt   time.Time
}

func (instanceTokenRow) TableName() string { return "instance_tokens" }

// tokenAAD binds a sealed instance token to its row; the prefix keeps it apart from the
// instance secret sealed for the same id.
func tokenAAD(instanceID string) string { return "instance-token:" + instanceID }

// SharedToken loads the shared token row of an instance. It fails with ErrNotFound when
// there is none, and with an error wrapping ErrUnsealable when the stored token does not
// open (a key that was dropped since): the caller then mints a new one.
func (s *Store) SharedToken(ctx context.Context, instanceID string) (SharedToken, error) {
	var row instanceTokenRow
	if err := s.db.WithContext(ctx).Take(&row, "instance_id = ?", instanceID).Error; err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return SharedToken{}, err
		}
		return SharedToken{}, fmt.Errorf("load shared token of instance %s: %w", instanceID, err)
	}
	// In UTC, whatever the session's time zone, so values compare alike from either database.
	out := SharedToken{StoredAt: row.UpdatedAt.UTC(), LeaseOwner: row.LeaseOwner}
	if row.LeaseUntil != nil {
		out.LeaseUntil = row.LeaseUntil.UTC()
	}
	if row.SealedToken == "" || row.ExpiresAt == nil {
		return out, nil
	}
	tok, err := s.keys.Open(row.SealedToken, tokenAAD(instanceID))
	if err != nil {
		return out, fmt.Errorf("open shared token of instance %s: %w", instanceID, err)
	}
	out.Token, out.ExpiresAt = tok, row.ExpiresAt.UTC()
	return out, nil
}

// leaseToken takes the mint lease in one statement, so two replicas racing for it need no
// transaction: the row is created if missing, and otherwise taken over only when no lease
// is in force or the lease is owner's own (a renewal). A stored token stays in place for
// the others to use until the new one replaces it. On both SQLite and PostgreSQL an
// ON CONFLICT update whose WHERE fails touches no row, so the count says who won.
const leaseToken = `INSERT INTO instance_tokens (instance_id, sealed_token, lease_owner, lease_until, updated_at)
VALUES (?, '', ?, ?, ?)
ON CONFLICT (instance_id) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
WHERE instance_tokens.lease_until IS NULL OR instance_tokens.lease_until < ? OR instance_tokens.lease_owner = excluded.lease_owner`

// LeaseSharedToken tries to take, or renew, the lease to mint the instance's token for
// ttl, and reports whether owner holds it now. Times come from the store's clock: the
// replicas' clocks must agree to well within ttl.
func (s *Store) LeaseSharedToken(ctx context.Context, instanceID, owner string, ttl time.Duration) (bool, error) {
	if owner == "" {
		return false, errors.New("lease shared token: empty owner")
	}
	now := s.now().UTC()
	res := s.db.WithContext(ctx).Exec(leaseToken, instanceID, owner, now.Add(ttl), now, now)
	if res.Error != nil {
		return false, fmt.Errorf("lease shared token of instance %s: %w", instanceID, translate(res.Error))
	}
	return res.RowsAffected == 1, nil
}

// PutSharedToken stores a freshly minted token, sealed, and releases owner's lease in the
// same statement. It reports false, storing nothing, when owner no longer holds the lease:
// the row was deleted (the token was forgotten, say after a rotation, while it was being
// minted) or the lease ran out and another replica took it over.
func (s *Store) PutSharedToken(ctx context.Context, instanceID, owner string, token Secret, expiresAt time.Time) (bool, error) {
	sealed, err := s.keys.Seal(token, tokenAAD(instanceID))
	if err != nil {
		return false, fmt.Errorf("seal shared token of instance %s: %w", instanceID, err)
	}
	res := s.db.WithContext(ctx).Exec(`UPDATE instance_tokens
SET sealed_token = ?, expires_at = ?, lease_owner = '', lease_until = NULL, updated_at = ?
WHERE instance_id = ? AND lease_owner = ?`, sealed, expiresAt.UTC(), s.now().UTC(), instanceID, owner)
	if res.Error != nil {
		return false, fmt.Errorf("store shared token of instance %s: %w", instanceID, translate(res.Error))
	}
	return res.RowsAffected == 1, nil
}

// ReleaseSharedToken gives up owner's lease without storing a token (the mint failed), so
// another replica can try at once instead of waiting the lease out. A lease owner does
// not hold is left alone.
func (s *Store) ReleaseSharedToken(ctx context.Context, instanceID, owner string) error {
	res := s.db.WithContext(ctx).Exec(`UPDATE instance_tokens SET lease_owner = '', lease_until = NULL
WHERE instance_id = ? AND lease_owner = ?`, instanceID, owner)
	if res.Error != nil {
		return fmt.Errorf("release shared token lease of instance %s: %w", instanceID, translate(res.Error))
	}
	return nil
}

// DeleteSharedToken deletes the instance's shared token row, lease included, so that no
// replica reuses the token: after a rotation, a disable or a removal. A mint under way
// then fails to store its token (PutSharedToken reports false). Deleting a missing row
// is not an error.
func (s *Store) DeleteSharedToken(ctx context.Context, instanceID string) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM instance_tokens WHERE instance_id = ?`, instanceID).Error; err != nil {
		return fmt.Errorf("delete shared token of instance %s: %w", instanceID, translate(err))
	}
	return nil
}
