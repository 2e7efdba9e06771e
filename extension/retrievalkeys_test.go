package extension_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// Retrieval keys as the platform makes them: 37 characters.
const (
	retrievalKey      = "6a1c8f0e-2b7d-4e93-a5c4-9f3e7d1b2c8aX"
	otherRetrievalKey = "0f9e8d7c-6b5a-4938-8271-6a5b4c3d2e1fY"
)

func TestClaimRetrievalKey(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := newSSOStore(t, d, clk)
		const ttl = 10 * time.Minute

		claim := func(name, key string, want bool) {
			t.Helper()
			got, err := s.ClaimRetrievalKey(ctx, key, ttl)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got != want {
				t.Errorf("%s: got %v, want %v", name, got, want)
			}
		}
		claim("first use", retrievalKey, true)
		claim("reloaded link", retrievalKey, false)
		claim("another key", otherRetrievalKey, true)

		// Only the hash is stored.
		sum := sha256.Sum256([]byte(retrievalKey))
		cells := rawCells(t, s, "retrieval_keys")
		if !strings.Contains(strings.Join(cells, "\n"), "key_hash="+hex.EncodeToString(sum[:])) {
			t.Errorf("no cell holds the key's SHA-256: %q", cells)
		}
		for _, c := range cells {
			if strings.Contains(c, retrievalKey) || strings.Contains(c, otherRetrievalKey) {
				t.Errorf("cell %q holds a key in clear", c)
			}
		}

		// Past its ttl but not pruned, a key still counts as used.
		clk.Set(ssoStart.Add(ttl + time.Minute))
		claim("past its ttl, not pruned", retrievalKey, false)
		claim("a third key, later", "2c4e6a8b-0d1f-4a3c-9e5b-7d9f1b3d5f7aZ", true)

		n, err := s.PruneRetrievalKeys(ctx, ssoStart.Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("prune at the end of the ttl: %d rows, want 0", n)
		}
		n, err = s.PruneRetrievalKeys(ctx, ssoStart.Add(ttl+time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if n != 2 {
			t.Errorf("prune after the ttl: %d rows, want 2 (the later key stays)", n)
		}
		if got := countRows(t, s, "retrieval_keys"); got != 1 {
			t.Errorf("after prune: %d rows, want 1", got)
		}
		// The platform refuses the pruned key by now; we no longer remember it.
		claim("pruned key", retrievalKey, true)

		for _, tc := range []struct {
			name string
			key  string
			ttl  time.Duration
		}{
			{"empty key", "", ttl},
			{"zero ttl", retrievalKey, 0},
			{"negative ttl", retrievalKey, -time.Second},
		} {
			if _, err := s.ClaimRetrievalKey(ctx, tc.key, tc.ttl); err == nil {
				t.Errorf("%s: got no error", tc.name)
			}
		}
	})
}

// TestClaimRetrievalKeyRace claims one key 20 times at once through two stores on one
// database: exactly one claim wins.
func TestClaimRetrievalKeyRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		url := extensiontest.URL(t, d)
		stores := []*extension.Store{
			extensiontest.Open(t, url, extension.Options{}),
			extensiontest.Open(t, url, extension.Options{}),
		}
		for round := range 3 {
			key := retrievalKey[:36] + string(rune('a'+round))
			var (
				wg  sync.WaitGroup
				won atomic.Int32
			)
			start := make(chan struct{})
			for i := range 20 {
				wg.Go(func() {
					<-start
					ok, err := stores[i%2].ClaimRetrievalKey(context.Background(), key, time.Minute)
					if err != nil {
						t.Errorf("claim %d: %v", i, err)
					}
					if ok {
						won.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if got := won.Load(); got != 1 {
				t.Errorf("round %d: %d claims won, want 1", round, got)
			}
		}
	})
}
