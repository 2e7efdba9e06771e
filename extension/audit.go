package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
)

// AuditRetention is how long audit events are kept; PruneAudit deletes older ones.
const AuditRetention = 365 * 24 * time.Hour

// Kinds of audit events this package writes; the frontend and the jobs add their own
// (sign-ins, domain actions) with Audit.
const (
	AuditSignIn               = "sign_in"
	AuditSignInFailed         = "sign_in.failed"
	AuditSignInLocked         = "sign_in.locked"
	AuditRoleChanged          = "role.changed"
	AuditAccountRemoved       = "account.removed"
	AuditOwnershipTransferred = "ownership.transferred"
	AuditOwnershipReclaimed   = "ownership.reclaimed"
	AuditInvitationCreated    = "invitation.created"
	AuditInvitationAccepted   = "invitation.accepted"
	AuditInvitationRevoked    = "invitation.revoked"
	AuditInvitationReissued   = "invitation.reissued"
	AuditPasswordResetIssued  = "password_reset.issued"
	AuditPasswordReset        = "password_reset.used"
	AuditPasswordChanged      = "password.changed"
	AuditSettingsChanged      = "settings.changed"
	AuditSessionsEnded        = "sessions.ended"
)

// Limits of an audit event: details are a few short facts, never a payload.
const (
	maxAuditKind   = 64
	maxAuditDetail = 2048
)

// AuditEvent is one entry of an instance's audit log: who did what, when. Detail holds a
// few facts (ids, names, roles, e-mail addresses) and never a secret: no password, token,
// link or key.
type AuditEvent struct {
	ID         int64
	InstanceID string
	AccountID  string // the acting account; empty when the platform or the operator acted
	ActorName  string // the actor's name when it acted (filled from AccountID when empty)
	Kind       string
	Detail     map[string]string
	CreatedAt  time.Time
}

// auditRow maps the audit_events table.
type auditRow struct {
	ID         int64 `gorm:"primaryKey"`
	InstanceID string
	AccountID  *string
	ActorName  string
	Kind       string
	Detail     string
	CreatedAt  time.Time
}

func (auditRow) TableName() string { return "audit_events" }

func (r auditRow) event() AuditEvent {
	ev := AuditEvent{ID: r.ID, InstanceID: r.InstanceID, ActorName: r.ActorName, Kind: r.Kind, CreatedAt: r.CreatedAt.UTC()}
	if r.AccountID != nil {
		ev.AccountID = *r.AccountID
	}
	if err := json.Unmarshal([]byte(r.Detail), &ev.Detail); err != nil {
		ev.Detail = map[string]string{"detail": r.Detail}
	}
	return ev
}

// Audit records an event in an instance's audit log; CreatedAt defaults to now.
func (s *Store) Audit(ctx context.Context, ev AuditEvent) error {
	if err := s.audit(s.db.WithContext(ctx), ev); err != nil {
		return fmt.Errorf("audit %s in instance %s: %w", ev.Kind, ev.InstanceID, translateRef(err))
	}
	return nil
}

// audit writes an event through db, the store's handle or the transaction whose change it
// records. The actor's name comes from the account when the caller gives none, in the same
// statement.
func (s *Store) audit(db *gorm.DB, ev AuditEvent) error {
	args, err := s.auditArgs(ev)
	if err != nil {
		return err
	}
	return db.Exec(auditInsert, args...).Error
}

// auditInsert writes an audit event; auditArgs gives its arguments.
const auditInsert = `INSERT INTO audit_events (instance_id, account_id, actor_name, kind, detail, created_at)
VALUES (?, ?, CASE WHEN ? <> '' THEN ? ELSE COALESCE((SELECT name FROM accounts WHERE id = ?), '') END, ?, ?, ?)`

// auditArgs checks an event and returns the arguments of auditInsert for it.
func (s *Store) auditArgs(ev AuditEvent) ([]any, error) {
	if ev.InstanceID == "" || ev.Kind == "" || len(ev.Kind) > maxAuditKind {
		return nil, errors.New("audit event: want an instance and a kind of at most 64 bytes")
	}
	detail := []byte("{}")
	if len(ev.Detail) > 0 {
		var err error
		if detail, err = json.Marshal(ev.Detail); err != nil {
			return nil, err
		}
	}
	if len(detail) > maxAuditDetail {
		return nil, fmt.Errorf("audit event: detail of %d bytes, at most %d", len(detail), maxAuditDetail)
	}
	at := ev.CreatedAt
	if at.IsZero() {
		at = s.now()
	}
	var account *string
	if ev.AccountID != "" {
		account = &ev.AccountID
	}
	return []any{ev.InstanceID, account, ev.ActorName, ev.ActorName, ev.AccountID, ev.Kind, string(detail), at.UTC()}, nil
}

// AuditFilter narrows an audit listing; empty fields match everything.
type AuditFilter struct {
	AccountID string
	Kind      string
}

// AuditCursor marks where a page of the audit log ended: the next page starts after it.
// Its String form is what a page puts in a link; ParseAuditCursor reads it back.
type AuditCursor struct {
	At time.Time
	ID int64
}

// String encodes the cursor as "UNIXNANO-ID".
func (c AuditCursor) String() string {
	return strconv.FormatInt(c.At.UnixNano(), 10) + "-" + strconv.FormatInt(c.ID, 10)
}

// ParseAuditCursor reads a cursor that AuditCursor.String wrote; anything else is an
// error (a page link is untrusted input).
func ParseAuditCursor(raw string) (AuditCursor, error) {
	at, id, ok := strings.Cut(raw, "-")
	if !ok || len(raw) > 48 {
		return AuditCursor{}, errors.New("audit cursor: want UNIXNANO-ID")
	}
	ns, err1 := strconv.ParseInt(at, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil || n <= 0 || ns < 0 {
		return AuditCursor{}, errors.New("audit cursor: want UNIXNANO-ID")
	}
	return AuditCursor{At: time.Unix(0, ns).UTC(), ID: n}, nil
}

// AuditPage is one page of an audit listing: up to Limit events (default 50, at most
// 500) older than After, newest first.
type AuditPage struct {
	After *AuditCursor
	Limit int
}

// AuditEvents lists an instance's audit events, newest first, and the cursor of the next
// page (nil on the last page).
func (s *Store) AuditEvents(ctx context.Context, instanceID string, filter AuditFilter, page AuditPage) ([]AuditEvent, *AuditCursor, error) {
	limit := page.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, 500)
	q := s.db.WithContext(ctx).Where("instance_id = ?", instanceID)
	if filter.AccountID != "" {
		q = q.Where("account_id = ?", filter.AccountID)
	}
	if filter.Kind != "" {
		q = q.Where("kind = ?", filter.Kind)
	}
	if c := page.After; c != nil {
		q = q.Where("(created_at < ? OR (created_at = ? AND id < ?))", c.At.UTC(), c.At.UTC(), c.ID)
	}
	var rows []auditRow
	if err := q.Order("created_at DESC, id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, nil, fmt.Errorf("list audit events of instance %s: %w", instanceID, translate(err))
	}
	var next *AuditCursor
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = &AuditCursor{At: last.CreatedAt.UTC(), ID: last.ID}
	}
	out := make([]AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = r.event()
	}
	return out, next, nil
}

// PruneAudit deletes the audit events created before before (now minus AuditRetention
// in the daily clean-up) and returns how many.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM audit_events WHERE created_at < ?`, before.UTC())
	if res.Error != nil {
		return 0, fmt.Errorf("prune audit events: %w", translate(res.Error))
	}
	return res.RowsAffected, nil
}
