package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// teamLinkPages are the addresses of the invitation and reset pages in each state, made
// through the store for an instance whose owner signed in already.
type teamLinkPages struct {
	Invite, InviteUsed, InviteRevoked, InviteUnknown string
	Reset, ResetUsed, ResetUnknown                   string
}

// isLinkPage reports whether a path is an invitation's or a reset's page.
func isLinkPage(path string) bool {
	return strings.HasPrefix(path, "/invite/") || strings.HasPrefix(path, "/reset/")
}

// teamLinks makes, in the instance, an open invitation, a used one, a revoked one, a
// reset link and a used one, with addresses that tag keeps apart from other calls.
func teamLinks(t *testing.T, app *apptest.App, in mstudiotest.Instance, tag string) teamLinkPages {
	t.Helper()
	ctx := t.Context()
	accs, err := app.Store.Accounts(ctx, in.ID)
	if err != nil || len(accs) == 0 || accs[0].Role != extension.RoleOwner {
		t.Fatalf("the instance has no owner yet: %v, %v", accs, err)
	}
	owner := accs[0].ID
	hash, err := extension.HashPassword("correct horse battery", extension.PasswordOWASP)
	if err != nil {
		t.Fatal(err)
	}
	invite := func(who, role string) extension.Secret {
		t.Helper()
		_, token, err := app.Store.CreateInvitation(ctx, in.ID, owner, who+"-"+tag+"@example.test", role)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	accept := func(token extension.Secret, name string) extension.Account {
		t.Helper()
		acc, err := app.Store.AcceptInvitation(ctx, token, name, hash)
		if err != nil {
			t.Fatal(err)
		}
		return acc
	}
	reset := func(acc extension.Account) extension.Secret {
		t.Helper()
		token, _, err := app.Store.IssuePasswordReset(ctx, in.ID, owner, acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	var p teamLinkPages
	p.Invite = "/invite/" + invite("mara", extension.RoleMember).Reveal()
	used := invite("lena", extension.RoleAdmin)
	lena := accept(used, "Lena Local")
	p.InviteUsed = "/invite/" + used.Reveal()
	revoked := invite("rolf", extension.RoleMember)
	invs, err := app.Store.OpenInvitations(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range invs {
		if strings.HasPrefix(inv.Email, "rolf-"+tag) {
			if err := app.Store.RevokeInvitation(ctx, in.ID, owner, inv.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	p.InviteRevoked = "/invite/" + revoked.Reveal()
	p.InviteUnknown = "/invite/" + strings.Repeat("A", 43)
	usedReset := reset(lena)
	if _, err := app.Store.ConsumePasswordReset(ctx, usedReset, hash); err != nil {
		t.Fatal(err)
	}
	p.ResetUsed = "/reset/" + usedReset.Reveal()
	p.Reset = "/reset/" + reset(accept(invite("milo", extension.RoleMember), "Milo Member")).Reveal()
	p.ResetUnknown = "/reset/" + strings.Repeat("A", 43)
	return p
}

// TestTeamInBrowser: in each language, an owner invites someone from the team page and
// copies the link shown once; the invited person opens it in another browser, creates
// their account and lands on the dashboard; their team page has no form, and a form they
// make by hand to remove the owner is refused with 403. Every page passes axe-core and is
// saved as a screenshot.
func TestTeamInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	b := browsertest.New(t)
	check := func(p *browsertest.Page, name string) {
		t.Helper()
		p.Screenshot(name)
		if browsertest.HasAxe() {
			p.CheckAccessible(name)
		}
	}
	for _, lang := range []string{frontend.LangEnglish, frontend.LangGerman} {
		t.Run(lang, func(t *testing.T) {
			tc := pageCopy(t, lang)
			owner, invitee := b.NewContext(t), b.NewContext(t)
			for _, p := range []*browsertest.Page{owner, invitee} {
				p.Open(base + "/signed-out?lang=" + lang)
			}
			owner.Open(clickThrough(t, app, base, in, ada))
			team := frontend.TeamPath(in.ID)
			if status := owner.Open(base + team); status != http.StatusOK {
				t.Fatalf("team page: %d", status)
			}
			email := "invitee-" + lang + "@example.test"
			owner.Fill("#invite-email", email)
			owner.Select("#invite-role", extension.RoleMember)
			owner.Follow("form[action$='/team/invitations'] button[type='submit']")
			if got, want := owner.Text("h1"), tc["team.link.invite_title"]; got != want {
				t.Fatalf("after inviting: heading %q, want %q", got, want)
			}
			link := owner.Value("#link")
			if !strings.HasPrefix(link, base+"/invite/") {
				t.Fatalf("the link page shows %q", link)
			}
			defer func() {
				if strings.Contains(app.Logs.String(), strings.TrimPrefix(link, base+"/invite/")) {
					t.Error("a log line carries the invitation's token")
				}
			}()
			check(owner, "team-invitation-link."+lang)
			// Shown once: back on the team page the invitation is listed, its link is not.
			owner.Follow("main a.button")
			if strings.Contains(owner.Text("main"), link) || !strings.Contains(owner.Text("main"), email) {
				t.Error("the team page shows the link or lacks the invitation")
			}

			if status := invitee.Open(link); status != http.StatusOK {
				t.Fatalf("invitation page: %d", status)
			}
			if got := invitee.Text("main"); !strings.Contains(got, ada.Name) || !strings.Contains(got, email) {
				t.Errorf("the invitation page does not say who invited whom:\n%s", got)
			}
			check(invitee, "invite."+lang)
			invitee.Fill("#name", "Nora Neu")
			invitee.Fill("#password", "correct horse battery")
			invitee.Fill("#password_repeat", "correct horse battery")
			invitee.Follow("form button[type='submit']")
			if got := invitee.Path(); got != atrek.AppPath(in.ID) {
				t.Fatalf("accepting lands on %s, want the dashboard %s", got, atrek.AppPath(in.ID))
			}
			if !strings.Contains(invitee.Text("main"), "Nora Neu") {
				t.Error("the dashboard does not name the new account")
			}
			// The member's team page: the list, no form.
			invitee.Open(base + team)
			if invitee.Exists("main form") {
				t.Error("a member's team page has a form")
			}
			check(invitee, "team-member."+lang)
			accs, err := app.Store.Accounts(t.Context(), in.ID)
			if err != nil {
				t.Fatal(err)
			}
			var adaID string
			for _, a := range accs {
				if a.Role == extension.RoleOwner {
					adaID = a.ID
				}
			}
			if status := invitee.PostForm(team+"/"+adaID+"/remove", nil); status != http.StatusForbidden {
				t.Errorf("a member's hand-made removal of the owner: %d, want 403", status)
			}
			if got, want := invitee.Text(".alert h2"), tc["team.refused.member.title"]; got != want {
				t.Errorf("refusal says %q, want %q", got, want)
			}
			check(invitee, "team-refused."+lang)
			if acc, err := app.Store.AccountByID(t.Context(), adaID); err != nil || acc.Role != extension.RoleOwner {
				t.Errorf("the owner after the refused removal: %+v, %v", acc, err)
			}
			// The owner's team page with the new member: each row's forms.
			owner.Open(base + team)
			check(owner, "team-owner."+lang)
			// Remove asks first; going back keeps the member.
			owner.Follow("form[action$='/remove'] button[type='submit']")
			if !owner.Exists("input[name='confirm'][value='yes']") {
				t.Fatalf("the remove button does not ask first:\n%s", owner.Text("main"))
			}
			check(owner, "team-confirm-remove."+lang)
			owner.Follow("main a.button.secondary")
			if got := owner.Path(); got != team {
				t.Errorf("keeping the member goes to %s, want the team page", got)
			}
			if accs, err := app.Store.Accounts(t.Context(), in.ID); err != nil || len(accs) < 2 {
				t.Errorf("after going back the team has %d accounts (%v)", len(accs), err)
			}
			// Inviting the address again: the message next to the field, the address kept.
			owner.Fill("#invite-email", email)
			owner.Follow("form[action$='/team/invitations'] button[type='submit']")
			if status := owner.Status(); status != http.StatusConflict {
				t.Errorf("inviting a member's address again: %d, want 409", status)
			}
			if got, want := owner.Text("#invite-problem"), tc["team.invite.taken"]; got != want {
				t.Errorf("message next to the form %q, want %q", got, want)
			}
			if got := owner.Value("#invite-email"); got != email {
				t.Errorf("the address typed became %q", got)
			}
			check(owner, "team-invite-refused."+lang)
		})
	}
	if !browsertest.HasAxe() {
		browsertest.Unavailable(t, browsertest.MissingAxe)
	}
}
