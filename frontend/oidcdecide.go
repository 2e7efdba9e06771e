package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// Who gets in after a provider vouched for someone, in this order:
//  1. the provider's required claim holds one of its values, and a domain rule (if any)
//     is passed by a verified address;
//  2. connecting from the account page: the identity is linked to the signed-in account,
//     unless another account has it;
//  3. the identity (provider, subject) is known: that account;
//  4. a pending invitation for the verified address (for the invitation the sign-in
//     started from, the address must be the invited one): it is accepted;
//  5. a local account with that address: not linked ("sign in with your password, then
//     connect the provider");
//  6. auto-provisioning on, and the verified address allowed: a new account with the
//     role the provider's group → role map derives from the groups claim, else the
//     provider's default role;
//  7. otherwise refused.
// An unverified address never passes a domain rule, never accepts an invitation and is
// never linked by. A provider with a group → role map re-derives the role of a known
// identity's account at every sign-in (rederiveRole).

// identity is what a provider said of a user, read through its template.
type identity struct {
	Subject  string
	Email    string // as sent; "" when none
	Verified bool   // the template's verified claim is true
	Name     string
	claims   map[string]any
}

// identityOf reads the claims the template names.
func identityOf(t extension.OIDCTemplate, subject string, claims map[string]any) identity {
	id := identity{Subject: subject, claims: claims}
	id.Email, _ = claims[t.EmailClaim].(string)
	if t.VerifiedClaim != "" {
		switch v := claims[t.VerifiedClaim].(type) {
		case bool:
			id.Verified = v
		case string:
			id.Verified = v == "true" || v == "1"
		}
	}
	id.Name, _ = claims[t.NameClaim].(string)
	if id.Name == "" {
		id.Name, _ = claims["preferred_username"].(string)
	}
	return id
}

// normalized is the verified address in NormalizeEmail's form, or "".
func (id identity) normalized() string {
	if !id.Verified || id.Email == "" {
		return ""
	}
	n, err := extension.NormalizeEmail(id.Email)
	if err != nil {
		return ""
	}
	return n
}

// claimValues are a claim's values: a string, or a list of strings.
func (id identity) claimValues(name string) []string {
	switch v := id.claims[name].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// groups are the groups the provider's template reads from its groups claim.
func (id identity) groups(p extension.OIDCProvider) []string {
	if claim := p.TemplateInfo().GroupsClaim; claim != "" {
		return id.claimValues(claim)
	}
	return nil
}

// rederiveRole applies a provider's group → role map at a sign-in of a known identity's
// account: the highest role of the matching groups, and with none the provider's default
// role, so leaving a group at the provider takes its role here at the next sign-in. A
// provider without a map leaves roles alone, an owner keeps theirs, and an invited
// account keeps its invitation's role until its next sign-in.
func (f *Frontend) rederiveRole(c echo.Context, p extension.OIDCProvider, id identity, acc extension.Account) (extension.Account, error) {
	if len(p.RoleMap) == 0 || acc.Role == extension.RoleOwner {
		return acc, nil
	}
	role, group, ok := p.DerivedRole(id.groups(p))
	if !ok {
		role, group = p.DefaultRole, ""
	}
	if role == acc.Role {
		return acc, nil
	}
	out, err := f.store.SetOIDCDerivedRole(c.Request().Context(), p, acc.ID, role, group)
	if err != nil {
		return acc, err
	}
	f.logger.InfoContext(c.Request().Context(), "role derived from groups", "instance_id", acc.InstanceID, "account_id", acc.ID,
		"provider_id", p.ID, "role", role)
	return out, nil
}

func (id identity) oidcClaims() extension.OIDCClaims {
	return extension.OIDCClaims{Subject: id.Subject, Email: id.Email, Normalized: id.normalized(), Name: id.Name}
}

// decide lets the user in, links the identity, or refuses, in the order above.
func (f *Frontend) decide(c echo.Context, p extension.OIDCProvider, fl oidcFlow, id identity) error {
	ctx := c.Request().Context()
	r := refusal{Flow: fl, Provider: p, Email: id.Email}
	normalized := id.normalized()
	refuse := func(reason string) error {
		r.Reason = reason
		if reason == reasonExists {
			r.Hint, r.Ways = f.existsWay(ctx, fl.Instance, normalized, p.ID)
		}
		return f.refuseAudited(c, r)
	}
	if p.RequiredClaim != "" && !slices.ContainsFunc(id.claimValues(p.RequiredClaim), func(v string) bool {
		return slices.Contains(p.RequiredValues, v)
	}) {
		return refuse(reasonClaim)
	}
	if len(p.AllowedDomains) > 0 {
		switch {
		case id.Email == "":
			return refuse(reasonNoEmail)
		case normalized == "":
			return refuse(reasonUnverified)
		case !p.AllowsDomain(normalized):
			return refuse(reasonDomain)
		}
	}
	known, err := f.store.OIDCIdentityAccount(ctx, p.ID, id.Subject)
	if err != nil && !errors.Is(err, extension.ErrNotFound) {
		return f.internal(c, "load identity", err)
	}
	if fl.Intent == intentConnect {
		s, err := f.Sessions.Read(c, fl.Instance)
		if err != nil || s.Account.ID != fl.Account {
			return refuse(reasonState) // signed out or another account meanwhile
		}
		err = f.store.LinkOIDCIdentity(ctx, fl.Instance, fl.Account, p.ID, id.oidcClaims())
		switch {
		case errors.Is(err, extension.ErrIdentityLinked):
			return refuse(reasonLinked)
		case errors.Is(err, extension.ErrNotLocalAccount):
			return f.Problem(c, http.StatusForbidden, "oidc.platform_account", AccountPath(fl.Instance))
		case err != nil:
			return f.internal(c, "link identity", err)
		}
		f.logger.InfoContext(ctx, "identity connected", "instance_id", fl.Instance, "account_id", fl.Account, "provider_id", p.ID)
		return c.Redirect(http.StatusSeeOther, AccountPath(fl.Instance)+"?done="+doneConnected)
	}
	if err == nil {
		if known, err = f.rederiveRole(c, p, id, known); err != nil {
			return f.internal(c, "derive role", err)
		}
		return f.signInOIDC(c, p, known)
	}
	if fl.Intent == intentInvite {
		inv, err := f.store.Invitation(ctx, extension.Secret(fl.Invitation))
		if err != nil || inv.State != extension.InvitationPending || inv.InstanceID != fl.Instance {
			r.Reason = reasonInvitationGone
			if err := f.auditRefusal(c, r); err != nil {
				return err
			}
			return f.Problem(c, http.StatusGone, "oidc.invitation_gone", "")
		}
		want, _ := extension.NormalizeEmail(inv.Email)
		r.Invited = inv.Email
		switch {
		case id.Email == "":
			return refuse(reasonNoEmail)
		case normalized == "":
			return refuse(reasonUnverified)
		case normalized != want:
			return refuse(reasonWrongAccount)
		}
	}
	if id.Email == "" {
		return refuse(reasonNoEmail)
	}
	if normalized == "" {
		return refuse(reasonUnverified)
	}
	acc, err := f.store.AcceptInvitationByOIDC(ctx, fl.Instance, p.ID, id.oidcClaims())
	switch {
	case err == nil:
		return f.signInOIDC(c, p, acc)
	case errors.Is(err, extension.ErrDomainNotAllowed):
		return refuse(reasonDomain)
	case errors.Is(err, extension.ErrEmailTaken):
		return refuse(reasonExists)
	case errors.Is(err, extension.ErrRemoved), errors.Is(err, extension.ErrDisabled):
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	case !errors.Is(err, extension.ErrNotFound) && !errors.Is(err, extension.ErrInvitationUsed):
		return f.internal(c, "accept invitation", err)
	}
	if _, _, err := f.store.LocalCredentials(ctx, fl.Instance, normalized); err == nil {
		return refuse(reasonExists)
	} else if !errors.Is(err, extension.ErrNotFound) {
		return f.internal(c, "look up account", err)
	}
	if !p.AutoProvision {
		return refuse(reasonNotInvited)
	}
	role := p.DefaultRole
	if derived, _, ok := p.DerivedRole(id.groups(p)); ok {
		role = derived
	}
	acc, err = f.store.ProvisionOIDCAccount(ctx, fl.Instance, p.ID, id.oidcClaims(), role)
	switch {
	case errors.Is(err, extension.ErrDomainNotAllowed):
		return refuse(reasonDomain)
	case errors.Is(err, extension.ErrEmailTaken):
		return refuse(reasonExists)
	case errors.Is(err, extension.ErrRemoved), errors.Is(err, extension.ErrDisabled):
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	case err != nil:
		return f.internal(c, "provision account", err)
	}
	return f.signInOIDC(c, p, acc)
}

// signInOIDC starts the account's session and records the sign-in.
func (f *Frontend) signInOIDC(c echo.Context, p extension.OIDCProvider, acc extension.Account) error {
	ctx := c.Request().Context()
	if err := f.Sessions.Start(c, acc, ""); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	} else if err != nil {
		return f.internal(c, "start session", err)
	}
	if err := f.store.Audit(ctx, extension.AuditEvent{InstanceID: acc.InstanceID, AccountID: acc.ID, Kind: extension.AuditSignIn,
		Detail: map[string]string{"method": "oidc", "provider": p.Name}}); err != nil {
		return f.internal(c, "audit sign-in", err)
	}
	f.logger.InfoContext(ctx, "signed in with a provider", "instance_id", acc.InstanceID, "account_id", acc.ID, "provider_id", p.ID)
	return c.Redirect(http.StatusSeeOther, AppPath(acc.InstanceID))
}

// Reasons of a refusal; each is a page (oidc.refused.REASON).
const (
	reasonState         = "state"          // no sign-in under way, changed or used state
	reasonToken         = "token"          // code or ID token not accepted
	reasonDenied        = "access_denied"  // the provider (or the user there) said no
	reasonProviderError = "provider_error" // the provider answered with another error
	reasonClaim         = "claim"          // the required claim lacks every value
	reasonDomain        = "domain"         // the address's domain is not allowed
	reasonNoEmail       = "no_email"       // the provider sent no address
	reasonUnverified    = "unverified"     // the address is not verified by the provider
	reasonLinked        = "linked"         // the identity is another account's
	reasonWrongAccount  = "wrong_account"  // not the invited address
	reasonExists        = "exists"         // a local account has the address
	reasonNotInvited    = "not_invited"    // nobody invited the address
	// Refusals audited with a problem page of their own rather than a refusal page.
	reasonProviderGone   = "provider_gone"   // the provider was disabled or deleted meanwhile
	reasonInvitationGone = "invitation_gone" // the invitation was used, revoked or expired meanwhile
)

// refusalStatus is the status of each reason's page.
var refusalStatus = map[string]int{
	reasonState: http.StatusBadRequest, reasonToken: http.StatusBadRequest, reasonDenied: http.StatusForbidden,
	reasonProviderError: http.StatusBadRequest, reasonClaim: http.StatusForbidden, reasonDomain: http.StatusForbidden,
	reasonNoEmail: http.StatusForbidden, reasonUnverified: http.StatusForbidden, reasonLinked: http.StatusConflict,
	reasonWrongAccount: http.StatusForbidden, reasonExists: http.StatusConflict, reasonNotInvited: http.StatusForbidden,
}

// refusal is a refused sign-in and its page.
type refusal struct {
	Reason   string
	Flow     oidcFlow
	Provider extension.OIDCProvider
	Email    string // the address the provider sent
	Invited  string // wrong_account: the invited address
	// Hint, when not empty, is the copy key of the page's hint instead of the reason's;
	// Ways the sign-in services it names.
	Hint, Ways string
}

// refusalView is what the refusal page shows.
type refusalView struct {
	Reason, ProviderName, Email, Invited, Hint, Ways string
	// AnotherURL restarts the sign-in, asking the provider for another account where it can;
	// BackURL is the sign-in or account page it started from.
	AnotherURL, BackURL string
}

// refuseAudited records a refusal in the instance's audit log and shows its page.
func (f *Frontend) refuseAudited(c echo.Context, r refusal) error {
	if err := f.auditRefusal(c, r); err != nil {
		return err
	}
	return f.refuse(c, r)
}

// auditRefusal records a refusal in the instance's audit log; an error is the internal
// error's page, shown.
func (f *Frontend) auditRefusal(c echo.Context, r refusal) error {
	ctx := c.Request().Context()
	detail := map[string]string{"reason": r.Reason, "provider": r.Provider.Name}
	if r.Email != "" {
		detail["email"] = clip(r.Email, 320)
	}
	if err := f.store.Audit(ctx, extension.AuditEvent{InstanceID: r.Flow.Instance, AccountID: r.Flow.Account,
		Kind: extension.AuditSignInRefused, Detail: detail}); err != nil && !errors.Is(err, extension.ErrNotFound) {
		return f.internal(c, "audit refusal", err)
	}
	f.logger.InfoContext(ctx, "provider sign-in refused", "instance_id", r.Flow.Instance, "provider_id", r.Flow.Provider, "reason", r.Reason)
	return nil
}

// refuse shows a refusal's page with its 4xx status.
func (f *Frontend) refuse(c echo.Context, r refusal) error {
	v := refusalView{Reason: r.Reason, ProviderName: r.Provider.Name, Email: r.Email, Invited: r.Invited, Hint: r.Hint, Ways: r.Ways}
	fl := r.Flow
	if fl.Instance != "" {
		v.BackURL = LoginPath(fl.Instance)
		switch fl.Intent {
		case intentConnect:
			v.BackURL = AccountPath(fl.Instance)
			v.AnotherURL = fmt.Sprintf("%s/identities/connect/%s?prompt=select", AccountPath(fl.Instance), fl.Provider)
		case intentInvite:
			v.BackURL = "/invite/" + fl.Invitation
			v.AnotherURL = fmt.Sprintf("/invite/%s/oidc/%s?prompt=select", fl.Invitation, fl.Provider)
		default:
			v.AnotherURL = fmt.Sprintf("%s/oidc/%s?prompt=select", LoginPath(fl.Instance), fl.Provider)
		}
	}
	status, ok := refusalStatus[r.Reason]
	if !ok {
		status = http.StatusForbidden
	}
	return f.Render(c, status, pageRefused, v)
}

const pageRefused = "oidcrefused"

// existsWay is the exists page's hint for the account with a verified address: sign in
// with its password, with the services it connected (another account at this very
// one), or, with neither, ask an owner. The address is the user's (the provider verified it), so naming its ways tells
// no stranger anything.
func (f *Frontend) existsWay(ctx context.Context, instanceID, normalized, providerID string) (hint, ways string) {
	acc, hash, err := f.store.LocalCredentials(ctx, instanceID, normalized)
	if err != nil {
		return "oidc.refused.exists.hint_other", "" // a control panel user's, or gone meanwhile
	}
	if settings, err := f.store.InstanceSettings(ctx, instanceID); err == nil && hash != "" && settings.PasswordLogin {
		return "", ""
	}
	ids, err := f.store.OIDCIdentities(ctx, instanceID, acc.ID)
	if err != nil {
		return "oidc.refused.exists.hint_other", ""
	}
	providers, err := f.store.OIDCProviders(ctx, instanceID)
	if err != nil {
		return "oidc.refused.exists.hint_other", ""
	}
	var names []string
	for _, id := range ids {
		if slices.Contains(names, id.ProviderName) {
			continue
		}
		if slices.ContainsFunc(providers, func(p extension.OIDCProvider) bool { return p.ID == id.ProviderID && p.Enabled }) {
			names = append(names, id.ProviderName)
		}
	}
	if len(ids) > 0 && len(names) == 1 && ids[0].ProviderID == providerID && !slices.ContainsFunc(ids, func(i extension.OIDCIdentity) bool {
		return i.ProviderID != providerID
	}) {
		return "oidc.refused.exists.hint_same", "" // another account at the same service
	}
	if len(names) > 0 {
		return "oidc.refused.exists.hint_provider", strings.Join(names, ", ")
	}
	return "oidc.refused.exists.hint_none", ""
}
