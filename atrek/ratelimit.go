package atrek

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the per-address limit on /mstudio/sso. A person clicks through a few times
// a minute at most; an office behind one NAT address is many people, hence the burst.
const (
	defaultRateLimit = rate.Limit(1) // per second, sustained
	defaultRateBurst = 20
	minLimiterIdle   = time.Minute
	// maxLimiterClients bounds the table of addresses; past it, new addresses share the
	// overflow bucket.
	maxLimiterClients = 100_000
	overflowKey       = "overflow"
)

// addrLimiter is a token bucket per client address. Entries that went idle long enough
// for their bucket to be full again are pruned: forgetting them changes no answer, and
// the map cannot grow with every address that ever called.
type addrLimiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration
	now   func() time.Time

	mu        sync.Mutex
	clients   map[string]*addrBucket
	lastPrune time.Time
}

type addrBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newAddrLimiter(limit rate.Limit, burst int, now func() time.Time) *addrLimiter {
	l := &addrLimiter{limit: limit, burst: burst, now: now, clients: map[string]*addrBucket{}}
	// The time an empty bucket needs to fill up again.
	l.idle = minLimiterIdle
	if limit > 0 && limit != rate.Inf {
		if full := time.Duration(float64(burst) / float64(limit) * float64(time.Second)); full > l.idle {
			l.idle = full
		}
	}
	return l
}

// allow reports whether a request from addr may proceed now.
func (l *addrLimiter) allow(addr string) bool {
	if l.limit == rate.Inf {
		return true
	}
	key := limiterKey(addr)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastPrune) >= l.idle {
		for k, b := range l.clients {
			if now.Sub(b.seen) >= l.idle {
				delete(l.clients, k)
			}
		}
		l.lastPrune = now
	}
	b, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= maxLimiterClients {
			// A flood of made-up addresses: newcomers share one bucket, so the table
			// (and the time a prune holds the lock) stays bounded.
			key = overflowKey
			if b, ok = l.clients[key]; !ok {
				b = &addrBucket{lim: rate.NewLimiter(l.limit, l.burst)}
				l.clients[key] = b
			}
		} else {
			b = &addrBucket{lim: rate.NewLimiter(l.limit, l.burst)}
			l.clients[key] = b
		}
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}

// limiterKey is the bucket an address counts against. One IPv6 customer usually has a
// whole /64, and would otherwise get a fresh bucket for every address in it.
func limiterKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
