package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/extension-backend/extension-backend/migrations"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// shutdownGrace is how long in-flight requests get to finish (and commit) on SIGTERM.
const shutdownGrace = 15 * time.Second

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "listen address (overrides EXT_ADDR)")
	noMigrate := fs.Bool("no-migrate", false, "do not apply pending migrations at start")
	workers := fs.Int("workers", defaultWorkers, "background jobs worked at once in this process; 0 runs no workers (a web-only process)")
	timeouts := defaultConnTimeouts
	fs.DurationVar(&timeouts.readHeader, "read-header-timeout", timeouts.readHeader,
		"how long a connection may take to send a request's headers (a connection that sends nothing is closed then)")
	fs.DurationVar(&timeouts.idle, "idle-timeout", timeouts.idle,
		"how long a keep-alive connection may wait for its next request; keep it above a reverse proxy's idle timeout towards the backend")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *workers < 0 {
		return usagef("--workers must be 0 or more")
	}
	if timeouts.readHeader < 100*time.Millisecond || timeouts.idle < 100*time.Millisecond {
		return usagef("--read-header-timeout and --idle-timeout must be at least 100ms")
	}
	cfg, err := loadConfig(getenv, needs{keys: true, extensionID: true})
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Addr = *addr
	}
	logger := newLogger(stdout, cfg.LogLevel)
	logger.Info("starting", "config", cfg, "memory_limit_bytes", applyMemoryLimit())
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	return serveBackendWith(ctx, cfg, logger, !*noMigrate, *workers, ln, timeouts)
}

// defaultWorkers is how many jobs a process works at once unless --workers says otherwise.
const defaultWorkers = 32

// serveBackend runs the backend on ln until ctx ends, with workers job workers.
func serveBackend(ctx context.Context, cfg *Config, logger *slog.Logger, migrate bool, workers int, ln net.Listener) error {
	return serveBackendWith(ctx, cfg, logger, migrate, workers, ln, defaultConnTimeouts)
}

// serveBackendWith is serveBackend with the connections' timeouts of serve's flags.
func serveBackendWith(ctx context.Context, cfg *Config, logger *slog.Logger, migrate bool, workers int, ln net.Listener, timeouts connTimeouts) error {
	defer ln.Close() // in case we fail before serving
	b, err := startBackend(ctx, cfg, logger, migrate, workers)
	if err != nil {
		return err
	}
	defer b.close(logger)
	go prune(ctx, b.store, cfg.CaptureDeliveries, logger)
	go eraseRemoved(ctx, b.store, logger, cfg.RetentionAfterRemoval)
	if cfg.OpsAddr != "" {
		return serveWithOps(ctx, cfg, logger, b, ln, timeouts)
	}
	return serveHTTPWith(ctx, ln, b.front, logger, timeouts)
}

// backend is one process's backend as serve assembles it: the store, migrated and
// checked; the platform client; the instance token broker; the job queue, its workers
// working; and the HTTP front with every route. The replica tests assemble theirs with
// it, so they run what serve runs.
type backend struct {
	store  *extension.Store
	client *mstudio.Client
	broker *mstudio.Broker
	jobs   *jobs.Jobs
	front  *httpfront.Front
	// reconciler compares the platform's view with ours (nil without
	// EXT_CONTRIBUTOR_TOKEN); the ops console's resume button calls its Resume.
	reconciler *mstudio.Reconciler
	// captures records captured deliveries (EXT_CAPTURE_DELIVERIES, dev); nil when off.
	captures *extension.CaptureRecorder
}

// startBackend assembles the backend and starts its job workers; the key caches behind
// the front keep current until ctx ends. close stops it.
func startBackend(ctx context.Context, cfg *Config, logger *slog.Logger, migrate bool, workers int) (_ *backend, err error) {
	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	b := &backend{store: store}
	defer func() {
		if err != nil {
			b.close(logger)
		}
	}()
	checked := false
	if !migrate {
		if err := requireMigrated(ctx, store, cfg.DatabaseURL.Reveal()); err != nil {
			return nil, err
		}
	} else {
		// The checks come first where the schema lets them, so that a start they refuse
		// (another key, the simulator's database) migrates nothing either.
		if checked, err = canCheckBeforeMigrating(ctx, store); err != nil {
			return nil, err
		}
		if checked {
			if err := checkStartup(ctx, store, cfg, logger); err != nil {
				return nil, err
			}
		}
		if err := migrateUp(ctx, store, cfg.DatabaseURL.Reveal(), logger); err != nil {
			return nil, err
		}
	}
	if !checked {
		if err := checkStartup(ctx, store, cfg, logger); err != nil {
			return nil, err
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if b.client, err = mstudio.New(cfg.MStudioAPIURL, mstudio.Options{Logger: logger, Registerer: reg}); err != nil {
		return nil, err
	}
	b.broker = mstudio.NewBroker(store, b.client, mstudio.BrokerOptions{Logger: logger, Registerer: reg})
	if b.reconciler, err = newReconciler(cfg, store, b.client, logger, reg); err != nil {
		return nil, err
	}
	jc := jobs.Config{
		Store: store, DatabaseURL: cfg.DatabaseURL.Reveal(), Tokens: b.broker, Client: b.client,
		Workers: workers, Logger: logger, Mail: mailConfig(cfg), Registerer: reg,
	}
	if b.reconciler != nil {
		// A nil *Reconciler in the interface would look configured.
		jc.Platform = b.reconciler
		logger.Info("reconciling with the platform periodically", "every", jobs.DefaultPlatformReconcileEvery.String())
	}
	b.jobs, err = jobs.New(ctx, jc)
	if err != nil {
		return nil, err
	}
	// b.jobs is set before Start: on a failed Start the deferred close stops the queue
	// and releases River's pool.
	if err := b.jobs.Start(ctx); err != nil {
		return nil, err
	}
	hcfg := *cfg
	if cfg.CaptureDeliveries > 0 {
		b.captures = store.NewCaptureRecorder(logger)
		hcfg.captures = b.captures
	}
	if b.front, err = newHTTP(ctx, &hcfg, logger, reg, store, b.client, afterApply(b.broker, b.jobs), b.jobs); err != nil {
		return nil, err
	}
	return b, nil
}

// close stops the job workers, letting running jobs finish within the shutdown grace,
// and then closes the store.
func (b *backend) close(logger *slog.Logger) {
	if b.jobs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := b.jobs.Stop(sctx); err != nil {
			logger.Warn("stop jobs", "error", err.Error())
		}
	}
	if b.captures != nil {
		b.captures.Close() // what is queued is written first
	}
	b.store.Close()
}

// afterApply is what follows a committed lifecycle event: the broker drops what the
// event made stale, then the queue enqueues the follow-up work (after the commit: River
// cannot join our transaction, and the reconciler repairs an enqueue lost in a crash in
// between).
func afterApply(broker *mstudio.Broker, jb *jobs.Jobs) func(context.Context, extension.LifecycleEvent) {
	return func(ctx context.Context, ev extension.LifecycleEvent) {
		broker.Applied(ctx, ev)
		jb.AfterApply(ctx, ev)
	}
}

// connTimeouts bound how long a connection may hold the server's memory (a goroutine and
// two 4 KiB buffers each) without a request to work on.
type connTimeouts struct {
	// readHeader ends a connection that has not sent a whole request head in time,
	// including one that sends nothing at all: a slow or stuck client, or a slowloris.
	readHeader time.Duration
	// idle ends a keep-alive connection between requests. A reverse proxy in front must
	// give up its idle connections to us sooner, or it may send a request on one that we
	// close at the same moment, and its client then gets a 502 (docker-compose's proxy
	// keeps them 60 s).
	idle time.Duration
}

var defaultConnTimeouts = connTimeouts{readHeader: 10 * time.Second, idle: 2 * time.Minute}

// serveHTTP serves on ln until ctx ends, then stops accepting and lets requests in flight
// finish.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	return serveHTTPWith(ctx, ln, h, logger, defaultConnTimeouts)
}

// serveHTTPWith is serveHTTP with the connections' timeouts given.
func serveHTTPWith(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger, timeouts connTimeouts) error {
	return serveHTTPAs(ctx, "listening", ln, h, logger, timeouts)
}

// serveHTTPAs is serveHTTPWith that logs its start as msg: a second listener (the ops
// console's) must not be taken for the backend's by whoever reads the log.
func serveHTTPAs(ctx context.Context, msg string, ln net.Listener, h http.Handler, logger *slog.Logger, timeouts connTimeouts) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: timeouts.readHeader,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       timeouts.idle,
		// Requests do not inherit ctx: SIGTERM must not cancel a delivery mid-transaction.
		BaseContext: func(net.Listener) context.Context { return context.Background() },
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info(msg, "addr", ln.Addr().String())
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// prune drops what is past its time, now and then hourly: delivery journal rows past
// their retention, remembered sign-on keys past their lifetime, ended sessions, captured
// deliveries older than captureRetention (all of them when capturing is off, 0).
func prune(ctx context.Context, store *extension.Store, captureRetention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		pruneOnce(ctx, store, captureRetention, time.Now(), logger)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pruneOnce is one round of prune, at now.
func pruneOnce(ctx context.Context, store *extension.Store, captureRetention time.Duration, now time.Time, logger *slog.Logger) {
	for what, run := range map[string]func() (int64, error){
		"delivery journal": func() (int64, error) { return store.PruneDeliveries(ctx, now.Add(-extension.DeliveryRetention)) },
		"sign-on keys":     func() (int64, error) { return store.PruneRetrievalKeys(ctx, now) },
		"sessions":         func() (int64, error) { return store.PruneSessions(ctx, now) },
		"audit events":     func() (int64, error) { return store.PruneAudit(ctx, now.Add(-extension.AuditRetention)) },
		"captured deliveries": func() (int64, error) {
			return store.PruneCaptures(ctx, now.Add(-captureRetention))
		},
		"invitation and reset links": func() (int64, error) {
			resets, invitations, err := store.PruneLinks(ctx, now)
			return resets + invitations, err
		},
	} {
		n, err := run()
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("prune "+what, "error", err.Error())
		case n > 0:
			logger.Info("pruned "+what, "rows", n)
		}
	}
}

func openStore(ctx context.Context, cfg *Config, logger *slog.Logger) (*extension.Store, error) {
	opts := extension.Options{Logger: logger}
	if len(cfg.EncryptionKeys) > 0 {
		kr, err := extension.NewKeyring(cfg.EncryptionKeys)
		if err != nil {
			return nil, fmt.Errorf("EXT_ENCRYPTION_KEYS: %w", err)
		}
		opts.Keys = kr
	}
	store, err := extension.Open(ctx, cfg.DatabaseURL.Reveal(), opts)
	if err != nil {
		return nil, err
	}
	store.SetOperatorProviders(cfg.OperatorProviders)
	return store, nil
}

// migrateUp applies our migrations and then River's (its tables hold the job queue).
func migrateUp(ctx context.Context, store *extension.Store, databaseURL string, logger *slog.Logger) error {
	res, err := migrations.Up(ctx, store.SQLDB(), string(store.Dialect()))
	if err != nil {
		return err
	}
	for _, r := range res {
		logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration.String())
	}
	river, err := jobs.Migrate(ctx, store, databaseURL)
	if err != nil {
		return err
	}
	for _, m := range river {
		logger.Info("job queue migration applied", "version", m.Version, "name", m.Name, "duration", m.Duration.String())
	}
	return nil
}

// requireMigrated fails with advice when the schema, ours or the job queue's, is behind
// the binary.
func requireMigrated(ctx context.Context, store *extension.Store, databaseURL string) error {
	st, err := migrations.List(ctx, store.SQLDB(), string(store.Dialect()))
	if err != nil {
		return err
	}
	for _, s := range st {
		if s.State != "applied" {
			return fmt.Errorf("database has pending migrations (first: %s): run extension-backend migrate up", s.Source.Path)
		}
	}
	if err := jobs.RequireMigrated(ctx, store, databaseURL); err != nil {
		return err // its text already says to run migrate up
	}
	return nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// newHTTP builds the HTTP front and every handler behind it, and registers the routes.
func newHTTP(ctx context.Context, cfg *Config, logger *slog.Logger, reg *prometheus.Registry, store *extension.Store, client *mstudio.Client,
	applied func(context.Context, extension.LifecycleEvent), jb *jobs.Jobs) (*httpfront.Front, error) {
	fc := frontend.Config{Store: store, PublicURL: cfg.PublicURL,
		SessionIdle: cfg.SessionIdle, SessionAbsolute: cfg.SessionAbsolute, DefaultRole: cfg.DefaultRole, Logger: logger,
		RetentionAfterRemoval: &cfg.RetentionAfterRemoval}
	// The queue starts the pages' actions, sums up an instance's jobs on its dashboard, and
	// sends the pages' mail with EXT_SMTP_URL.
	if jb != nil {
		fc.Actions, fc.Jobs = jb, jb
		if cfg.SMTP != nil {
			fc.Mailer = jobMailer{jb}
		}
	}
	pages, err := frontend.New(fc)
	if err != nil {
		return nil, err
	}
	front := httpfront.New(httpfront.Options{
		Logger: logger, Registry: reg, TrustedProxies: cfg.TrustedProxies, Pages: pages, Ready: store.Ping,
		LogAttrs:    []string{webhooks.LogKeyInstanceID, webhooks.LogKeyEventKind, webhooks.LogKeyRequestID, webhooks.LogKeyOutcome},
		SecretPaths: frontend.SecretPaths(),
	})
	h := handlers{pages: pages}
	h.sso, err = atrek.New(atrek.Config{
		Store: store, Client: client, UserTokens: atrek.NewUserTokens(store, client, atrek.UserTokenOptions{Logger: logger}),
		ExtensionID: cfg.ExtensionID, Sessions: pages.Sessions, Pages: pages, Logger: logger, DefaultRole: cfg.DefaultRole,
	})
	if err != nil {
		return nil, err
	}
	h.oauth, err = atrek.NewOAuth(atrek.OAuthConfig{
		Store: store, Client: client, ExtensionID: cfg.ExtensionID, PublicURL: cfg.PublicURL,
		ClientSecret: cfg.OAuthClientSecret, SignIn: h.sso.SignIn, Pages: pages, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	// The platform's current keys are fetched now and refreshed until ctx ends, in the
	// background: an unreachable platform delays nothing here.
	sessionKeys := mstudio.NewKeyCache(client, mstudio.PurposeSessionToken, mstudio.KeyCacheOptions{Logger: logger})
	webhookKeys := mstudio.NewKeyCache(client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{Logger: logger})
	go sessionKeys.KeepCurrent(ctx)
	go webhookKeys.KeepCurrent(ctx)
	h.fragments, err = atrek.NewSessionTokenVerifier(sessionKeys, store, cfg.ExtensionID,
		atrek.VerifierOptions{Client: client, ExtensionSecret: cfg.ExtensionSecret, Logger: logger})
	if err != nil {
		return nil, err
	}
	h.webhooks = webhooks.New(webhooks.Config{
		Store:         store,
		Keys:          webhookKeys,
		ExtensionID:   cfg.ExtensionID,
		ContributorID: cfg.ContributorID,
		Logger:        logger,
		Registerer:    reg,
		Applied:       applied,
		Captures:      cfg.captures,
		// dev also keeps what a hand-made delivery looked like; serve only the platform's,
		// so no one without its key can make us store anything.
		CaptureUnverified: cfg.devSimulator,
	})
	routes(front, h)
	return front, nil
}
