package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// errorHandler is the one place that turns a handler's error into an answer. A 4xx says
// what was wrong; a 5xx is logged in detail and answered with generic text only.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
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
		if status >= 500 {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Request().URL.Path, "status", status, "error", err.Error())
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(status)
		} else {
			werr = c.JSON(status, map[string]string{"error": msg})
		}
		if werr != nil {
			logger.Debug("write error answer", "error", werr.Error())
		}
	}
}

// ipExtractor believes X-Forwarded-For only from the configured proxies. Echo's XFF
// extractor trusts loopback and private networks by default; those defaults are turned off.
func ipExtractor(trusted []netip.Prefix) echo.IPExtractor {
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
func recoverPanics(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					logger.Error("panic in handler", "path", c.Request().URL.Path, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					err = echo.NewHTTPError(http.StatusInternalServerError)
				}
			}()
			return next(c)
		}
	}
}

// requestLog writes one line per request with fixed keys, and observes its duration. It
// logs the path, never the query: query strings may carry single-use keys.
func requestLog(logger *slog.Logger, reg prometheus.Registerer) echo.MiddlewareFunc {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "extension_http_request_duration_seconds",
		Help:    "HTTP requests by route, method and status.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
	}, []string{"route", "method", "status"})
	reg.MustRegister(duration)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			latency := time.Since(start)
			req, status := c.Request(), c.Response().Status
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			duration.WithLabelValues(route, req.Method, strconv.Itoa(status)).Observe(latency.Seconds())
			level := slog.LevelInfo
			switch {
			case status >= 500:
				level = slog.LevelError
			case route == "/healthz" || route == "/readyz" || route == "/metrics":
				level = slog.LevelDebug
			}
			attrs := []slog.Attr{
				slog.String("method", req.Method),
				slog.String("path", req.URL.Path),
				slog.Int("status", status),
				slog.Duration("latency", latency),
				slog.String("remote_ip", c.RealIP()),
			}
			for _, k := range []string{webhooks.LogKeyInstanceID, webhooks.LogKeyEventKind, webhooks.LogKeyRequestID, webhooks.LogKeyOutcome} {
				if v, ok := c.Get(k).(string); ok {
					attrs = append(attrs, slog.String(k, v))
				}
			}
			logger.LogAttrs(req.Context(), level, "request", attrs...)
			return nil
		}
	}
}

func metricsHandler(reg *prometheus.Registry) echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
