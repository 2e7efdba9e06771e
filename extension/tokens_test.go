package extension_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

const sharedTokenValue = extension.Secret("shared-token-Zr8mT2vLp9RkW4sNz8bYc3HfJ6dG")

// leaseView is what a test compares of a shared token row.
type leaseView struct {
	Token      extension.Secret
	ExpiresAt  time.Time
	LeaseOwner string
	LeaseUntil time.Time
}

func sharedTokenOf(t *testing.T, s *extension.Store, id string) leaseView {
	t.Helper()
	row, err := s.SharedToken(context.Background(), id)
	if err != nil {
		t.Fatalf("SharedToken(%s): %v", id, err)
	}
	// PostgreSQL keeps microseconds and answers in the session's time zone.
	return leaseView{row.Token, row.ExpiresAt.UTC().Truncate(time.Microsecond), row.LeaseOwner, row.LeaseUntil.UTC().Truncate(time.Microsecond)}
}

func TestSharedTokenLease(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		start := time.Date(2026, 3, 14, 11, 36, 24, 123456000, time.UTC)
		clk := extensiontest.NewClock(start)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
		const id, ttl = "i-lease", 10 * time.Second
		expiry := start.Add(time.Hour)

		if _, err := s.SharedToken(ctx, id); !errors.Is(err, extension.ErrNotFound) {
			t.Fatalf("SharedToken before any lease: %v, want ErrNotFound", err)
		}
		steps := []struct {
			name string
			do   func() (bool, error)
			want bool
			row  leaseView
		}{
			{"a takes the lease of a new row", lease(s, id, "a", ttl), true, leaseView{LeaseOwner: "a", LeaseUntil: start.Add(ttl)}},
			{"b is refused while a holds it", lease(s, id, "b", ttl), false, leaseView{LeaseOwner: "a", LeaseUntil: start.Add(ttl)}},
			{"a renews", lease(s, id, "a", 2*ttl), true, leaseView{LeaseOwner: "a", LeaseUntil: start.Add(2 * ttl)}},
			{"b cannot store without the lease", put(s, id, "b", expiry), false, leaseView{LeaseOwner: "a", LeaseUntil: start.Add(2 * ttl)}},
			{"a stores and releases", put(s, id, "a", expiry), true, leaseView{Token: sharedTokenValue, ExpiresAt: expiry}},
			{"b takes the lease, the token stays readable", lease(s, id, "b", ttl), true, leaseView{sharedTokenValue, expiry, "b", start.Add(ttl)}},
			{"a is refused", lease(s, id, "a", ttl), false, leaseView{sharedTokenValue, expiry, "b", start.Add(ttl)}},
			{"a's release leaves b's lease", release(s, id, "a"), true, leaseView{sharedTokenValue, expiry, "b", start.Add(ttl)}},
			{"after b's lease ran out, a takes over", func() (bool, error) {
				clk.Set(start.Add(ttl + time.Second))
				return s.LeaseSharedToken(ctx, id, "a", ttl)
			}, true, leaseView{sharedTokenValue, expiry, "a", start.Add(2*ttl + time.Second)}},
			{"b, overtaken, cannot store", put(s, id, "b", expiry.Add(time.Hour)), false, leaseView{sharedTokenValue, expiry, "a", start.Add(2*ttl + time.Second)}},
			{"a releases without storing", release(s, id, "a"), true, leaseView{Token: sharedTokenValue, ExpiresAt: expiry}},
		}
		for _, st := range steps {
			got, err := st.do()
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if got != st.want {
				t.Errorf("%s: got %v, want %v", st.name, got, st.want)
			}
			if diff := cmp.Diff(st.row, sharedTokenOf(t, s, id)); diff != "" {
				t.Errorf("%s: row (-want +got):\n%s", st.name, diff)
			}
		}
		row, err := s.SharedToken(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !row.StoredAt.Equal(start) {
			t.Errorf("StoredAt = %v, want the store's clock when a stored, %v", row.StoredAt, start)
		}

		if _, err := s.LeaseSharedToken(ctx, id, "", ttl); err == nil {
			t.Error("a lease for an empty owner was taken")
		}
		if err := s.DeleteSharedToken(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SharedToken(ctx, id); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("SharedToken after delete: %v, want ErrNotFound", err)
		}
		if err := s.DeleteSharedToken(ctx, id); err != nil {
			t.Errorf("delete of a missing row: %v", err)
		}
		if ok, err := s.PutSharedToken(ctx, id, "a", sharedTokenValue, expiry); ok || err != nil {
			t.Errorf("store after delete: %v, %v; want false: the mint was forgotten", ok, err)
		}
	})
}

func lease(s *extension.Store, id, owner string, ttl time.Duration) func() (bool, error) {
	return func() (bool, error) { return s.LeaseSharedToken(context.Background(), id, owner, ttl) }
}

func put(s *extension.Store, id, owner string, expiry time.Time) func() (bool, error) {
	return func() (bool, error) {
		return s.PutSharedToken(context.Background(), id, owner, sharedTokenValue, expiry)
	}
}

func release(s *extension.Store, id, owner string) func() (bool, error) {
	return func() (bool, error) { return true, s.ReleaseSharedToken(context.Background(), id, owner) }
}

func TestSharedTokenLeasedBy(t *testing.T) {
	now := time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		row  extension.SharedToken
		want bool
	}{
		{"no lease", extension.SharedToken{}, false},
		{"another's lease in force", extension.SharedToken{LeaseOwner: "b", LeaseUntil: now.Add(time.Second)}, true},
		{"own lease", extension.SharedToken{LeaseOwner: "a", LeaseUntil: now.Add(time.Second)}, false},
		{"another's lease ran out", extension.SharedToken{LeaseOwner: "b", LeaseUntil: now}, false},
	}
	for _, tt := range tests {
		if got := tt.row.Leased("a", now); got != tt.want {
			t.Errorf("%s: Leased = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSharedTokenLeaseRace: replicas racing for one lease, on two stores of one database:
// exactly one wins.
func TestSharedTokenLeaseRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
			extensiontest.Open(t, url, extension.Options{Keys: kr}),
		}
		for round := range 3 {
			id := "i-race-" + string(rune('a'+round))
			if round == 2 {
				// A row with a stored token and no lease: the update path of the statement.
				if ok, err := stores[0].LeaseSharedToken(context.Background(), id, "setup", time.Minute); !ok || err != nil {
					t.Fatalf("setup lease: %v, %v", ok, err)
				}
				if ok, err := stores[0].PutSharedToken(context.Background(), id, "setup", sharedTokenValue, time.Now().Add(time.Hour)); !ok || err != nil {
					t.Fatalf("setup store: %v, %v", ok, err)
				}
			}
			var (
				wg  sync.WaitGroup
				won atomic.Int32
			)
			for i := range 16 {
				wg.Go(func() {
					ok, err := stores[i%2].LeaseSharedToken(context.Background(), id, "owner-"+string(rune('A'+i)), time.Minute)
					if err != nil {
						t.Errorf("owner %d: %v", i, err)
					}
					if ok {
						won.Add(1)
					}
				})
			}
			wg.Wait()
			if got := won.Load(); got != 1 {
				t.Errorf("round %d: %d owners won the lease, want 1", round, got)
			}
		}
	})
}

// TestSharedTokenSealed: the token is stored sealed and bound to its instance.
func TestSharedTokenSealed(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		s := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
		for _, id := range []string{"i-one", "i-two"} {
			if ok, err := s.LeaseSharedToken(ctx, id, "a", time.Minute); !ok || err != nil {
				t.Fatalf("lease %s: %v, %v", id, ok, err)
			}
			if ok, err := s.PutSharedToken(ctx, id, "a", sharedTokenValue, time.Now().Add(time.Hour)); !ok || err != nil {
				t.Fatalf("store %s: %v, %v", id, ok, err)
			}
		}
		for _, cell := range rawCells(t, s, "instance_tokens") {
			if strings.Contains(cell, sharedTokenValue.Reveal()) {
				t.Errorf("cell %q holds the token in clear", cell)
			}
		}
		// A sealed token copied onto another instance's row does not open there.
		q := d.Rebind(`UPDATE instance_tokens SET sealed_token = (SELECT sealed_token FROM instance_tokens WHERE instance_id = ?) WHERE instance_id = ?`)
		if _, err := s.SQLDB().Exec(q, "i-one", "i-two"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SharedToken(ctx, "i-two"); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("a token copied onto another row: %v, want ErrUnsealable", err)
		}
		// Another keyring (a key dropped since) cannot open it either.
		other := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
		if _, err := other.SharedToken(ctx, "i-one"); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("a token sealed with a dropped key: %v, want ErrUnsealable", err)
		}
		// Without keys nothing can be stored.
		bare := extensiontest.Open(t, url, extension.Options{})
		if ok, err := bare.LeaseSharedToken(ctx, "i-three", "a", time.Minute); !ok || err != nil {
			t.Fatalf("lease without keys: %v, %v", ok, err)
		}
		if _, err := bare.PutSharedToken(ctx, "i-three", "a", sharedTokenValue, time.Now().Add(time.Hour)); !errors.Is(err, extension.ErrNoKeys) {
			t.Errorf("store without keys: %v, want ErrNoKeys", err)
		}
	})
}
