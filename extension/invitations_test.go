package extension_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

func TestInvitationLifecycle(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		inv, token, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "  Ada@Bücher.example ", extension.RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		if len(token.Reveal()) != 43 {
			t.Errorf("token of %d characters, want 43 (256 bits, base64url)", len(token.Reveal()))
		}
		want := extension.Invitation{ID: inv.ID, InstanceID: "i-1", Email: "Ada@Bücher.example", Role: extension.RoleAdmin,
			InvitedBy: tm.owner.ID, InviterName: tm.owner.Name, CreatedAt: ssoStart, ExpiresAt: ssoStart.Add(extension.InvitationTTL),
			State: extension.InvitationPending}
		if diff := cmp.Diff(want, inv); diff != "" {
			t.Errorf("created invitation (-want +got):\n%s", diff)
		}
		if got, err := tm.s.Invitation(ctx, token); err != nil || !cmp.Equal(got, want) {
			t.Errorf("Invitation(token) = %+v, %v; want %+v", got, err, want)
		}
		// Only the token's hash is stored.
		for _, cell := range rawCells(t, tm.s, "invitations") {
			if strings.Contains(cell, token.Reveal()) {
				t.Errorf("the invitations table holds the token")
			}
		}
		open, err := tm.s.OpenInvitations(ctx, "i-1")
		if err != nil || len(open) != 1 || open[0].ID != inv.ID {
			t.Errorf("OpenInvitations = %+v, %v", open, err)
		}

		tm.clk.Advance(time.Hour)
		acc, err := tm.s.AcceptInvitation(ctx, token, "  Ada Lovelace ", fakeHash)
		if err != nil {
			t.Fatal(err)
		}
		if acc.Name != "Ada Lovelace" || acc.Role != extension.RoleAdmin || !acc.Local() || acc.Email != "Ada@Bücher.example" || acc.InstanceID != "i-1" {
			t.Errorf("accepted account: %+v", acc)
		}
		got, hash, err := tm.s.LocalCredentials(ctx, "i-1", "ada@xn--bcher-kva.EXAMPLE")
		if err != nil || got.ID != acc.ID || hash != fakeHash {
			t.Errorf("LocalCredentials by another spelling: %+v, %q, %v", got, hash, err)
		}
		if _, _, err := tm.s.LocalCredentials(ctx, "i-2", "ada@bücher.example"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("LocalCredentials in another instance: %v, want ErrNotFound", err)
		}
		used, err := tm.s.Invitation(ctx, token)
		if err != nil || used.State != extension.InvitationUsed || used.AcceptedAccount != acc.ID || !used.UsedAt.Equal(ssoStart.Add(time.Hour)) {
			t.Errorf("used invitation: %+v, %v", used, err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, token, "Again", fakeHash); !errors.Is(err, extension.ErrInvitationUsed) {
			t.Errorf("second acceptance: got %v, want ErrInvitationUsed", err)
		}
		if open, _ := tm.s.OpenInvitations(ctx, "i-1"); len(open) != 0 {
			t.Errorf("open invitations after acceptance: %+v", open)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "ADA@bücher.example", extension.RoleMember); !errors.Is(err, extension.ErrEmailTaken) {
			t.Errorf("inviting a local account's address: got %v, want ErrEmailTaken", err)
		}
		// The address is the instance's: another instance may invite it.
		if _, _, err := tm.s.CreateInvitation(ctx, "i-2", tm.other.ID, "ada@bücher.example", extension.RoleMember); err != nil {
			t.Errorf("the same address in another instance: %v", err)
		}
		// A platform user's address does not count: the two would be separate accounts.
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, tm.owner.Email, extension.RoleMember); err != nil {
			t.Errorf("inviting a platform user's address: %v", err)
		}
	})
}

func TestInvitationRefusals(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		for _, tc := range []struct {
			name, actor, email, role string
			want                     error
		}{
			{"member invites nobody", member.ID, "x@example.com", extension.RoleMember, extension.ErrForbidden},
			{"admin cannot invite an owner", admin.ID, "x@example.com", extension.RoleOwner, extension.ErrForbidden},
			{"another instance's owner", tm.other.ID, "x@example.com", extension.RoleMember, extension.ErrForbidden},
			{"no actor", "", "x@example.com", extension.RoleMember, extension.ErrForbidden},
			{"invalid address", admin.ID, "not an address", extension.RoleMember, extension.ErrInvalidEmail},
			{"unknown role", tm.owner.ID, "x@example.com", "root", extension.ErrInvalidRole},
			{"taken address", admin.ID, "Member@Example.com", extension.RoleMember, extension.ErrEmailTaken},
		} {
			if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tc.actor, tc.email, tc.role); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "x@example.com", extension.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "X@example.com", extension.RoleMember); !errors.Is(err, extension.ErrInvitationPending) {
			t.Errorf("a second open invitation of one address: got %v, want ErrInvitationPending", err)
		}
		// Allowed domains, as an owner sets them.
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, extension.InstanceSettings{DefaultRole: extension.RoleMember,
			AllowedDomains: []string{"Bücher.example", "example.org"}, PasswordLogin: true}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "y@example.com", extension.RoleMember); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Errorf("address outside the allowed domains: got %v, want ErrDomainNotAllowed", err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "y@sub.example.org", extension.RoleMember); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Errorf("a subdomain of an allowed domain: got %v, want ErrDomainNotAllowed", err)
		}
		for _, email := range []string{"y@BÜCHER.example", "y@example.org"} {
			if _, _, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, email, extension.RoleMember); err != nil {
				t.Errorf("address in an allowed domain %s: %v", email, err)
			}
		}
		// Bad acceptances change nothing.
		_, tok, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "z@example.org", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name, token, userName, hash string
			want                        error
		}{
			{"malformed token", "not-a-token", "Z", fakeHash, extension.ErrNotFound},
			{"unknown token", strings.Repeat("A", 43), "Z", fakeHash, extension.ErrNotFound},
			{"empty name", tok.Reveal(), "  ", fakeHash, extension.ErrInvalidName},
			{"name with a control character", tok.Reveal(), "Z\x1b[31m", fakeHash, extension.ErrInvalidName},
			{"name too long", tok.Reveal(), strings.Repeat("z", 201), fakeHash, extension.ErrInvalidName},
			{"no password", tok.Reveal(), "Z", "", extension.ErrNoPassword},
		} {
			if _, err := tm.s.AcceptInvitation(ctx, extension.Secret(tc.token), tc.userName, tc.hash); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		if inv, err := tm.s.Invitation(ctx, tok); err != nil || inv.State != extension.InvitationPending {
			t.Errorf("after refused acceptances: %+v, %v; want pending", inv, err)
		}
	})
}

func TestInvitationExpiryRevocationReissue(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)

		// Expiry: the link dies after seven days, and a new invitation of the address
		// replaces it.
		old, oldTok, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "late@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		tm.clk.Advance(extension.InvitationTTL)
		if _, err := tm.s.AcceptInvitation(ctx, oldTok, "Late", fakeHash); !errors.Is(err, extension.ErrInvitationExpired) {
			t.Errorf("expired invitation: got %v, want ErrInvitationExpired", err)
		}
		if inv, _ := tm.s.Invitation(ctx, oldTok); inv.State != extension.InvitationExpired || inv.InviterName != admin.Name {
			t.Errorf("expired invitation: %+v", inv)
		}
		fresh, freshTok, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "late@example.com", extension.RoleMember)
		if err != nil {
			t.Fatalf("inviting an address whose invitation expired: %v", err)
		}
		if inv, _ := tm.s.Invitation(ctx, oldTok); inv.State != extension.InvitationRevoked {
			t.Errorf("the expired invitation after a new one: %s, want revoked", inv.State)
		}

		// Revocation: by a role that could have granted it, once.
		if err := tm.s.RevokeInvitation(ctx, "i-1", member.ID, fresh.ID); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("member revokes: got %v, want ErrForbidden", err)
		}
		if err := tm.s.RevokeInvitation(ctx, "i-2", tm.other.ID, fresh.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("another instance revokes: got %v, want ErrNotFound", err)
		}
		if err := tm.s.RevokeInvitation(ctx, "i-1", admin.ID, fresh.ID); err != nil {
			t.Fatal(err)
		}
		if err := tm.s.RevokeInvitation(ctx, "i-1", admin.ID, fresh.ID); err != nil {
			t.Errorf("revoking again: %v", err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, freshTok, "Late", fakeHash); !errors.Is(err, extension.ErrInvitationRevoked) {
			t.Errorf("revoked invitation: got %v, want ErrInvitationRevoked", err)
		}

		// Re-issue: a new link, the old one dead, the re-issuer the inviter.
		re, reTok, err := tm.s.ReissueInvitation(ctx, "i-1", tm.owner.ID, old.ID)
		if err != nil {
			t.Fatal(err)
		}
		if re.ID == old.ID || re.Email != old.Email || re.Role != old.Role || re.InvitedBy != tm.owner.ID || re.State != extension.InvitationPending {
			t.Errorf("re-issued invitation: %+v", re)
		}
		if _, _, err := tm.s.ReissueInvitation(ctx, "i-1", tm.owner.ID, fresh.ID); !errors.Is(err, extension.ErrInvitationPending) {
			t.Errorf("re-issuing a second link of one address: got %v, want ErrInvitationPending", err)
		}
		re2, re2Tok, err := tm.s.ReissueInvitation(ctx, "i-1", admin.ID, re.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, reTok, "Late", fakeHash); !errors.Is(err, extension.ErrInvitationRevoked) {
			t.Errorf("link replaced by a re-issue: got %v, want ErrInvitationRevoked", err)
		}
		acc, err := tm.s.AcceptInvitation(ctx, re2Tok, "Late", fakeHash)
		if err != nil || acc.Role != extension.RoleMember {
			t.Fatalf("accepting the re-issued link: %+v, %v", acc, err)
		}
		if _, _, err := tm.s.ReissueInvitation(ctx, "i-1", admin.ID, re2.ID); !errors.Is(err, extension.ErrInvitationUsed) {
			t.Errorf("re-issuing a used invitation: got %v, want ErrInvitationUsed", err)
		}
		if err := tm.s.RevokeInvitation(ctx, "i-1", admin.ID, re2.ID); !errors.Is(err, extension.ErrInvitationUsed) {
			t.Errorf("revoking a used invitation: got %v, want ErrInvitationUsed", err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, oldTok, "Late", fakeHash); !errors.Is(err, extension.ErrInvitationRevoked) {
			t.Errorf("the first, expired link: got %v, want ErrInvitationRevoked", err)
		}
	})
}

// TestAcceptDuplicateEmail: an address that got a local account after it was invited
// (another way in, such as an operator's) makes the acceptance ErrEmailTaken, and leaves
// the invitation open.
func TestAcceptDuplicateEmail(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		_, tok, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "dup@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tm.s.SQLDB().Exec(d.Rebind(`INSERT INTO accounts (id, instance_id, email, email_normalized, password_hash, role, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), "a-dup", "i-1", "dup@example.com", "dup@example.com", fakeHash, extension.RoleMember, ssoStart, ssoStart)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.AcceptInvitation(ctx, tok, "Dup", fakeHash); !errors.Is(err, extension.ErrEmailTaken) {
			t.Errorf("accepting for a taken address: got %v, want ErrEmailTaken", err)
		}
		if inv, _ := tm.s.Invitation(ctx, tok); inv.State != extension.InvitationPending {
			t.Errorf("invitation after the refused acceptance: %s, want pending", inv.State)
		}
		if got := countRows(t, tm.s, "accounts"); got != 3 {
			t.Errorf("accounts: %d, want 3", got)
		}
	})
}

// TestInvitationRaces runs, through two stores on one database (two replicas): many
// acceptances of one link at once (exactly one wins), and many invitations of one address
// at once (exactly one is made; accepting it makes one account).
func TestInvitationRaces(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{extensiontest.Open(t, url, extension.Options{Keys: kr}), extensiontest.Open(t, url, extension.Options{Keys: kr})}
		installInstances(t, stores[0], "i-1")
		owner, _, err := stores[0].EnsurePlatformAccount(ctx, "i-1", "u-1", "", "Owner", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		race := func(n int, fn func(i int) error) map[string]int {
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				out   = map[string]int{}
				start = make(chan struct{})
			)
			for i := range n {
				wg.Go(func() {
					<-start
					err := fn(i)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						out["ok"]++
					case errors.Is(err, extension.ErrInvitationUsed):
						out["used"]++
					case errors.Is(err, extension.ErrInvitationPending):
						out["pending"]++
					case errors.Is(err, extension.ErrEmailTaken):
						out["taken"]++
					default:
						t.Errorf("unexpected: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			return out
		}
		for round := range 4 {
			email := fmt.Sprintf("race-%d@example.com", round)
			var tok extension.Secret
			var mu sync.Mutex
			got := race(8, func(i int) error {
				_, tk, err := stores[i%2].CreateInvitation(ctx, "i-1", owner.ID, email, extension.RoleMember)
				if err == nil {
					mu.Lock()
					tok = tk
					mu.Unlock()
				}
				return err
			})
			if diff := cmp.Diff(map[string]int{"ok": 1, "pending": 7}, got); diff != "" {
				t.Errorf("round %d: concurrent invitations of one address (-want +got):\n%s", round, diff)
			}
			got = race(8, func(i int) error {
				_, err := stores[i%2].AcceptInvitation(ctx, tok, fmt.Sprintf("Racer %d", i), fakeHash)
				return err
			})
			if diff := cmp.Diff(map[string]int{"ok": 1, "used": 7}, got); diff != "" {
				t.Errorf("round %d: concurrent acceptances of one link (-want +got):\n%s", round, diff)
			}
		}
		if got, want := countRows(t, stores[0], "accounts"), 1+4; got != want {
			t.Errorf("accounts: %d, want %d", got, want)
		}
	})
}

// TestLinksOfDisabledAndRemovedInstances: a disabled instance takes no new accounts and
// resets no password until it is enabled again; a removed one never again.
func TestLinksOfDisabledAndRemovedInstances(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		_, tok, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "new@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		reset, _, err := tm.s.IssuePasswordReset(ctx, "i-1", tm.owner.ID, member.ID)
		if err != nil {
			t.Fatal(err)
		}
		apply := func(ev extension.LifecycleEvent) {
			t.Helper()
			if res, err := tm.s.ApplyLifecycle(ctx, ev); err != nil || res.Outcome != extension.OutcomeApplied {
				t.Fatalf("apply %s: %+v, %v", ev.Kind, res, err)
			}
		}
		apply(updatedEvent("i-1", at(2), false, "default", "project:read"))
		if _, err := tm.s.AcceptInvitation(ctx, tok, "New", fakeHash); !errors.Is(err, extension.ErrDisabled) {
			t.Errorf("accepting in a disabled instance: %v, want ErrDisabled", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, reset, "$argon2id$x"); !errors.Is(err, extension.ErrDisabled) {
			t.Errorf("resetting in a disabled instance: %v, want ErrDisabled", err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "other@example.com", extension.RoleMember); !errors.Is(err, extension.ErrDisabled) {
			t.Errorf("inviting into a disabled instance: %v, want ErrDisabled", err)
		}
		apply(updatedEvent("i-1", at(3), true, "default", "project:read"))
		if _, err := tm.s.AcceptInvitation(ctx, tok, "New", fakeHash); err != nil {
			t.Errorf("accepting after the instance was enabled again: %v", err)
		}
		_, tok2, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "later@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		apply(removedEvent("i-1", at(4)))
		if _, err := tm.s.AcceptInvitation(ctx, tok2, "Later", fakeHash); !errors.Is(err, extension.ErrRemoved) {
			t.Errorf("accepting in a removed instance: %v, want ErrRemoved", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, reset, "$argon2id$x"); !errors.Is(err, extension.ErrRemoved) {
			t.Errorf("resetting in a removed instance: %v, want ErrRemoved", err)
		}
	})
}

func TestPruneLinks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		if _, _, err := tm.s.IssuePasswordReset(ctx, "i-1", tm.owner.ID, member.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "open@example.com", extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		r, i, err := tm.s.PruneLinks(ctx, ssoStart.Add(extension.PasswordResetTTL-time.Second))
		if err != nil || r != 0 || i != 0 {
			t.Errorf("pruning before any expiry: %d resets, %d invitations, %v", r, i, err)
		}
		r, i, err = tm.s.PruneLinks(ctx, ssoStart.Add(extension.InvitationTTL+31*24*time.Hour))
		if err != nil || r != 1 || i != 2 {
			t.Errorf("pruning long after: %d resets, %d invitations, %v; want 1 and 2", r, i, err)
		}
	})
}
