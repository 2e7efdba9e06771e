package mstudio

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// callKey carries a call's callInfo in its request context. go-retryablehttp has one
// CheckRetry per client; the context lets that one function apply each call's policy.
type callKey struct{}

type callInfo struct {
	route      string // "POST /v2/extension-instances/{id}/tokens": the metrics label
	idempotent bool
}

func callInfoFrom(ctx context.Context) callInfo {
	ci, _ := ctx.Value(callKey{}).(callInfo)
	return ci
}

// checkRetry decides whether a failed attempt is repeated.
//
// An idempotent call is repeated after a connection error and after the answers by which
// the platform, or a gateway in front of it, says it cannot take the call now but may
// later: 429, 502, 503, 504. A 500 may mean the work was half done, and any other 4xx
// would be answered the same way again.
//
// Any other call (the single-use ATReK exchange above all) is repeated only when the
// connection was never made. After that the platform may have acted on the request even
// if no answer arrived, and a second exchange of the same key would fail and hide the
// first one's token.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	ci := callInfoFrom(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if !ci.idempotent {
			return neverSent(err), nil
		}
		// The default policy gives up on what another attempt cannot fix: a TLS
		// certificate not trusted, a bad scheme or header, a redirect loop.
		return retryablehttp.DefaultRetryPolicy(ctx, nil, err)
	}
	if !ci.idempotent || !retryableStatus(resp.StatusCode) {
		return false, nil
	}
	// A wait the platform asks for that outlasts the call's deadline would end in a
	// deadline error; handing back its answer now tells the caller what happened.
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= c.askedWait(resp) {
		return false, nil
	}
	return true, nil
}

func retryableStatus(code int) bool {
	switch code {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// neverSent reports whether err says that no connection was made, so the request cannot
// have reached the platform: a failed dial or name lookup. A reset, an EOF or a timeout
// after the dial do not count, since the request may have been written by then.
func neverSent(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// backoff is the wait before attempt n+1: exponential from lo up to hi, with jitter so
// callers that failed together do not come back together, and at least what the
// platform asked for (capped).
func (c *Client) backoff(lo, hi time.Duration, n int, resp *http.Response) time.Duration {
	wait := hi
	if n < 63 && lo <= hi>>n {
		wait = lo << n
	}
	wait = wait/2 + rand.N(wait/2+1)
	if resp != nil {
		wait = max(wait, c.askedWait(resp))
	}
	return wait
}

// askedWait is how long the answer asks the client to wait, capped at Options.MaxRetryWait:
// Retry-After in seconds or as an HTTP date, or on a 429 without it, X-RateLimit-Reset,
// the seconds until the platform's rate-limit window resets. The platform sends the
// rate-limit headers on every answer, so on other statuses the reset says nothing about
// when to come back. Without the cap, go-retryablehttp sleeps a full Retry-After: 3600.
func (c *Client) askedWait(resp *http.Response) time.Duration {
	var wait time.Duration
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
			wait = c.seconds(float64(secs))
		} else if t, err := http.ParseTime(v); err == nil {
			wait = time.Until(t)
		}
	} else if resp.StatusCode == http.StatusTooManyRequests {
		if secs, err := strconv.ParseFloat(resp.Header.Get("X-RateLimit-Reset"), 64); err == nil {
			wait = c.seconds(secs)
		}
	}
	return min(max(wait, 0), c.maxWait)
}

// seconds converts a count of seconds from a header to a wait of at most
// Options.MaxRetryWait.
func (c *Client) seconds(secs float64) time.Duration { return secondsUpTo(secs, c.maxWait) }

// secondsUpTo converts a count of seconds from a header, which may be huge, negative or
// NaN, to a duration between 0 and limit, without overflowing.
func secondsUpTo(secs float64, limit time.Duration) time.Duration {
	if math.IsNaN(secs) || secs <= 0 {
		return 0
	}
	if secs >= limit.Seconds() {
		return limit
	}
	return time.Duration(secs * float64(time.Second))
}
