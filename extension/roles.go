package extension

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// Roles of an account in its instance, from the least to the most powerful. The first
// account of an instance is its owner. A member uses the instance; an admin also manages
// members, admins and invitations up to admin; an owner also manages owners and the
// instance's sign-in settings.
const (
	RoleMember = "member"
	RoleAdmin  = "admin"
	RoleOwner  = "owner"
)

var (
	// ErrLastOwner is returned for a change that would leave an instance without an owner.
	ErrLastOwner = errors.New("extension: the last owner can be neither removed nor demoted")
	// ErrForbidden is returned when the acting account's role does not allow the change,
	// above all granting a role above its own.
	ErrForbidden = errors.New("extension: not allowed for this role")
	// ErrInvalidRole is returned for a role name that is none of RoleOwner, RoleAdmin and
	// RoleMember.
	ErrInvalidRole = errors.New("extension: unknown role")
)

// Roles lists the roles from the most to the least powerful, as a team page offers them.
func Roles() []string { return []string{RoleOwner, RoleAdmin, RoleMember} }

// roleRank orders the roles; 0 is no role we know.
func roleRank(role string) int {
	switch role {
	case RoleMember:
		return 1
	case RoleAdmin:
		return 2
	case RoleOwner:
		return 3
	}
	return 0
}

// ValidRole reports whether role is one of the roles.
func ValidRole(role string) bool { return roleRank(role) > 0 }

// CanGrant reports whether an account of role actor may give role to an account or an
// invitation: an admin up to admin, an owner any role, a member none.
func CanGrant(actor, role string) bool {
	return roleRank(actor) >= roleRank(RoleAdmin) && ValidRole(role) && roleRank(role) <= roleRank(actor)
}

// CanManage reports whether an account of role actor may change, remove or reset the
// password of an account that now has role target: an admin manages members and admins,
// an owner everyone, a member no one.
func CanManage(actor, target string) bool {
	return roleRank(actor) >= roleRank(RoleAdmin) && ValidRole(target) && roleRank(target) <= roleRank(actor)
}

// CanManageSettings reports whether role may change the instance's sign-in settings.
func CanManageSettings(role string) bool { return role == RoleOwner }

// CanReadAudit reports whether role may read the instance's audit log.
func CanReadAudit(role string) bool { return roleRank(role) >= roleRank(RoleAdmin) }

// Actor labels of audit events that no account started.
const (
	ActorOperator = "operator" // the accounts subcommand
	ActorPlatform = "platform" // a platform fact, such as a platform owner reclaiming ownership
	// ActorForgotPassword is a reset link the account's owner asked for by e-mail.
	ActorForgotPassword = "forgot_password"
)

// ChangeRole gives an account of an instance a new role on behalf of the acting account
// actorID, and records it in the audit log. The actor must be able to manage the account
// as it is and to grant the new role (ErrForbidden); the last owner keeps the role
// (ErrLastOwner). Setting the role it has changes nothing. Open invitations the account
// made above what its new role may grant are revoked with it.
func (s *Store) ChangeRole(ctx context.Context, instanceID, actorID, accountID, role string) (Account, error) {
	return s.setRole(ctx, instanceID, actorID, "", accountID, role, AuditRoleChanged)
}

// SetRoleAsOperator gives an account a role on behalf of the operator (the break-glass
// accounts subcommand): no role check, but the last owner still keeps the role.
func (s *Store) SetRoleAsOperator(ctx context.Context, instanceID, accountID, role string) (Account, error) {
	return s.setRole(ctx, instanceID, asOperator, ActorOperator, accountID, role, AuditRoleChanged)
}

// ReclaimOwnership makes a platform user's account an owner, for a user whom the platform
// says owns the instance's project or organisation: the way back in when the local owners
// are gone. The caller checks the platform's word; this records it as the platform's.
func (s *Store) ReclaimOwnership(ctx context.Context, instanceID, accountID string) (Account, error) {
	acc, err := s.AccountByID(ctx, accountID)
	if err != nil {
		return Account{}, err
	}
	if acc.Local() || acc.InstanceID != instanceID {
		return Account{}, ErrForbidden
	}
	return s.setRole(ctx, instanceID, asOperator, ActorPlatform, accountID, RoleOwner, AuditOwnershipReclaimed)
}

// setRole changes a role in one transaction with its audit event: by the account actorID
// with its role's limits, or, with actorID asOperator, by actorLabel without them.
func (s *Store) setRole(ctx context.Context, instanceID, actorID, actorLabel, accountID, role, kind string) (Account, error) {
	if !ValidRole(role) {
		return Account{}, ErrInvalidRole
	}
	var out Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.lockInstanceAccounts(tx, instanceID); err != nil {
			return err
		}
		target, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		actor, err := s.checkActor(tx, instanceID, actorID, func(actorRole string) bool {
			return CanManage(actorRole, target.Role) && CanGrant(actorRole, role)
		})
		if err != nil {
			return err
		}
		if target.Role == role {
			out = target.account()
			return nil
		}
		from := target.Role
		if err := s.updateRole(tx, target, role); err != nil {
			return err
		}
		target.Role, target.UpdatedAt = role, s.now().UTC()
		out = target.account()
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, ActorName: actorLabel, Kind: kind,
			Detail: map[string]string{"account": target.ID, "name": target.Name, "from": from, "to": role}})
	})
	if err != nil {
		return Account{}, roleError("set role of account "+accountID, err)
	}
	return out, nil
}

// updateRole writes a role inside a transaction that holds lockInstanceAccounts. The
// statement itself refuses to demote the last owner: the lock makes the count exact, the
// condition keeps the rule in one place.
func (s *Store) updateRole(tx *gorm.DB, target accountRow, role string) error {
	now := s.now().UTC()
	res := tx.Exec(`UPDATE accounts SET role = ?, updated_at = ? WHERE id = ? AND instance_id = ?
	AND (role <> ? OR ? = ? OR (SELECT COUNT(*) FROM accounts o WHERE o.instance_id = ? AND o.role = ?) > 1)`,
		role, now, target.ID, target.InstanceID, RoleOwner, role, RoleOwner, target.InstanceID, RoleOwner)
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected != 1 {
		return ErrLastOwner
	}
	return s.revokeInvitationsBeyond(tx, target.ID, role)
}

// RemoveAccount deletes an account of an instance on behalf of actorID, with its sessions
// (by reference), its platform user tokens and its password-reset links, and records it in
// the audit log. The actor must be able to manage the account (ErrForbidden); the last
// owner stays (ErrLastOwner). The account's open invitations are revoked. A platform user
// can come back: their next click-through from the control panel provisions a new
// account with the default role, as long as the platform lets them into the context.
func (s *Store) RemoveAccount(ctx context.Context, instanceID, actorID, accountID string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.lockInstanceAccounts(tx, instanceID); err != nil {
			return err
		}
		target, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		actor, err := s.checkActor(tx, instanceID, actorID, func(actorRole string) bool { return CanManage(actorRole, target.Role) })
		if err != nil {
			return err
		}
		if err := s.revokeInvitationsBeyond(tx, target.ID, ""); err != nil {
			return err
		}
		res := tx.Exec(`DELETE FROM accounts WHERE id = ? AND instance_id = ?
	AND (role <> ? OR (SELECT COUNT(*) FROM accounts o WHERE o.instance_id = ? AND o.role = ?) > 1)`,
			target.ID, instanceID, RoleOwner, instanceID, RoleOwner)
		if res.Error != nil {
			return translate(res.Error)
		}
		if res.RowsAffected != 1 {
			return ErrLastOwner
		}
		if target.PlatformUserID != nil {
			if err := tx.Exec(`DELETE FROM user_tokens WHERE instance_id = ? AND platform_user_id = ?`, instanceID, *target.PlatformUserID).Error; err != nil {
				return translate(err)
			}
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditAccountRemoved,
			Detail: map[string]string{"account": target.ID, "name": target.Name, "email": target.Email, "role": target.Role, "sign_in": target.account().SignInMethod()}})
	})
	return roleError("remove account "+accountID, err)
}

// TransferOwnership makes accountID an owner and the acting owner an admin, in one
// transaction with its audit event. Only an owner may (ErrForbidden); transferring to
// oneself changes nothing.
func (s *Store) TransferOwnership(ctx context.Context, instanceID, actorID, accountID string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.lockInstanceAccounts(tx, instanceID); err != nil {
			return err
		}
		target, err := instanceAccount(tx, instanceID, accountID)
		if err != nil {
			return err
		}
		if _, err := s.checkActor(tx, instanceID, actorID, func(actorRole string) bool { return actorRole == RoleOwner }); err != nil {
			return err
		}
		if actorID == accountID {
			return nil
		}
		actor, err := instanceAccount(tx, instanceID, actorID)
		if err != nil {
			return err
		}
		if target.Role != RoleOwner {
			if err := s.updateRole(tx, target, RoleOwner); err != nil {
				return err
			}
		}
		// The target is an owner now, so the actor is not the last one.
		if err := s.updateRole(tx, actor, RoleAdmin); err != nil {
			return err
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actorID, Kind: AuditOwnershipTransferred,
			Detail: map[string]string{"account": target.ID, "name": target.Name, "from": target.Role}})
	})
	return roleError("transfer ownership to account "+accountID, err)
}

// instanceAccount loads an account of an instance inside tx; ErrNotFound when the account
// does not exist or belongs to another instance.
func instanceAccount(tx *gorm.DB, instanceID, accountID string) (accountRow, error) {
	var row accountRow
	if err := tx.Take(&row, "id = ? AND instance_id = ?", accountID, instanceID).Error; err != nil {
		return accountRow{}, translate(err)
	}
	return row, nil
}

// asOperator is the actor id of changes that no account makes (the operator's break-glass
// commands, a platform owner's reclaim): no role limits them. It is no id an account can
// have, and an empty actor id is refused, so no caller gets these powers by omission.
const asOperator = "\x00operator"

// checkActor loads the acting account inside tx and checks its role with allowed; it
// returns the actor's id for the audit log ("" for asOperator). An empty actor id or an
// actor that is not the instance's is ErrForbidden.
func (s *Store) checkActor(tx *gorm.DB, instanceID, actorID string, allowed func(role string) bool) (string, error) {
	if actorID == asOperator {
		return "", nil
	}
	if actorID == "" {
		return "", ErrForbidden
	}
	actor, err := instanceAccount(tx, instanceID, actorID)
	if errors.Is(err, ErrNotFound) {
		return "", ErrForbidden
	}
	if err != nil {
		return "", err
	}
	if !allowed(actor.Role) {
		return "", ErrForbidden
	}
	return actor.ID, nil
}

// roleError passes the sentinels on unwrapped, as callers compare them, and adds what
// failed to anything else.
func roleError(what string, err error) error {
	for _, sentinel := range []error{ErrNotFound, ErrForbidden, ErrLastOwner, ErrInvalidRole, ErrEmailTaken,
		ErrInvalidEmail, ErrDomainNotAllowed, ErrInvitationPending, ErrInvitationUsed, ErrInvitationExpired,
		ErrInvitationRevoked, ErrNotLocalAccount, ErrResetUsed, ErrResetExpired, ErrInvalidName, ErrNoPassword,
		ErrRemoved, ErrDisabled, ErrPasswordLoginOff} {
		if errors.Is(err, sentinel) {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, translate(err))
	}
	return nil
}
