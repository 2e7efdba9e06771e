package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// TestAccountPagesInBrowser drives the account, audit and sign-in settings pages as they
// look with content, in both languages: a local member signs in with the form, changes
// the password and signs another browser out; the owner sees the audit log with those
// events and the sign-in settings with the warning that password sign-in is off for
// people who have no other way in. Every state passes axe-core and is saved as a
// screenshot.
func TestAccountPagesInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	b := browsertest.New(t)
	const (
		password    = "correct horse battery"
		newPassword = "a much longer new password"
	)
	check := func(p *browsertest.Page, name string) {
		t.Helper()
		p.Screenshot(name)
		if browsertest.HasAxe() {
			p.CheckAccessible(name)
		}
	}
	for _, lang := range []string{frontend.LangEnglish, frontend.LangGerman} {
		t.Run(lang, func(t *testing.T) {
			owner := b.NewContext(t)
			owner.Open(base + "/signed-out?lang=" + lang)
			owner.Open(clickThrough(t, app, base, in, ada))
			ownerAcc, _, err := app.Store.EnsurePlatformAccount(t.Context(), in.ID, ada.ID, "", "", extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			email := "lena." + lang + "@example.test"
			_, token, err := app.Store.CreateInvitation(t.Context(), in.ID, ownerAcc.ID, email, extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			hash, err := extension.HashPassword(password, extension.PasswordOWASP)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := app.Store.AcceptInvitation(t.Context(), token, "Lena Local "+lang, hash); err != nil {
				t.Fatal(err)
			}
			signIn := func(pw string) *browsertest.Page {
				p := b.NewContext(t)
				p.Open(base + "/signed-out?lang=" + lang)
				p.Open(base + frontend.LoginPath(in.ID))
				p.Fill("#email", email)
				p.Fill("#password", pw)
				p.Follow("form[action$='/login'] button[type=submit]")
				if got := p.Path(); got != frontend.AppPath(in.ID) {
					t.Fatalf("sign-in ends at %s", got)
				}
				return p
			}
			lena, other := signIn(password), signIn(password)

			account := base + frontend.AccountPath(in.ID)
			if status := lena.Open(account); status != http.StatusOK {
				t.Fatalf("account page: %d", status)
			}
			check(lena, "account-local."+lang)
			// A wrong current password: the form again, with what went wrong.
			lena.Fill("#current_password", "not the password")
			lena.Fill("#new_password", newPassword)
			lena.Fill("#new_password_again", newPassword)
			lena.Follow("form[action$='/account/password'] button[type=submit]")
			if !lena.Exists(".alert.danger") {
				t.Error("no error after a wrong current password")
			}
			check(lena, "account-wrong-password."+lang)
			lena.Fill("#current_password", password)
			lena.Fill("#new_password", newPassword)
			lena.Fill("#new_password_again", newPassword)
			lena.Follow("form[action$='/account/password'] button[type=submit]")
			if !lena.Exists(".alert.success") || lena.Exists("form[action$='/sessions/end'] button") {
				t.Error("after the change: no confirmation, or another session is still listed")
			}
			check(lena, "account-password-changed."+lang)
			if other.Open(base + frontend.AppPath(in.ID)); other.Path() != frontend.LoginPath(in.ID) {
				t.Errorf("the other browser is still signed in: at %s", other.Path())
			}
			// Two more browsers, one signed out by its button.
			third, fourth := signIn(newPassword), signIn(newPassword)
			lena.Open(account)
			lena.Follow("form[action$='/sessions/end'] button[type=submit]")
			check(lena, "account-session-ended."+lang)
			signedIn := 0
			for _, p := range []*browsertest.Page{third, fourth} {
				if p.Open(base + frontend.AppPath(in.ID)); p.Path() == frontend.AppPath(in.ID) {
					signedIn++
				}
			}
			if signedIn != 1 {
				t.Errorf("%d of the two browsers are signed in after signing out one, want 1", signedIn)
			}

			// The owner's account page (a platform user), the audit log and the settings.
			owner.Open(account)
			check(owner, "account-platform."+lang)
			owner.Open(base + frontend.AppPath(in.ID) + "/audit")
			if !strings.Contains(owner.Text("main"), "Lena Local "+lang) {
				t.Error("the audit log does not name Lena")
			}
			check(owner, "audit-events."+lang)
			owner.Open(base + frontend.AppPath(in.ID) + "/audit?kind=" + extension.AuditSignIn)
			check(owner, "audit-filtered."+lang)
			settings := base + frontend.SignInSettingsPath(in.ID)
			owner.Open(settings)
			owner.Fill("#allowed_domains", ", not a domain!")
			owner.Follow("form[action$='/settings/sign-in'] button[type=submit]")
			if !owner.Exists("#allowed_domains[aria-invalid=true]") {
				t.Error("the bad domain is not marked")
			}
			check(owner, "settings-bad-domain."+lang)
			owner.Open(settings)
			owner.Click("#password_login")
			owner.Follow("form[action$='/settings/sign-in'] button[type=submit]")
			if !owner.Exists(".alert.warning") {
				t.Error("no warning with password sign-in off and local accounts")
			}
			check(owner, "settings-password-off."+lang)
			// On again for the next language's round.
			owner.Click("#password_login")
			owner.Follow("form[action$='/settings/sign-in'] button[type=submit]")
			if owner.Exists(".alert.warning") {
				t.Error("the warning stays with password sign-in on")
			}
		})
	}
}
