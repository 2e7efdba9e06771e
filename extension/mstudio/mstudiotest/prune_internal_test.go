package mstudiotest

import (
	"fmt"
	"testing"
	"time"
)

// TestPruneAtMostOncePerInterval: expired keys, refresh tokens and codes are forgotten,
// but the maps are looked through at most once per pruneEvery, not on every key minted.
func TestPruneAtMostOncePerInterval(t *testing.T) {
	st := newSSOState()
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st.pruneLocked(start)
	for i := range 3 {
		k := fmt.Sprint(i)
		st.keys[k] = &retrievalKey{expires: start.Add(time.Second)}
		st.refresh[k] = &refreshEntry{expires: start.Add(time.Second)}
		st.codes[k] = &oauthCode{expires: start.Add(time.Second)}
	}
	st.refresh["live"] = &refreshEntry{expires: start.Add(time.Hour)}
	st.pruneLocked(start.Add(2 * time.Second)) // expired, but within the interval
	if len(st.keys) != 3 || len(st.refresh) != 4 || len(st.codes) != 3 {
		t.Fatalf("pruned within the interval: %d keys, %d refresh tokens, %d codes", len(st.keys), len(st.refresh), len(st.codes))
	}
	st.pruneLocked(start.Add(pruneEvery))
	if len(st.keys) != 0 || len(st.codes) != 0 || len(st.refresh) != 1 || st.refresh["live"] == nil {
		t.Fatalf("after the interval: %d keys, %d refresh tokens, %d codes; want only the live refresh token", len(st.keys), len(st.refresh), len(st.codes))
	}
	// A clock set back (a test's) prunes at once rather than waiting for it to catch up.
	st.keys["old"] = &retrievalKey{expires: start}
	st.pruneLocked(start.Add(time.Second))
	if len(st.keys) != 0 {
		t.Fatalf("a clock set back kept %d expired keys", len(st.keys))
	}
}
