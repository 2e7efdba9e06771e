package mstudio

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestClientBudgetsBounded: a flood from ever new addresses cannot grow the table past
// its bound (newcomers share the overflow budget), and idle addresses are forgotten.
func TestClientBudgetsBounded(t *testing.T) {
	cb := newClientBudgets(rate.Every(5*time.Second), 5)
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	addr := netip.MustParseAddr("10.0.0.0")
	for range 3 * maxClientBudgets {
		addr = addr.Next()
		cb.bucket(addr.String(), now).AllowN(now, 1)
	}
	if got := len(cb.clients); got > maxClientBudgets+1 {
		t.Errorf("table holds %d addresses, want at most %d", got, maxClientBudgets+1)
	}
	// The overflow budget is shared: the flood spent it.
	if tokens := cb.bucket("192.0.2.1", now).TokensAt(now); tokens >= 1 {
		t.Errorf("a newcomer past the bound has %.1f tokens, want the spent overflow budget", tokens)
	}
	later := now.Add(cb.idle)
	if tokens := cb.bucket("192.0.2.1", later).TokensAt(later); tokens < 5 {
		t.Errorf("after the idle time: %.1f tokens, want a full budget", tokens)
	}
	if got := len(cb.clients); got != 1 {
		t.Errorf("after the idle time the table holds %d addresses, want 1", got)
	}
}
