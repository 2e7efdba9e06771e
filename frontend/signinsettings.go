package frontend

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The sign-in settings page (GET, POST /app/{instanceId}/settings/sign-in), for owners
// only: the role of control panel users who sign in for the first time, the e-mail
// domains invitations and those users must have, and whether local accounts may sign in
// with a password.

const pageSettings = "settings"

// SignInSettingsPath is the sign-in settings page of an instance.
func SignInSettingsPath(instanceID string) string { return AppPath(instanceID) + "/settings/sign-in" }

// settingsView is what the sign-in settings page shows.
type settingsView struct {
	Tabs           tabsView
	DefaultRole    string
	Roles          []string // the roles the form offers
	AllowedDomains string   // as typed, or the stored list joined with ", "
	PasswordLogin  bool
	Saved          bool
	// Problem is a copy key of what is wrong with the field named by Field.
	Problem, Field string
	// PasswordOnly are the names of the local accounts: they have no other way in than
	// their password, so turning password sign-in off locks them out.
	PasswordOnly []string
	// PasswordOff: password sign-in is off now (as stored), and PasswordOnly are locked out.
	PasswordOff bool
	// Providers are the instance's OpenID Connect providers; Templates those that can be
	// added; CallbackURL the redirect URI every provider registers.
	Providers []extension.OIDCProvider
	// Operator are the operator's providers (EXT_OIDC_PROVIDERS_FILE), shown, not changed.
	Operator    []operatorProviderView
	Templates   []extension.OIDCTemplate
	CallbackURL string
	// ProviderSaved is the provider just saved, whose issuer answered as itself;
	// ProviderDone confirms a provider disabled, enabled or deleted.
	ProviderSaved *extension.OIDCProvider
	ProviderDone  string
	// RetentionDays is how many whole days a removed instance's data is kept (the data
	// card says so); 0 for less than two.
	RetentionDays int
}

// settingsForm is the settings form's input.
type settingsForm struct {
	DefaultRole    string
	AllowedDomains []string
	DomainsText    string
	PasswordLogin  bool
}

// maxDomainsField bounds the allowed-domains field, in bytes.
const maxDomainsField = 8 * 1024

// parseSettingsForm reads the settings form strictly: default_role is member or admin (or
// owner, when that is the role now, so an unchanged form saves), allowed_domains a list
// of domains separated by commas or spaces, password_login "on" or absent; each field at
// most once. field and problem name what is wrong, problem a copy key.
func parseSettingsForm(form url.Values, currentRole string) (p settingsForm, field, problem string) {
	for _, k := range []string{"default_role", "allowed_domains", "password_login"} {
		if len(form[k]) > 1 {
			return p, k, "settings.bad_form"
		}
	}
	p.DefaultRole = form.Get("default_role")
	p.DomainsText = form.Get("allowed_domains")
	if len(p.DomainsText) > maxDomainsField {
		p.DomainsText = p.DomainsText[:maxDomainsField]
		return p, "allowed_domains", "settings.domains_too_many"
	}
	switch form.Get("password_login") {
	case "on":
		p.PasswordLogin = true
	case "":
	default:
		return p, "password_login", "settings.bad_form"
	}
	if p.DefaultRole != extension.RoleMember && p.DefaultRole != extension.RoleAdmin &&
		(p.DefaultRole != extension.RoleOwner || currentRole != extension.RoleOwner) {
		return p, "default_role", "settings.bad_role"
	}
	domains, err := extension.ParseAllowedDomains(p.DomainsText)
	if err != nil {
		if errors.Is(err, extension.ErrInvalidDomain) {
			return p, "allowed_domains", "settings.bad_domain"
		}
		return p, "allowed_domains", "settings.domains_too_many"
	}
	p.AllowedDomains = domains
	return p, "", ""
}

// effectiveRole is the role a new control panel user gets: the instance's once an owner
// saved the settings, the operator's default (EXT_DEFAULT_ROLE) before.
func (f *Frontend) effectiveRole(st extension.InstanceSettings) string {
	if st.Stored || f.defaultRole == "" {
		return st.DefaultRole
	}
	return f.defaultRole
}

// SignInSettings serves GET /app/{instanceId}/settings/sign-in.
func (f *Frontend) SignInSettings(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	if !extension.CanManageSettings(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	}
	st, err := f.store.InstanceSettings(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "load settings", err)
	}
	v := settingsView{DefaultRole: f.effectiveRole(st), AllowedDomains: strings.Join(st.AllowedDomains, ", "),
		PasswordLogin: st.PasswordLogin, Saved: c.QueryParam("saved") == "1"}
	return f.renderSettings(c, http.StatusOK, v, st)
}

func (f *Frontend) renderSettings(c echo.Context, status int, v settingsView, stored extension.InstanceSettings) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	v.Tabs = tabsFor(s, tabSettings)
	// Whole days of the grace period: 0 (under a day) says "within a day", 1 "one day".
	v.RetentionDays = int(f.retention / (24 * time.Hour))
	v.Roles = []string{extension.RoleMember, extension.RoleAdmin}
	if f.effectiveRole(stored) == extension.RoleOwner {
		v.Roles = append(v.Roles, extension.RoleOwner)
	}
	accounts, err := f.store.Accounts(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "list accounts", err)
	}
	linked, err := f.store.AccountsWithIdentities(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "list identities", err)
	}
	for _, a := range accounts {
		if a.Local() && !linked[a.ID] {
			v.PasswordOnly = append(v.PasswordOnly, a.DisplayName())
		}
	}
	v.PasswordOff = !stored.PasswordLogin && len(v.PasswordOnly) > 0
	for _, p := range f.store.OperatorOIDCProviders(s.Instance.ID) {
		v.Operator = append(v.Operator, operatorProviderView{Name: p.Name, Issuer: p.Issuer, AutoProvision: p.AutoProvision,
			Domains: strings.Join(p.AllowedDomains, ", ")})
	}
	if v.Providers, err = f.store.OIDCProviders(ctx, s.Instance.ID); err != nil {
		return f.internal(c, "list providers", err)
	}
	v.Templates, v.CallbackURL = extension.OIDCTemplates(), f.callbackURL()
	for i, p := range v.Providers {
		if p.ID == c.QueryParam("provider_saved") {
			v.ProviderSaved = &v.Providers[i]
		}
	}
	switch d := c.QueryParam("provider_done"); d {
	case "disable", "enable", "delete":
		v.ProviderDone = d
	}
	if status == http.StatusOK {
		return f.renderReloadable(c, status, pageSettings, v)
	}
	return f.Render(c, status, pageSettings, v)
}

// SaveSignInSettings serves POST /app/{instanceId}/settings/sign-in with the fields
// default_role, allowed_domains and password_login. Bad input is the form again with
// 400, what was typed, and the stored settings unchanged; success 303 back to the page,
// which confirms it.
func (f *Frontend) SaveSignInSettings(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	if !extension.CanManageSettings(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	}
	stored, err := f.store.InstanceSettings(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "load settings", err)
	}
	form, ok := formValues(c)
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	p, field, problem := parseSettingsForm(form, f.effectiveRole(stored))
	if problem != "" {
		role := p.DefaultRole
		if field == "default_role" || field == "" {
			role = f.effectiveRole(stored)
		}
		return f.renderSettings(c, http.StatusBadRequest, settingsView{DefaultRole: role, AllowedDomains: p.DomainsText,
			PasswordLogin: p.PasswordLogin, Problem: problem, Field: field}, stored)
	}
	_, err = f.store.UpdateInstanceSettings(ctx, s.Instance.ID, s.Account.ID, extension.InstanceSettings{
		DefaultRole: p.DefaultRole, AllowedDomains: p.AllowedDomains, PasswordLogin: p.PasswordLogin})
	switch {
	case errors.Is(err, extension.ErrForbidden):
		// Demoted while the form was open.
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	case err != nil:
		return f.internal(c, "save settings", err)
	}
	f.logger.InfoContext(ctx, "sign-in settings changed", "instance_id", s.Instance.ID, "account_id", s.Account.ID)
	return c.Redirect(http.StatusSeeOther, SignInSettingsPath(s.Instance.ID)+"?saved=1")
}

// operatorProviderView is one of the operator's providers on the settings page: whom it
// lets in.
type operatorProviderView struct {
	Name, Issuer, Domains string
	AutoProvision         bool
}
