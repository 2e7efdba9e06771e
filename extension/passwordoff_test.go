package extension_test

import (
	"context"
	"errors"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
)

// setPasswordLogin stores the instance's settings with password sign-in on or off and the
// allowed domains, on behalf of the team's owner.
func setPasswordLogin(t *testing.T, tm *team, on bool, domains ...string) {
	t.Helper()
	_, err := tm.s.UpdateInstanceSettings(context.Background(), "i-1", tm.owner.ID,
		extension.InstanceSettings{DefaultRole: extension.RoleMember, AllowedDomains: domains, PasswordLogin: on})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPasswordLoginOff: while password sign-in is off, nothing that serves it works, and
// nothing changes when it is refused; turning it off ends the local accounts' sessions
// and no one else's; on again, the refused links work.
func TestPasswordLoginOff(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		_, inviteTok, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "new@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		resetTok, _, err := tm.s.IssuePasswordReset(ctx, "i-1", admin.ID, member.ID)
		if err != nil {
			t.Fatal(err)
		}
		localSession := createSession(t, tm.s, member, absolute)
		adminSession := createSession(t, tm.s, admin, absolute)
		ownerSession := createSession(t, tm.s, tm.owner, absolute)
		otherSession := createSession(t, tm.s, tm.other, absolute)
		before := len(auditKinds(t, tm.s, "i-1"))

		setPasswordLogin(t, tm, false)
		checkNoSession(t, tm.s, "a local member's session after password sign-in went off", localSession)
		checkNoSession(t, tm.s, "a local admin's session after password sign-in went off", adminSession)
		checkSession(t, tm.s, ownerSession, tm.owner)
		checkSession(t, tm.s, otherSession, tm.other)
		// Saving the settings again while off ends nothing: new sessions of platform users stay.
		ownerSession2 := createSession(t, tm.s, tm.owner, absolute)
		setPasswordLogin(t, tm, false)
		checkSession(t, tm.s, ownerSession2, tm.owner)

		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "later@example.com", extension.RoleMember); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("invite while off: %v, want ErrPasswordLoginOff", err)
		}
		if _, _, err := tm.s.IssuePasswordReset(ctx, "i-1", tm.owner.ID, member.ID); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("reset link while off: %v, want ErrPasswordLoginOff", err)
		}
		if _, _, _, err := tm.s.RequestPasswordReset(ctx, "i-1", "member@example.com"); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("forgot password while off: %v, want ErrPasswordLoginOff", err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, inviteTok, "New", fakeHash); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("accept while off: %v, want ErrPasswordLoginOff", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, resetTok, "$argon2id$off"); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("use a reset link while off: %v, want ErrPasswordLoginOff", err)
		}
		// Nothing changed: the links are unused, no account was made, only the two
		// settings changes were recorded.
		if inv, err := tm.s.Invitation(ctx, inviteTok); err != nil || inv.State != extension.InvitationPending {
			t.Errorf("invitation after a refused accept: %+v, %v", inv, err)
		}
		if _, err := tm.s.PasswordResetByToken(ctx, resetTok); err != nil {
			t.Errorf("reset link after a refused use: %v", err)
		}
		if _, _, err := tm.s.LocalCredentials(ctx, "i-1", "new@example.com"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("an account of the refused invitation: %v", err)
		}
		if got := len(auditKinds(t, tm.s, "i-1")); got != before+2 {
			t.Errorf("audit events while off: %d new, want 2 (the settings changes)", got-before)
		}

		setPasswordLogin(t, tm, true)
		if _, err := tm.s.AcceptInvitation(ctx, inviteTok, "New", fakeHash); err != nil {
			t.Errorf("accept after password sign-in is on again: %v", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, resetTok, "$argon2id$on"); err != nil {
			t.Errorf("use the reset link after password sign-in is on again: %v", err)
		}
	})
}

// TestAcceptInvitationDomainNowRefused: an invitation whose address's domain the owner
// no longer allows cannot be accepted, and the refusal changes nothing.
func TestAcceptInvitationDomainNowRefused(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		_, tok, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "ada@old.example", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		setPasswordLogin(t, tm, true, "new.example")
		before := len(auditKinds(t, tm.s, "i-1"))
		if _, err := tm.s.AcceptInvitation(ctx, tok, "Ada", fakeHash); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Fatalf("accept with a domain no longer allowed: %v, want ErrDomainNotAllowed", err)
		}
		if inv, err := tm.s.Invitation(ctx, tok); err != nil || inv.State != extension.InvitationPending {
			t.Errorf("invitation after the refusal: %+v, %v", inv, err)
		}
		if _, _, err := tm.s.LocalCredentials(ctx, "i-1", "ada@old.example"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("account after the refusal: %v", err)
		}
		if got := len(auditKinds(t, tm.s, "i-1")); got != before {
			t.Errorf("audit events after the refusal: %d new", got-before)
		}
		setPasswordLogin(t, tm, true, "new.example", "old.example")
		if _, err := tm.s.AcceptInvitation(ctx, tok, "Ada", fakeHash); err != nil {
			t.Errorf("accept once the domain is allowed again: %v", err)
		}
	})
}

// TestForgotPasswordActor: a forgot-password link is recorded with its own actor label.
func TestForgotPasswordActor(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		tm.invite(t, tm.owner, "ada@example.com", extension.RoleMember)
		if _, _, _, err := tm.s.RequestPasswordReset(ctx, "i-1", "ada@example.com"); err != nil {
			t.Fatal(err)
		}
		evs, _, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{}, extension.AuditPage{Limit: 1})
		if err != nil || len(evs) != 1 {
			t.Fatal(evs, err)
		}
		if ev := evs[0]; ev.Kind != extension.AuditPasswordResetIssued || ev.AccountID != "" || ev.ActorName != extension.ActorForgotPassword {
			t.Errorf("forgot-password event: %+v", ev)
		}
	})
}
