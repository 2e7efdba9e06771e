package extension_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

const (
	userAccess   = extension.Secret("user-access-Hq3vN8xRt2LmW6pYz9cBk4Df")
	userRefresh  = extension.Secret("user-refresh-Jt5bM1wQs7NvX3kRz8aGh2Ce")
	userAccess2  = extension.Secret("user-access-2-Pk9rD4mTz6WqL1sVb8nXc3Hy")
	userRefresh2 = extension.Secret("user-refresh-2-Gv2nK7pRw4ZtB9xMs1dLq6Fj")
)

// userTokenView is what a test compares of a user token row.
type userTokenView struct {
	Token, Refresh extension.Secret
	ExpiresAt      time.Time
	LeaseOwner     string
	LeaseUntil     time.Time
}

func userTokenOf(t *testing.T, s *extension.Store, user, instance string) userTokenView {
	t.Helper()
	tok, err := s.UserToken(context.Background(), user, instance)
	if err != nil {
		t.Fatalf("UserToken(%s, %s): %v", user, instance, err)
	}
	return userTokenView{tok.Token, tok.Refresh, tok.ExpiresAt, tok.LeaseOwner, tok.LeaseUntil}
}

func putUserToken(t *testing.T, s *extension.Store, user, instance string, token, refresh extension.Secret, expiry time.Time, owner string) bool {
	t.Helper()
	ok, err := s.PutUserToken(context.Background(), user, instance, token, refresh, expiry, owner)
	if err != nil {
		t.Fatalf("PutUserToken(%s, %s, owner %q): %v", user, instance, owner, err)
	}
	return ok
}

func TestUserTokenPutAndLoad(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1", "i-2")
		expiry := ssoStart.Add(time.Hour)

		if _, err := s.UserToken(ctx, "u-1", "i-1"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("before any put: got %v, want ErrNotFound", err)
		}
		if !putUserToken(t, s, "u-1", "i-1", userAccess, userRefresh, expiry, "") {
			t.Fatal("a sign-in's put stored nothing")
		}
		if !putUserToken(t, s, "u-2", "i-1", userAccess2, "", expiry.Add(time.Minute), "") {
			t.Fatal("a sign-in's put stored nothing")
		}
		if diff := cmp.Diff(userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: expiry}, userTokenOf(t, s, "u-1", "i-1")); diff != "" {
			t.Errorf("u-1 in i-1 (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(userTokenView{Token: userAccess2, ExpiresAt: expiry.Add(time.Minute)}, userTokenOf(t, s, "u-2", "i-1")); diff != "" {
			t.Errorf("u-2 in i-1, no refresh token (-want +got):\n%s", diff)
		}
		tok, err := s.UserToken(ctx, "u-1", "i-1")
		if err != nil {
			t.Fatal(err)
		}
		if !tok.StoredAt.Equal(ssoStart) {
			t.Errorf("StoredAt = %v, want the store's clock, %v", tok.StoredAt, ssoStart)
		}
		// Never for another user or instance.
		for _, k := range [][2]string{{"u-1", "i-2"}, {"u-3", "i-1"}, {"i-1", "u-1"}} {
			if _, err := s.UserToken(ctx, k[0], k[1]); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("UserToken(%s, %s): got %v, want ErrNotFound", k[0], k[1], err)
			}
		}
		// A new sign-in replaces the tokens.
		clk.Set(ssoStart.Add(time.Minute))
		putUserToken(t, s, "u-1", "i-1", userAccess2, userRefresh2, expiry.Add(time.Hour), "")
		if diff := cmp.Diff(userTokenView{Token: userAccess2, Refresh: userRefresh2, ExpiresAt: expiry.Add(time.Hour)}, userTokenOf(t, s, "u-1", "i-1")); diff != "" {
			t.Errorf("after a new sign-in (-want +got):\n%s", diff)
		}

		// Sealed at rest: no token in clear in any column.
		for _, cell := range rawCells(t, s, "user_tokens") {
			for _, secret := range []extension.Secret{userAccess, userRefresh, userAccess2, userRefresh2} {
				if strings.Contains(cell, secret.Reveal()) {
					t.Errorf("cell %q holds a token in clear", cell)
				}
			}
		}

		if _, err := s.PutUserToken(ctx, "u-1", "i-unknown", userAccess, userRefresh, expiry, ""); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("put for an unknown instance: got %v, want ErrNotFound", err)
		}
		for _, tc := range []struct {
			name, user, instance string
			token                extension.Secret
			expiry               time.Time
		}{
			{"no user", "", "i-1", userAccess, expiry},
			{"no instance", "u-1", "", userAccess, expiry},
			{"no token", "u-1", "i-1", "", expiry},
			{"no expiry", "u-1", "i-1", userAccess, time.Time{}},
		} {
			if _, err := s.PutUserToken(ctx, tc.user, tc.instance, tc.token, userRefresh, tc.expiry, ""); err == nil {
				t.Errorf("%s: got no error", tc.name)
			}
		}

		noKeys := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{})
		// Installed by hand: without keys, the lifecycle path cannot seal its secret.
		if _, err := noKeys.SQLDB().Exec(d.Rebind(`INSERT INTO instances (id, created_at, updated_at) VALUES (?, ?, ?)`), "i-1", ssoStart, ssoStart); err != nil {
			t.Fatal(err)
		}
		if _, err := noKeys.PutUserToken(ctx, "u-1", "i-1", userAccess, userRefresh, expiry, ""); !errors.Is(err, extension.ErrNoKeys) {
			t.Errorf("put without keys: got %v, want ErrNoKeys", err)
		}
	})
}

// TestUserTokenBoundToRow moves sealed values between rows and columns: none opens.
func TestUserTokenBoundToRow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1", "i-2")
		expiry := ssoStart.Add(time.Hour)
		rows := [][2]string{{"u-1", "i-1"}, {"u-2", "i-1"}, {"u-1", "i-2"}}
		for _, r := range rows {
			putUserToken(t, s, r[0], r[1], userAccess, userRefresh, expiry, "")
		}
		sealed := func(column, user, instance string) string {
			t.Helper()
			var v string
			q := d.Rebind(`SELECT ` + column + ` FROM user_tokens WHERE platform_user_id = ? AND instance_id = ?`)
			if err := s.SQLDB().QueryRow(q, user, instance).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		set := func(column, value, user, instance string) {
			t.Helper()
			q := d.Rebind(`UPDATE user_tokens SET ` + column + ` = ? WHERE platform_user_id = ? AND instance_id = ?`)
			if _, err := s.SQLDB().Exec(q, value, user, instance); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name                 string
			fromColumn, toColumn string
			from, to             [2]string
		}{
			{"access token copied to another user", "sealed_token", "sealed_token", rows[0], rows[1]},
			{"access token copied to another instance", "sealed_token", "sealed_token", rows[0], rows[2]},
			{"refresh token copied to another user", "sealed_refresh", "sealed_refresh", rows[0], rows[1]},
			{"refresh token copied to another instance", "sealed_refresh", "sealed_refresh", rows[0], rows[2]},
			{"refresh token moved to the access column", "sealed_refresh", "sealed_token", rows[0], rows[0]},
			{"access token moved to the refresh column", "sealed_token", "sealed_refresh", rows[0], rows[0]},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				for _, r := range rows {
					putUserToken(t, s, r[0], r[1], userAccess, userRefresh, expiry, "") // fresh values
				}
				set(tc.toColumn, sealed(tc.fromColumn, tc.from[0], tc.from[1]), tc.to[0], tc.to[1])
				_, err := s.UserToken(ctx, tc.to[0], tc.to[1])
				if !errors.Is(err, extension.ErrUnsealable) {
					t.Errorf("UserToken(%s, %s): got %v, want ErrUnsealable", tc.to[0], tc.to[1], err)
				}
				if err != nil && (strings.Contains(err.Error(), userAccess.Reveal()) || strings.Contains(err.Error(), userRefresh.Reveal())) {
					t.Errorf("error text %q holds a token", err)
				}
			})
		}
	})
}

func TestUserTokenRefreshLease(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk, "i-1")
		const user, inst, ttl = "u-1", "i-1", 30 * time.Second
		e1, e2, e3 := ssoStart.Add(time.Hour), ssoStart.Add(2*time.Hour), ssoStart.Add(3*time.Hour)

		if _, err := s.LeaseUserTokenRefresh(ctx, user, inst, "a", ttl); !errors.Is(err, extension.ErrNotFound) {
			t.Fatalf("lease without tokens: got %v, want ErrNotFound", err)
		}
		putUserToken(t, s, user, inst, userAccess, userRefresh, e1, "")
		leaseUT := func(owner string) func() (bool, error) {
			return func() (bool, error) { return s.LeaseUserTokenRefresh(ctx, user, inst, owner, ttl) }
		}
		putUT := func(owner string, tok, ref extension.Secret, exp time.Time) func() (bool, error) {
			return func() (bool, error) { return s.PutUserToken(ctx, user, inst, tok, ref, exp, owner) }
		}
		releaseUT := func(owner string) func() (bool, error) {
			return func() (bool, error) { return true, s.ReleaseUserTokenRefresh(ctx, user, inst, owner) }
		}
		v1 := userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e1}
		v2 := userTokenView{Token: userAccess2, Refresh: userRefresh2, ExpiresAt: e2}
		withLease := func(v userTokenView, owner string, until time.Time) userTokenView {
			v.LeaseOwner, v.LeaseUntil = owner, until
			return v
		}
		steps := []struct {
			name string
			do   func() (bool, error)
			want bool
			row  userTokenView
		}{
			{"a takes the lease", leaseUT("a"), true, withLease(v1, "a", ssoStart.Add(ttl))},
			{"b is refused while a holds it", leaseUT("b"), false, withLease(v1, "a", ssoStart.Add(ttl))},
			{"a renews", leaseUT("a"), true, withLease(v1, "a", ssoStart.Add(ttl))},
			{"b cannot store without the lease", putUT("b", userAccess2, userRefresh2, e2), false, withLease(v1, "a", ssoStart.Add(ttl))},
			{"a stores and releases", putUT("a", userAccess2, userRefresh2, e2), true, v2},
			{"b takes the lease, the tokens stay readable", leaseUT("b"), true, withLease(v2, "b", ssoStart.Add(ttl))},
			{"a's release leaves b's lease", releaseUT("a"), true, withLease(v2, "b", ssoStart.Add(ttl))},
			{"a new sign-in replaces the tokens and drops b's lease", putUT("", userAccess, userRefresh, e3), true,
				userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}},
			{"b's refresh of the older tokens is not stored", putUT("b", userAccess2, userRefresh2, e2), false,
				userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}},
			{"a takes the lease again", leaseUT("a"), true, withLease(userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}, "a", ssoStart.Add(ttl))},
			{"at the end of a's lease, b takes over", func() (bool, error) {
				clk.Set(ssoStart.Add(ttl))
				return s.LeaseUserTokenRefresh(ctx, user, inst, "b", ttl)
			}, true, withLease(userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}, "b", ssoStart.Add(2*ttl))},
			{"a, overtaken, cannot store", putUT("a", userAccess2, userRefresh2, e2), false,
				withLease(userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}, "b", ssoStart.Add(2*ttl))},
			{"b releases without storing", releaseUT("b"), true, userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}},
			{"then a gets it at once", leaseUT("a"), true, withLease(userTokenView{Token: userAccess, Refresh: userRefresh, ExpiresAt: e3}, "a", ssoStart.Add(2*ttl))},
		}
		for _, st := range steps {
			got, err := st.do()
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if got != st.want {
				t.Errorf("%s: got %v, want %v", st.name, got, st.want)
			}
			if diff := cmp.Diff(st.row, userTokenOf(t, s, user, inst)); diff != "" {
				t.Errorf("%s: row (-want +got):\n%s", st.name, diff)
			}
		}
		tok, err := s.UserToken(ctx, user, inst)
		if err != nil {
			t.Fatal(err)
		}
		if now := clk.Now(); !tok.Leased("b", now) || tok.Leased("a", now) || tok.Leased("b", tok.LeaseUntil) {
			t.Errorf("Leased: a's lease until %v read wrong at %v", tok.LeaseUntil, now)
		}
		for _, tc := range []struct {
			name  string
			owner string
			ttl   time.Duration
		}{{"empty owner", "", ttl}, {"zero ttl", "c", 0}} {
			if _, err := s.LeaseUserTokenRefresh(ctx, user, inst, tc.owner, tc.ttl); err == nil {
				t.Errorf("%s: got no error", tc.name)
			}
		}
	})
}

// TestUserTokenRefreshLeaseRace lets 20 owners on two stores of one database race for
// one lease: exactly one wins.
func TestUserTokenRefreshLeaseRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		installInstances(t, stores[0], "i-1")
		for round := range 3 {
			user := fmt.Sprintf("u-%d", round)
			putUserToken(t, stores[0], user, "i-1", userAccess, userRefresh, time.Now().Add(time.Hour), "")
			var (
				wg  sync.WaitGroup
				won atomic.Int32
			)
			start := make(chan struct{})
			for i := range 20 {
				wg.Go(func() {
					<-start
					ok, err := stores[i%2].LeaseUserTokenRefresh(context.Background(), user, "i-1", fmt.Sprintf("owner-%d", i), time.Minute)
					if err != nil {
						t.Errorf("lease %d: %v", i, err)
					}
					if ok {
						won.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if got := won.Load(); got != 1 {
				t.Errorf("round %d: %d owners won the lease, want 1", round, got)
			}
		}
	})
}

func TestDeleteUserTokens(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1", "i-2")
		expiry := ssoStart.Add(time.Hour)
		for _, r := range [][2]string{{"u-1", "i-1"}, {"u-2", "i-1"}, {"u-1", "i-2"}, {"u-3", "i-2"}} {
			putUserToken(t, s, r[0], r[1], userAccess, userRefresh, expiry, "")
		}
		if ok, err := s.LeaseUserTokenRefresh(ctx, "u-1", "i-1", "a", time.Minute); !ok || err != nil {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		if err := s.DeleteUserTokens(ctx, "i-1"); err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]string{{"u-1", "i-1"}, {"u-2", "i-1"}} {
			if _, err := s.UserToken(ctx, r[0], r[1]); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("UserToken(%s, %s) after the instance's deletion: got %v, want ErrNotFound", r[0], r[1], err)
			}
		}
		// The refresh under way when the instance went cannot bring its token back.
		if putUserToken(t, s, "u-1", "i-1", userAccess2, userRefresh2, expiry, "a") {
			t.Error("a refresh stored tokens after the instance's tokens were deleted")
		}
		userTokenOf(t, s, "u-1", "i-2") // the other instance keeps its tokens

		if err := s.DeleteUserToken(ctx, "u-1", "i-2"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UserToken(ctx, "u-1", "i-2"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("after DeleteUserToken: got %v, want ErrNotFound", err)
		}
		userTokenOf(t, s, "u-3", "i-2")
		if err := s.DeleteUserToken(ctx, "u-1", "i-2"); err != nil {
			t.Errorf("deleting missing tokens: %v", err)
		}
		if err := s.DeleteUserTokens(ctx, "i-unknown"); err != nil {
			t.Errorf("deleting the tokens of an unknown instance: %v", err)
		}
		if got := countRows(t, s, "user_tokens"); got != 1 {
			t.Errorf("user_tokens: %d rows, want 1", got)
		}
	})
}
