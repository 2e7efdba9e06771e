package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/extension-backend/extension-backend/doctor"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
)

// opsJobsPath is where the ops console serves River's UI.
const opsJobsPath = "/jobs"

// opsRequestMetric is the ops listener's request histogram: it shares the backend's
// registry, so it needs a name of its own.
const opsRequestMetric = "extension_ops_http_request_duration_seconds"

// serveWithOps serves the backend on ln and the ops console on EXT_OPS_ADDR until ctx
// ends; either failing stops both.
func serveWithOps(ctx context.Context, cfg *Config, logger *slog.Logger, b *backend, ln net.Listener, timeouts connTimeouts) error {
	opsLn, err := net.Listen("tcp", cfg.OpsAddr)
	if err != nil {
		return fmt.Errorf("EXT_OPS_ADDR: listen on %s: %w", cfg.OpsAddr, err)
	}
	defer opsLn.Close()
	g, gctx := errgroup.WithContext(ctx)
	opsLogger := logger.With("listener", "ops")
	ops, err := newOps(gctx, cfg, opsLogger, b.front.Registry, b.store, b.jobs, opsSources(cfg, b))
	if err != nil {
		return err
	}
	g.Go(func() error { return serveHTTPWith(gctx, ln, b.front, logger, timeouts) })
	g.Go(func() error { return serveHTTPAs(gctx, "ops console listening", opsLn, ops, opsLogger, timeouts) })
	return g.Wait()
}

// opsSources are the console's doctor and reconcile sections: doctor's offline checks
// run on serve's own store and client when the page loads; reconcile's stored findings
// and its resume action when EXT_CONTRIBUTOR_TOKEN is set (else that section shows as
// not configured).
func opsSources(cfg *Config, b *backend) frontend.ConsoleConfig {
	cc := frontend.ConsoleConfig{Doctor: cachedDoctor(doctorCacheFor, func(ctx context.Context) []frontend.DoctorFinding {
		found := doctor.Run(ctx, doctorOffline(cfg, b.store, b.client).Checks())
		out := make([]frontend.DoctorFinding, 0, len(found))
		for _, f := range found {
			out = append(out, frontend.DoctorFinding{Check: f.Check, Status: string(f.Level), Detail: f.Message, Fix: f.Action})
		}
		return out
	})}
	if b.reconciler != nil {
		cc.Reconcile = opsReconcile{store: b.store, rec: b.reconciler}
	}
	return cc
}

// doctorCacheFor is how long the console shows one run of doctor's checks: each run opens
// every stored secret and calls the platform and the mail server, which a page reloaded
// in a loop should not repeat.
const doctorCacheFor = time.Minute

// cachedDoctor runs checks at most once per ttl; concurrent page loads share one run.
func cachedDoctor(ttl time.Duration, checks frontend.DoctorSource) frontend.DoctorSource {
	var (
		mu   sync.Mutex
		last []frontend.DoctorFinding
		at   time.Time
	)
	return func(ctx context.Context) []frontend.DoctorFinding {
		mu.Lock()
		defer mu.Unlock()
		if last == nil || time.Since(at) >= ttl {
			last, at = checks(ctx), time.Now()
		}
		return last
	}
}

// opsReconcile shows the findings every replica's reconciliation stored, and resumes
// through this replica's reconciler.
type opsReconcile struct {
	store *extension.Store
	rec   *mstudio.Reconciler
}

func (o opsReconcile) Findings(ctx context.Context) ([]frontend.ReconcileFinding, error) {
	found, err := o.store.ReconcileFindings(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]frontend.ReconcileFinding, 0, len(found))
	for _, f := range found {
		out = append(out, frontend.ReconcileFinding{Kind: string(f.Kind), InstanceID: f.InstanceID,
			Detail: f.Detail, FoundAt: f.FirstSeen, Resumable: f.Kind == extension.FindingHalted})
	}
	return out, nil
}

func (o opsReconcile) Resume(ctx context.Context, instanceID string) error {
	return o.rec.Resume(ctx, instanceID)
}

// newOps builds the ops console's front: its pages on frontend's engine with sources'
// doctor and reconcile, River's UI under /jobs when jb is set, and /metrics, /healthz and
// /readyz of the backend's registry and store. River's UI counts jobs in the background
// until ctx ends.
func newOps(ctx context.Context, cfg *Config, logger *slog.Logger, reg *prometheus.Registry, store *extension.Store,
	jb *jobs.Jobs, sources frontend.ConsoleConfig) (*httpfront.Front, error) {
	pages, err := frontend.New(frontend.Config{Store: store, PublicURL: cfg.PublicURL, Logger: logger})
	if err != nil {
		return nil, err
	}
	front := httpfront.New(httpfront.Options{
		Logger: logger, Registry: reg, TrustedProxies: cfg.TrustedProxies, Pages: pages,
		Ready: store.Ping, RequestMetric: opsRequestMetric,
	})
	cc := frontend.ConsoleConfig{Doctor: sources.Doctor, Reconcile: sources.Reconcile}
	var jobsUI http.Handler // an interface left nil: no UI, not a nil *jobs.UI
	if jb != nil {
		cc.Jobs = jb
		ui, err := jb.NewUI(opsJobsPath, logger)
		if err != nil {
			return nil, fmt.Errorf("ops console: jobs: %w", err)
		}
		if err := ui.Start(ctx); err != nil {
			return nil, fmt.Errorf("ops console: jobs: %w", err)
		}
		cc.JobsUI, jobsUI = opsJobsPath, ui
	}
	front.Pre(opsHostCheck(cfg.OpsAddr, cfg.OpsHosts))
	opsRoutes(front, pages.Console(cc), jobsUI)
	return front, nil
}

// opsHostCheck refuses (421) a request to the console whose Host names a host the
// operator did not list: a page of another site whose name is made to resolve to the
// console's address (DNS rebinding) is same-origin to the browser, so it could read every
// page and pass the same-origin check of resume and retry. IP literals, localhost, the
// host of EXT_OPS_ADDR and EXT_OPS_HOSTS are taken; /metrics, /healthz and /readyz answer
// any Host, for scrapers and probes that use a service name.
func opsHostCheck(opsAddr string, hosts []string) echo.MiddlewareFunc {
	allowed := map[string]bool{"localhost": true}
	if h, _, err := net.SplitHostPort(opsAddr); err == nil && h != "" {
		allowed[normalHost(h)] = true
	}
	for _, h := range hosts {
		allowed[normalHost(h)] = true
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			switch c.Request().URL.Path {
			case "/metrics", "/healthz", "/readyz":
				return next(c)
			}
			host := c.Request().Host
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			host = normalHost(host)
			if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil || allowed[host] {
				return next(c)
			}
			return echo.NewHTTPError(http.StatusMisdirectedRequest,
				"this console answers only at its own address; add the name to EXT_OPS_HOSTS to reach it by name")
		}
	}
}

// normalHost is a host name as the Host check compares it: lower case, without a final dot.
func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}
