// Package httpfront owns the HTTP front every route sits behind: the error handler (an HTML
// page for browsers, JSON for API clients), panic recovery, the client address, the request
// log line and request metrics whose labels are bounded. It is built once and used by serve,
// dev and the tests of every package, so what a test sees is what production answers.
//
// It imports nothing of ours: the HTML error page comes from whoever renders pages (the
// frontend), through the ErrorPages interface declared here.
package httpfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrorPages renders the HTML page of an error status for a browser. The page names no
// detail of the error: the status alone decides its words.
type ErrorPages interface {
	ErrorPage(c echo.Context, status int) error
}

// Options configures New.
type Options struct {
	Logger *slog.Logger
	// Registry receives the request metrics and is served on /metrics. nil: a new one.
	Registry *prometheus.Registry
	// TrustedProxies are the proxies whose X-Forwarded-For is believed; empty: none.
	TrustedProxies []netip.Prefix
	// Pages renders HTML error pages; nil answers browsers in JSON too.
	Pages ErrorPages
	// Ready reports whether the backend can serve (GET /readyz); nil: always.
	Ready func(context.Context) error
	// LogAttrs are request values (echo.Context keys) copied into the request log line
	// when a handler set them, such as a webhook's instance id.
	LogAttrs []string
	// SecretPaths are path prefixes whose rest is a secret, such as the link token of
	// /invite/{token}: every log line writes the prefix and "…" in place of the rest, for
	// any method and status, routed or not.
	SecretPaths []string
	// RequestMetric names the histogram of request durations; "": RequestMetricDefault.
	// A second front on the same registry (the ops console's) needs a name of its own.
	RequestMetric string
}

// RequestMetricDefault is the request histogram of the front that serves the backend.
const RequestMetricDefault = "extension_http_request_duration_seconds"

// Front is the Echo instance with the front's middleware and its metrics registry.
type Front struct {
	*echo.Echo
	Registry *prometheus.Registry
}

// New builds the front: error handling, client address, recovery, request log and metrics,
// and the operational routes /healthz, /readyz and /metrics.
func New(opts Options) *Front {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.RequestMetric == "" {
		opts.RequestMetric = RequestMetricDefault
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	logger := opts.Logger
	gate := newRepeatGate(time.Minute, func(key string, held int) {
		logger.Info("requests like the one before", "kind", key, "repeated", held, "within", time.Minute.String())
	})
	logPath := pathRedactor(opts.SecretPaths)
	e.HTTPErrorHandler = errorHandler(opts.Logger, opts.Pages, gate, logPath)
	e.IPExtractor = IPExtractor(opts.TrustedProxies)
	// The request log wraps panic recovery, so a request that panicked is logged too.
	e.Use(requestLog(e, opts, gate, logPath), recoverPanics(opts.Logger, logPath))
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		if opts.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
			defer cancel()
			if err := opts.Ready(ctx); err != nil {
				opts.Logger.Warn("not ready", "error", err.Error())
				return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "database unavailable"})
			}
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})))
	return &Front{Echo: e, Registry: opts.Registry}
}

// WantsHTML reports whether the request comes from a browser that wants a page: its
// Accept header names text/html (a browser's navigation does; API clients and the
// platform do not).
func WantsHTML(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
			return true
		}
	}
	return false
}

// errorHandler is the one place that turns a handler's error into an answer. A 4xx says
// what was wrong; a 5xx is logged in detail and answered with generic words only. A browser
// gets a page, anybody else JSON.
func errorHandler(logger *slog.Logger, pages ErrorPages, gate *repeatGate, logPath func(*http.Request) string) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		status, msg := http.StatusInternalServerError, "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			status = he.Code
			if m, ok := he.Message.(string); ok && status < 500 {
				msg = m
			} else {
				msg = http.StatusText(status)
			}
		}
		if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
			// The client hung up (a sender that gave up): nothing failed on our side, and
			// nobody reads the answer. 499 as nginx logs it.
			c.Response().Status = 499
			return
		}
		if status >= 500 && gate.pass("failed "+c.Path()+" "+statusLabel(status)) {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", logPath(c.Request()), "status", status, "error", err.Error())
		}
		var werr error
		switch {
		case c.Request().Method == http.MethodHead:
			werr = c.NoContent(status)
		case pages != nil && WantsHTML(c.Request()):
			werr = pages.ErrorPage(c, status)
		default:
			werr = c.JSON(status, map[string]string{"error": msg})
		}
		if werr != nil {
			logger.Debug("write error answer", "error", werr.Error())
		}
	}
}

// IPExtractor believes X-Forwarded-For only from the configured proxies. Echo's XFF
// extractor trusts loopback and private networks by default; those defaults are turned off.
func IPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		_, ipnet, err := net.ParseCIDR(p.String())
		if err == nil {
			opts = append(opts, echo.TrustIPRange(ipnet))
		}
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// recoverPanics turns a panic into a 500 and a log line with its stack, so nothing a
// request carries can take the process down.
func recoverPanics(logger *slog.Logger, logPath func(*http.Request) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					logger.Error("panic in handler", "path", logPath(c.Request()), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = echo.NewHTTPError(http.StatusInternalServerError)
				}
			}()
			return next(c)
		}
	}
}

// labelMethods are the methods a metric label may name; any other is "other". A label
// taken from a request's own text would let anybody grow the metrics without bound.
var labelMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// labelOther stands for every method or route outside the fixed sets.
const labelOther = "other"

// routeLabels knows the registered route templates. They are read once, at the first
// request: every route is registered before the server starts.
type routeLabels struct {
	e     *echo.Echo
	once  sync.Once
	known map[string]bool
}

func (l *routeLabels) label(c echo.Context) string {
	l.once.Do(func() {
		l.known = map[string]bool{}
		for _, r := range l.e.Routes() {
			l.known[r.Path] = true
		}
	})
	// A 404 or 405 carries the path of the nearest node in the router's tree: a route of
	// ours or not, it is looked up like any other.
	if p := c.Path(); l.known[p] {
		return p
	}
	return labelOther
}

// statusLabel clips the status to the codes HTTP defines, as a request could not choose
// another one anyway; 499 is our client-gone.
func statusLabel(status int) string {
	if (status < 100 || status > 599) && status != 499 {
		return labelOther
	}
	return strconv.Itoa(status)
}

// requestLog writes one line per request with fixed keys, and observes its duration. It
// logs the path, never the query: query strings may carry single-use keys; and of a path
// under a secret prefix only the prefix.
func requestLog(e *echo.Echo, opts Options, gate *repeatGate, logPath func(*http.Request) string) echo.MiddlewareFunc {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    opts.RequestMetric,
		Help:    "HTTP requests by route, method and status.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
	}, []string{"route", "method", "status"})
	opts.Registry.MustRegister(duration)
	routes := &routeLabels{e: e}
	logger := opts.Logger
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			latency := time.Since(start)
			req, status := c.Request(), c.Response().Status
			route := routes.label(c)
			method := req.Method
			if !labelMethods[method] {
				method = labelOther
			}
			duration.WithLabelValues(route, method, statusLabel(status)).Observe(latency.Seconds())
			level := slog.LevelInfo
			switch {
			case status >= 500:
				level = slog.LevelError
			case route == "/healthz" || route == "/readyz" || route == "/metrics":
				level = slog.LevelDebug
			}
			attrs := []slog.Attr{
				slog.String("method", clip(req.Method, 16)),
				slog.String("path", logPath(req)),
				slog.Int("status", status),
				slog.Duration("latency", latency),
				slog.String("remote_ip", c.RealIP()),
			}
			for _, k := range opts.LogAttrs {
				if v, ok := c.Get(k).(string); ok {
					attrs = append(attrs, slog.String(k, v))
				}
			}
			if status >= 400 && !gate.pass(route+" "+method+" "+statusLabel(status)) {
				// A failure like one a moment ago: a flood of them writes one line per
				// route, method, status and minute, and a line that counts the rest.
				return nil
			}
			logger.LogAttrs(req.Context(), level, "request", attrs...)
			return nil
		}
	}
}

// repeatGate lets the first line of a kind through at once and holds back the ones that
// follow within the interval; when the interval ends, one line counts what it held back,
// and the next interval begins if there were any. A flood of identical failures writes a
// line a minute, and its tail is counted too. Keys are built from bounded labels only.
type repeatGate struct {
	interval time.Duration
	flush    func(key string, held int) // writes the count of a closed interval
	mu       sync.Mutex
	open     map[string]int // key → lines held back in its current interval
}

func newRepeatGate(interval time.Duration, flush func(key string, held int)) *repeatGate {
	return &repeatGate{interval: interval, flush: flush, open: map[string]int{}}
}

// pass reports whether a line of the key may be written now.
func (g *repeatGate) pass(key string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if held, ok := g.open[key]; ok {
		g.open[key] = held + 1
		return false
	}
	g.open[key] = 0
	time.AfterFunc(g.interval, func() { g.close(key) })
	return true
}

func (g *repeatGate) close(key string) {
	g.mu.Lock()
	held := g.open[key]
	if held > 0 {
		g.open[key] = 0
		time.AfterFunc(g.interval, func() { g.close(key) })
	} else {
		delete(g.open, key)
	}
	g.mu.Unlock()
	if held > 0 {
		g.flush(key, held)
	}
}

// pathRedactor returns how a request's path is logged: clipped, and cut after the first
// of the secret prefixes it starts with (compared without regard to case, as a prefix
// typed in capitals still carries the secret after it). The raw and the cleaned path are
// looked at too, so neither an escaped slash nor "//" or "/./" hides a secret.
func pathRedactor(secret []string) func(*http.Request) string {
	return func(r *http.Request) string {
		p := r.URL.Path
		for _, cand := range []string{p, r.URL.RawPath, path.Clean("/" + p)} {
			for _, prefix := range secret {
				if len(cand) > len(prefix) && strings.EqualFold(cand[:len(prefix)], prefix) {
					return prefix + "…"
				}
			}
		}
		return clip(p, 256)
	}
}

// clip bounds a logged value taken from the request.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
