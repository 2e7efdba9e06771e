package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/jobs"
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

// opsSources are the console's doctor and reconcile sections. Left nil, each shows as
// not configured.
func opsSources(_ *Config, _ *backend) frontend.ConsoleConfig {
	return frontend.ConsoleConfig{
		// Doctor:    doctor's findings as []frontend.DoctorFinding,
		// Reconcile: reconcile's findings and its resume action,
	}
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
	opsRoutes(front, pages.Console(cc), jobsUI)
	return front, nil
}
