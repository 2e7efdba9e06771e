package extension

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// OIDCIdentity is an identity at a provider (its subject) linked to an account. Email is
// what the provider said when it was linked, shown on the account page and never used to
// find the account.
type OIDCIdentity struct {
	ID           string
	InstanceID   string
	AccountID    string
	ProviderID   string
	ProviderName string
	Subject      string
	Email        string
	CreatedAt    time.Time
}

// OIDCClaims is what a sign-in learnt of a user from a provider, for creating or linking
// an account.
type OIDCClaims struct {
	Subject string
	// Email is the address as the provider sent it; Normalized its NormalizeEmail form,
	// "" unless it is valid and verified.
	Email, Normalized string
	Name              string
}

// identityRow maps the oidc_identities table.
type identityRow struct {
	ID         string `gorm:"primaryKey"`
	InstanceID string
	AccountID  string
	ProviderID string
	Subject    string
	Email      string
	CreatedAt  time.Time
	LastUsedAt *time.Time
}

func (identityRow) TableName() string { return "oidc_identities" }

// OIDCIdentityAccount returns the account an identity is linked to, and notes the
// sign-in on the identity; ErrNotFound when it is linked to none.
func (s *Store) OIDCIdentityAccount(ctx context.Context, providerID, subject string) (Account, error) {
	var rows []accountRow
	err := s.db.WithContext(ctx).Raw(`SELECT a.* FROM accounts a JOIN oidc_identities i ON i.account_id = a.id AND i.instance_id = a.instance_id
WHERE i.provider_id = ? AND i.subject = ?`, providerID, subject).Scan(&rows).Error
	if err != nil {
		return Account{}, fmt.Errorf("load account of identity: %w", translate(err))
	}
	if len(rows) == 0 {
		return Account{}, ErrNotFound
	}
	row := rows[0]
	if err := s.db.WithContext(ctx).Exec(`UPDATE oidc_identities SET last_used_at = ? WHERE provider_id = ? AND subject = ?`,
		s.now().UTC(), providerID, subject).Error; err != nil {
		return Account{}, fmt.Errorf("note identity's sign-in: %w", translate(err))
	}
	return row.account(), nil
}

// OIDCIdentities lists the identities linked to an account, with their providers' names.
func (s *Store) OIDCIdentities(ctx context.Context, instanceID, accountID string) ([]OIDCIdentity, error) {
	var out []OIDCIdentity
	err := s.db.WithContext(ctx).Raw(`SELECT i.id, i.instance_id, i.account_id, i.provider_id, COALESCE(p.name, '') AS provider_name, i.subject, i.email, i.created_at
FROM oidc_identities i LEFT JOIN oidc_providers p ON p.id = i.provider_id
WHERE i.instance_id = ? AND i.account_id = ? ORDER BY i.created_at`, instanceID, accountID).Scan(&out).Error
	if err != nil {
		return nil, fmt.Errorf("list identities of account %s: %w", accountID, translate(err))
	}
	kept := out[:0]
	for _, id := range out {
		id.CreatedAt = id.CreatedAt.UTC()
		if id.ProviderName == "" {
			op, ok := s.operatorProvider(instanceID, id.ProviderID)
			if !ok {
				continue // an operator provider no longer in the file: no way in, nothing to show
			}
			id.ProviderName = op.Provider.Name
		}
		kept = append(kept, id)
	}
	slices.SortStableFunc(kept, func(a, b OIDCIdentity) int { return strings.Compare(a.ProviderName, b.ProviderName) })
	return kept, nil
}

// linkIdentity links an identity to an account inside tx and records it; an identity
// linked to the same account already is left as it is, one linked to another account is
// ErrIdentityLinked.
func (s *Store) linkIdentity(tx *gorm.DB, instanceID, accountID, providerID string, c OIDCClaims, actor string) error {
	var linked []string
	if err := tx.Raw(`SELECT account_id FROM oidc_identities WHERE provider_id = ? AND subject = ?`, providerID, c.Subject).
		Scan(&linked).Error; err != nil {
		return translate(err)
	}
	if len(linked) > 0 {
		if linked[0] == accountID {
			return nil
		}
		return ErrIdentityLinked
	}
	now := s.now().UTC()
	row := identityRow{ID: uuid.NewString(), InstanceID: instanceID, AccountID: accountID, ProviderID: providerID,
		Subject: c.Subject, Email: c.Email, CreatedAt: now, LastUsedAt: &now}
	if err := tx.Create(&row).Error; err != nil {
		if err = translateRef(err); errors.Is(err, ErrConflict) {
			return ErrIdentityLinked // linked meanwhile by another sign-in
		}
		return err
	}
	name, err := s.providerName(tx, instanceID, providerID)
	if err != nil {
		return err
	}
	return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditIdentityLinked,
		Detail: map[string]string{"provider": name, "email": c.Email, "account": accountID}})
}

// LinkOIDCIdentity links an identity to a signed-in local account of the instance
// (connecting a provider from the account page). ErrIdentityLinked when another account
// has it; ErrNotLocalAccount for a control panel user's account.
func (s *Store) LinkOIDCIdentity(ctx context.Context, instanceID, accountID, providerID string, c OIDCClaims) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		acc, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		if acc.PlatformUserID != nil {
			return ErrNotLocalAccount // control panel users sign in through the control panel
		}
		return s.linkIdentity(tx, instanceID, accountID, providerID, c, accountID)
	})
	return roleError("link identity", err)
}

// UnlinkOIDCIdentity removes an identity from the account, unless it is the account's
// last way to sign in (ErrLastWayIn): a platform user always has the control panel, a
// local account its password while password sign-in is on, and each other identity at an
// enabled provider.
func (s *Store) UnlinkOIDCIdentity(ctx context.Context, instanceID, accountID, identityID string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		acc, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		var row identityRow
		if err := tx.Take(&row, "id = ? AND account_id = ? AND instance_id = ?", identityID, accountID, instanceID).Error; err != nil {
			return translate(err)
		}
		settings, err := s.instanceSettings(tx, instanceID)
		if err != nil {
			return err
		}
		// An identity at a disabled provider is no way in.
		var others int64
		if err := tx.Raw(`SELECT COUNT(*) FROM oidc_identities i JOIN oidc_providers p ON p.id = i.provider_id
WHERE i.account_id = ? AND i.id <> ? AND p.enabled`, accountID, identityID).Scan(&others).Error; err != nil {
			return translate(err)
		}
		platform := acc.PlatformUserID != nil
		password := !platform && acc.PasswordHash != "" && settings.PasswordLogin
		if !platform && !password && others == 0 {
			return ErrLastWayIn
		}
		if err := tx.Exec(`DELETE FROM oidc_identities WHERE id = ?`, identityID).Error; err != nil {
			return translate(err)
		}
		name, err := s.providerName(tx, instanceID, row.ProviderID)
		if err != nil {
			return err
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: accountID, Kind: AuditIdentityUnlinked,
			Detail: map[string]string{"provider": name, "email": row.Email}})
	})
	if errors.Is(err, ErrLastWayIn) {
		return err
	}
	return roleError("unlink identity "+identityID, err)
}

// AcceptInvitationByOIDC accepts the open invitation of the instance for a verified
// address (c.Normalized): the invited account is made without a password, with the
// identity linked and the invitation's role, in one transaction. ErrNotFound when the
// address has no pending invitation; ErrDomainNotAllowed and ErrEmailTaken as for
// AcceptInvitation.
func (s *Store) AcceptInvitationByOIDC(ctx context.Context, instanceID, providerID string, c OIDCClaims) (Account, error) {
	if c.Normalized == "" {
		return Account{}, ErrNotFound
	}
	var acc Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := s.now().UTC()
		var row invitationRow
		err := tx.Where(`instance_id = ? AND email_normalized = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
			instanceID, c.Normalized, now).Take(&row).Error
		if err != nil {
			return translate(err)
		}
		res := tx.Exec(`UPDATE invitations SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL`, now, row.ID)
		if res.Error != nil {
			return translate(res.Error)
		}
		if res.RowsAffected != 1 {
			return ErrInvitationUsed
		}
		if err := liveInstance(tx, instanceID); err != nil {
			return err
		}
		settings, err := s.instanceSettings(tx, instanceID)
		if err != nil {
			return err
		}
		if !settings.AllowsEmail(row.EmailNormalized) {
			return ErrDomainNotAllowed
		}
		name := c.Name
		if name, err = checkName(name); err != nil {
			name = row.Email
		}
		account := accountRow{ID: uuid.NewString(), InstanceID: instanceID, Email: row.Email, EmailNormalized: row.EmailNormalized,
			Name: name, Role: row.Role, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&account).Error; err != nil {
			if err = translateRef(err); errors.Is(err, ErrConflict) {
				return ErrEmailTaken
			}
			return err
		}
		if err := tx.Exec(`UPDATE invitations SET accepted_account = ? WHERE id = ?`, account.ID, row.ID).Error; err != nil {
			return translate(err)
		}
		if err := s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: account.ID, Kind: AuditInvitationAccepted,
			Detail: map[string]string{"invitation": row.ID, "email": row.Email, "role": row.Role, "invited_by": row.InviterName,
				"method": "oidc"}}); err != nil {
			return err
		}
		acc = account.account()
		return s.linkIdentity(tx, instanceID, account.ID, providerID, c, account.ID)
	})
	if err != nil {
		return Account{}, roleError("accept invitation with a provider", err)
	}
	return acc, nil
}

// ProvisionOIDCAccount makes an account for a user a provider vouched for (its verified
// address in c.Normalized), at role, with the identity linked: auto-provisioning.
// ErrEmailTaken when a local account has the address; ErrDomainNotAllowed when the
// instance's allowed domains say no.
func (s *Store) ProvisionOIDCAccount(ctx context.Context, instanceID, providerID string, c OIDCClaims, role string) (Account, error) {
	if c.Normalized == "" {
		return Account{}, ErrInvalidEmail
	}
	if role != RoleMember && role != RoleAdmin {
		return Account{}, ErrInvalidRole // never owner: provisioning does not make owners
	}
	var acc Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := liveInstance(tx, instanceID); err != nil {
			return err
		}
		settings, err := s.instanceSettings(tx, instanceID)
		if err != nil {
			return err
		}
		if !settings.AllowsEmail(c.Normalized) {
			return ErrDomainNotAllowed
		}
		name, err := checkName(c.Name)
		if err != nil {
			name = c.Email
		}
		now := s.now().UTC()
		account := accountRow{ID: uuid.NewString(), InstanceID: instanceID, Email: c.Email, EmailNormalized: c.Normalized,
			Name: name, Role: role, CreatedAt: now, UpdatedAt: now}
		if err := tx.Create(&account).Error; err != nil {
			if err = translateRef(err); errors.Is(err, ErrConflict) {
				return ErrEmailTaken
			}
			return err
		}
		provider, err := s.providerName(tx, instanceID, providerID)
		if err != nil {
			return err
		}
		if err := s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: account.ID, Kind: AuditAccountProvisioned,
			Detail: map[string]string{"provider": provider, "email": c.Email, "role": role}}); err != nil {
			return err
		}
		acc = account.account()
		return s.linkIdentity(tx, instanceID, account.ID, providerID, c, account.ID)
	})
	if err != nil {
		return Account{}, roleError("provision account", err)
	}
	return acc, nil
}

// UseOIDCState records that a sign-in's state came back; a state that came back before is
// ErrStateUsed. expires is when the state would have expired anyway: the record is kept
// until then, and records past theirs are pruned on the way.
func (s *Store) UseOIDCState(ctx context.Context, state Secret, expires time.Time) error {
	sum := sha256.Sum256([]byte(state.Reveal()))
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`DELETE FROM oidc_used_states WHERE expires_at < ?`, s.now().UTC()).Error; err != nil {
			return translate(err)
		}
		return translate(tx.Exec(`INSERT INTO oidc_used_states (state_hash, expires_at) VALUES (?, ?)`,
			hex.EncodeToString(sum[:]), expires.UTC()).Error)
	})
	if errors.Is(err, ErrConflict) {
		return ErrStateUsed
	}
	if err != nil {
		return fmt.Errorf("use sign-in state: %w", err)
	}
	return nil
}

// AccountsWithIdentities returns the ids of an instance's accounts that have an identity
// at an enabled provider: they have a way in besides a password.
func (s *Store) AccountsWithIdentities(ctx context.Context, instanceID string) (map[string]bool, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Raw(`SELECT DISTINCT i.account_id FROM oidc_identities i JOIN oidc_providers p ON p.id = i.provider_id
WHERE i.instance_id = ? AND p.enabled`, instanceID).
		Scan(&ids).Error; err != nil {
		return nil, fmt.Errorf("accounts with identities in instance %s: %w", instanceID, translate(err))
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// providerName is the name of an instance's provider or of the operator's, for the audit
// log; "" for neither.
func (s *Store) providerName(tx *gorm.DB, instanceID, providerID string) (string, error) {
	var names []string
	if err := tx.Raw(`SELECT name FROM oidc_providers WHERE id = ?`, providerID).Scan(&names).Error; err != nil {
		return "", translate(err)
	}
	if len(names) > 0 {
		return names[0], nil
	}
	if op, ok := s.operatorProvider(instanceID, providerID); ok {
		return op.Provider.Name, nil
	}
	return "", nil
}
