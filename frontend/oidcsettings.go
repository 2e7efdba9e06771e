package frontend

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The OpenID Connect providers of an instance, on the sign-in settings page (owners only):
// POST /app/{instanceId}/settings/sign-in/providers adds one with the fields template,
// name, issuer, client_id, client_secret, scopes, allowed_domains, required_claim,
// required_values, default_role, role_map and auto_provision (scripts rely on these
// names); the
// provider's own page edits it, and three buttons disable, enable or delete it. Saving
// fetches the issuer's discovery document first: a provider is stored only when its
// issuer answers as that issuer.

const pageProvider = "provider"

// ProvidersPath is where providers are added.
func ProvidersPath(instanceID string) string { return SignInSettingsPath(instanceID) + "/providers" }

// ProviderPath is a provider's own page in the settings.
func ProviderPath(instanceID, providerID string) string {
	return ProvidersPath(instanceID) + "/" + providerID
}

// defaultScopes are the scopes of a provider whose form leaves the field empty.
const defaultScopes = "openid email profile"

// providerForm is the provider form as typed, shown again after a problem; never the
// client secret.
type providerForm struct {
	ID, Template, Name, Issuer, ClientID, Scopes, AllowedDomains, RequiredClaim, RequiredValues, DefaultRole string
	RoleMap                                                                                                  string // group=role, one a line or separated by commas
	// A custom provider's own endpoints, and its extra parameters as a query (a=1&b=2).
	AuthorizationEndpoint, TokenEndpoint, UserinfoEndpoint, ExtraParams string
	AutoProvision                                                       bool
	Enabled                                                             bool
	HasSecret                                                           bool // editing: a secret is stored
}

// providerView is what a provider's page shows.
type providerView struct {
	Tabs         tabsView
	Form         providerForm
	TemplateName string
	CallbackURL  string
	GroupsClaim  string // the claim the template's provider names groups in, for the hint
	// Problem is a copy key of what is wrong with the field named by Field; Found is the
	// issuer the discovery document names, when it is not the one typed.
	Problem, Field, Found string
}

// parsedProvider is a provider form's input, checked.
type parsedProvider struct {
	extension.OIDCProvider
	Secret    extension.Secret
	SetSecret bool
}

// providerFields are the form's fields; each may come once.
var providerFields = []string{"template", "name", "issuer", "client_id", "client_secret", "scopes", "allowed_domains",
	"required_claim", "required_values", "default_role", "role_map", "auto_provision",
	"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "extra_params"}

// parseProviderForm reads the provider form strictly. Editing, an empty client_secret
// keeps the stored one. field and problem name what is wrong, problem a copy key.
func parseProviderForm(form url.Values, editing bool) (p parsedProvider, typed providerForm, field, problem string) {
	for _, k := range providerFields {
		if len(form[k]) > 1 {
			return p, typed, k, "provider.bad_form"
		}
	}
	get := func(k string) string { return strings.TrimSpace(form.Get(k)) }
	typed = providerForm{Template: get("template"), Name: get("name"), Issuer: get("issuer"), ClientID: get("client_id"),
		Scopes: get("scopes"), AllowedDomains: get("allowed_domains"), RequiredClaim: get("required_claim"),
		RequiredValues: get("required_values"), DefaultRole: get("default_role"), RoleMap: get("role_map"),
		AutoProvision: form.Get("auto_provision") == "on", AuthorizationEndpoint: get("authorization_endpoint"),
		TokenEndpoint: get("token_endpoint"), UserinfoEndpoint: get("userinfo_endpoint"), ExtraParams: get("extra_params")}
	tmpl, ok := extension.OIDCTemplateByKey(typed.Template)
	if !ok {
		return p, typed, "template", "provider.bad_template"
	}
	if typed.Name == "" {
		typed.Name = tmpl.Label
	}
	if !shortText(typed.Name, 100) {
		return p, typed, "name", "provider.bad_name"
	}
	if problem := checkIssuer(typed.Issuer); problem != "" {
		return p, typed, "issuer", problem
	}
	if !shortText(typed.ClientID, 1024) {
		return p, typed, "client_id", "provider.bad_client_id"
	}
	secret := form.Get("client_secret")
	if len(secret) > 4096 || strings.ContainsFunc(secret, isControlRune) {
		return p, typed, "client_secret", "provider.bad_secret"
	}
	if typed.Scopes == "" {
		typed.Scopes = defaultScopes
	}
	scopes := strings.Fields(typed.Scopes)
	if len(scopes) > 20 || !validScopes(scopes) {
		return p, typed, "scopes", "provider.bad_scopes"
	}
	hasOpenID := false
	for _, s := range scopes {
		hasOpenID = hasOpenID || s == "openid"
	}
	if !hasOpenID {
		return p, typed, "scopes", "provider.no_openid"
	}
	if len(typed.AllowedDomains) > maxDomainsField {
		return p, typed, "allowed_domains", "settings.domains_too_many"
	}
	domains, err := extension.ParseAllowedDomains(typed.AllowedDomains)
	if errors.Is(err, extension.ErrInvalidDomain) {
		return p, typed, "allowed_domains", "settings.bad_domain"
	} else if err != nil {
		return p, typed, "allowed_domains", "settings.domains_too_many"
	}
	if typed.RequiredClaim != "" && !shortText(typed.RequiredClaim, 200) {
		return p, typed, "required_claim", "provider.bad_claim"
	}
	var values []string
	for _, v := range strings.Split(typed.RequiredValues, ",") {
		if v = strings.TrimSpace(v); v != "" {
			if !shortText(v, 200) {
				return p, typed, "required_values", "provider.bad_values"
			}
			values = append(values, v)
		}
	}
	switch {
	case len(values) > 50:
		return p, typed, "required_values", "provider.bad_values"
	case typed.RequiredClaim != "" && len(values) == 0:
		return p, typed, "required_values", "provider.values_missing"
	case typed.RequiredClaim == "" && len(values) > 0:
		return p, typed, "required_claim", "provider.claim_missing"
	}
	if typed.DefaultRole == "" {
		typed.DefaultRole = extension.RoleMember
	}
	if typed.DefaultRole != extension.RoleMember && typed.DefaultRole != extension.RoleAdmin {
		return p, typed, "default_role", "settings.bad_role"
	}
	roleMap, ok := parseRoleMap(typed.RoleMap)
	switch {
	case !ok:
		return p, typed, "role_map", "provider.bad_role_map"
	case len(roleMap) > 0 && tmpl.GroupsClaim == "":
		return p, typed, "role_map", "provider.role_map_no_groups"
	case tmpl.Key == "gitlab" && extension.NormalizeIssuer(typed.Issuer) == "https://gitlab.com" && slices.ContainsFunc(roleMap, func(r extension.RoleRule) bool {
		return !strings.Contains(r.Group, "/")
	}):
		// Anyone can create a top-level group on gitlab.com under a free name, and a
		// member who connects such an account would take the mapped role (found by review).
		return p, typed, "role_map", "provider.role_map_gitlab_path"
	}
	endpoints, field, problem := parseEndpoints(tmpl.Key, typed)
	if problem != "" {
		return p, typed, field, problem
	}
	switch form.Get("auto_provision") {
	case "", "on":
	default:
		return p, typed, "auto_provision", "provider.bad_form"
	}
	// Without a domain or a claim, anyone with an account at the service (at Google or
	// GitLab: anyone at all) would join the team.
	if typed.AutoProvision && len(domains) == 0 && typed.RequiredClaim == "" {
		return p, typed, "auto_provision", "provider.auto_provision_open"
	}
	p = parsedProvider{OIDCProvider: extension.OIDCProvider{Template: tmpl.Key, Name: typed.Name, Issuer: typed.Issuer,
		ClientID: typed.ClientID, Scopes: scopes, AllowedDomains: domains, RequiredClaim: typed.RequiredClaim,
		RequiredValues: values, DefaultRole: typed.DefaultRole, RoleMap: roleMap, Endpoints: endpoints, AutoProvision: typed.AutoProvision,
		Enabled: true},
		Secret: extension.Secret(secret), SetSecret: !editing || secret != ""}
	return p, typed, "", ""
}

// parseEndpoints reads a custom provider's own endpoints (https, or http on loopback, as
// the issuer) and its extra parameters (a query: a=1&b=2, without the parameters the
// sign-in sets itself); any other template has none.
func parseEndpoints(template string, typed providerForm) (e extension.OIDCEndpoints, field, problem string) {
	fields := []struct {
		name  string
		value string
		into  *string
	}{{"authorization_endpoint", typed.AuthorizationEndpoint, &e.Authorization}, {"token_endpoint", typed.TokenEndpoint, &e.Token},
		{"userinfo_endpoint", typed.UserinfoEndpoint, &e.Userinfo}}
	for _, f := range fields {
		if f.value == "" {
			continue
		}
		if template != "custom" {
			return e, f.name, "provider.endpoints_custom_only"
		}
		if problem := checkIssuer(f.value); problem != "" {
			return e, f.name, problem
		}
		*f.into = f.value
	}
	if typed.ExtraParams == "" {
		return e, "", ""
	}
	if template != "custom" {
		return e, "extra_params", "provider.endpoints_custom_only"
	}
	q, err := url.ParseQuery(typed.ExtraParams)
	if err != nil || len(typed.ExtraParams) > 4096 || len(q) > 20 {
		return e, "extra_params", "provider.bad_extra_params"
	}
	e.ExtraParams = map[string]string{}
	for k, vs := range q {
		if len(vs) != 1 || !shortText(k, 100) || len(vs[0]) > 1000 || strings.ContainsFunc(vs[0], isControlRune) ||
			slices.Contains(extension.ReservedAuthParams, k) {
			return e, "extra_params", "provider.bad_extra_params"
		}
		e.ExtraParams[k] = vs[0]
	}
	return e, "", ""
}

// extraParamsText is the extra parameters as the form shows them, a query.
func extraParamsText(params map[string]string) string {
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	return q.Encode()
}

// maxRoleMapField bounds the role_map field before it is split.
const maxRoleMapField = 16 << 10

// parseRoleMap reads a group → role map: rules group=role, one a line, or on one line
// separated by commas; role member or admin (owner is never given by a provider); a group
// comes once. ok is false for anything else. The group is everything before the last
// "=", so a group such as an LDAP name "cn=staff,ou=groups" works, one a line.
func parseRoleMap(text string) (rules []extension.RoleRule, ok bool) {
	if len(text) > maxRoleMapField {
		return nil, false
	}
	sep := func(r rune) bool { return r == '\n' || r == '\r' }
	if !strings.ContainsAny(text, "\r\n") {
		sep = func(r rune) bool { return r == ',' }
	}
	seen := map[string]bool{}
	for _, item := range strings.FieldsFunc(text, sep) {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		i := strings.LastIndexByte(item, '=')
		if i < 0 {
			return nil, false
		}
		group, role := strings.TrimSpace(item[:i]), strings.ToLower(strings.TrimSpace(item[i+1:]))
		if !shortText(group, 200) || seen[group] || (role != extension.RoleMember && role != extension.RoleAdmin) {
			return nil, false
		}
		seen[group] = true
		rules = append(rules, extension.RoleRule{Group: group, Role: role})
	}
	return rules, len(rules) <= 50
}

// roleMapText is a group → role map as the form shows it, each rule on its own line
// (ended by a newline, so a single rule whose group has a comma reads back as one rule).
func roleMapText(rules []extension.RoleRule) string {
	var b strings.Builder
	for _, r := range rules {
		b.WriteString(r.Group + "=" + r.Role + "\n")
	}
	return b.String()
}

// shortText reports whether v is 1 to max bytes of text without control characters.
func shortText(v string, max int) bool {
	return v != "" && len(v) <= max && utf8.ValidString(v) && !strings.ContainsFunc(v, isControlRune)
}

func isControlRune(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// validScopes reports whether every scope is a scope-token of RFC 6749 (printable ASCII
// without space, quote and backslash).
func validScopes(scopes []string) bool {
	for _, s := range scopes {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return false
			}
		}
	}
	return true
}

// checkIssuer returns a copy key of what is wrong with an issuer URL, or "": https, or
// http on a loopback address only (a provider on the same machine, for development); no
// query, fragment or user.
func checkIssuer(issuer string) string {
	if issuer == "" || len(issuer) > 2048 {
		return "provider.bad_issuer"
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return "provider.bad_issuer"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(u.Hostname()) {
			return ""
		}
		return "provider.https_required"
	}
	return "provider.bad_issuer"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// renderProvider renders a provider's page: its form, with what was typed and the problem.
func (f *Frontend) renderProvider(c echo.Context, status int, v providerView) error {
	s, _ := SignedInFrom(c.Request().Context())
	v.Tabs = tabsFor(s, tabSettings)
	v.CallbackURL = f.callbackURL()
	tmpl, _ := extension.OIDCTemplateByKey(v.Form.Template)
	v.TemplateName, v.GroupsClaim = tmpl.Label, tmpl.GroupsClaim
	if status == http.StatusOK {
		return f.renderReloadable(c, status, pageProvider, v)
	}
	return f.Render(c, status, pageProvider, v)
}

// NewProvider serves GET /app/{instanceId}/settings/sign-in/providers/new?template=KEY: the
// form prefilled from the template.
func (f *Frontend) NewProvider(c echo.Context) error {
	s, _ := SignedInFrom(c.Request().Context())
	if !extension.CanManageSettings(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	}
	tmpl, ok := extension.OIDCTemplateByKey(c.QueryParam("template"))
	if !ok {
		tmpl, _ = extension.OIDCTemplateByKey("custom")
	}
	name := tmpl.Label
	if tmpl.Key == "custom" {
		name = "" // the owner's name for it: "OpenID Connect" says nothing on a sign-in page
	}
	return f.renderProvider(c, http.StatusOK, providerView{Form: providerForm{Template: tmpl.Key, Name: name,
		Issuer: tmpl.Issuer, Scopes: strings.Join(tmpl.Scopes, " "), DefaultRole: extension.RoleMember}})
}

// EditProvider serves GET /app/{instanceId}/settings/sign-in/providers/{providerId}.
func (f *Frontend) EditProvider(c echo.Context) error {
	s, _ := SignedInFrom(c.Request().Context())
	if !extension.CanManageSettings(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	}
	p, err := f.store.OIDCProviderByID(c.Request().Context(), s.Instance.ID, c.Param("providerId"))
	if errors.Is(err, extension.ErrNotFound) || p.Operator { // the operator's are not the owners' to change
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	} else if err != nil {
		return f.internal(c, "load provider", err)
	}
	return f.renderProvider(c, http.StatusOK, providerView{Form: formOf(p)})
}

// formOf is a stored provider as its form shows it.
func formOf(p extension.OIDCProvider) providerForm {
	return providerForm{ID: p.ID, Template: p.Template, Name: p.Name, Issuer: p.Issuer, ClientID: p.ClientID,
		Scopes: strings.Join(p.Scopes, " "), AllowedDomains: strings.Join(p.AllowedDomains, ", "), RequiredClaim: p.RequiredClaim,
		RequiredValues: strings.Join(p.RequiredValues, ", "), DefaultRole: p.DefaultRole, RoleMap: roleMapText(p.RoleMap),
		AutoProvision: p.AutoProvision, Enabled: p.Enabled, HasSecret: p.HasClientSecret,
		AuthorizationEndpoint: p.Endpoints.Authorization, TokenEndpoint: p.Endpoints.Token, UserinfoEndpoint: p.Endpoints.Userinfo,
		ExtraParams: extraParamsText(p.Endpoints.ExtraParams)}
}

// AddProvider serves POST /app/{instanceId}/settings/sign-in/providers.
func (f *Frontend) AddProvider(c echo.Context) error { return f.saveProvider(c, "") }

// SaveProvider serves POST /app/{instanceId}/settings/sign-in/providers/{providerId}.
func (f *Frontend) SaveProvider(c echo.Context) error {
	return f.saveProvider(c, c.Param("providerId"))
}

// saveProvider checks the form, fetches the issuer's discovery document, stores the
// provider and answers 303 to the settings page, which names the issuer found. Bad input,
// or an issuer that does not answer as itself, is the form again with 400 or 502 and
// nothing stored.
func (f *Frontend) saveProvider(c echo.Context, id string) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	if !extension.CanManageSettings(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	}
	var stored extension.OIDCProvider
	if id != "" {
		var err error
		if stored, err = f.store.OIDCProviderByID(ctx, s.Instance.ID, id); errors.Is(err, extension.ErrNotFound) || stored.Operator {
			return f.Problem(c, http.StatusNotFound, "error.not_found", "")
		} else if err != nil {
			return f.internal(c, "load provider", err)
		}
	}
	form, ok := formValues(c)
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	p, typed, field, problem := parseProviderForm(form, id != "")
	typed.ID, typed.HasSecret, typed.Enabled = id, stored.HasClientSecret, stored.Enabled || id == ""
	if problem != "" {
		return f.renderProvider(c, http.StatusBadRequest, providerView{Form: typed, Problem: problem, Field: field})
	}
	found, err := f.discover(ctx, p.Issuer)
	switch {
	case errors.Is(err, errIssuerMismatch):
		return f.renderProvider(c, http.StatusBadRequest, providerView{Form: typed, Problem: "provider.issuer_mismatch",
			Field: "issuer", Found: found})
	case errors.Is(err, errOIDCEndpoint):
		return f.renderProvider(c, http.StatusBadRequest, providerView{Form: typed, Problem: "provider.endpoint_not_https", Field: "issuer"})
	case err != nil:
		f.logger.InfoContext(ctx, "provider discovery failed", "instance_id", s.Instance.ID, "issuer", p.Issuer, "error", err.Error())
		return f.renderProvider(c, http.StatusBadGateway, providerView{Form: typed, Problem: "provider.discovery_failed", Field: "issuer"})
	}
	p.ID, p.InstanceID = id, s.Instance.ID
	if id != "" {
		p.Enabled = stored.Enabled
	}
	saved, err := f.store.SaveOIDCProvider(ctx, s.Account.ID, p.OIDCProvider, p.Secret, p.SetSecret)
	switch {
	case errors.Is(err, extension.ErrForbidden):
		return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
	case errors.Is(err, extension.ErrNotFound):
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	case err != nil:
		return f.internal(c, "save provider", err)
	}
	f.logger.InfoContext(ctx, "sign-in provider saved", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "provider_id", saved.ID)
	return c.Redirect(http.StatusSeeOther, SignInSettingsPath(s.Instance.ID)+"?provider_saved="+saved.ID)
}

// ProviderAction serves POST /app/{instanceId}/settings/sign-in/providers/{providerId}/
// {disable,enable,delete}.
func (f *Frontend) ProviderAction(action string) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		s, _ := SignedInFrom(ctx)
		if !extension.CanManageSettings(s.Account.Role) {
			return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
		}
		id := c.Param("providerId")
		var err error
		switch action {
		case "delete":
			err = f.store.DeleteOIDCProvider(ctx, s.Instance.ID, s.Account.ID, id)
		default:
			err = f.store.SetOIDCProviderEnabled(ctx, s.Instance.ID, s.Account.ID, id, action == "enable")
		}
		switch {
		case errors.Is(err, extension.ErrForbidden):
			return f.Problem(c, http.StatusForbidden, "settings.forbidden", "")
		case errors.Is(err, extension.ErrNotFound):
			return f.Problem(c, http.StatusNotFound, "error.not_found", "")
		case err != nil:
			return f.internal(c, action+" provider", err)
		}
		f.logger.InfoContext(ctx, "sign-in provider changed", "instance_id", s.Instance.ID, "account_id", s.Account.ID,
			"provider_id", id, "action", action)
		return c.Redirect(http.StatusSeeOther, SignInSettingsPath(s.Instance.ID)+"?provider_done="+action)
	}
}
