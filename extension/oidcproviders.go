package extension

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Audit kinds of sign-in with OpenID Connect providers.
const (
	AuditOIDCProviderAdded   = "oidc_provider.added"
	AuditOIDCProviderChanged = "oidc_provider.changed"
	AuditOIDCProviderDeleted = "oidc_provider.deleted"
	AuditIdentityLinked      = "identity.linked"
	AuditIdentityUnlinked    = "identity.unlinked"
	AuditAccountProvisioned  = "account.provisioned"
	AuditSignInRefused       = "sign_in.refused"
)

// Errors of OpenID Connect providers and identities.
var (
	// ErrInvalidProvider is returned for provider settings that cannot be stored; the
	// form checks each field first, so this is a last line.
	ErrInvalidProvider = errors.New("extension: invalid OpenID Connect provider settings")
	// ErrIdentityLinked is returned when an identity at a provider is linked to another
	// account already.
	ErrIdentityLinked = errors.New("extension: this identity is linked to another account")
	// ErrLastWayIn is returned for removing an account's last way to sign in.
	ErrLastWayIn = errors.New("extension: the account's last way to sign in")
	// ErrStateUsed is returned for a sign-in state that came back before.
	ErrStateUsed = errors.New("extension: sign-in state used already")
)

// OIDCProvider is an instance's OpenID Connect provider: the instance's own values only
// (OIDCTemplate has the rest). Its client secret is not part of it: OIDCClientSecret opens
// it for the token request, and only SaveOIDCProvider takes one.
type OIDCProvider struct {
	ID, InstanceID  string
	Template        string // a key of OIDCTemplates
	Name            string
	Issuer          string
	ClientID        string
	HasClientSecret bool
	Scopes          []string
	// AllowedDomains: only verified addresses in these domains sign in; empty: any.
	AllowedDomains []string
	// RequiredClaim and RequiredValues: at least one value must be in the claim; an empty
	// RequiredClaim restricts nothing.
	RequiredClaim  string
	RequiredValues []string
	DefaultRole    string // member or admin: the role of accounts made at first sign-in
	AutoProvision  bool   // unknown users with an allowed, verified address get an account
	// RoleMap, when not empty, derives the role from the template's groups claim at
	// provisioning and at every sign-in (DerivedRole; no match: DefaultRole); an owner's
	// role is never changed.
	RoleMap []RoleRule
	// Endpoints: a custom provider's own endpoints and extra parameters (zero: discovery's).
	Endpoints OIDCEndpoints
	// Operator: one of the operator's providers (EXT_OIDC_PROVIDERS_FILE), not the
	// instance's: its settings are not the owners' to change.
	Operator  bool
	Enabled   bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

// TemplateInfo returns the provider's template; an unknown key (a template dropped by a later
// release) is treated as custom.
func (p OIDCProvider) TemplateInfo() OIDCTemplate {
	if t, ok := OIDCTemplateByKey(p.Template); ok {
		return t
	}
	t, _ := OIDCTemplateByKey("custom")
	return t
}

// AllowsDomain reports whether a normalised, verified address may sign in through the
// provider.
func (p OIDCProvider) AllowsDomain(normalized string) bool {
	return len(p.AllowedDomains) == 0 || slices.Contains(p.AllowedDomains, EmailDomain(normalized))
}

// providerRow maps the oidc_providers table.
type providerRow struct {
	ID                 string `gorm:"primaryKey"`
	InstanceID         string
	Template           string
	Name               string
	Issuer             string
	ClientID           string
	SealedClientSecret string
	Scopes             []string `gorm:"serializer:json"`
	AllowedDomains     []string `gorm:"serializer:json"`
	RequiredClaim      string
	RequiredValues     []string `gorm:"serializer:json"`
	DefaultRole        string
	AutoProvision      bool
	RoleMap            []RoleRule    `gorm:"serializer:json"`
	Endpoints          OIDCEndpoints `gorm:"serializer:json"`
	Enabled            bool
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

func (providerRow) TableName() string { return "oidc_providers" }

func (r providerRow) provider() OIDCProvider {
	return OIDCProvider{ID: r.ID, InstanceID: r.InstanceID, Template: r.Template, Name: r.Name, Issuer: r.Issuer,
		ClientID: r.ClientID, HasClientSecret: r.SealedClientSecret != "", Scopes: r.Scopes, AllowedDomains: r.AllowedDomains,
		RequiredClaim: r.RequiredClaim, RequiredValues: r.RequiredValues, DefaultRole: r.DefaultRole,
		AutoProvision: r.AutoProvision, RoleMap: r.RoleMap, Endpoints: r.Endpoints, Enabled: r.Enabled, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// clientSecretAAD binds a sealed client secret to its provider's row.
func clientSecretAAD(providerID string) string { return "oidc-client-secret:" + providerID }

// OIDCProviders lists an instance's providers by name.
func (s *Store) OIDCProviders(ctx context.Context, instanceID string) ([]OIDCProvider, error) {
	var rows []providerRow
	if err := s.db.WithContext(ctx).Where("instance_id = ?", instanceID).Order("name, id").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list providers of instance %s: %w", instanceID, translate(err))
	}
	out := make([]OIDCProvider, len(rows))
	for i, r := range rows {
		out[i] = r.provider()
	}
	return out, nil
}

// OIDCProviderByID returns a provider of an instance, or one of the operator's (Operator
// set); ErrNotFound when it is neither.
func (s *Store) OIDCProviderByID(ctx context.Context, instanceID, id string) (OIDCProvider, error) {
	var row providerRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ? AND instance_id = ?", id, instanceID).Error; err != nil {
		if op, ok := s.operatorProvider(instanceID, id); ok && errors.Is(translate(err), ErrNotFound) {
			return op.in(instanceID), nil
		}
		return OIDCProvider{}, roleError("load provider "+id, translate(err))
	}
	return row.provider(), nil
}

// OIDCClientSecret opens a provider's client secret ("" for a public client).
func (s *Store) OIDCClientSecret(ctx context.Context, p OIDCProvider) (Secret, error) {
	if p.Operator {
		op, ok := s.operatorProvider(p.InstanceID, p.ID)
		if !ok {
			return "", ErrNotFound
		}
		return op.ClientSecret, nil
	}
	var sealed []string
	if err := s.db.WithContext(ctx).Raw(`SELECT sealed_client_secret FROM oidc_providers WHERE id = ? AND instance_id = ?`,
		p.ID, p.InstanceID).Scan(&sealed).Error; err != nil {
		return "", fmt.Errorf("load client secret of provider %s: %w", p.ID, translate(err))
	}
	if len(sealed) == 0 {
		return "", ErrNotFound
	}
	if sealed[0] == "" {
		return "", nil
	}
	secret, err := s.keys.Open(sealed[0], clientSecretAAD(p.ID))
	if err != nil {
		return "", fmt.Errorf("open client secret of provider %s: %w", p.ID, err)
	}
	return secret, nil
}

// checkProvider checks the values SaveOIDCProvider stores.
func checkProvider(p OIDCProvider) error {
	if _, ok := OIDCTemplateByKey(p.Template); !ok {
		return fmt.Errorf("%w: unknown template %q", ErrInvalidProvider, p.Template)
	}
	textOK := func(v string, max int) bool {
		return v != "" && len(v) <= max && utf8.ValidString(v) && !strings.ContainsFunc(v, isControl)
	}
	switch {
	case !textOK(p.Name, 100), !textOK(p.Issuer, 2048), !textOK(p.ClientID, 1024):
		return fmt.Errorf("%w: name, issuer and client id must be short text", ErrInvalidProvider)
	case !slices.Contains(p.Scopes, "openid") || len(p.Scopes) > 20:
		return fmt.Errorf("%w: scopes must include openid", ErrInvalidProvider)
	case p.DefaultRole != RoleMember && p.DefaultRole != RoleAdmin:
		return ErrInvalidRole
	case len(p.RequiredClaim) > 200 || len(p.RequiredValues) > 50 || (p.RequiredClaim != "" && len(p.RequiredValues) == 0):
		return fmt.Errorf("%w: a required claim needs values", ErrInvalidProvider)
	case len(p.AllowedDomains) > maxAllowedDomains:
		return fmt.Errorf("%w: too many domains", ErrInvalidProvider)
	case len(p.RoleMap) > 0 && p.TemplateInfo().GroupsClaim == "":
		return fmt.Errorf("%w: the template's provider sends no groups", ErrInvalidProvider)
	case p.AutoProvision && len(p.AllowedDomains) == 0 && p.RequiredClaim == "":
		return fmt.Errorf("%w: accounts for everyone need allowed domains or a required claim", ErrInvalidProvider)
	}
	if err := checkEndpoints(p.Template, p.Endpoints); err != nil {
		return err
	}
	return checkRoleMap(p.RoleMap)
}

// SaveOIDCProvider adds a provider to an instance (p.ID empty) or changes one, on behalf
// of an owner (ErrForbidden), and records it in the audit log. The client secret is
// sealed and replaced only when setSecret is true (an edit that leaves the field empty
// keeps it); setSecret with an empty secret makes a public client. An edit that changes
// the issuer or the template disconnects every identity linked through the provider.
func (s *Store) SaveOIDCProvider(ctx context.Context, actorID string, p OIDCProvider, secret Secret, setSecret bool) (OIDCProvider, error) {
	if err := checkProvider(p); err != nil {
		return OIDCProvider{}, err
	}
	adding := p.ID == ""
	if adding {
		p.ID = uuid.NewString()
	}
	sealed := ""
	if setSecret && secret != "" {
		var err error
		if sealed, err = s.keys.Seal(secret, clientSecretAAD(p.ID)); err != nil {
			return OIDCProvider{}, fmt.Errorf("seal client secret: %w", err)
		}
	}
	var out OIDCProvider
	var dropped int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		dropped = 0
		actor, err := s.checkActor(tx, p.InstanceID, actorID, CanManageSettings)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		row := providerRow{ID: p.ID, InstanceID: p.InstanceID, Template: p.Template, Name: p.Name, Issuer: p.Issuer,
			ClientID: p.ClientID, SealedClientSecret: sealed, Scopes: nonNil(p.Scopes), AllowedDomains: nonNil(p.AllowedDomains),
			RequiredClaim: p.RequiredClaim, RequiredValues: nonNil(p.RequiredValues), DefaultRole: p.DefaultRole,
			AutoProvision: p.AutoProvision, RoleMap: nonNilRules(p.RoleMap), Endpoints: p.Endpoints, Enabled: p.Enabled, CreatedAt: now, UpdatedAt: now}
		kind := AuditOIDCProviderAdded
		if adding {
			if err := tx.Create(&row).Error; err != nil {
				return translateRef(err)
			}
		} else {
			kind = AuditOIDCProviderChanged
			var before providerRow
			if err := tx.Take(&before, "id = ? AND instance_id = ?", p.ID, p.InstanceID).Error; err != nil {
				return translate(err)
			}
			row.CreatedAt = before.CreatedAt
			if !setSecret {
				row.SealedClientSecret = before.SealedClientSecret
			}
			if err := tx.Save(&row).Error; err != nil {
				return translate(err)
			}
			// A subject is unique only at its issuer: kept identities would let a user of the
			// new issuer with a colliding subject into another's account. They connect again.
			if NormalizeIssuer(before.Issuer) != NormalizeIssuer(row.Issuer) || before.Template != row.Template {
				res := tx.Exec(`DELETE FROM oidc_identities WHERE provider_id = ?`, row.ID)
				if res.Error != nil {
					return translate(res.Error)
				}
				dropped = res.RowsAffected
			}
		}
		out = row.provider()
		detail := map[string]string{"provider": row.ID, "name": row.Name, "issuer": row.Issuer, "template": row.Template,
			"enabled": fmt.Sprint(row.Enabled)}
		if len(row.RoleMap) > 0 || !adding {
			detail["role_map"] = roleMapDetail(row.RoleMap)
		}
		if dropped > 0 {
			detail["connections_dropped"] = fmt.Sprint(dropped)
		}
		if setSecret && !adding {
			detail["client_secret"] = "changed" // that it changed, never what it is
		}
		return s.audit(tx, AuditEvent{InstanceID: p.InstanceID, AccountID: actor, Kind: kind, Detail: detail})
	})
	if err != nil {
		return OIDCProvider{}, roleError("save provider", err)
	}
	return out, nil
}

func nonNilRules(v []RoleRule) []RoleRule {
	if v == nil {
		return []RoleRule{}
	}
	return v
}

// NormalizeIssuer is an issuer URL as compared: scheme and host in lower case, without a
// trailing slash.
func NormalizeIssuer(issuer string) string {
	u, err := url.Parse(strings.TrimSpace(issuer))
	if err != nil {
		return issuer
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return strings.TrimSuffix(u.String(), "/")
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// SetOIDCProviderEnabled turns a provider on or off, on behalf of an owner.
func (s *Store) SetOIDCProviderEnabled(ctx context.Context, instanceID, actorID, id string, enabled bool) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		actor, err := s.checkActor(tx, instanceID, actorID, CanManageSettings)
		if err != nil {
			return err
		}
		var row providerRow
		if err := tx.Take(&row, "id = ? AND instance_id = ?", id, instanceID).Error; err != nil {
			return translate(err)
		}
		if err := tx.Exec(`UPDATE oidc_providers SET enabled = ?, updated_at = ? WHERE id = ?`, enabled, s.now().UTC(), id).Error; err != nil {
			return translate(err)
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditOIDCProviderChanged,
			Detail: map[string]string{"provider": id, "name": row.Name, "enabled": fmt.Sprint(enabled)}})
	})
	return roleError("enable provider "+id, err)
}

// DeleteOIDCProvider deletes a provider and every identity linked through it, on behalf
// of an owner.
func (s *Store) DeleteOIDCProvider(ctx context.Context, instanceID, actorID, id string) error {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		actor, err := s.checkActor(tx, instanceID, actorID, CanManageSettings)
		if err != nil {
			return err
		}
		var row providerRow
		if err := tx.Take(&row, "id = ? AND instance_id = ?", id, instanceID).Error; err != nil {
			return translate(err)
		}
		// The identities first: SQLite's foreign keys would cascade too, but only with the
		// pragma on, and an operator's shell may not have it.
		if err := tx.Exec(`DELETE FROM oidc_identities WHERE provider_id = ?`, id).Error; err != nil {
			return translate(err)
		}
		if err := tx.Exec(`DELETE FROM oidc_providers WHERE id = ?`, id).Error; err != nil {
			return translate(err)
		}
		return s.audit(tx, AuditEvent{InstanceID: instanceID, AccountID: actor, Kind: AuditOIDCProviderDeleted,
			Detail: map[string]string{"provider": id, "name": row.Name, "issuer": row.Issuer}})
	})
	return roleError("delete provider "+id, err)
}

// hasEnabledProvider reports whether the instance has an enabled provider: a way in
// without a password.
func hasEnabledProvider(tx *gorm.DB, instanceID string) (bool, error) {
	var n int64
	if err := tx.Model(&providerRow{}).Where("instance_id = ? AND enabled = ?", instanceID, true).Count(&n).Error; err != nil {
		return false, translate(err)
	}
	return n > 0, nil
}

// HasEnabledOIDCProvider reports whether the instance has an enabled provider, so people
// can be invited while password sign-in is off.
func (s *Store) HasEnabledOIDCProvider(ctx context.Context, instanceID string) (bool, error) {
	ok, err := hasEnabledProvider(s.db.WithContext(ctx), instanceID)
	if err != nil {
		return false, fmt.Errorf("providers of instance %s: %w", instanceID, err)
	}
	return ok, nil
}
