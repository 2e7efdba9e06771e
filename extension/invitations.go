package extension

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// InvitationTTL is how long an invitation link stays valid.
const InvitationTTL = 7 * 24 * time.Hour

var (
	// ErrEmailTaken is returned when a local account of the instance already has the
	// e-mail address.
	ErrEmailTaken = errors.New("extension: e-mail address already has an account in this instance")
	// ErrInvitationPending is returned when the address already has an open invitation:
	// revoke or re-issue that one.
	ErrInvitationPending = errors.New("extension: an invitation for this e-mail address is already open")
	// ErrInvitationUsed is returned for an invitation that was already accepted.
	ErrInvitationUsed = errors.New("extension: invitation already used")
	// ErrInvitationExpired is returned for an invitation past its expiry.
	ErrInvitationExpired = errors.New("extension: invitation expired")
	// ErrInvitationRevoked is returned for an invitation that was revoked or re-issued.
	ErrInvitationRevoked = errors.New("extension: invitation revoked")
	// ErrInvalidName is returned for an account name that is empty, too long or not text.
	ErrInvalidName = errors.New("extension: name must be 1 to 200 characters of text")
	// ErrNoPassword is returned for a local account created or reset without a password hash.
	ErrNoPassword = errors.New("extension: no password hash")
)

// InvitationState says where an invitation stands.
type InvitationState string

// The states of an invitation.
const (
	InvitationPending InvitationState = "pending"
	InvitationExpired InvitationState = "expired"
	InvitationUsed    InvitationState = "used"
	InvitationRevoked InvitationState = "revoked"
)

// Invitation invites an e-mail address into an instance at a role. Its link token is not
// part of it: it is handed out once, at creation, and only its hash is stored.
type Invitation struct {
	ID              string
	InstanceID      string
	Email           string // as the inviter typed it, trimmed
	Role            string
	InvitedBy       string // the inviting account; empty once it was removed
	InviterName     string // the inviter's name when it invited
	CreatedAt       time.Time
	ExpiresAt       time.Time
	UsedAt          time.Time // zero until accepted
	RevokedAt       time.Time // zero unless revoked or re-issued
	AcceptedAccount string    // the account it created; empty until accepted
	State           InvitationState
}

// invitationRow maps the invitations table.
type invitationRow struct {
	ID              string `gorm:"primaryKey"`
	TokenHash       string
	InstanceID      string
	Email           string
	EmailNormalized string
	Role            string
	InvitedBy       *string
	InviterName     string
	CreatedAt       time.Time
	ExpiresAt       time.Time
	UsedAt          *time.Time
	RevokedAt       *time.Time
	AcceptedAccount *string
}

func (invitationRow) TableName() string { return "invitations" }

func (r invitationRow) invitation(now time.Time) Invitation {
	inv := Invitation{ID: r.ID, InstanceID: r.InstanceID, Email: r.Email, Role: r.Role, InviterName: r.InviterName,
		CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}
	if r.InvitedBy != nil {
		inv.InvitedBy = *r.InvitedBy
	}
	if r.AcceptedAccount != nil {
		inv.AcceptedAccount = *r.AcceptedAccount
	}
	switch {
	case r.UsedAt != nil:
		inv.UsedAt, inv.State = r.UsedAt.UTC(), InvitationUsed
	case r.RevokedAt != nil:
		inv.RevokedAt, inv.State = r.RevokedAt.UTC(), InvitationRevoked
	case !now.Before(r.ExpiresAt):
		inv.State = InvitationExpired
	default:
		inv.State = InvitationPending
	}
	return inv
}

// stateError is the sentinel of a state that cannot be accepted.
func (st InvitationState) err() error {
	switch st {
	case InvitationUsed:
		return ErrInvitationUsed
	case InvitationRevoked:
		return ErrInvitationRevoked
	case InvitationExpired:
		return ErrInvitationExpired
	}
	return nil
}

// newLinkToken returns a fresh 256-bit link token (base64url, as in a URL path) and the
// hash that is stored in its place.
func newLinkToken() (Secret, string, error) {
	raw := make([]byte, sessionIDBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", "", err
	}
	token := Secret(base64.RawURLEncoding.EncodeToString(raw))
	hash, _ := linkTokenHash(token)
	return token, hash, nil
}

// linkTokenHash is the stored form of a link token, as for session ids; false for anything
// that is not a token we could have issued.
func linkTokenHash(token Secret) (string, bool) { return sessionIDHash(token) }

// CreateInvitation invites an e-mail address into an instance at a role on behalf of the
// acting account, and returns the invitation and its link token, which is not stored and
// cannot be shown again. The invited person needs a way in: password sign-in on, or an
// enabled OpenID Connect provider of the instance (else ErrPasswordLoginOff), so an
// instance whose people sign in only through a provider invites too. The actor must be able to grant the role (ErrForbidden); the
// address must be valid (ErrInvalidEmail), in the instance's allowed domains
// (ErrDomainNotAllowed), not a local account's already (ErrEmailTaken) and not invited
// already (ErrInvitationPending; an expired invitation of the address is revoked instead).
func (s *Store) CreateInvitation(ctx context.Context, instanceID, actorID, email, role string) (Invitation, Secret, error) {
	inv, token, err := s.createInvitation(ctx, instanceID, actorID, email, role, "", AuditInvitationCreated)
	return inv, token, roleError("create invitation", err)
}

// createInvitation writes an invitation, revoking the invitation replaced (reissue) if
// any, in one transaction with its audit event.
func (s *Store) createInvitation(ctx context.Context, instanceID, actorID, email, role, replaces, kind string) (Invitation, Secret, error) {
	normalized, err := NormalizeEmail(email)
	if err != nil {
		return Invitation{}, "", err
	}
	if !ValidRole(role) {
		return Invitation{}, "", ErrInvalidRole
	}
	token, hash, err := newLinkToken()
	if err != nil {
		return Invitation{}, "", err
	}
	var inv Invitation
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := liveInstance(tx, instanceID); err != nil {
			return err
		}
		actor, err := s.checkActor(tx, instanceID, actorID, func(r string) bool { return CanGrant(r, role) })
		if err != nil {
			return err
		}
		settings, err := s.instanceSettings(tx, instanceID)
		if err != nil {
			return err
		}
		if !settings.PasswordLogin {
			if ok, err := hasEnabledProvider(tx, instanceID); err != nil {
				return err
			} else if !ok {
				return ErrPasswordLoginOff
			}
		}
		if !settings.AllowsEmail(normalized) {
			return ErrDomainNotAllowed
		}
		var taken []string
		if err := tx.Raw(`SELECT id FROM accounts WHERE instance_id = ? AND email_normalized = ? AND platform_user_id IS NULL`,
			instanceID, normalized).Scan(&taken).Error; err != nil {
			return translate(err)
		}
		if len(taken) > 0 {
			return ErrEmailTaken
		}
		now := s.now().UTC()
		// The replaced invitation, and an expired one of the address, make room for this
		// one under the one-open-invitation index.
		if err := tx.Exec(`UPDATE invitations SET revoked_at = ? WHERE instance_id = ? AND email_normalized = ?
	AND used_at IS NULL AND revoked_at IS NULL AND (expires_at <= ? OR id = ?)`,
			now, instanceID, normalized, now, replaces).Error; err != nil {
			return translate(err)
		}
		row := invitationRow{ID: uuid.NewString(), TokenHash: hash, InstanceID: instanceID, Email: strings.TrimSpace(email),
			EmailNormalized: normalized, Role: role, CreatedAt: now, ExpiresAt: now.Add(InvitationTTL)}
		if actor != "" {
			row.InvitedBy = &actor
			if err := tx.Raw(`SELECT name FROM accounts WHERE id = ?`, actor).Scan(&row.InviterName).Error; err != nil {
				return translate(err)
			}
		}
		if err := tx.Create(&row).Error; err != nil {
			if err = translateRef(err); errors.Is(err, ErrConflict) {
				return ErrInvitationPending
			}
			return err
		}
		inv = row.invitation(now)
		detail := map[string]string{"invitation": row.ID, "email": row.Email, "role": role}
		if replaces != "" {
			detail["replaces"] = replaces
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: kind, Detail: detail})
	})
	if err != nil {
		return Invitation{}, "", err
	}
	return inv, token, nil
}

// Invitation returns the invitation of a link token, in whatever state, for the accept
// page: who invited, to what, and whether it can still be accepted. ErrNotFound for a
// token that is malformed or unknown.
func (s *Store) Invitation(ctx context.Context, token Secret) (Invitation, error) {
	hash, ok := linkTokenHash(token)
	if !ok {
		return Invitation{}, ErrNotFound
	}
	var row invitationRow
	if err := s.db.WithContext(ctx).Take(&row, "token_hash = ?", hash).Error; err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Invitation{}, err
		}
		return Invitation{}, fmt.Errorf("load invitation: %w", err)
	}
	return row.invitation(s.now().UTC()), nil
}

// InvitationByID returns an invitation of an instance by its id (the team page's
// handle); ErrNotFound when it is not the instance's.
func (s *Store) InvitationByID(ctx context.Context, instanceID, id string) (Invitation, error) {
	var row invitationRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ? AND instance_id = ?", id, instanceID).Error; err != nil {
		return Invitation{}, roleError("load invitation "+id, translate(err))
	}
	return row.invitation(s.now().UTC()), nil
}

// OpenInvitations lists an instance's invitations that are neither used nor revoked,
// pending and expired ones alike (an expired one can be re-issued), newest first.
func (s *Store) OpenInvitations(ctx context.Context, instanceID string) ([]Invitation, error) {
	var rows []invitationRow
	err := s.db.WithContext(ctx).Where("instance_id = ? AND used_at IS NULL AND revoked_at IS NULL", instanceID).
		Order("created_at DESC, id").Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list invitations of instance %s: %w", instanceID, translate(err))
	}
	now := s.now().UTC()
	out := make([]Invitation, len(rows))
	for i, r := range rows {
		out[i] = r.invitation(now)
	}
	return out, nil
}

// checkName trims an account name and checks it.
func checkName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 200 || strings.ContainsFunc(name, isControl) {
		return "", ErrInvalidName
	}
	return name, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// AcceptInvitation creates the invited local account with a name and a password hash (a
// PHC string) and marks the invitation used, in one transaction: of two acceptances at
// once exactly one wins, the other gets ErrInvitationUsed. It fails with ErrNotFound,
// ErrInvitationExpired or ErrInvitationRevoked for a link that cannot be accepted,
// ErrEmailTaken when a local account got the address meanwhile, ErrPasswordLoginOff and
// ErrDomainNotAllowed when the instance's settings now say no, ErrInvalidName and
// ErrNoPassword for bad input.
func (s *Store) AcceptInvitation(ctx context.Context, token Secret, name, passwordHash string) (Account, error) {
	name, err := checkName(name)
	if err != nil {
		return Account{}, err
	}
	if passwordHash == "" {
		return Account{}, ErrNoPassword
	}
	hash, ok := linkTokenHash(token)
	if !ok {
		return Account{}, ErrNotFound
	}
	var acc Account
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := s.now().UTC()
		// The claim: on PostgreSQL a second acceptance waits here on the row and then
		// finds used_at set; on SQLite the transactions run one after another.
		res := tx.Exec(`UPDATE invitations SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
			now, hash, now)
		if res.Error != nil {
			return translate(res.Error)
		}
		var row invitationRow
		if err := tx.Take(&row, "token_hash = ?", hash).Error; err != nil {
			return translate(err)
		}
		if res.RowsAffected != 1 {
			if err := row.invitation(now).State.err(); err != nil {
				return err
			}
			return ErrInvitationUsed
		}
		// A removed or disabled instance takes no new accounts; the claim is rolled back,
		// so the link works again if the instance is enabled again.
		if err := liveInstance(tx, row.InstanceID); err != nil {
			return err
		}
		// The settings as they are now, not as they were at the invitation: password
		// sign-in may be off, the address's domain no longer allowed. The claim is rolled
		// back, so the link works again if an owner changes them back.
		settings, err := s.instanceSettings(tx, row.InstanceID)
		if err != nil {
			return err
		}
		if !settings.PasswordLogin {
			return ErrPasswordLoginOff
		}
		if !settings.AllowsEmail(row.EmailNormalized) {
			return ErrDomainNotAllowed
		}
		account := accountRow{ID: uuid.NewString(), InstanceID: row.InstanceID, Email: row.Email,
			EmailNormalized: row.EmailNormalized, PasswordHash: passwordHash, Name: name, Role: row.Role,
			CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&account).Error; err != nil {
			if err = translateRef(err); errors.Is(err, ErrConflict) {
				return ErrEmailTaken
			}
			return err
		}
		if err := tx.Exec(`UPDATE invitations SET accepted_account = ? WHERE id = ?`, account.ID, row.ID).Error; err != nil {
			return translate(err)
		}
		acc = account.account()
		return s.audit(tx, AuditEvent{InstanceID: row.InstanceID, AccountID: account.ID, Kind: AuditInvitationAccepted,
			Detail: map[string]string{"invitation": row.ID, "email": row.Email, "role": row.Role, "invited_by": row.InviterName}})
	})
	if err != nil {
		return Account{}, roleError("accept invitation", err)
	}
	return acc, nil
}

// RevokeInvitation revokes an open invitation of an instance on behalf of an actor who
// could have granted its role (ErrForbidden). Revoking a revoked or expired invitation
// is not an error; a used one is ErrInvitationUsed.
func (s *Store) RevokeInvitation(ctx context.Context, instanceID, actorID, invitationID string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row invitationRow
		if err := tx.Take(&row, "id = ? AND instance_id = ?", invitationID, instanceID).Error; err != nil {
			return translate(err)
		}
		actor, err := s.checkActor(tx, instanceID, actorID, func(r string) bool { return CanGrant(r, row.Role) })
		if err != nil {
			return err
		}
		res := tx.Exec(`UPDATE invitations SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL`, s.now().UTC(), row.ID)
		if res.Error != nil {
			return translate(res.Error)
		}
		if res.RowsAffected == 0 {
			if row.UsedAt != nil {
				return ErrInvitationUsed
			}
			return nil // revoked already (or used meanwhile: the next read says so)
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditInvitationRevoked,
			Detail: map[string]string{"invitation": row.ID, "email": row.Email, "role": row.Role}})
	})
	return roleError("revoke invitation "+invitationID, err)
}

// ReissueInvitation replaces an invitation that was not used (pending, expired or
// revoked) with a new one for the same address and role, with a new token and a fresh
// expiry, on behalf of the actor, who becomes its inviter; the old link is dead from then
// on. A used invitation is ErrInvitationUsed; the other checks are CreateInvitation's.
func (s *Store) ReissueInvitation(ctx context.Context, instanceID, actorID, invitationID string) (Invitation, Secret, error) {
	old, err := s.InvitationByID(ctx, instanceID, invitationID)
	if err != nil {
		return Invitation{}, "", err
	}
	if old.State == InvitationUsed {
		return Invitation{}, "", ErrInvitationUsed
	}
	inv, token, err := s.createInvitation(ctx, instanceID, actorID, old.Email, old.Role, old.ID, AuditInvitationReissued)
	return inv, token, roleError("reissue invitation "+invitationID, err)
}

// liveInstance checks inside tx that an instance exists (ErrNotFound), is not removed
// (ErrRemoved) and is enabled (ErrDisabled).
func liveInstance(tx *gorm.DB, instanceID string) error {
	var in Instance
	if err := tx.Select("removed_at", "enabled").Take(&in, "id = ?", instanceID).Error; err != nil {
		return translate(err)
	}
	switch {
	case in.Removed():
		return ErrRemoved
	case !in.Enabled:
		return ErrDisabled
	}
	return nil
}

// PruneLinks deletes password-reset links past their expiry and invitations that expired
// more than a month before now (kept that long so that an old link still tells who
// invited), and returns how many of each.
func (s *Store) PruneLinks(ctx context.Context, now time.Time) (resets, invitations int64, err error) {
	res := s.db.WithContext(ctx).Exec(`DELETE FROM password_resets WHERE expires_at < ?`, now.UTC())
	if res.Error != nil {
		return 0, 0, fmt.Errorf("prune password resets: %w", translate(res.Error))
	}
	resets = res.RowsAffected
	res = s.db.WithContext(ctx).Exec(`DELETE FROM invitations WHERE expires_at < ?`, now.UTC().Add(-invitationKeep))
	if res.Error != nil {
		return resets, 0, fmt.Errorf("prune invitations: %w", translate(res.Error))
	}
	return resets, res.RowsAffected, nil
}

// invitationKeep is how long after its expiry an invitation is kept.
const invitationKeep = 30 * 24 * time.Hour

// revokeInvitationsBeyond revokes, inside tx, the open invitations an account made at
// roles that newRole may not grant (all of them when newRole is "": the account goes), so
// that a demoted or removed admin's links do not outlive their power.
func (s *Store) revokeInvitationsBeyond(tx *gorm.DB, accountID, newRole string) error {
	var beyond []string
	for _, r := range Roles() {
		if !CanGrant(newRole, r) {
			beyond = append(beyond, r)
		}
	}
	if len(beyond) == 0 {
		return nil
	}
	err := tx.Exec(`UPDATE invitations SET revoked_at = ? WHERE invited_by = ? AND used_at IS NULL AND revoked_at IS NULL AND role IN ?`,
		s.now().UTC(), accountID, beyond).Error
	return translate(err)
}
