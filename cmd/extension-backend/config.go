package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
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
	// OAuthClientSecret authenticates the OAuth2 login's code exchange, if the client has one.
	OAuthClientSecret extension.Secret
	PublicURL         string
	TrustedProxies    []netip.Prefix
	LogLevel          slog.Level
	// Sessions of signed-in users.
	SessionIdle, SessionAbsolute time.Duration
	DefaultRole                  string // of users who sign in after an instance's first
}

// needs says which settings a subcommand requires.
type needs struct {
	keys        bool // EXT_ENCRYPTION_KEYS
	extensionID bool // EXT_EXTENSION_ID
}

// loadConfig reads and validates the configuration; the first problem found is returned
// as one line that names the variable.
func loadConfig(getenv func(string) string, n needs) (*Config, error) {
	cfg := &Config{}
	var err error
	get := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	// secret reads NAME or NAME_FILE (docker-compose secrets), never both.
	secret := func(name string) (string, error) {
		v, file := getenv(name), getenv(name+"_FILE")
		if file == "" {
			return v, nil
		}
		if v != "" {
			return "", fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s_FILE: %w", name, errors.Unwrap(err))
		}
		return strings.TrimSpace(string(b)), nil
	}

	cfg.Addr = get("EXT_ADDR", ":8080")

	dbURL, err := secret("EXT_DATABASE_URL")
	if err != nil {
		return nil, err
	}
	if dbURL == "" {
		dbURL = "sqlite:data/extension.db"
	}
	if _, _, err := extension.ParseDatabaseURL(dbURL); err != nil {
		return nil, fmt.Errorf("EXT_DATABASE_URL: %w", err)
	}
	cfg.DatabaseURL = extension.Secret(dbURL)

	rawKeys, err := secret("EXT_ENCRYPTION_KEYS")
	if err != nil {
		return nil, err
	}
	if cfg.EncryptionKeys, err = parseKeys(rawKeys); err != nil {
		return nil, fmt.Errorf("EXT_ENCRYPTION_KEYS: %w", err)
	}
	if n.keys && len(cfg.EncryptionKeys) == 0 {
		return nil, errors.New("EXT_ENCRYPTION_KEYS: required: comma-separated base64 32-byte keys (make one with: openssl rand -base64 32)")
	}

	cfg.MStudioAPIURL = strings.TrimSuffix(get("EXT_MSTUDIO_API_URL", mstudio.DefaultBaseURL), "/")
	if err := checkHTTPURL(cfg.MStudioAPIURL); err != nil {
		return nil, fmt.Errorf("EXT_MSTUDIO_API_URL: %w", err)
	}
	// Every API path starts with /v2; a base that ends in it (as mittwald's Go client's
	// default does) would double it and turn every key lookup into "unknown serial".
	if strings.HasSuffix(cfg.MStudioAPIURL, "/v2") {
		return nil, fmt.Errorf("EXT_MSTUDIO_API_URL: give the base without /v2, e.g. %s", mstudio.DefaultBaseURL)
	}

	cfg.ExtensionID = strings.ToLower(getenv("EXT_EXTENSION_ID"))
	switch {
	case cfg.ExtensionID == "" && n.extensionID:
		return nil, errors.New("EXT_EXTENSION_ID: required: the extension's id from the contributor settings")
	case cfg.ExtensionID != "" && !mstudio.IsUUID(cfg.ExtensionID):
		return nil, errors.New("EXT_EXTENSION_ID: not a UUID")
	}
	cfg.ContributorID = strings.ToLower(getenv("EXT_CONTRIBUTOR_ID"))
	if cfg.ContributorID != "" && !mstudio.IsUUID(cfg.ContributorID) {
		return nil, errors.New("EXT_CONTRIBUTOR_ID: not a UUID")
	}

	extSecret, err := secret("EXT_EXTENSION_SECRET")
	if err != nil {
		return nil, err
	}
	cfg.ExtensionSecret = extension.Secret(extSecret)
	oauthSecret, err := secret("EXT_OAUTH_CLIENT_SECRET")
	if err != nil {
		return nil, err
	}
	cfg.OAuthClientSecret = extension.Secret(oauthSecret)

	cfg.PublicURL = strings.TrimSuffix(get("EXT_PUBLIC_URL", "http://127.0.0.1:8080"), "/")
	if err := checkHTTPURL(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("EXT_PUBLIC_URL: %w", err)
	}

	if n.extensionID {
		// serve: cookies on a public host must be Secure, which takes https.
		if u, _ := url.Parse(cfg.PublicURL); u.Scheme == "http" && !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("EXT_PUBLIC_URL: %s is http on a public host: session cookies would travel unencrypted; use https", cfg.PublicURL)
		}
	}
	for name, d := range map[string]*time.Duration{"EXT_SESSION_IDLE": &cfg.SessionIdle, "EXT_SESSION_ABSOLUTE": &cfg.SessionAbsolute} {
		def := map[string]string{"EXT_SESSION_IDLE": "2h", "EXT_SESSION_ABSOLUTE": "24h"}[name]
		v, err := time.ParseDuration(get(name, def))
		if err != nil || v < 2*time.Minute {
			return nil, fmt.Errorf("%s: %q: want a duration of at least 2m, such as 2h", name, getenv(name))
		}
		*d = v
	}
	if cfg.SessionAbsolute < cfg.SessionIdle {
		return nil, errors.New("EXT_SESSION_ABSOLUTE: shorter than EXT_SESSION_IDLE")
	}
	cfg.DefaultRole = get("EXT_DEFAULT_ROLE", extension.RoleMember)
	if !validRole(cfg.DefaultRole) {
		return nil, fmt.Errorf("EXT_DEFAULT_ROLE: %q: want a lower-case role name other than owner, such as member", cfg.DefaultRole)
	}

	for _, s := range splitList(getenv("EXT_TRUSTED_PROXIES")) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("EXT_TRUSTED_PROXIES: %q is not a CIDR", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, p.Masked())
	}

	if err := cfg.LogLevel.UnmarshalText([]byte(get("EXT_LOG_LEVEL", "info"))); err != nil {
		return nil, fmt.Errorf("EXT_LOG_LEVEL: %q: want debug, info, warn or error", getenv("EXT_LOG_LEVEL"))
	}
	return cfg, nil
}

func parseKeys(raw string) ([][]byte, error) {
	var keys [][]byte
	seen := map[string]bool{}
	for i, s := range splitList(raw) {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			k, err = base64.RawStdEncoding.DecodeString(s)
		}
		if err != nil {
			return nil, fmt.Errorf("key %d is not base64", i+1)
		}
		if len(k) != extension.KeySize {
			return nil, fmt.Errorf("key %d is %d bytes, want %d", i+1, len(k), extension.KeySize)
		}
		if weakKey(k) {
			return nil, fmt.Errorf("key %d is weak (one byte repeated): make one with openssl rand -base64 32", i+1)
		}
		if seen[string(k)] {
			return nil, fmt.Errorf("key %d is listed twice", i+1)
		}
		seen[string(k)] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// weakKey catches placeholder keys such as 32 zero bytes.
func weakKey(k []byte) bool {
	for _, b := range k[1:] {
		if b != k[0] {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func validRole(r string) bool {
	if r == "" || r == extension.RoleOwner || len(r) > 32 {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && c != '_' && c != '-' {
			return false
		}
	}
	return true
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
		slog.String("public_url", c.PublicURL),
		slog.Any("trusted_proxies", proxies),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("session_idle", c.SessionIdle.String()),
		slog.String("session_absolute", c.SessionAbsolute.String()),
		slog.String("default_role", c.DefaultRole),
	)
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
