package mstudio

import (
	"net/netip"
	"strings"
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

// FuzzClientAddress: whatever a client address says, its budget is keyed by an IP
// address or /64 prefix or the one shared key, and the log shows an IP address or the
// shared word: never the text itself.
func FuzzClientAddress(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1%eth0", "fe80::1%" + strings.Repeat("z", 100), "", "not an address",
		"192.0.2.1, 10.0.0.1", "\x1b[31m", "2001:db8::1/64", "[2001:db8::1]:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		key := budgetKey(addr)
		if _, err := netip.ParsePrefix(key); err != nil && key != unparsedAddress {
			if _, err := netip.ParseAddr(key); err != nil {
				t.Errorf("budgetKey(%q) = %q, neither an address, a prefix nor %q", addr, key, unparsedAddress)
			}
		}
		if p, err := netip.ParsePrefix(key); err == nil && p.Bits() != 64 {
			t.Errorf("budgetKey(%q) = %q, a prefix that is not a /64", addr, key)
		}
		shown := printableAddress(addr)
		if _, err := netip.ParseAddr(shown); err != nil && shown != unparsedAddress {
			t.Errorf("printableAddress(%q) = %q, neither an address nor %q", addr, shown, unparsedAddress)
		}
		if len(shown) > 45 && shown != unparsedAddress {
			t.Errorf("printableAddress(%q) = %q, longer than an IP address", addr, shown)
		}
	})
}
