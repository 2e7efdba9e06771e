package extension

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"gorm.io/gorm"
)

// AuditRoleDerived is the audit kind of a role a provider's group → role map changed at
// a sign-in.
const AuditRoleDerived = "role.derived"

// maxRoleRules bounds a provider's group → role map.
const maxRoleRules = 50

// RoleRule maps a group a provider names in its groups claim to a role (member or
// admin) of accounts signing in through it.
type RoleRule struct {
	Group string `json:"group"`
	Role  string `json:"role"`
}

// DerivedRole is the role a provider's group → role map gives a user in groups: the
// highest role of the rules whose group is among them, with that rule's group; ok is
// false when no rule matches (or the map is empty).
func (p OIDCProvider) DerivedRole(groups []string) (role, group string, ok bool) {
	for _, r := range p.RoleMap {
		if slices.Contains(groups, r.Group) && (!ok || roleRank(r.Role) > roleRank(role)) {
			role, group, ok = r.Role, r.Group, true
		}
	}
	return role, group, ok
}

// checkRoleMap checks a group → role map: groups are short text, each once; roles are
// member or admin (a provider never makes owners).
func checkRoleMap(rules []RoleRule) error {
	if len(rules) > maxRoleRules {
		return fmt.Errorf("%w: too many group rules", ErrInvalidProvider)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Group == "" || len(r.Group) > 200 || !utf8.ValidString(r.Group) || strings.ContainsFunc(r.Group, isControl) || seen[r.Group] {
			return fmt.Errorf("%w: a group rule needs a group, once", ErrInvalidProvider)
		}
		if r.Role != RoleMember && r.Role != RoleAdmin {
			return ErrInvalidRole
		}
		seen[r.Group] = true
	}
	return nil
}

// SetOIDCDerivedRole gives an account the role a provider's group → role map derived at
// a sign-in through it, and records the change (AuditRoleDerived, with the group that
// decided, "" for the provider's default role). An owner keeps their role: ownership is
// given and taken by owners only. It returns the account as it is now.
func (s *Store) SetOIDCDerivedRole(ctx context.Context, p OIDCProvider, accountID, role, group string) (Account, error) {
	if role != RoleMember && role != RoleAdmin {
		return Account{}, ErrInvalidRole
	}
	var out Account
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := s.lockInstanceAccounts(tx, p.InstanceID); err != nil {
			return err
		}
		target, err := instanceAccount(tx, p.InstanceID, accountID)
		if err != nil {
			return err
		}
		out = target.account()
		if target.Role == role || target.Role == RoleOwner {
			return nil
		}
		from := target.Role
		if err := s.updateRole(tx, target, role); err != nil {
			return err
		}
		target.Role, target.UpdatedAt = role, s.now().UTC()
		out = target.account()
		detail := map[string]string{"account": target.ID, "name": target.Name, "from": from, "to": role, "provider": p.Name}
		if group != "" {
			detail["group"] = group
		}
		return s.audit(tx, AuditEvent{InstanceID: p.InstanceID, AccountID: target.ID, Kind: AuditRoleDerived, Detail: detail})
	})
	if err != nil {
		return Account{}, roleError("derive role of account "+accountID, err)
	}
	return out, nil
}

// roleMapDetail is a group → role map in the audit log: group=role, separated by commas;
// "-" for none.
func roleMapDetail(rules []RoleRule) string {
	if len(rules) == 0 {
		return "-"
	}
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = r.Group + "=" + r.Role
	}
	return strings.Join(parts, ", ")
}
