package extension_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// signInOf is a platform sign-in of user in instance with fresh tokens.
func signInOf(instanceID, userID, email, name string, token extension.Secret) extension.PlatformSignIn {
	return extension.PlatformSignIn{InstanceID: instanceID, PlatformUserID: userID, Email: email, Name: name,
		DefaultRole: extension.RoleMember, Token: token, Refresh: token + "-refresh",
		TokenExpiresAt: ssoStart.Add(time.Hour), Session: extension.SessionStart{Absolute: 24 * time.Hour, UserAgent: "Browser/1.0"}}
}

// signInRows is what sign-ins left of a user in an instance.
type signInRows struct {
	account  extension.Account // zero without one
	token    extension.Secret  // "" without a row
	sessions int
	audits   int
}

func signInRowsOf(t *testing.T, s *extension.Store, instanceID, userID string) signInRows {
	t.Helper()
	ctx := context.Background()
	var out signInRows
	if _, err := s.PlatformAccountRole(ctx, instanceID, userID); err == nil {
		acc, _, err := s.EnsurePlatformAccount(ctx, instanceID, userID, "", "", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		out.account = acc
	} else if !errors.Is(err, extension.ErrNotFound) {
		t.Fatal(err)
	}
	switch tok, err := s.UserToken(ctx, userID, instanceID); {
	case err == nil:
		out.token = tok.Token
	case !errors.Is(err, extension.ErrNotFound):
		t.Fatal(err)
	}
	if err := s.SQLDB().QueryRowContext(ctx, s.Dialect().Rebind(`SELECT COUNT(*) FROM sessions WHERE instance_id = ? AND platform_user_id = ?`),
		instanceID, userID).Scan(&out.sessions); err != nil {
		t.Fatal(err)
	}
	if err := s.SQLDB().QueryRowContext(ctx, s.Dialect().Rebind(`SELECT COUNT(*) FROM audit_events e JOIN accounts a ON a.id = e.account_id
WHERE e.instance_id = ? AND a.platform_user_id = ? AND e.kind = 'sign_in'`), instanceID, userID).Scan(&out.audits); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSignInPlatformUser(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1")

		first, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-ada", "ada@example.test", "Ada", "tok-1"))
		if err != nil {
			t.Fatal(err)
		}
		if !first.Created || first.Account.Role != extension.RoleOwner || first.Account.Email != "ada@example.test" || first.Account.Name != "Ada" {
			t.Errorf("first sign-in: %+v, want a new owner account with the profile", first)
		}
		sess, err := s.SessionByID(ctx, first.SessionID, time.Hour, 24*time.Hour)
		if err != nil || sess.AccountID != first.Account.ID || sess.PlatformUserID != "u-ada" || sess.UserAgent != "Browser/1.0" ||
			!sess.ExpiresAt.Equal(ssoStart.Add(24*time.Hour)) || sess.Handle != first.Session.Handle {
			t.Errorf("session of the first sign-in: %+v, %v", sess, err)
		}
		tok, err := s.UserToken(ctx, "u-ada", "i-1")
		if err != nil || tok.Token != "tok-1" || tok.Refresh != "tok-1-refresh" || !tok.ExpiresAt.Equal(ssoStart.Add(time.Hour)) {
			t.Errorf("token of the first sign-in: %+v, %v", tok, err)
		}
		events, _, err := s.AuditEvents(ctx, "i-1", extension.AuditFilter{Kind: extension.AuditSignIn}, extension.AuditPage{})
		if err != nil || len(events) != 1 || events[0].AccountID != first.Account.ID || events[0].ActorName != "Ada" ||
			events[0].Detail["method"] != "platform" || !events[0].CreatedAt.Equal(ssoStart) {
			t.Errorf("audit of the first sign-in: %+v, %v", events, err)
		}

		// A later user gets the operator's default role, or the instance's template role
		// once an owner set one.
		bob, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-bob", "bob@example.test", "Bob", "tok-bob"))
		if err != nil || !bob.Created || bob.Account.Role != extension.RoleMember {
			t.Errorf("second user: %+v, %v; want a new member", bob, err)
		}
		set := extension.DefaultInstanceSettings()
		set.DefaultRole = extension.RoleAdmin
		if _, err := s.UpdateInstanceSettings(ctx, "i-1", first.Account.ID, set); err != nil {
			t.Fatal(err)
		}
		carl, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-carl", "carl@example.test", "Carl", "tok-carl"))
		if err != nil || !carl.Created || carl.Account.Role != extension.RoleAdmin {
			t.Errorf("user after a template role: %+v, %v; want a new admin", carl, err)
		}

		// Ada again, in the same browser: her new profile, her new tokens, a new session
		// in place of the one the browser brought.
		clk.Advance(time.Minute)
		again := signInOf("i-1", "u-ada", "ada@new.example.test", "", "tok-2")
		again.Session.Replaces = first.SessionID
		second, err := s.SignInPlatformUser(ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if second.Created || second.Account.ID != first.Account.ID || second.Account.Email != "ada@new.example.test" ||
			second.Account.Name != "Ada" || !second.Account.UpdatedAt.Equal(ssoStart.Add(time.Minute)) {
			t.Errorf("repeat sign-in: %+v, want Ada's account with the new address and the name kept", second)
		}
		if _, err := s.SessionByID(ctx, first.SessionID, time.Hour, 24*time.Hour); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the replaced session: %v, want ErrNotFound", err)
		}
		if second.SessionID == first.SessionID || second.Session.Handle == first.Session.Handle {
			t.Error("a repeat sign-in reused the session id or handle")
		}
		if got := signInRowsOf(t, s, "i-1", "u-ada"); got.token != "tok-2" || got.sessions != 1 || got.audits != 2 {
			t.Errorf("after the repeat sign-in: token %q, %d sessions, %d audit events; want tok-2, 1, 2", got.token, got.sessions, got.audits)
		}
	})
}

// TestSignInPlatformUserRefused: a sign-in into a disabled, removed or unknown instance,
// or of a new user outside the allowed domains, writes nothing at all.
func TestSignInPlatformUserRefused(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1", "i-off", "i-gone")
		owner, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-owner", "owner@elsewhere.test", "Owner", "tok-o"))
		if err != nil {
			t.Fatal(err)
		}
		set := extension.DefaultInstanceSettings()
		set.AllowedDomains = []string{"example.test"}
		if _, err := s.UpdateInstanceSettings(ctx, "i-1", owner.Account.ID, set); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-eve", "eve@other.test", "Eve", "tok-e")); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Errorf("address outside the allowed domains: %v, want ErrDomainNotAllowed", err)
		}
		if got := signInRowsOf(t, s, "i-1", "u-eve"); got != (signInRows{}) {
			t.Errorf("a refused address left %+v", got)
		}
		// The owner's own address is outside them: an existing account signs in.
		if _, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-owner", "owner@elsewhere.test", "", "tok-o2")); err != nil {
			t.Errorf("existing account outside the domains: %v", err)
		}

		mustApply(t, s, updatedEvent("i-off", at(2), false, "default", "project:read"), extension.OutcomeApplied)
		mustApply(t, s, removedEvent("i-gone", at(2)), extension.OutcomeApplied)
		for _, id := range []string{"i-off", "i-gone", "i-unknown"} {
			if _, err := s.SignInPlatformUser(ctx, signInOf(id, "u-ada", "ada@example.test", "Ada", "tok-a")); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("instance %s: %v, want ErrNotFound", id, err)
			}
			if got := signInRowsOf(t, s, id, "u-ada"); got != (signInRows{}) {
				t.Errorf("instance %s: a refused sign-in left %+v", id, got)
			}
		}
	})
}

// failWritesTo makes every insert into table fail in the database itself, by a trigger:
// the failure a full disk, a lost connection or a violated constraint would cause at that
// statement. It returns the trigger's removal.
func failWritesTo(t *testing.T, s *extension.Store, table string) func() {
	t.Helper()
	ctx := context.Background()
	var create, drop []string
	name := "fail_" + table
	if s.Dialect() == extension.Postgres {
		// The function lives in the test's own schema (its search_path), like the trigger.
		create = []string{
			`CREATE FUNCTION ` + name + `() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
			`CREATE TRIGGER ` + name + ` BEFORE INSERT ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION ` + name + `()`,
		}
		drop = []string{`DROP TRIGGER ` + name + ` ON ` + table, `DROP FUNCTION ` + name + `()`}
	} else {
		create = []string{`CREATE TRIGGER ` + name + ` BEFORE INSERT ON ` + table + ` BEGIN SELECT RAISE(ABORT, 'injected failure'); END`}
		drop = []string{`DROP TRIGGER ` + name}
	}
	for _, q := range create {
		if _, err := s.SQLDB().ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return func() {
		for _, q := range drop {
			if _, err := s.SQLDB().ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
}

// TestSignInPlatformUserAllOrNothing: when a write of a sign-in fails in the database (the
// session's, or the audit event's, the last), nothing of it stays: no account, no tokens,
// no session for a first sign-in; for a repeat sign-in the earlier tokens, profile and
// session are as they were. Then the same sign-in succeeds.
func TestSignInPlatformUserAllOrNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		for _, table := range []string{"sessions", "audit_events"} {
			t.Run(table, func(t *testing.T) {
				ctx := context.Background()
				s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1")
				earlier, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-ada", "ada@example.test", "Ada", "tok-1"))
				if err != nil {
					t.Fatal(err)
				}
				before := signInRowsOf(t, s, "i-1", "u-ada")

				restore := failWritesTo(t, s, table)
				if _, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-bob", "bob@example.test", "Bob", "tok-bob")); err == nil {
					t.Fatal("a first sign-in succeeded while its writes fail")
				}
				if got := signInRowsOf(t, s, "i-1", "u-bob"); got != (signInRows{}) {
					t.Errorf("a failed first sign-in left %+v", got)
				}
				again := signInOf("i-1", "u-ada", "ada@new.example.test", "Ada Lovelace", "tok-2")
				again.Session.Replaces = earlier.SessionID
				if _, err := s.SignInPlatformUser(ctx, again); err == nil {
					t.Fatal("a repeat sign-in succeeded while its writes fail")
				}
				if got := signInRowsOf(t, s, "i-1", "u-ada"); got.token != before.token || got.sessions != before.sessions ||
					got.audits != before.audits || got.account != before.account {
					t.Errorf("a failed repeat sign-in changed %+v to %+v", before, got)
				}
				if _, err := s.SessionByID(ctx, earlier.SessionID, time.Hour, 24*time.Hour); err != nil {
					t.Errorf("the session a failed sign-in would have replaced: %v", err)
				}

				restore()
				if done, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-bob", "bob@example.test", "Bob", "tok-bob")); err != nil || !done.Created {
					t.Errorf("the sign-in once writes work: %+v, %v", done, err)
				}
				if got := signInRowsOf(t, s, "i-1", "u-bob"); got.account.ID == "" || got.token != "tok-bob" || got.sessions != 1 || got.audits != 1 {
					t.Errorf("after the sign-in: %+v", got)
				}
			})
		}
	})
}

// TestSignInPlatformUserCancelled: a sign-in whose context is cancelled writes nothing.
func TestSignInPlatformUserCancelled(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.SignInPlatformUser(ctx, signInOf("i-1", "u-ada", "ada@example.test", "Ada", "tok-1")); !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled sign-in: %v, want context.Canceled", err)
		}
		if got := signInRowsOf(t, s, "i-1", "u-ada"); got != (signInRows{}) {
			t.Errorf("a cancelled sign-in left %+v", got)
		}
	})
}

// TestSignInPlatformUserConcurrent: first sign-ins of many users at once, on two stores
// of one database (two replicas), while the instance is disabled and enabled again, make
// exactly one owner; every sign-in either completes whole or is refused whole
// (ErrNotFound while disabled), and none fails otherwise (a deadlock between a sign-in
// and the lifecycle's writes would).
func TestSignInPlatformUserConcurrent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		installInstances(t, stores[0], "i-1")
		const users = 12
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created = map[string]extension.PlatformSignedIn{}
		)
		start := make(chan struct{})
		for i := range users {
			wg.Go(func() {
				<-start
				user := fmt.Sprintf("u-%02d", i)
				for round := range 3 {
					done, err := stores[i%2].SignInPlatformUser(ctx, signInOf("i-1", user, user+"@example.test", user, extension.Secret(fmt.Sprintf("tok-%d", round))))
					if errors.Is(err, extension.ErrNotFound) {
						continue // disabled at that moment
					}
					if err != nil {
						t.Errorf("sign-in of %s: %v", user, err)
						return
					}
					if done.Created {
						mu.Lock()
						created[user] = done
						mu.Unlock()
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			for i := range 4 {
				// Newer events each time: every one is applied.
				ev := updatedEvent("i-1", at(10+i), i%2 == 1, "default", "project:read")
				if _, err := stores[1].ApplyLifecycle(ctx, ev); err != nil {
					t.Errorf("lifecycle event %d: %v", i, err)
				}
			}
		})
		close(start)
		wg.Wait()
		owners := 0
		for user, done := range created {
			if done.Account.Role == extension.RoleOwner {
				owners++
			}
			got := signInRowsOf(t, stores[0], "i-1", user)
			if got.account.ID != done.Account.ID {
				t.Errorf("%s: account %+v, want %s", user, got.account, done.Account.ID)
			}
		}
		if len(created) > 0 && owners != 1 {
			t.Errorf("%d owners among %d new accounts, want exactly 1", owners, len(created))
		}
		if n := countRows(t, stores[0], "accounts"); n != len(created) {
			t.Errorf("%d accounts, %d created by sign-ins", n, len(created))
		}
		// Every account has the audit event of the sign-in that made it; no token or
		// session exists without an account.
		var orphans int
		if err := stores[0].SQLDB().QueryRowContext(ctx, `SELECT
	(SELECT COUNT(*) FROM user_tokens t WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.instance_id = t.instance_id AND a.platform_user_id = t.platform_user_id))
	+ (SELECT COUNT(*) FROM accounts a WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.account_id = a.id))`).Scan(&orphans); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Errorf("%d tokens without an account or accounts without their sign-in's audit event", orphans)
		}
	})
}

// TestSignInRepeatBesideDisable: a repeat sign-in (the user's account, token and session
// exist) racing a disable of its instance, many instances at once on two stores of one
// database (two replicas), round after round. Neither fails: before every sign-in locked
// the instance's row first, the sign-in wrote the user's token and then waited for the
// session the disable had deleted, while the disable waited for that token, and
// PostgreSQL ended one of them with a deadlock (40P01). And the disable wins whole: once
// both are done, the instance is disabled and nothing of a sign-in is left in it.
func TestSignInRepeatBesideDisable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		const instances, rounds = 12, 6
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() {
				id := fmt.Sprintf("i-race-%02d", i)
				user := "u-" + id
				signIn, disable := stores[i%2], stores[(i+1)%2]
				for round := range rounds {
					// Enabled by a newer event each round, the first an install.
					var enable extension.LifecycleEvent
					if round == 0 {
						enable = addedEvent(id, at(2*round), realisticSecret)
					} else {
						enable = updatedEvent(id, at(2*round), true, "default", "project:read")
					}
					if _, err := disable.ApplyLifecycle(ctx, enable); err != nil {
						t.Errorf("%s round %d: enable: %v", id, round, err)
						return
					}
					first, err := signIn.SignInPlatformUser(ctx, signInOf(id, user, user+"@example.test", "Ada", "tok-first"))
					if err != nil {
						t.Errorf("%s round %d: first sign-in: %v", id, round, err)
						return
					}
					again := signInOf(id, user, user+"@example.test", "Ada Lovelace", "tok-again")
					again.Session.Replaces = first.SessionID
					var race sync.WaitGroup
					start := make(chan struct{})
					race.Go(func() {
						<-start
						if _, err := signIn.SignInPlatformUser(ctx, again); err != nil && !errors.Is(err, extension.ErrNotFound) {
							t.Errorf("%s round %d: repeat sign-in beside a disable: %v", id, round, err)
						}
					})
					race.Go(func() {
						<-start
						if _, err := disable.ApplyLifecycle(ctx, updatedEvent(id, at(2*round+1), false, "default", "project:read")); err != nil {
							t.Errorf("%s round %d: disable beside a repeat sign-in: %v", id, round, err)
						}
					})
					close(start)
					race.Wait()
					in, err := signIn.InstanceByID(ctx, id)
					if err != nil {
						t.Errorf("%s round %d: %v", id, round, err)
						return
					}
					var sessions, tokens int
					if err := signIn.SQLDB().QueryRowContext(ctx, signIn.Dialect().Rebind(`SELECT
	(SELECT COUNT(*) FROM sessions WHERE instance_id = ?), (SELECT COUNT(*) FROM user_tokens WHERE instance_id = ?)`), id, id).Scan(&sessions, &tokens); err != nil {
						t.Errorf("%s round %d: %v", id, round, err)
						return
					}
					if in.Enabled || sessions != 0 || tokens != 0 {
						t.Errorf("%s round %d: enabled %v, %d sessions, %d user tokens; want disabled, none of them",
							id, round, in.Enabled, sessions, tokens)
					}
				}
			})
		}
		wg.Wait()
	})
}
