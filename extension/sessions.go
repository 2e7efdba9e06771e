package extension

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gorm.io/gorm"
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
	// Handle names the session on its account's own page, to sign it out: random, not
	// derived from the id, and no credential (see EndAccountSession).
	Handle string
	// UserAgent is the browser's User-Agent at sign-in, as CleanUserAgent keeps it; empty
	// when unknown.
	UserAgent string
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
	Handle         string
	UserAgent      string
}

func (sessionRow) TableName() string { return "sessions" }

func (r sessionRow) session() Session {
	return Session{AccountID: r.AccountID, InstanceID: r.InstanceID, PlatformUserID: r.PlatformUserID,
		CreatedAt: r.CreatedAt.UTC(), LastSeenAt: r.LastSeenAt.UTC(), ExpiresAt: r.ExpiresAt.UTC(),
		Handle: r.Handle, UserAgent: r.UserAgent}
}

// sessionIDBytes is the entropy of a session id: 256 bits.
const sessionIDBytes = 32

// sessionHandleBytes is the size of a session's public handle: 128 bits, so handles do
// not collide.
const sessionHandleBytes = 16

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

// CreateSession is CreateSessionWithAgent without a user agent.
func (s *Store) CreateSession(ctx context.Context, accountID, instanceID, platformUserID string, absolute time.Duration) (Secret, Session, error) {
	return s.CreateSessionWithAgent(ctx, accountID, instanceID, platformUserID, absolute, "")
}

// CreateSessionWithAgent starts a session of an account in an instance, lasting at most
// absolute, and returns its id, the cookie value (base64url of 32 random bytes); only the
// id's hash is stored. Each sign-in gets a new id, and a new public handle. userAgent is
// the browser's User-Agent header: it is kept as CleanUserAgent returns it, for the
// account's list of its sessions. It fails with ErrNotFound unless the account belongs to
// the instance and to the platform user (empty for a local account), so a session never
// pairs a user with another user's account or another instance.
func (s *Store) CreateSessionWithAgent(ctx context.Context, accountID, instanceID, platformUserID string, absolute time.Duration, userAgent string) (Secret, Session, error) {
	if absolute <= 0 {
		return "", Session{}, fmt.Errorf("create session: absolute timeout %v, want a positive duration", absolute)
	}
	ns, err := newSessionID()
	if err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	now := s.now().UTC()
	sess := Session{AccountID: accountID, InstanceID: instanceID, PlatformUserID: platformUserID,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(absolute), Handle: ns.handle, UserAgent: CleanUserAgent(userAgent)}
	res := s.db.WithContext(ctx).Exec(sessionInsert, sessionInsertArgs(ns.hash, sess)...)
	if res.Error != nil {
		return "", Session{}, fmt.Errorf("create session of account %s: %w", accountID, translateRef(res.Error))
	}
	if res.RowsAffected != 1 {
		return "", Session{}, ErrNotFound
	}
	return ns.id, sess, nil
}

// newSession is a new session's id, its stored hash and its public handle.
type newSession struct {
	id     Secret
	hash   string
	handle string
}

// newSessionID draws a new session's id and handle.
func newSessionID() (newSession, error) {
	raw := make([]byte, sessionIDBytes+sessionHandleBytes)
	if _, err := rand.Read(raw); err != nil {
		return newSession{}, err
	}
	id := Secret(base64.RawURLEncoding.EncodeToString(raw[:sessionIDBytes]))
	hash, _ := sessionIDHash(id)
	return newSession{id: id, hash: hash, handle: hex.EncodeToString(raw[sessionIDBytes:])}, nil
}

// sessionInsert checks the account and the instance and inserts a session in one
// statement: it inserts nothing unless the account is the instance's and the user's, and
// the instance is live and enabled at this moment (a disable applied while a sign-in was
// under way wins). sessionInsertArgs gives its arguments.
const sessionInsert = `INSERT INTO sessions (id_hash, account_id, instance_id, platform_user_id, created_at, last_seen_at, expires_at, handle, user_agent)
SELECT ?, accounts.id, accounts.instance_id, ?, ?, ?, ?, ?, ? FROM accounts JOIN instances ON instances.id = accounts.instance_id
WHERE accounts.id = ? AND accounts.instance_id = ? AND COALESCE(accounts.platform_user_id, '') = ?
	AND instances.enabled AND instances.removed_at IS NULL`

func sessionInsertArgs(hash string, sess Session) []any {
	return []any{hash, sess.PlatformUserID, sess.CreatedAt, sess.LastSeenAt, sess.ExpiresAt, sess.Handle, sess.UserAgent,
		sess.AccountID, sess.InstanceID, sess.PlatformUserID}
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
	return s.liveSession(ctx, hash, row, idle, absolute)
}

// liveSession applies the timeouts to a session read from the store: an expired one is
// deleted and ErrNotFound; a live one's activity is recorded at most once per
// touchInterval.
func (s *Store) liveSession(ctx context.Context, hash string, row sessionRow, idle, absolute time.Duration) (Session, error) {
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

// maxUserAgent bounds the User-Agent kept with a session, in bytes.
const maxUserAgent = 200

// CleanUserAgent returns what a session keeps of a browser's User-Agent header: valid
// UTF-8 without control or format characters (no line breaks, no bidirectional
// overrides), runs of spaces as one, trimmed, at most 200 bytes cut at a character's end.
func CleanUserAgent(ua string) string {
	if len(ua) > 4*maxUserAgent {
		ua = ua[:4*maxUserAgent]
	}
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(ua, "") {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if isControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			continue
		}
		n := utf8.RuneLen(r)
		if space {
			n++
		}
		if b.Len()+n > maxUserAgent {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// ValidSessionHandle reports whether s has the shape of a session's handle: 32 lower-case
// hex digits.
func ValidSessionHandle(s string) bool {
	if len(s) != 2*sessionHandleBytes {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// AccountSessions lists an account's live sessions in its instance (within the idle and
// absolute timeouts, as SessionByID judges them), the most recently used first, for the
// account's own page.
func (s *Store) AccountSessions(ctx context.Context, instanceID, accountID string, idle, absolute time.Duration) ([]Session, error) {
	if idle <= 0 || absolute <= 0 {
		return nil, fmt.Errorf("list sessions: timeouts %v and %v, want positive durations", idle, absolute)
	}
	now := s.now().UTC()
	var rows []sessionRow
	err := s.db.WithContext(ctx).Where(`instance_id = ? AND account_id = ? AND expires_at > ? AND created_at > ? AND last_seen_at > ?`,
		instanceID, accountID, now, now.Add(-absolute), now.Add(-idle)).
		Order("last_seen_at DESC, created_at DESC, handle").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list sessions of account %s: %w", accountID, translate(err))
	}
	out := make([]Session, len(rows))
	for i, r := range rows {
		out[i] = r.session()
	}
	return out, nil
}

// EndAccountSession ends the session with a handle of an account in its instance, on the
// account's own request, and records it in the audit log. The handle is no credential: it
// ends nothing but a session of that very account, so it is ErrNotFound for a session of
// another account or instance, or one that is gone.
func (s *Store) EndAccountSession(ctx context.Context, instanceID, accountID, handle string) error {
	if !ValidSessionHandle(handle) {
		return ErrNotFound
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var agents []string
		err := tx.Raw(`DELETE FROM sessions WHERE handle = ? AND account_id = ? AND instance_id = ? RETURNING user_agent`,
			handle, accountID, instanceID).Scan(&agents).Error
		if err != nil {
			return translate(err)
		}
		if len(agents) == 0 {
			return ErrNotFound
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: accountID, Kind: AuditSessionsEnded,
			Detail: map[string]string{"count": "1", "user_agent": agents[0]}})
	})
	if errors.Is(err, ErrNotFound) {
		return err
	}
	if err != nil {
		return fmt.Errorf("end session of account %s: %w", accountID, err)
	}
	return nil
}

// EndOtherSessions ends every session of an account in its instance but keep (the
// current one's id from the cookie), records it in the audit log when there was one, and
// returns how many ended.
func (s *Store) EndOtherSessions(ctx context.Context, instanceID, accountID string, keep Secret) (int64, error) {
	keepHash, _ := sessionIDHash(keep)
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		res := tx.Exec(`DELETE FROM sessions WHERE account_id = ? AND instance_id = ? AND id_hash <> ?`, accountID, instanceID, keepHash)
		if res.Error != nil {
			return translate(res.Error)
		}
		if n = res.RowsAffected; n == 0 {
			return nil
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: accountID, Kind: AuditSessionsEnded,
			Detail: map[string]string{"count": strconv.FormatInt(n, 10)}})
	})
	if err != nil {
		return 0, fmt.Errorf("end other sessions of account %s: %w", accountID, err)
	}
	return n, nil
}

// signedInQuery reads a session with its account and instance in one statement: every
// page behind a session needs all three. It runs on a statement prepared once and scans
// by hand (scanSignedIn): through the ORM's reflection it cost more than the page's
// rendering.
const signedInQuery = `SELECT
	s.account_id, s.instance_id, s.platform_user_id, s.created_at, s.last_seen_at, s.expires_at, s.handle, s.user_agent,
	` + accountColumns + `,
	` + instanceColumns + `
FROM sessions s JOIN accounts a ON a.id = s.account_id JOIN instances i ON i.id = s.instance_id
WHERE s.id_hash = ?`

// scanSignedIn scans a row of signedInQuery.
func scanSignedIn(row *sql.Row) (sessionRow, accountRow, Instance, error) {
	var (
		sr sessionRow
		ar accountScan
		is instanceScan
	)
	dest := append([]any{&sr.AccountID, &sr.InstanceID, &sr.PlatformUserID, &sr.CreatedAt, &sr.LastSeenAt, &sr.ExpiresAt, &sr.Handle, &sr.UserAgent},
		ar.dest()...)
	if err := row.Scan(append(dest, is.dest()...)...); err != nil {
		return sr, accountRow{}, Instance{}, err
	}
	in, err := is.instance()
	return sr, ar.row(), in, err
}

// SignedInSession is SessionByID with the session's account and instance, in one
// statement instead of three. It fails with ErrNotFound as SessionByID does, and also when
// the account or the instance is gone.
func (s *Store) SignedInSession(ctx context.Context, id Secret, idle, absolute time.Duration) (Session, Account, *Instance, error) {
	if idle <= 0 || absolute <= 0 {
		return Session{}, Account{}, nil, fmt.Errorf("load session: timeouts %v and %v, want positive durations", idle, absolute)
	}
	hash, ok := sessionIDHash(id)
	if !ok {
		return Session{}, Account{}, nil, ErrNotFound
	}
	st, err := s.preparedRead(ctx, signedInQuery)
	if err != nil {
		return Session{}, Account{}, nil, fmt.Errorf("load session: %w", err)
	}
	sr, ar, in, err := scanSignedIn(st.QueryRowContext(ctx, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, Account{}, nil, ErrNotFound
	}
	if err != nil {
		return Session{}, Account{}, nil, fmt.Errorf("load session: %w", translate(err))
	}
	sr.IDHash = hash
	sess, err := s.liveSession(ctx, hash, sr, idle, absolute)
	if err != nil {
		return Session{}, Account{}, nil, err
	}
	return sess, ar.account(), &in, nil
}
