package extension

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ErrNotLocalAccount is returned for a password operation on a platform user's account,
// which has no password here.
var ErrNotLocalAccount = errors.New("extension: not a local account")

// Lock-out of password sign-in: from lockoutAfter failures in a row, each further failure
// locks the account for lockoutBase, doubled per failure, at most lockoutMax. The counter
// and the lock live in the account's row, so every replica sees them.
const (
	lockoutAfter = 5
	lockoutBase  = time.Minute
	lockoutMax   = time.Hour
)

// LockoutFor returns how long an account is locked after its failures-th failed password
// sign-in in a row: nothing before the fifth, then 1 minute, doubling, at most an hour.
func LockoutFor(failures int) time.Duration {
	if failures < lockoutAfter {
		return 0
	}
	d := lockoutBase
	for range failures - lockoutAfter {
		if d *= 2; d >= lockoutMax {
			return lockoutMax
		}
	}
	return d
}

// Accounts lists an instance's accounts, platform users and local users alike, owners
// first, then admins, then members, each by name.
func (s *Store) Accounts(ctx context.Context, instanceID string) ([]Account, error) {
	var rows []accountRow
	if err := s.db.WithContext(ctx).Where("instance_id = ?", instanceID).Order("name, email, id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list accounts of instance %s: %w", instanceID, translate(err))
	}
	out := make([]Account, len(rows))
	for i, r := range rows {
		out[i] = r.account()
	}
	slices.SortStableFunc(out, func(a, b Account) int { return roleRank(b.Role) - roleRank(a.Role) })
	return out, nil
}

// LocalCredentials returns the local account of an instance with an e-mail address and
// its password hash (a PHC string), for the password sign-in. An address that is not
// valid or has no local account is ErrNotFound: the sign-in then verifies against a dummy
// hash so that it costs the same.
func (s *Store) LocalCredentials(ctx context.Context, instanceID, email string) (Account, string, error) {
	normalized, err := NormalizeEmail(email)
	if err != nil {
		return Account{}, "", ErrNotFound
	}
	var row accountRow
	err = s.db.WithContext(ctx).Take(&row, "instance_id = ? AND email_normalized = ? AND platform_user_id IS NULL", instanceID, normalized).Error
	if err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return Account{}, "", err
		}
		return Account{}, "", fmt.Errorf("load local account: %w", err)
	}
	return row.account(), row.PasswordHash, nil
}

// RecordLoginFailure counts a failed password sign-in of a local account and locks it for
// LockoutFor(failures); it returns the account's count and lock. Two replicas counting at
// once both count: the increment is one statement.
func (s *Store) RecordLoginFailure(ctx context.Context, accountID string) (failures int, lockedUntil time.Time, err error) {
	var counts []int
	err = s.db.WithContext(ctx).Raw(`UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = ? AND platform_user_id IS NULL RETURNING failed_logins`,
		accountID).Scan(&counts).Error
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("record sign-in failure of account %s: %w", accountID, translate(err))
	}
	if len(counts) == 0 {
		return 0, time.Time{}, ErrNotFound
	}
	failures = counts[0]
	d := LockoutFor(failures)
	if d == 0 {
		return failures, time.Time{}, nil
	}
	lockedUntil = s.now().UTC().Add(d)
	// Only if no later failure got in between: that one writes its own, longer lock.
	err = s.db.WithContext(ctx).Exec(`UPDATE accounts SET locked_until = ? WHERE id = ? AND failed_logins = ?`,
		lockedUntil, accountID, failures).Error
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("lock account %s: %w", accountID, translate(err))
	}
	return failures, lockedUntil, nil
}

// ResetLoginFailures clears an account's failure count and lock after a successful
// sign-in; it writes only when there is something to clear.
func (s *Store) ResetLoginFailures(ctx context.Context, accountID string) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ? AND (failed_logins <> 0 OR locked_until IS NOT NULL)`,
		accountID).Error
	if err != nil {
		return fmt.Errorf("reset sign-in failures of account %s: %w", accountID, translate(err))
	}
	return nil
}

// ChangePassword sets a local account's password hash (a PHC string) from its own account
// page, clears its lock-out and ends its other sessions: every session but keep (the
// current one's id from the cookie; empty ends all).
func (s *Store) ChangePassword(ctx context.Context, instanceID, accountID, passwordHash string, keep Secret) error {
	if passwordHash == "" {
		return ErrNoPassword
	}
	keepHash, _ := sessionIDHash(keep)
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.setPassword(tx, instanceID, accountID, passwordHash, keepHash); err != nil {
			return err
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: accountID, Kind: AuditPasswordChanged})
	})
	return roleError("change password of account "+accountID, err)
}

// setPassword writes a local account's password hash inside tx, clears its lock-out,
// deletes its password-reset links and its sessions but the one with keepHash.
func (s *Store) setPassword(tx *gorm.DB, instanceID, accountID, passwordHash, keepHash string) error {
	res := tx.Exec(`UPDATE accounts SET password_hash = ?, failed_logins = 0, locked_until = NULL, updated_at = ?
WHERE id = ? AND instance_id = ? AND platform_user_id IS NULL`, passwordHash, s.now().UTC(), accountID, instanceID)
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected != 1 {
		if _, err := instanceAccount(tx, instanceID, accountID); err != nil {
			return err
		}
		return ErrNotLocalAccount
	}
	if err := tx.Exec(`DELETE FROM sessions WHERE account_id = ? AND instance_id = ? AND id_hash <> ?`, accountID, instanceID, keepHash).Error; err != nil {
		return translate(err)
	}
	return translate(tx.Exec(`DELETE FROM password_resets WHERE account_id = ? AND used_at IS NULL`, accountID).Error)
}

// UpdateProfile sets an account's name and page language ("" for none chosen, otherwise a
// language tag such as "de" or "en-GB").
func (s *Store) UpdateProfile(ctx context.Context, instanceID, accountID, name, language string) (Account, error) {
	name, err := checkName(name)
	if err != nil {
		return Account{}, err
	}
	if len(language) > 16 || strings.ContainsFunc(language, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && r != '-'
	}) {
		return Account{}, errors.New("update profile: language must be a language tag such as de or en-GB")
	}
	res := s.db.WithContext(ctx).Exec(`UPDATE accounts SET name = ?, language = ?, updated_at = ? WHERE id = ? AND instance_id = ?`,
		name, language, s.now().UTC(), accountID, instanceID)
	if res.Error != nil {
		return Account{}, fmt.Errorf("update profile of account %s: %w", accountID, translate(res.Error))
	}
	if res.RowsAffected != 1 {
		return Account{}, ErrNotFound
	}
	return s.AccountByID(ctx, accountID)
}
