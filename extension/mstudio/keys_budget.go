package mstudio

import (
	"context"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// clientAddressKey keys the client address in a context.
type clientAddressKey struct{}

// WithClientAddress returns ctx carrying the address of the client a key lookup is made
// for (in a handler, echo's c.RealIP()): KeyCache.Key budgets the lookups of serials it
// has not cached per address. A lookup without one counts against the budget of the
// empty address, shared by all such lookups.
func WithClientAddress(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientAddressKey{}, addr)
}

// ClientAddress returns the client address ctx carries, or "".
func ClientAddress(ctx context.Context) string {
	addr, _ := ctx.Value(clientAddressKey{}).(string)
	return addr
}

// maxClientBudgets bounds the table of client addresses; past it, new addresses share
// one overflow budget, so a flood from made-up addresses cannot grow the table.
const (
	maxClientBudgets     = 10_000
	overflowClientBudget = "overflow"
)

// clientBudgets is a token bucket per client address. An address idle long enough for
// its bucket to be full again is forgotten: that changes no answer. Its owner's mutex
// guards it.
type clientBudgets struct {
	limit     rate.Limit
	burst     int
	idle      time.Duration
	clients   map[string]*clientBudget
	lastPrune time.Time
}

type clientBudget struct {
	*rate.Limiter
	seen time.Time
}

func newClientBudgets(limit rate.Limit, burst int) *clientBudgets {
	idle := time.Minute
	if limit > 0 && limit != rate.Inf {
		idle = max(idle, time.Duration(float64(burst)/float64(limit)*float64(time.Second)))
	}
	return &clientBudgets{limit: limit, burst: burst, idle: idle, clients: map[string]*clientBudget{}}
}

// bucket returns the address's bucket, made full for an address not seen lately.
func (cb *clientBudgets) bucket(addr string, now time.Time) *rate.Limiter {
	if now.Sub(cb.lastPrune) >= cb.idle {
		for k, b := range cb.clients {
			if now.Sub(b.seen) >= cb.idle {
				delete(cb.clients, k)
			}
		}
		cb.lastPrune = now
	}
	key := budgetKey(addr)
	b, ok := cb.clients[key]
	if !ok && len(cb.clients) >= maxClientBudgets {
		key = overflowClientBudget
		b, ok = cb.clients[key]
	}
	if !ok {
		b = &clientBudget{Limiter: rate.NewLimiter(cb.limit, cb.burst)}
		cb.clients[key] = b
	}
	b.seen = now
	return b.Limiter
}

// unparsedAddress stands for every client address that is not an IP address (or none):
// they share one budget, and the table never keys on an arbitrary string.
const unparsedAddress = "unparsed"

// budgetKey is the budget an address counts against. One IPv6 customer usually has a
// whole /64, and would otherwise get a fresh budget for every address in it.
func budgetKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return unparsedAddress
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
