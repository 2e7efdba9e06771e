package main

import (
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/jobs"
)

// Config is the effective configuration, read from the environment once, in run.
type Config struct {
	Addr           string
	DatabaseURL    extension.Secret // may carry a password
	EncryptionKeys [][]byte
	MStudioAPIURL  string
	ExtensionID    string
	ContributorID  string
	// ExtensionSecret is the extension's global secret, for the session-token exchange.
	ExtensionSecret extension.Secret
	// ContributorToken is a contributor's API token (EXT_CONTRIBUTOR_TOKEN): with it,
	// serve reconciles with the platform periodically and reconcile runs at all.
	ContributorToken extension.Secret
	// OAuthClientSecret authenticates the OAuth2 login's code exchange, if the client has one.
	OAuthClientSecret extension.Secret
	PublicURL         string
	TrustedProxies    []netip.Prefix
	LogLevel          slog.Level
	// Sessions of signed-in users.
	SessionIdle, SessionAbsolute time.Duration
	DefaultRole                  string // of users who sign in after an instance's first
	// SMTP is the mail server of EXT_SMTP_URL (nil: links are shown to copy, no e-mail),
	// MailFrom the sender of EXT_MAIL_FROM.
	SMTP     *jobs.SMTPConfig
	MailFrom string
	// OIDCProvidersFile is EXT_OIDC_PROVIDERS_FILE, OperatorProviders what it holds: the
	// operator's OpenID Connect providers for its own staff, on every instance's login page.
	OIDCProvidersFile string
	OperatorProviders []extension.OperatorProvider
	// OpsAddr (EXT_OPS_ADDR) is the listen address of the ops console and a second
	// /metrics; "": off.
	OpsAddr string
	// OpsHosts (EXT_OPS_HOSTS) are the host names the console answers to besides IP
	// literals, localhost and EXT_OPS_ADDR's host (opsHostCheck).
	OpsHosts []string
	// RetentionAfterRemoval is EXT_RETENTION_AFTER_REMOVAL: how long a removed instance's
	// data is kept for a re-install before serve erases it (0: at the next clean-up).
	RetentionAfterRemoval time.Duration
	// CaptureDeliveries is EXT_CAPTURE_DELIVERIES: how long captured deliveries are kept;
	// 0 (unset) captures none. dev captures for 24h unless it is set.
	CaptureDeliveries time.Duration

	// captures is the recorder of captured deliveries that startBackend hands to the
	// webhook handler (nil: capture off); never from the environment.
	captures *extension.CaptureRecorder

	// devSimulator is set by dev, never from the environment: MStudioAPIURL is dev's
	// simulator, and the database is marked as holding its instances (checkPlatform).
	devSimulator bool
	// devOwnDatabase is set by dev when the database is its own under --data (no
	// EXT_DATABASE_URL given): one with instances but no mark is from before the mark.
	devOwnDatabase bool
}

// needs says which settings a subcommand requires.
type needs struct {
	keys        bool // EXT_ENCRYPTION_KEYS
	extensionID bool // EXT_EXTENSION_ID
}

// loadConfig reads and validates the configuration; the first problem found is returned
// as one line that names the variable.
func loadConfig(getenv func(string) string, n needs) (*Config, error) {
	r := &envReader{getenv: getenv}
	cfg := &Config{}
	cfg.Addr = r.str("EXT_ADDR", ":8080")
	cfg.DatabaseURL = r.databaseURL("EXT_DATABASE_URL", "sqlite:data/extension.db")
	cfg.EncryptionKeys = r.keys("EXT_ENCRYPTION_KEYS", n.keys)

	cfg.MStudioAPIURL = r.httpURL("EXT_MSTUDIO_API_URL", mstudio.DefaultBaseURL)
	// Every API path starts with /v2; a base that ends in it (as mittwald's Go client's
	// default does) would double it and turn every key lookup into "unknown serial".
	r.check("EXT_MSTUDIO_API_URL", !strings.HasSuffix(cfg.MStudioAPIURL, "/v2"),
		"give the base without /v2, e.g. %s", mstudio.DefaultBaseURL)

	cfg.ExtensionID = r.uuid("EXT_EXTENSION_ID", n.extensionID, "the extension's id from the contributor settings")
	cfg.ContributorID = r.uuid("EXT_CONTRIBUTOR_ID", false, "")
	cfg.ExtensionSecret = r.secret("EXT_EXTENSION_SECRET", "")
	cfg.OAuthClientSecret = r.secret("EXT_OAUTH_CLIENT_SECRET", "")
	cfg.ContributorToken = r.secret("EXT_CONTRIBUTOR_TOKEN", "")
	r.check("EXT_CONTRIBUTOR_ID", cfg.ContributorToken.IsZero() || cfg.ContributorID != "",
		"required with EXT_CONTRIBUTOR_TOKEN: the contributor's id, whose webhook executions the token reads")
	// The contributor token is a member's whole API token: it never goes over plain http
	// to a host that is not this machine.
	if !cfg.ContributorToken.IsZero() && r.err == nil {
		if u, err := url.Parse(cfg.MStudioAPIURL); err == nil && u.Scheme != "https" {
			r.check("EXT_MSTUDIO_API_URL", isLoopback(u.Hostname()),
				"%s is plain http on another machine, and EXT_CONTRIBUTOR_TOKEN would travel over it: use https", cfg.MStudioAPIURL)
		}
	}

	cfg.PublicURL = r.httpURL("EXT_PUBLIC_URL", "http://127.0.0.1:8080")
	if n.extensionID && r.err == nil {
		// serve: cookies on a public host must be Secure, which takes https.
		u, _ := url.Parse(cfg.PublicURL)
		r.check("EXT_PUBLIC_URL", u.Scheme != "http" || isLoopback(u.Hostname()),
			"%s is http on a public host: session cookies would travel unencrypted; use https", cfg.PublicURL)
	}
	cfg.SessionIdle = r.duration("EXT_SESSION_IDLE", "2h", "2m")
	cfg.SessionAbsolute = r.duration("EXT_SESSION_ABSOLUTE", "24h", "2m")
	r.check("EXT_SESSION_ABSOLUTE", cfg.SessionAbsolute >= cfg.SessionIdle, "shorter than EXT_SESSION_IDLE")
	cfg.DefaultRole = r.role("EXT_DEFAULT_ROLE", extension.RoleMember)
	cfg.TrustedProxies = r.cidrs("EXT_TRUSTED_PROXIES")
	cfg.LogLevel = r.logLevel("EXT_LOG_LEVEL", "info")
	cfg.SMTP, cfg.MailFrom = r.mail("EXT_SMTP_URL", "EXT_MAIL_FROM")
	cfg.OIDCProvidersFile, cfg.OperatorProviders = r.oidcProviders("EXT_OIDC_PROVIDERS_FILE")
	cfg.OpsAddr = r.listenAddr("EXT_OPS_ADDR")
	r.check("EXT_OPS_ADDR", cfg.OpsAddr == "" || cfg.OpsAddr != cfg.Addr, "the same as EXT_ADDR: give the console an address of its own")
	cfg.OpsHosts = r.hostNames("EXT_OPS_HOSTS")
	cfg.RetentionAfterRemoval = r.retention("EXT_RETENTION_AFTER_REMOVAL")
	cfg.CaptureDeliveries = r.captureRetention("EXT_CAPTURE_DELIVERIES")
	if r.err != nil {
		return nil, r.err
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// LogValue shows the configuration with secrets masked: key fingerprints, not keys; the
// database URL without its password.
func (c *Config) LogValue() slog.Value {
	keyIDs := make([]string, len(c.EncryptionKeys))
	for i, k := range c.EncryptionKeys {
		keyIDs[i] = extension.KeyID(k)
	}
	proxies := make([]string, len(c.TrustedProxies))
	for i, p := range c.TrustedProxies {
		proxies[i] = p.String()
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("database_url", maskDatabaseURL(c.DatabaseURL.Reveal())),
		slog.Any("encryption_key_ids", keyIDs),
		slog.String("mstudio_api_url", c.MStudioAPIURL),
		slog.String("extension_id", c.ExtensionID),
		slog.String("contributor_id", c.ContributorID),
		slog.Bool("extension_secret_set", !c.ExtensionSecret.IsZero()),
		slog.Bool("oauth_client_secret_set", !c.OAuthClientSecret.IsZero()),
		slog.Bool("contributor_token_set", !c.ContributorToken.IsZero()),
		slog.String("public_url", c.PublicURL),
		slog.Any("trusted_proxies", proxies),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("session_idle", c.SessionIdle.String()),
		slog.String("session_absolute", c.SessionAbsolute.String()),
		slog.String("default_role", c.DefaultRole),
		slog.String("smtp", c.smtpSummary()),
		slog.String("mail_from", c.MailFrom),
		slog.String("oidc_providers_file", c.OIDCProvidersFile),
		slog.Int("oidc_operator_providers", len(c.OperatorProviders)),
		slog.String("ops_addr", c.OpsAddr),
		slog.Any("ops_hosts", c.OpsHosts),
		slog.String("retention_after_removal", c.RetentionAfterRemoval.String()),
		slog.String("capture_deliveries", captureSummary(c.CaptureDeliveries)),
	)
}

// captureSummary says how long captured deliveries are kept, "off" when none are.
func captureSummary(d time.Duration) string {
	if d == 0 {
		return "off"
	}
	return d.String()
}

// smtpSummary is the mail server without its password, "" when there is none.
func (c *Config) smtpSummary() string {
	if c.SMTP == nil {
		return ""
	}
	return c.SMTP.String()
}

func maskDatabaseURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "sqlite" {
		if strings.HasPrefix(raw, "sqlite:") {
			return raw
		}
		return "[unparsable]"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
