package extension

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestHasherQueueBoundedByTime: with the default queue a caller is admitted while the
// hashes ahead of it take at most the wait bound at their recent duration, and told
// ErrBusy beyond it; a fixed queue ignores the durations.
func TestHasherQueueBoundedByTime(t *testing.T) {
	fast := PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	ctx := context.Background()
	h := NewPasswordHasher(fast, 1, -1)
	if h.maxWait != defaultMaxWait || cap(h.admit) != 1+maxQueuePerCPU {
		t.Fatalf("default queue: wait %v, %d places", h.maxWait, cap(h.admit))
	}
	h.maxWait = 100 * time.Millisecond
	h.avgNano.Store(int64(60 * time.Millisecond))
	h.admit <- struct{}{} // one hash running (its place in run is not taken: acquire may run)
	release, err := h.acquire(ctx)
	if err != nil {
		t.Fatalf("one hash ahead (60 ms ≤ 100 ms): %v", err)
	}
	release()
	h.admit <- struct{}{} // two ahead now: 120 ms > 100 ms
	if _, err := h.acquire(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("two hashes ahead: %v, want ErrBusy", err)
	}
	fixed := NewPasswordHasher(fast, 1, 5)
	fixed.avgNano.Store(int64(time.Hour))
	fixed.admit <- struct{}{}
	if release, err := fixed.acquire(ctx); err != nil {
		t.Fatalf("fixed queue with room: %v", err)
	} else {
		release()
	}
	// The average follows the durations recorded.
	h.avgNano.Store(0)
	h.record(80 * time.Millisecond)
	h.record(0)
	if got := time.Duration(h.avgNano.Load()); got != 70*time.Millisecond {
		t.Errorf("average %v, want 70ms", got)
	}
}
