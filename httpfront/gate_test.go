package httpfront

import (
	"sync"
	"testing"
	"time"
)

// The lines a gate held back are counted when its interval closes, the tail of a flood
// included, and a quiet key opens again.
func TestRepeatGateCountsWhatItHeldBack(t *testing.T) {
	var mu sync.Mutex
	counted := map[string]int{}
	g := newRepeatGate(20*time.Millisecond, func(key string, held int) {
		mu.Lock()
		counted[key] += held
		mu.Unlock()
	})
	passed := 0
	for range 50 {
		if g.pass("a") {
			passed++
		}
	}
	if passed != 1 {
		t.Fatalf("%d of 50 passed, want 1", passed)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := counted["a"]
		mu.Unlock()
		if n == 49 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counted %d held-back lines, want 49", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The interval after the count closes quietly; then the key opens again. (Asking
	// meanwhile would count as a held-back line and keep it closed.)
	time.Sleep(100 * time.Millisecond)
	if !g.pass("a") {
		t.Error("the gate did not open again after a quiet interval")
	}
}
