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

func TestLockoutFor(t *testing.T) {
	want := map[int]time.Duration{0: 0, 1: 0, 4: 0, 5: time.Minute, 6: 2 * time.Minute, 7: 4 * time.Minute,
		10: 32 * time.Minute, 11: time.Hour, 12: time.Hour, 1000: time.Hour}
	for n, d := range want {
		if got := extension.LockoutFor(n); got != d {
			t.Errorf("LockoutFor(%d) = %v, want %v", n, got, d)
		}
	}
}

// TestLockoutAcrossReplicas counts failures alternately on two stores on one database:
// the count and the lock are the database's, so both replicas see one account.
func TestLockoutAcrossReplicas(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		clk := extensiontest.NewClock(ssoStart)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr, Now: clk.Now}),
			extensiontest.Open(t, url, extension.Options{Keys: kr, Now: clk.Now}),
		}
		installInstances(t, stores[0], "i-1")
		tm := &team{s: stores[0], clk: clk, owner: ensureAccount(t, stores[0], "i-1", "u-owner")}
		acc := tm.invite(t, tm.owner, "ada@example.com", extension.RoleMember)
		for i := 1; i <= 7; i++ {
			n, until, err := stores[i%2].RecordLoginFailure(ctx, acc.ID)
			if err != nil {
				t.Fatal(err)
			}
			var want time.Time
			if d := extension.LockoutFor(i); d > 0 {
				want = ssoStart.Add(d)
			}
			if n != i || !until.Equal(want) {
				t.Errorf("failure %d: count %d, locked until %v; want %d, %v", i, n, until, i, want)
			}
			got, _, err := stores[(i+1)%2].LocalCredentials(ctx, "i-1", "ada@example.com")
			if err != nil {
				t.Fatal(err)
			}
			if got.FailedLogins != i || !got.LockedUntil.Equal(want) || got.Locked(ssoStart) != !want.IsZero() {
				t.Errorf("failure %d seen from the other replica: %d, %v", i, got.FailedLogins, got.LockedUntil)
			}
		}
		if err := stores[1].ResetLoginFailures(ctx, acc.ID); err != nil {
			t.Fatal(err)
		}
		got, _, _ := stores[0].LocalCredentials(ctx, "i-1", "ada@example.com")
		if got.FailedLogins != 0 || !got.LockedUntil.IsZero() || got.Locked(ssoStart) {
			t.Errorf("after a success: %d failures, locked until %v", got.FailedLogins, got.LockedUntil)
		}
		// 20 failures at once on both replicas all count.
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				if _, _, err := stores[i%2].RecordLoginFailure(ctx, acc.ID); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		got, _, _ = stores[0].LocalCredentials(ctx, "i-1", "ada@example.com")
		if got.FailedLogins != 20 || !got.LockedUntil.Equal(ssoStart.Add(time.Hour)) {
			t.Errorf("after 20 concurrent failures: %d, locked until %v; want 20, an hour", got.FailedLogins, got.LockedUntil)
		}
		if _, _, err := stores[0].RecordLoginFailure(ctx, tm.owner.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("a platform user's failure: %v, want ErrNotFound (no password here)", err)
		}
	})
}

func TestPasswordReset(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		for _, tc := range []struct {
			name, actor, account string
			want                 error
		}{
			{"member resets nobody", member.ID, admin.ID, extension.ErrForbidden},
			{"admin cannot reset an owner", admin.ID, tm.owner.ID, extension.ErrForbidden},
			{"a platform user has no password here", tm.owner.ID, tm.owner.ID, extension.ErrNotLocalAccount},
			{"one's own password is the account page's", admin.ID, admin.ID, extension.ErrForbidden},
			{"another instance's owner", tm.other.ID, member.ID, extension.ErrForbidden},
			{"unknown account", tm.owner.ID, "a-unknown", extension.ErrNotFound},
		} {
			if _, _, err := tm.s.IssuePasswordReset(ctx, "i-1", tc.actor, tc.account); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		for range 6 {
			if _, _, err := tm.s.RecordLoginFailure(ctx, member.ID); err != nil {
				t.Fatal(err)
			}
		}
		first, _, err := tm.s.IssuePasswordReset(ctx, "i-1", admin.ID, member.ID)
		if err != nil {
			t.Fatal(err)
		}
		token, pr, err := tm.s.IssuePasswordReset(ctx, "i-1", admin.ID, member.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := extension.PasswordReset{AccountID: member.ID, InstanceID: "i-1", CreatedBy: admin.ID, CreatedAt: ssoStart, ExpiresAt: ssoStart.Add(extension.PasswordResetTTL)}
		if diff := cmp.Diff(want, pr); diff != "" {
			t.Errorf("issued reset (-want +got):\n%s", diff)
		}
		if _, err := tm.s.PasswordResetByToken(ctx, first); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the earlier link after a new one: %v, want ErrNotFound", err)
		}
		if got, err := tm.s.PasswordResetByToken(ctx, token); err != nil || !cmp.Equal(got, want) {
			t.Errorf("PasswordResetByToken = %+v, %v", got, err)
		}
		for _, cell := range rawCells(t, tm.s, "password_resets") {
			if strings.Contains(cell, token.Reveal()) {
				t.Error("the password_resets table holds the token")
			}
		}
		s1 := createSession(t, tm.s, member, absolute)
		s2 := createSession(t, tm.s, member, absolute)
		keepOther := createSession(t, tm.s, admin, absolute)

		tm.clk.Advance(time.Minute)
		acc, err := tm.s.ConsumePasswordReset(ctx, token, "$argon2id$new")
		if err != nil {
			t.Fatal(err)
		}
		if acc.ID != member.ID || acc.FailedLogins != 0 || !acc.LockedUntil.IsZero() {
			t.Errorf("account after the reset: %+v", acc)
		}
		if _, hash, _ := tm.s.LocalCredentials(ctx, "i-1", "member@example.com"); hash != "$argon2id$new" {
			t.Errorf("hash after the reset: %q", hash)
		}
		checkNoSession(t, tm.s, "member's first session after the reset", s1)
		checkNoSession(t, tm.s, "member's second session after the reset", s2)
		checkSession(t, tm.s, keepOther, admin)
		if _, err := tm.s.ConsumePasswordReset(ctx, token, "$argon2id$again"); !errors.Is(err, extension.ErrResetUsed) {
			t.Errorf("second use: got %v, want ErrResetUsed", err)
		}
		if _, err := tm.s.PasswordResetByToken(ctx, token); !errors.Is(err, extension.ErrResetUsed) {
			t.Errorf("PasswordResetByToken of a used link: %v, want ErrResetUsed", err)
		}

		// Expiry, and the operator's and the forgotten-password links.
		late, _, err := tm.s.IssuePasswordResetAsOperator(ctx, "i-1", admin.ID)
		if err != nil {
			t.Fatal(err)
		}
		tm.clk.Advance(extension.PasswordResetTTL)
		if _, err := tm.s.ConsumePasswordReset(ctx, late, "$argon2id$late"); !errors.Is(err, extension.ErrResetExpired) {
			t.Errorf("expired link: got %v, want ErrResetExpired", err)
		}
		if _, _, _, err := tm.s.RequestPasswordReset(ctx, "i-1", "nobody@example.com"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("forgot password of an unknown address: %v, want ErrNotFound", err)
		}
		forgot, _, to, err := tm.s.RequestPasswordReset(ctx, "i-1", "ADMIN@example.com")
		if err != nil || to.ID != admin.ID {
			t.Fatalf("forgot password: %+v, %v", to, err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, extension.Secret("malformed"), "$argon2id$x"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("malformed token: %v, want ErrNotFound", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, forgot, ""); !errors.Is(err, extension.ErrNoPassword) {
			t.Errorf("no hash: %v, want ErrNoPassword", err)
		}
		if _, err := tm.s.ConsumePasswordReset(ctx, forgot, "$argon2id$forgot"); err != nil {
			t.Errorf("forgot-password link: %v", err)
		}
		got := auditKinds(t, tm.s, "i-1")[4:]
		want2 := []string{extension.AuditPasswordResetIssued, extension.AuditPasswordResetIssued, extension.AuditPasswordReset,
			extension.AuditPasswordResetIssued, extension.AuditPasswordResetIssued, extension.AuditPasswordReset}
		if diff := cmp.Diff(want2, got); diff != "" {
			t.Errorf("audit log (-want +got):\n%s", diff)
		}
	})
}

// TestPasswordResetRace uses one link many times at once on two replicas: one wins.
func TestPasswordResetRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{extensiontest.Open(t, url, extension.Options{Keys: kr}), extensiontest.Open(t, url, extension.Options{Keys: kr})}
		installInstances(t, stores[0], "i-1")
		tm := &team{s: stores[0], owner: ensureAccount(t, stores[0], "i-1", "u-owner")}
		acc := tm.invite(t, tm.owner, "ada@example.com", extension.RoleMember)
		token, _, err := stores[0].IssuePasswordReset(ctx, "i-1", tm.owner.ID, acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			won      []string
			refusals int
		)
		for i := range 8 {
			wg.Go(func() {
				hash := fmt.Sprintf("$argon2id$racer-%d", i)
				_, err := stores[i%2].ConsumePasswordReset(ctx, token, hash)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, hash)
				case errors.Is(err, extension.ErrResetUsed):
					refusals++
				default:
					t.Errorf("racer %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 || refusals != 7 {
			t.Fatalf("%d uses won, %d refused; want 1 and 7", len(won), refusals)
		}
		if _, hash, _ := stores[1].LocalCredentials(ctx, "i-1", "ada@example.com"); hash != won[0] {
			t.Errorf("stored hash %q, want the winner's %q", hash, won[0])
		}
	})
}

func TestChangePasswordAndProfile(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		acc := tm.invite(t, tm.owner, "ada@example.com", extension.RoleMember)
		current := createSession(t, tm.s, acc, absolute)
		other := createSession(t, tm.s, acc, absolute)
		if err := tm.s.ChangePassword(ctx, "i-1", acc.ID, "$argon2id$changed", current); err != nil {
			t.Fatal(err)
		}
		checkSession(t, tm.s, current, acc)
		checkNoSession(t, tm.s, "other session after a password change", other)
		if err := tm.s.ChangePassword(ctx, "i-1", tm.owner.ID, "$argon2id$x", ""); !errors.Is(err, extension.ErrNotLocalAccount) {
			t.Errorf("platform user's password: %v, want ErrNotLocalAccount", err)
		}
		if err := tm.s.ChangePassword(ctx, "i-2", acc.ID, "$argon2id$x", ""); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("password in another instance: %v, want ErrNotFound", err)
		}
		got, err := tm.s.UpdateProfile(ctx, "i-1", acc.ID, " Ada L. ", "de")
		if err != nil || got.Name != "Ada L." || got.Language != "de" {
			t.Errorf("UpdateProfile = %+v, %v", got, err)
		}
		if _, err := tm.s.UpdateProfile(ctx, "i-1", acc.ID, "Ada", "de'; DROP"); err == nil {
			t.Error("UpdateProfile took a language that is no tag")
		}
		if _, err := tm.s.UpdateProfile(ctx, "i-2", acc.ID, "Ada", "en"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("profile in another instance: %v, want ErrNotFound", err)
		}
	})
}
