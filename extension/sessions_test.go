package extension_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

const (
	idle     = 30 * time.Minute
	absolute = 8 * time.Hour
)

// ensureAccount provisions a platform user's account.
func ensureAccount(t *testing.T, s *extension.Store, instanceID, userID string) extension.Account {
	t.Helper()
	acc, _, err := s.EnsurePlatformAccount(context.Background(), instanceID, userID, userID+"@example.com", "", extension.RoleMember)
	if err != nil {
		t.Fatalf("EnsurePlatformAccount(%s, %s): %v", instanceID, userID, err)
	}
	return acc
}

func createSession(t *testing.T, s *extension.Store, acc extension.Account, abs time.Duration) extension.Secret {
	t.Helper()
	id, _, err := s.CreateSession(context.Background(), acc.ID, acc.InstanceID, acc.PlatformUserID, abs)
	if err != nil {
		t.Fatalf("CreateSession(%s): %v", acc.ID, err)
	}
	return id
}

// checkSession checks that id names a live session of acc.
func checkSession(t *testing.T, s *extension.Store, id extension.Secret, acc extension.Account) extension.Session {
	t.Helper()
	sess, err := s.SessionByID(context.Background(), id, idle, absolute)
	if err != nil {
		t.Fatalf("SessionByID: %v", err)
	}
	if sess.AccountID != acc.ID || sess.InstanceID != acc.InstanceID || sess.PlatformUserID != acc.PlatformUserID {
		t.Errorf("session of account %s in %s for user %q, want account %s in %s for %q",
			sess.AccountID, sess.InstanceID, sess.PlatformUserID, acc.ID, acc.InstanceID, acc.PlatformUserID)
	}
	return sess
}

func checkNoSession(t *testing.T, s *extension.Store, name string, id extension.Secret) {
	t.Helper()
	if _, err := s.SessionByID(context.Background(), id, idle, absolute); !errors.Is(err, extension.ErrNotFound) {
		t.Errorf("%s: SessionByID: got %v, want ErrNotFound", name, err)
	}
}

func TestCreateSession(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1", "i-2")
		acc := ensureAccount(t, s, "i-1", "u-1")

		id, sess, err := s.CreateSession(ctx, acc.ID, "i-1", "u-1", absolute)
		if err != nil {
			t.Fatal(err)
		}
		if !extension.ValidSessionHandle(sess.Handle) {
			t.Errorf("handle %q, want 32 hex digits", sess.Handle)
		}
		want := extension.Session{AccountID: acc.ID, InstanceID: "i-1", PlatformUserID: "u-1",
			CreatedAt: ssoStart, LastSeenAt: ssoStart, ExpiresAt: ssoStart.Add(absolute), Handle: sess.Handle}
		if diff := cmp.Diff(want, sess); diff != "" {
			t.Errorf("created session (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, checkSession(t, s, id, acc)); diff != "" {
			t.Errorf("loaded session (-want +got):\n%s", diff)
		}

		// The cookie value: base64url of 32 random bytes.
		raw, err := base64.RawURLEncoding.DecodeString(id.Reveal())
		if err != nil || len(raw) != 32 || len(id.Reveal()) != 43 {
			t.Errorf("session id %d characters, %d bytes (%v); want 43 characters of base64url, 32 bytes", len(id.Reveal()), len(raw), err)
		}
		// Only its hash is stored.
		sum := sha256.Sum256(raw)
		cells := rawCells(t, s, "sessions")
		if !strings.Contains(strings.Join(cells, "\n"), "id_hash="+hex.EncodeToString(sum[:])) {
			t.Errorf("no cell holds the id's SHA-256: %q", cells)
		}
		for _, c := range cells {
			if strings.Contains(c, id.Reveal()) || strings.Contains(c, hex.EncodeToString(raw)) {
				t.Errorf("cell %q holds the session id", c)
			}
		}

		// Each sign-in gets a new id.
		again := createSession(t, s, acc, absolute)
		if again == id {
			t.Error("two sessions got one id")
		}
		checkSession(t, s, again, acc)
		checkSession(t, s, id, acc)

		// A session never pairs an account with another user or instance.
		other := ensureAccount(t, s, "i-2", "u-2")
		for _, tc := range []struct{ name, account, instance, user string }{
			{"another instance", acc.ID, "i-2", "u-1"},
			{"another user", acc.ID, "i-1", "u-2"},
			{"no user for a platform account", acc.ID, "i-1", ""},
			{"another instance's account", other.ID, "i-1", "u-2"},
			{"unknown account", "a-unknown", "i-1", "u-1"},
		} {
			if _, _, err := s.CreateSession(ctx, tc.account, tc.instance, tc.user, absolute); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("%s: got %v, want ErrNotFound", tc.name, err)
			}
		}
		if _, _, err := s.CreateSession(ctx, acc.ID, "i-1", "u-1", 0); err == nil {
			t.Error("a session without an absolute timeout was created")
		}
		if got := countRows(t, s, "sessions"); got != 2 {
			t.Errorf("sessions: %d rows, want 2", got)
		}
	})
}

// TestSessionOfLocalAccount starts a session of an account that is not a platform user's
// (no platform user id), as the frontend's local sign-in will.
func TestSessionOfLocalAccount(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1")
		ensureAccount(t, s, "i-1", "u-1") // the owner
		_, err := s.SQLDB().Exec(d.Rebind(`INSERT INTO accounts (id, instance_id, email, role, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?)`), "a-local", "i-1", "local@example.com", extension.RoleMember, ssoStart, ssoStart)
		if err != nil {
			t.Fatal(err)
		}
		local, err := s.AccountByID(ctx, "a-local")
		if err != nil {
			t.Fatal(err)
		}
		if local.PlatformUserID != "" {
			t.Errorf("local account: platform user %q, want none", local.PlatformUserID)
		}
		id := createSession(t, s, local, absolute)
		checkSession(t, s, id, local)
		if _, _, err := s.CreateSession(ctx, local.ID, "i-1", "u-1", absolute); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("a platform user's session on a local account: got %v, want ErrNotFound", err)
		}
	})
}

func TestSessionByIDMalformed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1")
		id := createSession(t, s, ensureAccount(t, s, "i-1", "u-1"), absolute)
		v := id.Reveal()
		unknown := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		for _, tc := range []struct{ name, id string }{
			{"empty", ""},
			{"short", v[:42]},
			{"long", v + "A"},
			{"padded", v + "="},
			{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(v[:42]) + "+"},
			{"line break", v[:20] + "\n" + v[20:42]},
			{"stray low bits", v[:42] + "B"},
			{"unknown", unknown},
			{"the stored hash", func() string { sum := sha256.Sum256([]byte(v)); return hex.EncodeToString(sum[:]) }()},
		} {
			if tc.id == v {
				continue
			}
			checkNoSession(t, s, tc.name, extension.Secret(tc.id))
		}
		if _, err := s.SessionByID(context.Background(), id, 0, absolute); err == nil || errors.Is(err, extension.ErrNotFound) {
			t.Errorf("zero idle timeout: got %v, want an error other than ErrNotFound", err)
		}
		if _, err := s.SessionByID(context.Background(), id, idle, 0); err == nil || errors.Is(err, extension.ErrNotFound) {
			t.Errorf("zero absolute timeout: got %v, want an error other than ErrNotFound", err)
		}
	})
}

func TestSessionTimeouts(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1")
		acc := ensureAccount(t, s, "i-1", "u-1")
		lastSeen := func(id extension.Secret) time.Time {
			t.Helper()
			sum := sha256.Sum256(func() []byte { b, _ := base64.RawURLEncoding.DecodeString(id.Reveal()); return b }())
			var at time.Time
			q := d.Rebind(`SELECT last_seen_at FROM sessions WHERE id_hash = ?`)
			if err := s.SQLDB().QueryRow(q, hex.EncodeToString(sum[:])).Scan(&at); err != nil {
				t.Fatalf("read last_seen_at: %v", err)
			}
			return at.UTC()
		}

		// keepBusy uses the session every 20 minutes from from until just before until:
		// it stays alive all along.
		keepBusy := func(from, until time.Time, id extension.Secret) {
			t.Helper()
			for at := from; at.Before(until); at = at.Add(20 * time.Minute) {
				clk.Set(at)
				checkSession(t, s, id, acc)
			}
			clk.Set(until.Add(-time.Microsecond))
			checkSession(t, s, id, acc)
		}

		t.Run("idle", func(t *testing.T) {
			clk.Set(ssoStart)
			id := createSession(t, s, acc, absolute)
			// Requests within a minute of the recorded activity write nothing.
			for _, after := range []time.Duration{time.Second, 30 * time.Second, time.Minute - time.Microsecond} {
				clk.Set(ssoStart.Add(after))
				if sess := checkSession(t, s, id, acc); !sess.LastSeenAt.Equal(ssoStart) {
					t.Errorf("after %v: LastSeenAt %v, want %v", after, sess.LastSeenAt, ssoStart)
				}
				if got := lastSeen(id); !got.Equal(ssoStart) {
					t.Errorf("after %v: last_seen_at written (%v): want no write within a minute", after, got)
				}
			}
			// A minute on, it is written once.
			touched := ssoStart.Add(time.Minute)
			clk.Set(touched)
			if sess := checkSession(t, s, id, acc); !sess.LastSeenAt.Equal(touched) {
				t.Errorf("after a minute: LastSeenAt %v, want %v", sess.LastSeenAt, touched)
			}
			clk.Set(touched.Add(10 * time.Second))
			checkSession(t, s, id, acc)
			if got := lastSeen(id); !got.Equal(touched) {
				t.Errorf("last_seen_at = %v, want %v", got, touched)
			}
			// Idle from the recorded activity.
			clk.Set(touched.Add(idle - time.Microsecond))
			checkSession(t, s, id, acc)
			if got := lastSeen(id); !got.Equal(touched.Add(idle - time.Microsecond)) {
				t.Errorf("last_seen_at = %v, want %v", got, touched.Add(idle-time.Microsecond))
			}
			clk.Set(touched.Add(2*idle - time.Microsecond))
			before := countRows(t, s, "sessions")
			checkNoSession(t, s, "idle for the idle timeout", id)
			if got := countRows(t, s, "sessions"); got != before-1 {
				t.Errorf("the idle session was not deleted: %d rows, want %d", got, before-1)
			}
			clk.Set(touched)
			checkNoSession(t, s, "after deletion, even at an earlier time", id)
		})

		t.Run("absolute", func(t *testing.T) {
			clk.Set(ssoStart)
			id := createSession(t, s, acc, absolute)
			keepBusy(ssoStart, ssoStart.Add(absolute), id)
			clk.Set(ssoStart.Add(absolute))
			checkNoSession(t, s, "at its absolute end", id)
			clk.Set(ssoStart.Add(absolute - time.Minute))
			checkNoSession(t, s, "deleted at its absolute end", id)
		})

		t.Run("shortened setting", func(t *testing.T) {
			clk.Set(ssoStart)
			id := createSession(t, s, acc, 24*time.Hour) // made under a longer setting
			keepBusy(ssoStart, ssoStart.Add(absolute), id)
			clk.Set(ssoStart.Add(absolute))
			checkNoSession(t, s, "past the current absolute timeout", id)
		})

		t.Run("shorter at creation", func(t *testing.T) {
			clk.Set(ssoStart)
			id := createSession(t, s, acc, time.Hour)
			keepBusy(ssoStart, ssoStart.Add(time.Hour), id)
			clk.Set(ssoStart.Add(time.Hour))
			checkNoSession(t, s, "past the absolute end set at creation", id)
		})
	})
}

func TestDeleteSessions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1", "i-2")
		a1, a2, b1 := ensureAccount(t, s, "i-1", "u-1"), ensureAccount(t, s, "i-1", "u-2"), ensureAccount(t, s, "i-2", "u-1")
		s1, s1b, s2, s3 := createSession(t, s, a1, absolute), createSession(t, s, a1, absolute), createSession(t, s, a2, absolute), createSession(t, s, b1, time.Hour)

		// Logout ends that session only.
		if err := s.DeleteSession(ctx, s1); err != nil {
			t.Fatal(err)
		}
		checkNoSession(t, s, "after logout", s1)
		checkSession(t, s, s1b, a1)
		for _, id := range []extension.Secret{s1, "", "not-a-session-id"} {
			if err := s.DeleteSession(ctx, id); err != nil {
				t.Errorf("DeleteSession of a gone or malformed id: %v", err)
			}
		}

		// Removing an instance ends its sessions only.
		if err := s.DeleteInstanceSessions(ctx, "i-1"); err != nil {
			t.Fatal(err)
		}
		checkNoSession(t, s, "instance's session after its deletion", s1b)
		checkNoSession(t, s, "instance's other user's session after its deletion", s2)
		checkSession(t, s, s3, b1)
		if err := s.DeleteInstanceSessions(ctx, "i-unknown"); err != nil {
			t.Errorf("deleting the sessions of an unknown instance: %v", err)
		}

		// Pruning deletes the sessions past their absolute end.
		s4 := createSession(t, s, a2, absolute)
		n, err := s.PruneSessions(ctx, ssoStart.Add(time.Hour-time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("prune before any end: %d rows, want 0", n)
		}
		if n, err = s.PruneSessions(ctx, ssoStart.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("prune at the end of the short session: %d rows, want 1", n)
		}
		checkSession(t, s, s4, a2)
		if got := countRows(t, s, "sessions"); got != 1 {
			t.Errorf("sessions: %d rows, want 1", got)
		}
	})
}

// TestSignedInSession: the one-statement read returns what the three separate reads
// return, ends an expired session the same way, and finds nothing once the account is
// gone.
func TestSignedInSession(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clock := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clock, "i-1", "i-2")
		acc := ensureAccount(t, s, "i-1", "u-1")
		id := createSession(t, s, acc, absolute)
		sess, gotAcc, gotIn, err := s.SignedInSession(ctx, id, idle, absolute)
		if err != nil {
			t.Fatal(err)
		}
		wantSess := checkSession(t, s, id, acc)
		wantAcc, err := s.AccountByID(ctx, acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantIn, err := s.InstanceByID(ctx, "i-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantSess, sess); diff != "" {
			t.Errorf("session (-separate +joined):\n%s", diff)
		}
		if diff := cmp.Diff(wantAcc, gotAcc); diff != "" {
			t.Errorf("account (-separate +joined):\n%s", diff)
		}
		wantIn.CreatedAt, wantIn.UpdatedAt = wantIn.CreatedAt.UTC(), wantIn.UpdatedAt.UTC()
		gotIn.CreatedAt, gotIn.UpdatedAt = gotIn.CreatedAt.UTC(), gotIn.UpdatedAt.UTC()
		if diff := cmp.Diff(wantIn, gotIn); diff != "" {
			t.Errorf("instance (-separate +joined):\n%s", diff)
		}
		if _, _, _, err := s.SignedInSession(ctx, "not-an-id", idle, absolute); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("malformed id: %v", err)
		}
		clock.Advance(idle + time.Minute)
		if _, _, _, err := s.SignedInSession(ctx, id, idle, absolute); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("idle session: %v, want ErrNotFound", err)
		}
		checkNoSession(t, s, "after the idle read", id)
	})
}
