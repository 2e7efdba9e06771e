package mstudio

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's Prometheus collectors. Labels are route templates, never
// paths, so ids cannot blow up the series count; status "error" is a transport failure.
type metrics struct {
	calls     *prometheus.HistogramVec // per call, retries and waits included
	attempts  *prometheus.CounterVec   // per HTTP request sent, so retries show
	limit     *prometheus.GaugeVec
	remaining *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extension_mstudio_call_duration_seconds",
			Help:    "Platform API calls by route and final status, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"route", "status"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extension_mstudio_attempts_total",
			Help: "HTTP requests sent to the platform API by route and status, each retry counted.",
		}, []string{"route", "status"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "extension_mstudio_ratelimit_limit",
			Help: "Last X-RateLimit-Limit the platform sent, by route.",
		}, []string{"route"}),
		remaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "extension_mstudio_ratelimit_remaining",
			Help: "Last X-RateLimit-Remaining the platform sent, by route.",
		}, []string{"route"}),
	}
	var err error
	// Several clients may share a registry (a second client for tests or another
	// base URL); they then share the collectors instead of failing.
	if m.calls, err = register(reg, m.calls); err != nil {
		return nil, err
	}
	if m.attempts, err = register(reg, m.attempts); err != nil {
		return nil, err
	}
	if m.limit, err = register(reg, m.limit); err != nil {
		return nil, err
	}
	if m.remaining, err = register(reg, m.remaining); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, errors.Join(errors.New("register platform api client metrics"), err)
	}
	return c, nil
}

func statusLabel(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

func (m *metrics) observeCall(route string, status int, d time.Duration) {
	if m != nil {
		m.calls.WithLabelValues(route, statusLabel(status)).Observe(d.Seconds())
	}
}

// observedTransport sees every attempt, where go-retryablehttp's hooks see only those
// that got an answer.
type observedTransport struct {
	next http.RoundTripper // nil: http.DefaultTransport
	c    *Client
}

func (t *observedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(r)
	route := callInfoFrom(r.Context()).route
	status := 0
	if err == nil {
		status = resp.StatusCode
		t.c.recordRateLimit(route, resp.Header)
	}
	if m := t.c.metrics; m != nil {
		m.attempts.WithLabelValues(route, statusLabel(status)).Inc()
	}
	return resp, err
}

// CloseIdleConnections passes on what go-retryablehttp asks of the client after a
// failed call; without it the wrapped transport's pool would never be told.
func (t *observedTransport) CloseIdleConnections() {
	type closeIdler interface{ CloseIdleConnections() }
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	if ci, ok := next.(closeIdler); ok {
		ci.CloseIdleConnections()
	}
}

// rateLimits is the last rate-limit state the platform reported.
type rateLimits struct {
	mu               sync.Mutex
	limit, remaining int
	reset            time.Time
}

func (c *Client) recordRateLimit(route string, h http.Header) {
	limit, errL := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	remaining, errR := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	if errL != nil && errR != nil {
		return // an exempt route, or a proxy's answer
	}
	var reset time.Time
	if secs, err := strconv.ParseFloat(h.Get("X-RateLimit-Reset"), 64); err == nil {
		reset = time.Now().Add(secondsUpTo(secs, 24*time.Hour)) // a day bounds a nonsensical header
	}
	c.rate.mu.Lock()
	if errL == nil {
		c.rate.limit = limit
	}
	if errR == nil {
		c.rate.remaining = remaining
	}
	c.rate.reset = reset
	c.rate.mu.Unlock()
	if m := c.metrics; m != nil {
		if errL == nil {
			m.limit.WithLabelValues(route).Set(float64(limit))
		}
		if errR == nil {
			m.remaining.WithLabelValues(route).Set(float64(remaining))
		}
	}
}

// RateLimit returns the rate limit the platform reported last, on any route: requests
// per window, how many are left, and when the window resets. All are zero until an
// answer carried the headers.
func (c *Client) RateLimit() (limit, remaining int, reset time.Time) {
	c.rate.mu.Lock()
	defer c.rate.mu.Unlock()
	return c.rate.limit, c.rate.remaining, c.rate.reset
}
