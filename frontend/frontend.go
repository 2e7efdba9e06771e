package frontend

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"golang.org/x/time/rate"
)

// Defaults of Config.
const (
	defaultSessionIdle     = 2 * time.Hour
	defaultSessionAbsolute = 24 * time.Hour
)

// Config configures New.
type Config struct {
	Store *extension.Store
	// PublicURL (EXT_PUBLIC_URL) is the origin browsers reach us at: https makes cookies
	// Secure, and a state-changing request must come from this origin.
	PublicURL       string
	SessionIdle     time.Duration // 0: 2 h
	SessionAbsolute time.Duration // 0: 24 h
	// Actions starts domain actions (the job queue); nil: the action pages say the
	// action is not available.
	Actions ActionStarter
	// Hasher verifies local users' passwords, bounded; nil: one with OWASP's parameters,
	// as many at once as there are CPUs.
	Hasher *extension.PasswordHasher
	// Mailer sends invitation and reset e-mails; nil (no EXT_SMTP_URL): links are only
	// shown to copy, and "forgot password" is not offered.
	Mailer Mailer
	// Jobs sums up an instance's background jobs on its dashboard; nil: left out.
	Jobs JobHealthReader
	// DefaultRole (EXT_DEFAULT_ROLE) is the role of control panel users provisioned after
	// an instance's first, until an owner saves the instance's own; "": member.
	DefaultRole string
	// OIDCClient lends its transport's TLS settings to the client that fetches OpenID
	// Connect providers' documents, keys and tokens (tests trust their servers); nil: the
	// defaults. The address guard, the size cap and refusing redirects are always added.
	OIDCClient *http.Client
	// OIDCAllowLocal admits providers on loopback and private addresses (http on
	// loopback); nil: only when PublicURL is itself on loopback (development, tests).
	OIDCAllowLocal *bool
	// RetentionAfterRemoval (EXT_RETENTION_AFTER_REMOVAL) is how long a removed
	// instance's data is kept, as the data card of the settings page tells owners; nil:
	// extension.DefaultRetentionAfterRemoval.
	RetentionAfterRemoval *time.Duration
	// Now is the clock ID tokens are checked against; nil: the wall clock.
	Now    func() time.Time
	Logger *slog.Logger
}

// Frontend is the page engine, the browser sessions and the pages built on them.
type Frontend struct {
	*Engine
	Sessions *Sessions
	store    *extension.Store
	actions  ActionStarter
	origin   string // scheme://host[:port] of PublicURL, without a default port
	logger   *slog.Logger
	// refusals logs the refusals a client brings about itself at a bounded rate.
	refusals   *mstudio.RefusalLog
	hasher     *extension.PasswordHasher
	mailer     Mailer
	jobs       JobHealthReader
	loginLimit *loginLimiter
	// forgotLimit bounds "forgot password" per instance and e-mail address; forgotSlots
	// the background work it starts.
	forgotLimit *loginLimiter
	forgotSlots chan struct{}
	defaultRole string
	oidcClient  *http.Client
	oidcLocal   bool // providers may be on loopback and private addresses
	providers   *oidcProviders
	now         func() time.Time
	retention   time.Duration // RetentionAfterRemoval
}

// New checks cfg and parses every page.
func New(cfg Config) (*Frontend, error) {
	if cfg.Store == nil {
		return nil, errors.New("frontend: needs a store")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("frontend: public url %q: want http(s)://HOST", cfg.PublicURL)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	idle, absolute := cfg.SessionIdle, cfg.SessionAbsolute
	if idle == 0 {
		idle = defaultSessionIdle
	}
	if absolute == 0 {
		absolute = defaultSessionAbsolute
	}
	// Activity is recorded at most once a minute, so a shorter idle timeout would end
	// sessions that are in use.
	if idle < 2*time.Minute || absolute < idle {
		return nil, errors.New("frontend: the session idle timeout must be at least 2 minutes, and the absolute one at least as long")
	}
	if cfg.DefaultRole != "" && !extension.ValidRole(cfg.DefaultRole) {
		return nil, fmt.Errorf("frontend: default role %q: want owner, admin or member", cfg.DefaultRole)
	}
	secure := u.Scheme == "https"
	now := cfg.Now
	allowLocal := isLoopback(u.Hostname())
	if cfg.OIDCAllowLocal != nil {
		allowLocal = *cfg.OIDCAllowLocal
	}
	if now == nil {
		now = time.Now
	}
	retention := extension.DefaultRetentionAfterRemoval
	if cfg.RetentionAfterRemoval != nil {
		retention = *cfg.RetentionAfterRemoval
	}
	hasher := cfg.Hasher
	if hasher == nil {
		hasher = extension.NewPasswordHasher(extension.PasswordOWASP, 0, -1)
	}
	refusals := mstudio.NewRefusalLog(logger, "frontend: refused", slog.LevelInfo, 0)
	eng, err := newEngine(secure, logger)
	if err != nil {
		return nil, err
	}
	return &Frontend{
		Engine:     eng,
		Sessions:   &Sessions{store: cfg.Store, idle: idle, absolute: absolute, secure: secure, refusals: refusals},
		store:      cfg.Store,
		actions:    cfg.Actions,
		origin:     originOf(u),
		logger:     logger,
		refusals:   refusals,
		hasher:     hasher,
		mailer:     cfg.Mailer,
		jobs:       cfg.Jobs,
		loginLimit: &loginLimiter{addrs: map[string]*rate.Limiter{}},

		forgotLimit: &loginLimiter{addrs: map[string]*rate.Limiter{}, limit: forgotRate, burst: forgotBurst},
		forgotSlots: make(chan struct{}, forgotPending),
		defaultRole: cfg.DefaultRole,
		oidcClient:  newOIDCClient(cfg.OIDCClient, allowLocal),
		oidcLocal:   allowLocal,
		providers:   &oidcProviders{byIssue: map[string]cachedProvider{}},
		now:         now,
		retention:   retention,
	}, nil
}
