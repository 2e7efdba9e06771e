package atrek_test

// UserTokens against real stores (SQLite, and PostgreSQL when EXT_TEST_POSTGRES_URL is
// set) and the simulator over HTTP, with user tokens from real ATReK redemptions.

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// userTokenTTL is the simulator's user token lifetime: due for a refresh between 7 and 8
// minutes after it was stored.
const userTokenTTL = 10 * time.Minute

const userTokenRefreshRoute = "PUT /v2/users/self/sessions"

// userTokenEnv is the shared app (apptest) and one or more backend replicas, each with a
// store of its own over the app's database, on the app's clock.
type userTokenEnv struct {
	*apptest.App
	Stores   []*extension.Store
	Tokens   []*atrek.UserTokens
	Instance mstudiotest.Instance
	Users    []mstudiotest.User // with access to every context
}

func newUserTokenEnv(t testing.TB, d extension.Dialect, replicas int) *userTokenEnv {
	t.Helper()
	e := &userTokenEnv{App: apptest.New(t, apptest.Options{Dialect: d,
		Sim: func(o *mstudiotest.Options) { o.UserTokenTTL = userTokenTTL }})}
	// Every log line of every replica is scanned at the end for anything shaped like a
	// token: the simulator's are 48 alphanumerics, and no id or message of ours has a
	// run of 40.
	t.Cleanup(func() {
		if m := regexp.MustCompile(`[A-Za-z0-9]{40,}`).FindString(e.Logs.String()); m != "" {
			t.Errorf("a log line carries something shaped like a token: %.6s…", m)
		}
	})
	for i := range replicas {
		store := e.Store
		if i > 0 {
			store = e.Replica(t)
		}
		e.Stores = append(e.Stores, store)
		e.Tokens = append(e.Tokens, atrek.NewUserTokens(store, e.Client, atrek.UserTokenOptions{
			Owner: "replica-" + string(rune('a'+i)), Now: e.Clock.Now, Logger: e.Logger,
		}))
	}
	e.Instance = e.Install(t, mstudiotest.InstanceSpec{})
	e.Users = []mstudiotest.User{e.User(t, "Ada Admin"), e.User(t, "Bob Builder")}
	return e
}

// signIn redeems a fresh ATReK of the user in the instance and saves the user token
// through replica 0, as the SSO entry does.
func (e *userTokenEnv) signIn(t testing.TB, userID, instanceID string) mstudio.UserToken {
	t.Helper()
	ctx := context.Background()
	key, err := e.Sim.NewRetrievalKey(instanceID, userID)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.Client.RedeemRetrievalKey(ctx, key, userID)
	if err != nil {
		t.Fatal(err)
	}
	// Stored as a sign-in stores them (PostgreSQL keeps microseconds).
	if _, err := e.Stores[0].PutUserToken(ctx, userID, instanceID, tok.Token, tok.RefreshToken, tok.ExpiresAt.UTC().Truncate(time.Microsecond), ""); err != nil {
		t.Fatal(err)
	}
	return tok
}

// token calls Token on replica 0 and fails the test on an error.
func (e *userTokenEnv) token(t testing.TB, userID, instanceID string) extension.Secret {
	t.Helper()
	tok, err := e.Tokens[0].Token(context.Background(), userID, instanceID)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

// accepted reports whether the simulator takes tok for an API call.
func (e *userTokenEnv) accepted(tok extension.Secret) bool {
	_, err := e.Client.User(context.Background(), tok, "self")
	return err == nil
}

func userTokensForEachDialect(t *testing.T, fn func(t *testing.T, d extension.Dialect)) {
	t.Helper()
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, d) })
	}
}

func TestUserTokensFreshTokenFromStore(t *testing.T) {
	e := newUserTokenEnv(t, extension.SQLite, 1)
	user := e.Users[0].ID
	saved := e.signIn(t, user, e.Instance.ID)
	for _, after := range []time.Duration{0, 5 * time.Minute} {
		e.Clock.Advance(after)
		if got := e.token(t, user, e.Instance.ID); got != saved.Token {
			t.Errorf("after %v: got another token than the saved one", after)
		}
	}
	if n := e.SimHits(userTokenRefreshRoute); n != 0 {
		t.Errorf("got %d refresh calls, want 0", n)
	}
}

func TestUserTokensRefreshWhenDue(t *testing.T) {
	userTokensForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newUserTokenEnv(t, d, 1)
		ctx := context.Background()
		user := e.Users[0].ID
		saved := e.signIn(t, user, e.Instance.ID)
		e.Clock.Advance(9 * time.Minute)

		got := e.token(t, user, e.Instance.ID)
		if got == saved.Token {
			t.Fatal("got the saved token, want a refreshed one")
		}
		if n := e.SimHits(userTokenRefreshRoute); n != 1 {
			t.Errorf("got %d refresh calls, want 1", n)
		}
		if !e.accepted(got) {
			t.Error("the simulator refuses the refreshed token")
		}
		row, err := e.Stores[0].UserToken(ctx, user, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		if row.Token != got || row.Refresh == saved.RefreshToken || row.Refresh.IsZero() {
			t.Error("the store does not hold the refreshed token and the rotated refresh token")
		}
		if row.LeaseOwner != "" {
			t.Errorf("got lease owner %q after the refresh, want none", row.LeaseOwner)
		}
		var apiErr *mstudio.Error
		if _, err := e.Client.RefreshUserToken(ctx, saved.Token, saved.RefreshToken); !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest {
			t.Errorf("refresh with the old refresh token: got %v, want a 400 from the platform", err)
		}

		if again := e.token(t, user, e.Instance.ID); again != got {
			t.Error("a second call got another token than the refreshed one")
		}
		if n := e.SimHits(userTokenRefreshRoute); n != 2 { // the refused call just above
			t.Errorf("got %d refresh calls, want 2", n)
		}
	})
}

// tokensConcurrently calls Token from many goroutines, spread over the replicas, and
// wants one token for all.
func (e *userTokenEnv) tokensConcurrently(t *testing.T, userID, instanceID string, callers int) extension.Secret {
	t.Helper()
	tokens := make([]extension.Secret, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			tok, err := e.Tokens[i%len(e.Tokens)].Token(context.Background(), userID, instanceID)
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	for i, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("caller %d (replica %d) got another token than caller 0", i, i%len(e.Tokens))
		}
	}
	return tokens[0]
}

func TestUserTokensConcurrentCallsRefreshOnce(t *testing.T) {
	userTokensForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newUserTokenEnv(t, d, 1)
		user := e.Users[0].ID
		saved := e.signIn(t, user, e.Instance.ID)
		e.Clock.Advance(9 * time.Minute)
		got := e.tokensConcurrently(t, user, e.Instance.ID, 100)
		if n := e.SimHits(userTokenRefreshRoute); n != 1 {
			t.Errorf("got %d refresh calls, want 1", n)
		}
		if got == saved.Token || !e.accepted(got) {
			t.Error("want a refreshed token the simulator accepts")
		}
	})
}

func TestUserTokensReplicasRefreshOnce(t *testing.T) {
	userTokensForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newUserTokenEnv(t, d, 2)
		user := e.Users[0].ID
		saved := e.signIn(t, user, e.Instance.ID)
		e.Clock.Advance(9 * time.Minute)
		got := e.tokensConcurrently(t, user, e.Instance.ID, 100)
		if n := e.SimHits(userTokenRefreshRoute); n != 1 {
			t.Errorf("got %d refresh calls, want 1", n)
		}
		if got == saved.Token || !e.accepted(got) {
			t.Error("want a refreshed token the simulator accepts")
		}
	})
}

// TestUserTokensWaitsForOtherReplica: while another replica holds the lease, Token waits
// for the tokens it stores and refreshes nothing itself.
func TestUserTokensWaitsForOtherReplica(t *testing.T) {
	userTokensForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newUserTokenEnv(t, d, 1)
		ctx := context.Background()
		user := e.Users[0].ID
		saved := e.signIn(t, user, e.Instance.ID)
		e.Clock.Advance(9 * time.Minute)
		if ok, err := e.Stores[0].LeaseUserTokenRefresh(ctx, user, e.Instance.ID, "other-replica", 10*time.Second); !ok || err != nil {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(150 * time.Millisecond)
			theirs, err := e.Client.RefreshUserToken(ctx, saved.Token, saved.RefreshToken)
			if err != nil {
				t.Errorf("the other replica's refresh: %v", err)
				return
			}
			if ok, err := e.Stores[0].PutUserToken(ctx, user, e.Instance.ID, theirs.Token, theirs.RefreshToken, theirs.ExpiresAt, "other-replica"); !ok || err != nil {
				t.Errorf("store: %v, %v", ok, err)
			}
		}()
		start := time.Now()
		got := e.token(t, user, e.Instance.ID)
		<-done
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("returned after %v, before the other replica stored its token", took)
		}
		row, err := e.Stores[0].UserToken(ctx, user, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got != row.Token || got == saved.Token {
			t.Error("got another token than the one the other replica stored")
		}
		if n := e.SimHits(userTokenRefreshRoute); n != 1 {
			t.Errorf("got %d refresh calls, want only the other replica's", n)
		}
	})
}

func TestUserTokensRefusedRefreshSignsOut(t *testing.T) {
	userTokensForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newUserTokenEnv(t, d, 1)
		ctx := context.Background()
		user := e.Users[0].ID
		saved := e.signIn(t, user, e.Instance.ID)
		// Spent elsewhere: the stored refresh token no longer works.
		if _, err := e.Client.RefreshUserToken(ctx, saved.Token, saved.RefreshToken); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(9 * time.Minute)
		_, err := e.Tokens[0].Token(ctx, user, e.Instance.ID)
		if !errors.Is(err, atrek.ErrSignInAgain) {
			t.Fatalf("got %v, want ErrSignInAgain", err)
		}
		for _, secret := range []extension.Secret{saved.Token, saved.RefreshToken} {
			if strings.Contains(err.Error(), secret.Reveal()) {
				t.Error("the error text contains a token")
			}
		}
		if _, err := e.Stores[0].UserToken(ctx, user, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the stored tokens: got %v, want ErrNotFound", err)
		}
		if _, err := e.Tokens[0].Token(ctx, user, e.Instance.ID); !errors.Is(err, atrek.ErrSignInAgain) {
			t.Errorf("the next call: got %v, want ErrSignInAgain", err)
		}
	})
}

// TestUserTokensTransientFailureKeepsTokens: a refresh that fails for a reason other than
// the refresh token returns an error, keeps the tokens and frees the lease; the next call
// refreshes.
func TestUserTokensTransientFailureKeepsTokens(t *testing.T) {
	e := newUserTokenEnv(t, extension.SQLite, 1)
	ctx := context.Background()
	user := e.Users[0].ID
	saved := e.signIn(t, user, e.Instance.ID)
	e.Clock.Advance(9 * time.Minute)
	if err := e.Sim.InjectFault(userTokenRefreshRoute, mstudiotest.Fault{Status: http.StatusInternalServerError}); err != nil {
		t.Fatal(err)
	}
	_, err := e.Tokens[0].Token(ctx, user, e.Instance.ID)
	if err == nil || errors.Is(err, atrek.ErrSignInAgain) {
		t.Fatalf("got %v, want an error other than ErrSignInAgain", err)
	}
	row, err := e.Stores[0].UserToken(ctx, user, e.Instance.ID)
	if err != nil {
		t.Fatal(err)
	}
	if row.Token != saved.Token || row.Refresh != saved.RefreshToken {
		t.Error("the stored tokens changed")
	}
	if row.LeaseOwner != "" {
		t.Errorf("got lease owner %q after the failure, want none", row.LeaseOwner)
	}
	e.Sim.ClearFaults()
	if got := e.token(t, user, e.Instance.ID); got == saved.Token || !e.accepted(got) {
		t.Error("after the fault: want a refreshed token the simulator accepts")
	}
}

// TestUserTokensBoundToUserAndInstance: a token is handed out only for the user and the
// instance it was saved for.
func TestUserTokensBoundToUserAndInstance(t *testing.T) {
	e := newUserTokenEnv(t, extension.SQLite, 1)
	ctx := context.Background()
	other := e.Install(t, mstudiotest.InstanceSpec{})
	ada, bob := e.Users[0].ID, e.Users[1].ID
	adaTok := e.signIn(t, ada, e.Instance.ID)
	bobTok := e.signIn(t, bob, other.ID)

	tests := []struct {
		name             string
		userID, instance string
		want             extension.Secret // empty: ErrSignInAgain
	}{
		{"ada in her instance", ada, e.Instance.ID, adaTok.Token},
		{"bob in his instance", bob, other.ID, bobTok.Token},
		{"ada in bob's instance", ada, other.ID, ""},
		{"bob in ada's instance", bob, e.Instance.ID, ""},
		{"an unknown user", uuid.NewString(), e.Instance.ID, ""},
		{"an unknown instance", ada, uuid.NewString(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Tokens[0].Token(ctx, tt.userID, tt.instance)
			if tt.want == "" {
				if !errors.Is(err, atrek.ErrSignInAgain) || got != "" {
					t.Errorf("got a token and %v, want ErrSignInAgain", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v and another token than the saved one, want it", err)
			}
		})
	}
}
