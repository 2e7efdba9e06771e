package extension

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TokenHealth is how an instance's token stands, for the operator: whether a token is
// cached for the replicas and until when, when one was last minted, and the last failed
// mint. It carries no token and no secret, only times and the failure's fixed kind.
type TokenHealth struct {
	Cached       bool      // a token is stored for the replicas and has not expired
	ExpiresAt    time.Time // of the stored token; zero without one
	LastMintedAt time.Time // zero: never minted since the table exists
	// LastError is the kind of the last failed mint (one of the broker's fixed kinds,
	// such as "secret_refused"), "" when none failed; LastErrorStatus the platform's
	// HTTP status then, 0 without an answer.
	LastError       string
	LastErrorStatus int
	LastErrorAt     time.Time
}

// Failing reports whether the last mint failed: a failure newer than the last success.
func (h TokenHealth) Failing() bool {
	return h.LastError != "" && !h.LastErrorAt.Before(h.LastMintedAt)
}

// tokenHealthRow maps the instance_token_health table.
type tokenHealthRow struct {
	InstanceID      string `gorm:"primaryKey"`
	LastMintedAt    *time.Time
	LastError       string
	LastErrorStatus int
	LastErrorAt     *time.Time
}

func (tokenHealthRow) TableName() string { return "instance_token_health" }

// RecordMint notes a successful mint of the instance's token at.
func (s *Store) RecordMint(ctx context.Context, instanceID string, at time.Time) error {
	err := s.db.WithContext(ctx).Exec(`INSERT INTO instance_token_health (instance_id, last_minted_at) VALUES (?, ?)
ON CONFLICT (instance_id) DO UPDATE SET last_minted_at = excluded.last_minted_at`, instanceID, at.UTC()).Error
	if err != nil {
		return fmt.Errorf("record token mint of %s: %w", instanceID, translate(err))
	}
	return nil
}

// RecordMintFailure notes a failed mint: kind is a fixed word of the caller's, never an
// error text (an answer of the platform could echo what it was sent); status the
// platform's HTTP status, 0 without one.
func (s *Store) RecordMintFailure(ctx context.Context, instanceID, kind string, status int, at time.Time) error {
	if kind == "" {
		return errors.New("record token mint failure: no kind")
	}
	err := s.db.WithContext(ctx).Exec(`INSERT INTO instance_token_health (instance_id, last_error, last_error_status, last_error_at) VALUES (?, ?, ?, ?)
ON CONFLICT (instance_id) DO UPDATE SET last_error = excluded.last_error, last_error_status = excluded.last_error_status, last_error_at = excluded.last_error_at`,
		instanceID, kind, status, at.UTC()).Error
	if err != nil {
		return fmt.Errorf("record token mint failure of %s: %w", instanceID, translate(err))
	}
	return nil
}

// InstanceTokenHealth reads how the instance's token stands at now, without opening the
// stored token.
func (s *Store) InstanceTokenHealth(ctx context.Context, instanceID string, now time.Time) (TokenHealth, error) {
	var out TokenHealth
	var tok instanceTokenRow
	err := s.db.WithContext(ctx).Select("instance_id", "expires_at", "sealed_token").Take(&tok, "instance_id = ?", instanceID).Error
	switch err = translate(err); {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return out, fmt.Errorf("token health of %s: %w", instanceID, err)
	case tok.SealedToken != "" && tok.ExpiresAt != nil:
		out.ExpiresAt = tok.ExpiresAt.UTC()
		out.Cached = now.Before(out.ExpiresAt)
	}
	var h tokenHealthRow
	err = s.db.WithContext(ctx).Take(&h, "instance_id = ?", instanceID).Error
	switch err = translate(err); {
	case errors.Is(err, ErrNotFound):
		return out, nil
	case err != nil:
		return out, fmt.Errorf("token health of %s: %w", instanceID, err)
	}
	if h.LastMintedAt != nil {
		out.LastMintedAt = h.LastMintedAt.UTC()
	}
	if h.LastErrorAt != nil {
		out.LastError, out.LastErrorStatus, out.LastErrorAt = h.LastError, h.LastErrorStatus, h.LastErrorAt.UTC()
	}
	return out, nil
}

// FailingTokenCount counts the live instances whose last token mint failed.
func (s *Store) FailingTokenCount(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM instance_token_health h JOIN instances i ON i.id = h.instance_id
WHERE i.removed_at IS NULL AND h.last_error_at IS NOT NULL AND (h.last_minted_at IS NULL OR h.last_error_at >= h.last_minted_at)`).Scan(&n).Error
	if err != nil {
		return 0, fmt.Errorf("count failing tokens: %w", translate(err))
	}
	return n, nil
}
