package extension

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
)

// PasswordResetTTL is how long a password-reset link stays valid.
const PasswordResetTTL = 24 * time.Hour

var (
	// ErrResetUsed is returned for a password-reset link that was used.
	ErrResetUsed = errors.New("extension: password-reset link already used")
	// ErrResetExpired is returned for a password-reset link past its expiry.
	ErrResetExpired = errors.New("extension: password-reset link expired")
)

// PasswordReset is a one-time password-reset link of a local account, without its token.
type PasswordReset struct {
	AccountID  string
	InstanceID string
	CreatedBy  string // the issuing account; empty when the operator or the account's owner by e-mail asked
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     time.Time // zero until used
}

// resetRow maps the password_resets table.
type resetRow struct {
	TokenHash  string `gorm:"primaryKey"`
	AccountID  string
	InstanceID string
	CreatedBy  *string
	CreatedAt  time.Time
	ExpiresAt  time.Time
	UsedAt     *time.Time
}

func (resetRow) TableName() string { return "password_resets" }

func (r resetRow) reset() PasswordReset {
	pr := PasswordReset{AccountID: r.AccountID, InstanceID: r.InstanceID, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}
	if r.CreatedBy != nil {
		pr.CreatedBy = *r.CreatedBy
	}
	if r.UsedAt != nil {
		pr.UsedAt = r.UsedAt.UTC()
	}
	return pr
}

// err says why a reset cannot be used at now, nil if it can.
func (r resetRow) err(now time.Time) error {
	switch {
	case r.UsedAt != nil:
		return ErrResetUsed
	case !now.Before(r.ExpiresAt):
		return ErrResetExpired
	}
	return nil
}

// IssuePasswordReset makes a one-time password-reset link for a local account on behalf
// of an actor who may manage it (ErrForbidden), and returns its token, which is not
// stored. An earlier unused link of the account dies. A platform user's account is
// ErrNotLocalAccount; one's own account is ErrForbidden (the account page changes one's
// own password, asking for the current one); while password sign-in is off,
// ErrPasswordLoginOff.
func (s *Store) IssuePasswordReset(ctx context.Context, instanceID, actorID, accountID string) (Secret, PasswordReset, error) {
	return s.issueReset(ctx, instanceID, actorID, "", accountID)
}

// IssuePasswordResetAsOperator is IssuePasswordReset for the operator (the accounts
// subcommand): no role limits it.
func (s *Store) IssuePasswordResetAsOperator(ctx context.Context, instanceID, accountID string) (Secret, PasswordReset, error) {
	return s.issueReset(ctx, instanceID, asOperator, ActorOperator, accountID)
}

// RequestPasswordReset makes a reset link for the local account with an e-mail address,
// for "forgot password" when links can be e-mailed: it returns the account to mail it
// to. An unknown address is ErrNotFound, which the page must answer exactly as it answers
// success.
func (s *Store) RequestPasswordReset(ctx context.Context, instanceID, email string) (Secret, PasswordReset, Account, error) {
	acc, _, err := s.LocalCredentials(ctx, instanceID, email)
	if err != nil {
		return "", PasswordReset{}, Account{}, err
	}
	token, pr, err := s.issueReset(ctx, instanceID, asOperator, ActorForgotPassword, acc.ID)
	return token, pr, acc, err
}

func (s *Store) issueReset(ctx context.Context, instanceID, actorID, actorLabel, accountID string) (Secret, PasswordReset, error) {
	token, hash, err := newLinkToken()
	if err != nil {
		return "", PasswordReset{}, err
	}
	var pr PasswordReset
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		target, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		actor, err := s.checkActor(tx, instanceID, actorID, func(r string) bool { return CanManage(r, target.Role) })
		if err != nil {
			return err
		}
		if target.PlatformUserID != nil {
			return ErrNotLocalAccount
		}
		if actorID == accountID {
			// One's own password changes on the account page, which asks for the current one.
			return ErrForbidden
		}
		// The operator may prepare a link before an owner turns password sign-in on; the
		// link's page says it is off until then.
		if actorLabel != ActorOperator {
			settings, err := s.instanceSettings(tx, instanceID)
			if err != nil {
				return err
			}
			if !settings.PasswordLogin {
				return ErrPasswordLoginOff
			}
		}
		if err := tx.Exec(`DELETE FROM password_resets WHERE account_id = ? AND used_at IS NULL`, accountID).Error; err != nil {
			return translate(err)
		}
		now := s.now().UTC()
		row := resetRow{TokenHash: hash, AccountID: accountID, InstanceID: instanceID, CreatedAt: now, ExpiresAt: now.Add(PasswordResetTTL)}
		if actor != "" {
			row.CreatedBy = &actor
		}
		if err := tx.Create(&row).Error; err != nil {
			return translateRef(err)
		}
		pr = row.reset()
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, ActorName: actorLabel, Kind: AuditPasswordResetIssued,
			Detail: map[string]string{"account": target.ID, "name": target.Name, "email": target.Email}})
	})
	if err != nil {
		return "", PasswordReset{}, roleError("issue password reset for account "+accountID, err)
	}
	return token, pr, nil
}

// PasswordResetByToken returns the reset of a link token for the reset page, and
// ErrResetUsed or ErrResetExpired (with the reset) when it can no longer be used;
// ErrNotFound for a malformed or unknown token.
func (s *Store) PasswordResetByToken(ctx context.Context, token Secret) (PasswordReset, error) {
	hash, ok := linkTokenHash(token)
	if !ok {
		return PasswordReset{}, ErrNotFound
	}
	var row resetRow
	if err := s.db.WithContext(ctx).Take(&row, "token_hash = ?", hash).Error; err != nil {
		return PasswordReset{}, roleError("load password reset", translate(err))
	}
	return row.reset(), row.err(s.now().UTC())
}

// ConsumePasswordReset uses a reset link: in one transaction it marks the link used, sets
// the account's new password hash, clears its lock-out and ends all its sessions (the
// caller starts a new one). Of two uses at once exactly one wins; the other gets
// ErrResetUsed. ErrResetExpired and ErrNotFound as for PasswordResetByToken;
// ErrPasswordLoginOff while the instance's password sign-in is off (the link stays unused).
func (s *Store) ConsumePasswordReset(ctx context.Context, token Secret, passwordHash string) (Account, error) {
	if passwordHash == "" {
		return Account{}, ErrNoPassword
	}
	hash, ok := linkTokenHash(token)
	if !ok {
		return Account{}, ErrNotFound
	}
	var acc Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := s.now().UTC()
		res := tx.Exec(`UPDATE password_resets SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?`, now, hash, now)
		if res.Error != nil {
			return translate(res.Error)
		}
		var row resetRow
		if err := tx.Take(&row, "token_hash = ?", hash).Error; err != nil {
			return translate(err)
		}
		if res.RowsAffected != 1 {
			if err := row.err(now); err != nil {
				return err
			}
			return ErrResetUsed
		}
		if err := liveInstance(tx, row.InstanceID); err != nil {
			return err
		}
		settings, err := s.instanceSettings(tx, row.InstanceID)
		if err != nil {
			return err
		}
		if !settings.PasswordLogin {
			return ErrPasswordLoginOff // rolled back: the link works once password sign-in is on again
		}
		if err := s.setPassword(tx, row.InstanceID, row.AccountID, passwordHash, ""); err != nil {
			return err
		}
		target, err := instanceAccount(tx, row.InstanceID, row.AccountID)
		if err != nil {
			return err
		}
		acc = target.account()
		return s.audit(tx, AuditEvent{InstanceID: row.InstanceID, AccountID: row.AccountID, Kind: AuditPasswordReset})
	})
	if err != nil {
		return Account{}, roleError("use password reset", err)
	}
	return acc, nil
}
