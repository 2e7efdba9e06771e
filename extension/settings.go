package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
)

// ErrDomainNotAllowed is returned for an e-mail address outside the instance's allowed
// domains.
var ErrDomainNotAllowed = errors.New("extension: e-mail domain not allowed in this instance")

// ErrPasswordLoginOff is returned for what only serves password sign-in (an invitation,
// a reset link, accepting or using one) while the instance's password sign-in is off.
var ErrPasswordLoginOff = errors.New("extension: password sign-in is off in this instance")

// ErrInvalidDomain is returned by ParseAllowedDomains for an entry that is not a domain name.
var ErrInvalidDomain = errors.New("allowed domains: not a domain name")

// maxAllowedDomains bounds the allowed-domains list of an instance.
const maxAllowedDomains = 100

// InstanceSettings are an instance's sign-in settings.
type InstanceSettings struct {
	// DefaultRole is the role of platform users provisioned after the instance's first
	// account (the "template" role).
	DefaultRole string
	// AllowedDomains are the ASCII domains that invitations and provisioning accept
	// e-mail addresses of; empty: any.
	AllowedDomains []string
	// PasswordLogin says whether local accounts may sign in with their password.
	PasswordLogin bool
	// Stored is false for the defaults of an instance whose settings were never changed;
	// the caller may then apply its own default role (EXT_DEFAULT_ROLE).
	Stored    bool
	UpdatedAt time.Time
}

// DefaultInstanceSettings are the settings of an instance until an owner changes them:
// new platform users are members, any domain, password sign-in on (local users exist
// only by invitation, so on costs nothing until someone invites).
func DefaultInstanceSettings() InstanceSettings {
	return InstanceSettings{DefaultRole: RoleMember, PasswordLogin: true}
}

// AllowsEmail reports whether a normalised address is in an allowed domain.
func (st InstanceSettings) AllowsEmail(normalized string) bool {
	return len(st.AllowedDomains) == 0 || slices.Contains(st.AllowedDomains, EmailDomain(normalized))
}

// settingsRow maps the instance_settings table.
type settingsRow struct {
	InstanceID     string   `gorm:"primaryKey"`
	DefaultRole    string   //
	AllowedDomains []string `gorm:"serializer:json"`
	PasswordLogin  bool
	UpdatedAt      time.Time
}

func (settingsRow) TableName() string { return "instance_settings" }

// ParseAllowedDomains reads a comma- or space-separated list of domains (the settings
// form's field) into their ASCII lower-case forms, without duplicates, in the order given.
// An empty list means any domain.
func ParseAllowedDomains(raw string) ([]string, error) {
	if len(raw) > maxAllowedDomains*64 {
		return nil, errors.New("allowed domains: list too long")
	}
	fields := strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
	var out []string
	for _, f := range fields {
		d, err := normalizeDomain(strings.TrimPrefix(f, "@"))
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) > maxAllowedDomains {
		return nil, fmt.Errorf("allowed domains: more than %d", maxAllowedDomains)
	}
	return out, nil
}

// normalizeDomain returns a domain as NormalizeEmail writes it in an address.
func normalizeDomain(d string) (string, error) {
	ascii, ok := asciiDomain(d)
	if !ok {
		return "", ErrInvalidDomain
	}
	return ascii, nil
}

// InstanceSettings returns an instance's sign-in settings, the defaults when none were
// stored.
func (s *Store) InstanceSettings(ctx context.Context, instanceID string) (InstanceSettings, error) {
	return s.instanceSettings(s.db.WithContext(ctx), instanceID)
}

func (s *Store) instanceSettings(db *gorm.DB, instanceID string) (InstanceSettings, error) {
	var rows []settingsRow
	if err := db.Where("instance_id = ?", instanceID).Limit(1).Find(&rows).Error; err != nil {
		return InstanceSettings{}, fmt.Errorf("load settings of instance %s: %w", instanceID, translate(err))
	}
	if len(rows) == 0 {
		return DefaultInstanceSettings(), nil
	}
	r := rows[0]
	return InstanceSettings{DefaultRole: r.DefaultRole, AllowedDomains: r.AllowedDomains, PasswordLogin: r.PasswordLogin,
		Stored: true, UpdatedAt: r.UpdatedAt.UTC()}, nil
}

// UpdateInstanceSettings stores an instance's sign-in settings on behalf of actorID, who
// must be an owner (ErrForbidden), and records the change in the audit log. Turning
// password sign-in off ends every session of the instance's local accounts in the same
// transaction (the actor's too, if it is one). The domains
// must be in the form ParseAllowedDomains returns.
func (s *Store) UpdateInstanceSettings(ctx context.Context, instanceID, actorID string, set InstanceSettings) (InstanceSettings, error) {
	if !ValidRole(set.DefaultRole) {
		return InstanceSettings{}, ErrInvalidRole
	}
	domains := []string{}
	for _, d := range set.AllowedDomains {
		n, err := normalizeDomain(d)
		if err != nil {
			return InstanceSettings{}, err
		}
		if !slices.Contains(domains, n) {
			domains = append(domains, n)
		}
	}
	if len(domains) > maxAllowedDomains {
		return InstanceSettings{}, fmt.Errorf("allowed domains: more than %d", maxAllowedDomains)
	}
	var out InstanceSettings
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		actor, err := s.checkActor(tx, instanceID, actorID, CanManageSettings)
		if err != nil {
			return err
		}
		before, err := s.instanceSettings(tx, instanceID)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		domainsJSON, err := json.Marshal(domains)
		if err != nil {
			return err
		}
		// Raw, as GORM's upsert would stamp updated_at with the wall clock.
		err = tx.Exec(`INSERT INTO instance_settings (instance_id, default_role, allowed_domains, password_login, updated_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (instance_id) DO UPDATE SET default_role = excluded.default_role, allowed_domains = excluded.allowed_domains,
	password_login = excluded.password_login, updated_at = excluded.updated_at`,
			instanceID, set.DefaultRole, string(domainsJSON), set.PasswordLogin, now).Error
		if err != nil {
			return translateRef(err)
		}
		// Turning password sign-in off ends the sessions of the instance's local accounts
		// with it: they signed in with a password, which no longer lets anyone in. An
		// account without a password (made through an OpenID Connect provider) signed in
		// there, and keeps its sessions.
		if before.PasswordLogin && !set.PasswordLogin {
			if err := tx.Exec(`DELETE FROM sessions WHERE instance_id = ? AND account_id IN
	(SELECT id FROM accounts WHERE instance_id = ? AND platform_user_id IS NULL AND password_hash <> '')`, instanceID, instanceID).Error; err != nil {
				return translate(err)
			}
		}
		out = InstanceSettings{DefaultRole: set.DefaultRole, AllowedDomains: domains, PasswordLogin: set.PasswordLogin, Stored: true, UpdatedAt: now}
		detail := map[string]string{
			"default_role":    before.DefaultRole + " → " + out.DefaultRole,
			"allowed_domains": strings.Join(before.AllowedDomains, ",") + " → " + strings.Join(domains, ","),
			"password_login":  fmt.Sprint(before.PasswordLogin) + " → " + fmt.Sprint(out.PasswordLogin),
		}
		if len(detail["allowed_domains"]) > 900 {
			detail["allowed_domains"] = fmt.Sprintf("%d → %d domains", len(before.AllowedDomains), len(domains))
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditSettingsChanged, Detail: detail})
	})
	if err != nil {
		return InstanceSettings{}, roleError("update settings of instance "+instanceID, err)
	}
	return out, nil
}
