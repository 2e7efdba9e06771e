package extension

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Session is a signed-in user's server-side session, without its id: the id lives only in
// the user's cookie.
type Session struct {
	AccountID      string
	InstanceID     string
	PlatformUserID string // empty for a local account's session
	CreatedAt      time.Time
	LastSeenAt     time.Time // recorded activity; lags the real last use by up to touchInterval
	ExpiresAt      time.Time // the absolute end, fixed at creation
}

// sessionRow maps the sessions table.
type sessionRow struct {
	IDHash         string `gorm:"primaryKey"`
	AccountID      string
	InstanceID     string
	PlatformUserID string
	CreatedAt      time.Time
	LastSeenAt     time.Time
	ExpiresAt      time.Time
}

func (sessionRow) TableName() string { return "sessions" }

func (r sessionRow) session() Session {
	return Session{AccountID: r.AccountID, InstanceID: r.InstanceID, PlatformUserID: r.PlatformUserID,
		CreatedAt: r.CreatedAt.UTC(), LastSeenAt: r.LastSeenAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}
}

// sessionIDBytes is the entropy of a session id: 256 bits.
const sessionIDBytes = 32

// touchInterval is how stale last_seen_at may get before a request writes it: a write per
// request would make every page view a write on SQLite's single writer. The idle timeout
// is therefore enforced to within this interval.
const touchInterval = time.Minute

// sessionIDHash returns the stored form of a session id, the hex SHA-256 of its 32 bytes,
// and false for anything that is not an id we could have issued: such a cookie costs no
// query. The encoding is checked by a round trip, as the decoder skips line breaks.
func sessionIDHash(id Secret) (string, bool) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(id.Reveal())
	if err != nil || len(raw) != sessionIDBytes || base64.RawURLEncoding.EncodeToString(raw) != id.Reveal() {
		return "", false
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), true
}

// CreateSession starts a session of an account in an instance, lasting at most absolute,
// and returns its id, the cookie value (base64url of 32 random bytes); only the id's hash
// is stored. Each sign-in gets a new id. It fails with ErrNotFound unless the account
// belongs to the instance and to the platform user (empty for a local account), so a
// session never pairs a user with another user's account or another instance.
func (s *Store) CreateSession(ctx context.Context, accountID, instanceID, platformUserID string, absolute time.Duration) (Secret, Session, error) {
	if absolute <= 0 {
		return "", Session{}, fmt.Errorf("create session: absolute timeout %v, want a positive duration", absolute)
	}
	raw := make([]byte, sessionIDBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	id := Secret(base64.RawURLEncoding.EncodeToString(raw))
	hash, _ := sessionIDHash(id)
	now := s.now().UTC()
	sess := Session{AccountID: accountID, InstanceID: instanceID, PlatformUserID: platformUserID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(absolute)}
	// One statement checks the account and the instance and inserts: it inserts nothing
	// unless the account is the instance's and the user's, and the instance is live and
	// enabled at this moment (a disable applied while a sign-in was under way wins).
	res := s.db.WithContext(ctx).Exec(`INSERT INTO sessions (id_hash, account_id, instance_id, platform_user_id, created_at, last_seen_at, expires_at)
SELECT ?, accounts.id, accounts.instance_id, ?, ?, ?, ? FROM accounts JOIN instances ON instances.id = accounts.instance_id
WHERE accounts.id = ? AND accounts.instance_id = ? AND COALESCE(accounts.platform_user_id, '') = ?
	AND instances.enabled AND instances.removed_at IS NULL`,
		hash, platformUserID, now, now, sess.ExpiresAt, accountID, instanceID, platformUserID)
	if res.Error != nil {
		return "", Session{}, fmt.Errorf("create session of account %s: %w", accountID, translateRef(res.Error))
	}
	if res.RowsAffected != 1 {
		return "", Session{}, ErrNotFound
	}
	return id, sess, nil
}

// SessionByID returns the live session with the id from a cookie. It fails with
// ErrNotFound for an id that is malformed, unknown, past its absolute end (at creation,
// or absolute from its start if that is sooner, so a shortened setting applies to
// existing sessions) or idle for idle; an expired session is deleted. The recorded
// activity is written at most once per touchInterval, not on every request.
func (s *Store) SessionByID(ctx context.Context, id Secret, idle, absolute time.Duration) (Session, error) {
	if idle <= 0 || absolute <= 0 {
		return Session{}, fmt.Errorf("load session: timeouts %v and %v, want positive durations", idle, absolute)
	}
	hash, ok := sessionIDHash(id)
	if !ok {
		return Session{}, ErrNotFound
	}
	var row sessionRow
	if err := s.db.WithContext(ctx).Take(&row, "id_hash = ?", hash).Error; err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Session{}, err
		}
		return Session{}, fmt.Errorf("load session: %w", err)
	}
	sess := row.session()
	now := s.now().UTC()
	end := sess.ExpiresAt
	if e := sess.CreatedAt.Add(absolute); e.Before(end) {
		end = e
	}
	if !now.Before(end) || !now.Before(sess.LastSeenAt.Add(idle)) {
		// The same conditions in the statement: a replica that just wrote last_seen_at
		// with a clock a little ahead keeps its session.
		err := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE id_hash = ? AND (expires_at <= ? OR created_at <= ? OR last_seen_at <= ?)`,
			hash, now, now.Add(-absolute), now.Add(-idle)).Error
		if err != nil {
			return Session{}, fmt.Errorf("delete expired session: %w", translate(err))
		}
		return Session{}, ErrNotFound
	}
	if now.Sub(sess.LastSeenAt) >= touchInterval {
		// Conditional, so that concurrent requests of one session write it once.
		res := s.db.WithContext(ctx).Exec(`UPDATE sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at <= ?`,
			now, hash, now.Add(-touchInterval))
		if res.Error != nil {
			return Session{}, fmt.Errorf("touch session: %w", translate(res.Error))
		}
		sess.LastSeenAt = now
	}
	return sess, nil
}

// DeleteSession ends the session with the id from a cookie (logout). Deleting an unknown
// or malformed id is not an error.
func (s *Store) DeleteSession(ctx context.Context, id Secret) error {
	hash, ok := sessionIDHash(id)
	if !ok {
		return nil
	}
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE id_hash = ?`, hash).Error; err != nil {
		return fmt.Errorf("delete session: %w", translate(err))
	}
	return nil
}

// DeleteInstanceSessions ends every session in an instance: on its removal or when it is
// disabled.
func (s *Store) DeleteInstanceSessions(ctx context.Context, instanceID string) error {
	if err := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE instance_id = ?`, instanceID).Error; err != nil {
		return fmt.Errorf("delete sessions of instance %s: %w", instanceID, translate(err))
	}
	return nil
}

// PruneSessions deletes the sessions past their absolute end at now and returns how many.
// Sessions that only went idle are deleted when next presented, and by this once their
// absolute end has passed.
func (s *Store) PruneSessions(ctx context.Context, now time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE expires_at <= ?`, now.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("prune sessions: %w", translate(res.Error))
	}
	return res.RowsAffected, nil
}

// DeleteUserSessions ends one platform user's sessions in an instance, for a user who lost
// access to it.
func (s *Store) DeleteUserSessions(ctx context.Context, instanceID, platformUserID string) error {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM sessions WHERE instance_id = ? AND platform_user_id = ?`, instanceID, platformUserID)
	if res.Error != nil {
		return fmt.Errorf("delete sessions of user %s in instance %s: %w", platformUserID, instanceID, translate(res.Error))
	}
	return nil
}
