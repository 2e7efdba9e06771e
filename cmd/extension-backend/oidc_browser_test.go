package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// exampleOP starts zitadel's example OpenID Provider in-process, with a real login page
// (user name and password), its users from users (id → user) and one web client "ext"
// whose only redirect URI is ours. It returns the issuer.
func exampleOP(t *testing.T, callback string, users map[string]*storage.User) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String() + "/"
	file := filepath.Join(t.TempDir(), "users.json")
	b, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	us, err := storage.StoreFromFile(file)
	if err != nil {
		t.Fatal(err)
	}
	st := storage.NewStorageWithClients(us, map[string]*storage.Client{"ext": storage.WebClient("ext", "ext-secret-Lq7vPz2", callback)})
	srv := &http.Server{Handler: exampleop.SetupServer(issuer, st, nil, false, op.WithAllowInsecure())}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return issuer
}

// signInAtOP fills in the example provider's login page.
func signInAtOP(p *browsertest.Page, user string) {
	p.Fill("#username", user)
	p.Fill("#password", "verysecure")
	p.Follow("button[type=submit]")
}

// In headless Chromium against a provider with a real login page: the owner adds the
// provider through the settings form; an invited user accepts at the provider and is
// linked; a user of another domain is refused; the wrong account for an invitation gets
// its page; the provider's link works under the pages' CSP. Every new page is saved as a
// screenshot in both languages and checked by axe-core when it is installed.
func TestOIDCInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	b := browsertest.New(t)
	issuer := exampleOP(t, base+"/login/oidc/callback", map[string]*storage.User{
		"alice":   {ID: "alice", Username: "alice", Password: "verysecure", FirstName: "Alice", LastName: "Example", Email: "alice@school.example", EmailVerified: true},
		"mallory": {ID: "mallory", Username: "mallory", Password: "verysecure", FirstName: "Mallory", LastName: "Other", Email: "mallory@other.example", EmailVerified: true},
		"carla":   {ID: "carla", Username: "carla", Password: "verysecure", FirstName: "Carla", LastName: "Private", Email: "carla.private@school.example", EmailVerified: true},
	})
	en, de := pageCopy(t, frontend.LangEnglish), pageCopy(t, frontend.LangGerman)
	ctx := context.Background()
	shot := func(p *browsertest.Page, name string) {
		t.Helper()
		p.Screenshot("oidc-" + name)
		if browsertest.HasAxe() {
			p.CheckAccessible(name)
		}
	}

	// The owner adds the provider through the form.
	owner := b.NewContext(t)
	owner.Open(clickThrough(t, app, base, in, ada))
	owner.Open(base + frontend.SignInSettingsPath(in.ID))
	owner.Follow("a[href$='template=keycloak']")
	shot(owner, "provider-new.en")
	owner.Open(base + frontend.ProvidersPath(in.ID) + "/new?template=keycloak&lang=de")
	shot(owner, "provider-new.de")
	owner.Open(base + frontend.ProvidersPath(in.ID) + "/new?template=custom&lang=en")
	owner.Fill("#name", "School")
	owner.Fill("#issuer", issuer)
	owner.Fill("#client_id", "ext")
	owner.Fill("#client_secret", "ext-secret-Lq7vPz2")
	owner.Fill("#allowed_domains", "school.example")
	owner.Follow("form button[type=submit]")
	if got := owner.Text("main"); !strings.Contains(got, "The service answered as "+issuer) {
		t.Fatalf("after saving the provider:\n%s", got)
	}
	shot(owner, "settings-with-provider.en")
	owner.Open(base + frontend.SignInSettingsPath(in.ID) + "?lang=de")
	shot(owner, "settings-with-provider.de")
	ps, err := app.Store.OIDCProviders(ctx, in.ID)
	if err != nil || len(ps) != 1 {
		t.Fatalf("providers: %+v, %v", ps, err)
	}
	provider := ps[0]
	owner.Open(base + frontend.ProviderPath(in.ID, provider.ID) + "?lang=en")
	shot(owner, "provider-edit.en")
	owner.Open(base + frontend.ProviderPath(in.ID, provider.ID) + "?lang=de")
	shot(owner, "provider-edit.de")

	// An invited user accepts at the provider: the link on the invitation page leads
	// there (a link, so the CSP's form-action does not apply), and back linked.
	ownerAcc, err := app.Store.AccountByID(ctx, ownerAccountID(t, app, in.ID))
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := app.Store.CreateInvitation(ctx, in.ID, ownerAcc.ID, "alice@school.example", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range []string{"en", "de"} {
		p := b.NewContext(t)
		p.Open(base + "/invite/" + token.Reveal() + "?lang=" + lang)
		shot(p, "invite-with-provider."+lang)
	}
	alice := b.NewContext(t)
	alice.Open(base + "/invite/" + token.Reveal() + "?lang=en")
	alice.Follow("a[href^='/invite/'][href*='/oidc/']")
	if loc := alice.Location(); !strings.HasPrefix(loc, strings.TrimSuffix(issuer, "/")) {
		t.Fatalf("the provider's link went to %s, want the provider %s", loc, issuer)
	}
	signInAtOP(alice, "alice")
	if got := alice.Path(); got != atrek.AppPath(in.ID) {
		t.Fatalf("after the provider, at %s, want the dashboard\n%s", got, alice.Text("main"))
	}
	acc, hash, err := app.Store.LocalCredentials(ctx, in.ID, "alice@school.example")
	if err != nil || hash != "" {
		t.Fatalf("Alice's account: %+v, %v", acc, err)
	}
	if ids, err := app.Store.OIDCIdentities(ctx, in.ID, acc.ID); err != nil || len(ids) != 1 || ids[0].Subject != "alice" {
		t.Errorf("Alice's identities: %+v, %v", ids, err)
	}
	alice.Open(base + frontend.AccountPath(in.ID) + "?lang=en")
	shot(alice, "account-connected.en")
	alice.Open(base + frontend.AccountPath(in.ID) + "?lang=de")
	shot(alice, "account-connected.de")

	// The login page's provider button, under the CSP, for a user of another domain: the
	// domain's refusal.
	for _, c := range []struct {
		lang string
		copy map[string]string
	}{{"en", en}, {"de", de}} {
		mallory := b.NewContext(t)
		mallory.Open(base + frontend.LoginPath(in.ID) + "?lang=" + c.lang)
		shot(mallory, "login-with-provider."+c.lang)
		mallory.Follow("a[href='" + frontend.LoginPath(in.ID) + "/oidc/" + provider.ID + "']")
		signInAtOP(mallory, "mallory")
		if got, want := mallory.Text("h1"), c.copy["oidc.refused.domain.title"]; got != want {
			t.Errorf("%s: a user of another domain sees %q, want %q", c.lang, got, want)
		}
		shot(mallory, "refused-domain."+c.lang)
	}

	// The wrong account for an invitation: both addresses on the page.
	_, token, err = app.Store.CreateInvitation(ctx, in.ID, ownerAcc.ID, "carla@school.example", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		lang string
		copy map[string]string
	}{{"en", en}, {"de", de}} {
		carla := b.NewContext(t)
		carla.Open(base + "/invite/" + token.Reveal() + "?lang=" + c.lang)
		carla.Follow("a[href^='/invite/'][href*='/oidc/']")
		signInAtOP(carla, "carla")
		if got, want := carla.Text("h1"), c.copy["oidc.refused.wrong_account.title"]; got != want {
			t.Errorf("%s: wrong account shows %q, want %q", c.lang, got, want)
		}
		if got := carla.Text("main"); !strings.Contains(got, "carla@school.example") || !strings.Contains(got, "carla.private@school.example") {
			t.Errorf("%s: the wrong-account page does not show both addresses:\n%s", c.lang, got)
		}
		shot(carla, "refused-wrong-account."+c.lang)
	}
	// Neither the client secret nor a token (a JWT starts with eyJ) reached a log line.
	if logs := app.Logs.String(); strings.Contains(logs, "ext-secret-Lq7vPz2") || strings.Contains(logs, "eyJ") {
		t.Error("a log line holds the client secret or a token")
	}
	if !browsertest.HasAxe() {
		browsertest.Unavailable(t, browsertest.MissingAxe)
	}
}

// ownerAccountID is the id of the instance's owner.
func ownerAccountID(t *testing.T, app *apptest.App, instanceID string) string {
	t.Helper()
	accs, err := app.Store.Accounts(context.Background(), instanceID)
	if err != nil || len(accs) == 0 || accs[0].Role != extension.RoleOwner {
		t.Fatalf("no owner: %+v, %v", accs, err)
	}
	return accs[0].ID
}
