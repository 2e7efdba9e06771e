package main

import (
	"context"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// The pages the role map, the operator's providers, a custom provider's own endpoints
// and invitations without passwords changed, in headless Chromium in both languages (screenshots under EXT_SCREENSHOT_DIR,
// and the accessibility check where axe is at hand).
func TestOIDCRoleMapOperatorPagesInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	b := browsertest.New(t)
	ctx := context.Background()
	shot := func(p *browsertest.Page, name string) {
		t.Helper()
		p.Screenshot("oidc2-" + name)
		if browsertest.HasAxe() {
			p.CheckAccessible(name)
		}
	}
	owner := b.NewContext(t)
	owner.Open(clickThrough(t, app, base, in, ada))
	ownerID := ownerAccountID(t, app, in.ID)
	app.Store.SetOperatorProviders([]extension.OperatorProvider{{Key: "vendor-staff", Provider: extension.OIDCProvider{
		Template: "keycloak", Name: "Vendor support", Issuer: "https://sso.vendor.example/realms/staff", ClientID: "ext",
		Scopes: []string{"openid", "email", "profile"}, DefaultRole: extension.RoleMember, Enabled: true}}})
	p, err := app.Store.SaveOIDCProvider(ctx, ownerID, extension.OIDCProvider{InstanceID: in.ID, Template: "keycloak", Name: "School",
		Issuer: "https://sso.school.example/realms/school", ClientID: "ext", Scopes: []string{"openid", "email", "profile"},
		DefaultRole: extension.RoleMember, AutoProvision: true, AllowedDomains: []string{"school.example"}, Enabled: true,
		RoleMap: []extension.RoleRule{{Group: "teachers", Role: extension.RoleAdmin}, {Group: "students", Role: extension.RoleMember}}}, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"en", "de"} {
		owner.Open(base + frontend.ProviderPath(in.ID, p.ID) + "?lang=" + lang)
		shot(owner, "provider-role-map."+lang)
		owner.Open(base + frontend.SignInSettingsPath(in.ID) + "?lang=" + lang)
		shot(owner, "settings-operator."+lang)
		owner.Open(base + frontend.ProvidersPath(in.ID) + "/new?template=custom&lang=" + lang)
		shot(owner, "provider-custom-endpoints."+lang)
	}
	// Password sign-in off: the team still invites, the invitation offers the providers only.
	if _, err := app.Store.UpdateInstanceSettings(ctx, in.ID, ownerID, extension.InstanceSettings{DefaultRole: extension.RoleMember}); err != nil {
		t.Fatal(err)
	}
	_, token, err := app.Store.CreateInvitation(ctx, in.ID, ownerID, "bea@school.example", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"en", "de"} {
		owner.Open(base + frontend.AppPath(in.ID) + "/team?lang=" + lang)
		shot(owner, "team-password-off."+lang)
		guest := b.NewContext(t)
		guest.Open(base + "/invite/" + token.Reveal() + "?lang=" + lang)
		if got := guest.Text("main"); lang == "en" && (!strings.Contains(got, "Vendor support") || !strings.Contains(got, "School") || strings.Contains(got, "Password")) {
			t.Errorf("invitation page with password sign-in off:\n%s", got)
		}
		shot(guest, "invite-providers-only."+lang)
	}
}
