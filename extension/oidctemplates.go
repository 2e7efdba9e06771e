package extension

import "slices"

// OIDCTemplate is what the code knows about a kind of OpenID Connect provider. A provider
// of an instance names its template and stores only its own values (issuer, client, the
// rules); the template prefills the form and decides what the provider's claims are
// worth, so a better template in a later release helps every instance without
// overwriting anyone's settings.
type OIDCTemplate struct {
	Key string // stored in the provider's row: google, microsoft, gitlab, keycloak, iserv, custom
	// Label names the template on pages (a product name, the same in every language).
	Label string
	// Issuer prefills the form; upper-case words (TENANT-ID, HOST, REALM) are for the owner
	// to replace.
	Issuer string
	Scopes []string
	// EmailClaim, VerifiedClaim, NameClaim and GroupsClaim name the claims read. An
	// address counts as verified only when VerifiedClaim is true; "" means the provider
	// has no claim that makes its address trustworthy, so its e-mail is never verified.
	EmailClaim, VerifiedClaim, NameClaim, GroupsClaim string
	// SelectAccount reports whether the provider understands prompt=select_account, which
	// the "use another account" link asks for.
	SelectAccount bool
}

// oidcTemplates are the templates, in the order the settings page offers them.
var oidcTemplates = []OIDCTemplate{
	{Key: "google", Label: "Google", Issuer: "https://accounts.google.com", Scopes: []string{"openid", "email", "profile"},
		EmailClaim: "email", VerifiedClaim: "email_verified", NameClaim: "name", SelectAccount: true}, // no groups; a Workspace domain is the claim hd
	// Microsoft's email claim is set by the tenant's admins, may be changed by them and is
	// not verified: it is trusted only with the optional claim xms_edov (the e-mail's
	// domain is verified by the tenant that owns it), which the app registration must ask for.
	{Key: "microsoft", Label: "Microsoft Entra ID", Issuer: "https://login.microsoftonline.com/TENANT-ID/v2.0",
		Scopes: []string{"openid", "email", "profile"}, EmailClaim: "email", VerifiedClaim: "xms_edov", NameClaim: "name",
		GroupsClaim: "groups", SelectAccount: true},
	{Key: "gitlab", Label: "GitLab", Issuer: "https://gitlab.com", Scopes: []string{"openid", "email", "profile"},
		EmailClaim: "email", VerifiedClaim: "email_verified", NameClaim: "name", GroupsClaim: "groups_direct"},
	{Key: "keycloak", Label: "Keycloak", Issuer: "https://HOST/realms/REALM", Scopes: []string{"openid", "email", "profile"},
		EmailClaim: "email", VerifiedClaim: "email_verified", NameClaim: "name", GroupsClaim: "groups"},
	{Key: "iserv", Label: "IServ", Issuer: "https://SCHOOL-DOMAIN", Scopes: []string{"openid", "email", "profile", "groups", "roles"},
		EmailClaim: "email", VerifiedClaim: "email_verified", NameClaim: "name", GroupsClaim: "groups"},
	{Key: "custom", Label: "OpenID Connect", Scopes: []string{"openid", "email", "profile"},
		EmailClaim: "email", VerifiedClaim: "email_verified", NameClaim: "name", GroupsClaim: "groups"},
}

// OIDCTemplates lists the provider templates, in the order the settings page offers them.
func OIDCTemplates() []OIDCTemplate {
	out := slices.Clone(oidcTemplates)
	for i := range out {
		out[i].Scopes = slices.Clone(out[i].Scopes)
	}
	return out
}

// OIDCTemplateByKey returns the template of a key; ok is false for an unknown key.
func OIDCTemplateByKey(key string) (OIDCTemplate, bool) {
	for _, t := range oidcTemplates {
		if t.Key == key {
			t.Scopes = slices.Clone(t.Scopes)
			return t, true
		}
	}
	return OIDCTemplate{}, false
}
