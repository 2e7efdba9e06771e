package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/smtp"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/migrations"
)

// ErrNoDatabase is Offline.StoreErr for a SQLite database whose file does not exist yet:
// doctor does not create it (opening would), and serve creates and migrates it.
var ErrNoDatabase = errors.New("the database file does not exist yet")

// MaxClockSkew is how far the local clock may be from the platform's: sign-on keys and
// session tokens live 60 s, so a clock off by more fails sign-ins at random.
const MaxClockSkew = 30 * time.Second

// Offline is what the offline checks look at: the configuration as serve reads it and the
// store it opens. The zero value of a field means "not configured".
type Offline struct {
	// Store is the database as serve opens it; nil when it could not be opened, and then
	// StoreErr says why (ErrNoDatabase for a SQLite file that does not exist yet).
	Store    *extension.Store
	StoreErr error
	// Database names the database in messages, without its password.
	Database string
	// QueueMigrated reports whether the job queue's schema is current (River's
	// migrations); nil leaves it out.
	QueueMigrated func(ctx context.Context) error

	EncryptionKeyIDs []string // the fingerprints of EXT_ENCRYPTION_KEYS, the sealing key first
	ExtensionID      string
	ContributorID    string
	PublicURL        string
	APIURL           string          // EXT_MSTUDIO_API_URL
	API              *mstudio.Client // the platform client, as serve builds it
	// HTTPClient asks the platform's API for its Date; nil: one with a 10 s timeout.
	HTTPClient *http.Client
	// SMTP is the mail server of EXT_SMTP_URL (host:port), empty when none is set;
	// SMTPImplicitTLS for smtps://, SMTPRequireTLS when STARTTLS must be offered.
	SMTP                            string
	SMTPImplicitTLS, SMTPRequireTLS bool
	// OIDCProvidersFile and OIDCProviders: EXT_OIDC_PROVIDERS_FILE and how many providers
	// it holds (it parsed, or the configuration would not have loaded).
	OIDCProvidersFile string
	OIDCProviders     int

	Now func() time.Time // default time.Now
}

// Checks are the offline checks, in the order doctor prints them.
func (o Offline) Checks() []Check {
	return []Check{
		{"extension-id", o.checkExtensionID},
		{"public-url", o.checkPublicURL},
		{"database", o.checkDatabase},
		{"encryption-keys", o.checkKeys},
		{"platform-api", o.checkPlatformAPI},
		{"platform-keys", o.checkPlatformKeys},
		{"smtp", o.checkSMTP},
		{"oidc-operator-providers", o.checkOIDC},
	}
}

func (o Offline) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Offline) checkExtensionID(context.Context) []Finding {
	if o.ExtensionID == "" {
		return []Finding{fail("set EXT_EXTENSION_ID to the extension's id from the contributor settings in mStudio",
			"EXT_EXTENSION_ID is not set: serve refuses to start without it")}
	}
	out := []Finding{ok("EXT_EXTENSION_ID is %s; deliveries for another extension are refused", o.ExtensionID)}
	if o.ContributorID == "" {
		out[0].Message += "; EXT_CONTRIBUTOR_ID is not set, so the contributor is not checked"
	}
	return out
}

func (o Offline) checkPublicURL(context.Context) []Finding {
	return []Finding{PublicURLFinding("EXT_PUBLIC_URL", o.PublicURL)}
}

// PublicURLFinding judges the address browsers and the platform reach the backend at:
// https, unless only this machine is meant to reach it.
func PublicURLFinding(name, raw string) Finding {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail("set "+name+" to the https:// address users reach the backend at", "%s %s is not an http(s) URL", name, quote(raw, 80))
	}
	switch {
	case u.Scheme == "https":
		return ok("%s is %s", name, raw)
	case IsLoopback(u.Hostname()):
		return warn("fine for a test on this machine; in production set "+name+" to the public https:// address",
			"%s is %s: only this machine reaches it, over plain http", name, raw)
	}
	return fail("serve the backend over https (a TLS proxy such as Caddy in front) and set "+name+" to https://"+u.Host,
		"%s is http on a public host: session cookies and sign-on keys would travel unencrypted", name)
}

// IsLoopback reports whether a host name stands for this machine.
func IsLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func (o Offline) checkDatabase(ctx context.Context) []Finding {
	switch {
	case errors.Is(o.StoreErr, ErrNoDatabase):
		return []Finding{warn("start serve once (it creates and migrates the database), or check EXT_DATABASE_URL if one should be there",
			"%s does not exist yet", o.Database)}
	case o.Store == nil:
		msg := "cannot be opened"
		if o.StoreErr != nil {
			msg += ": " + o.StoreErr.Error()
		}
		return []Finding{fail("check EXT_DATABASE_URL and that the database server is up", "%s %s", o.Database, msg)}
	}
	if err := o.Store.Ping(ctx); err != nil {
		return []Finding{fail("check EXT_DATABASE_URL and that the database server is up", "%s does not answer: %v", o.Database, err)}
	}
	st, err := migrations.List(ctx, o.Store.SQLDB(), string(o.Store.Dialect()))
	if err != nil {
		return []Finding{fail("check that EXT_DATABASE_URL is the backend's database", "cannot read the migrations of %s: %v", o.Database, err)}
	}
	var pending []string
	for _, s := range st {
		if s.State != "applied" {
			pending = append(pending, s.Source.Path)
		}
	}
	var out []Finding
	if len(pending) > 0 {
		out = append(out, warn("serve applies them at its next start; with serve --no-migrate, run extension-backend migrate up first",
			"%s has %d pending migrations: %s", o.Database, len(pending), strings.Join(pending, ", ")))
	}
	if o.QueueMigrated != nil {
		if err := o.QueueMigrated(ctx); err != nil {
			out = append(out, warn("serve applies them at its next start, or run extension-backend migrate up",
				"the job queue's tables are not current: %v", err))
		}
	}
	if len(pending) > 0 {
		return out // the simulator mark lives in a table of a migration
	}
	sim, err := o.Store.SimulatorURL(ctx)
	switch {
	case err != nil:
		out = append(out, fail("check the database", "cannot read the database's simulator mark: %v", err))
	case sim != "" && !onThisMachine(o.APIURL):
		out = append(out, fail("set EXT_MSTUDIO_API_URL="+sim+" with that simulator running, or point EXT_DATABASE_URL at the production database",
			"%s belongs to the platform simulator at %s, but EXT_MSTUDIO_API_URL is %s: serve refuses to start", o.Database, sim, o.APIURL))
	case sim != "":
		out = append(out, ok("%s is migrated; it holds the instances of the simulator at %s", o.Database, sim))
	case len(out) == 0:
		out = append(out, ok("%s answers and is migrated (%d migrations)", o.Database, len(st)))
	}
	return out
}

func onThisMachine(apiURL string) bool {
	u, err := url.Parse(apiURL)
	return err == nil && IsLoopback(u.Hostname())
}

func (o Offline) checkKeys(ctx context.Context) []Finding {
	if len(o.EncryptionKeyIDs) == 0 {
		return []Finding{fail("set EXT_ENCRYPTION_KEYS (or EXT_ENCRYPTION_KEYS_FILE) to the key that sealed the stored secrets; a new one: openssl rand -base64 32",
			"EXT_ENCRYPTION_KEYS is not set: serve refuses to start without it")}
	}
	if o.Store == nil {
		return []Finding{ok("%d keys configured (ids %s); no database to check them against", len(o.EncryptionKeyIDs), strings.Join(o.EncryptionKeyIDs, ", "))}
	}
	use, err := o.Store.SealingKeys(ctx)
	if err != nil {
		return []Finding{warn("migrate the database (serve does at start), then run doctor again",
			"cannot list the keys in use yet: %v", err)}
	}
	// The same rule as serve's start-up check (cmd's startup.go), so doctor never says
	// the keys open everything when serve would refuse to start.
	if missing := use.MissingFrom(o.EncryptionKeyIDs); len(missing) > 0 {
		return []Finding{fail("add the key with that id to EXT_ENCRYPTION_KEYS (keep it after the first), or point EXT_DATABASE_URL at the database these keys belong to",
			"%s holds secrets sealed with key id %s, which EXT_ENCRYPTION_KEYS (ids %s) does not have: serve refuses to start",
			o.Database, strings.Join(missing, ", "), strings.Join(o.EncryptionKeyIDs, ", "))}
	}
	inUse := slices.Compact(slices.Sorted(slices.Values(slices.Concat(use.InstanceSecrets, use.UserTokens, use.InstanceTokens, use.Captures))))
	f := ok("every stored secret opens with EXT_ENCRYPTION_KEYS (ids %s; in use: %s)", strings.Join(o.EncryptionKeyIDs, ", "), orNone(inUse))
	for _, id := range inUse {
		if id != o.EncryptionKeyIDs[0] {
			f.Message += "; some are sealed with an older key: extension-backend rekey seals them with the first"
			break
		}
	}
	return []Finding{f}
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none yet"
	}
	return strings.Join(ids, ", ")
}

// checkPlatformAPI asks the platform's key route, which needs no token, and compares the
// local clock with the answer's Date header.
func (o Offline) checkPlatformAPI(ctx context.Context) []Finding {
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(o.APIURL, "/")+"/v2/public-keys/latest?purpose=webhook&format=raw", nil)
	if err != nil {
		return []Finding{fail("set EXT_MSTUDIO_API_URL to the platform's API, such as "+mstudio.DefaultBaseURL, "EXT_MSTUDIO_API_URL %s: %v", quote(o.APIURL, 80), err)}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "extension-backend-doctor/"+mstudio.Version)
	sent := o.now()
	resp, err := client.Do(req)
	if err != nil {
		return []Finding{fail("check EXT_MSTUDIO_API_URL, DNS and the outbound firewall (the backend needs HTTPS to the platform)",
			"the platform API at %s does not answer: %v", o.APIURL, unwrapURLError(err))}
	}
	resp.Body.Close()
	received := o.now()
	var out []Finding
	if resp.StatusCode >= 500 {
		out = append(out, fail("check EXT_MSTUDIO_API_URL; if it is right, the platform has trouble: try again later",
			"the platform API at %s answers %d", o.APIURL, resp.StatusCode))
	} else {
		out = append(out, ok("the platform API at %s answers (%d in %s)", o.APIURL, resp.StatusCode, received.Sub(sent).Round(time.Millisecond)))
	}
	out = append(out, ClockFinding(resp.Header.Get("Date"), sent, received))
	return out
}

// ClockFinding compares the local clock, read when a request was sent and when its answer
// came, with the Date header of the answer (whole seconds).
func ClockFinding(date string, sent, received time.Time) Finding {
	if date == "" {
		return warn("check the clock by other means (timedatectl status)", "the platform's answer has no Date header to compare the clock with")
	}
	at, err := http.ParseTime(date)
	if err != nil {
		return warn("check the clock by other means (timedatectl status)", "the platform's Date header %s does not parse", quote(date, 40))
	}
	// The platform read its clock between sent and received; Date drops the fraction.
	mid := sent.Add(received.Sub(sent) / 2)
	skew := mid.Sub(at.Add(500 * time.Millisecond))
	slack := received.Sub(sent)/2 + 500*time.Millisecond
	abs := skew.Abs()
	if abs-slack > MaxClockSkew {
		dir := "ahead of"
		if skew < 0 {
			dir = "behind"
		}
		return fail("synchronise the clock (NTP, e.g. timedatectl set-ntp true): sign-on keys and session tokens live 60 s",
			"the local clock is %s %s the platform's (more than %s)", abs.Round(time.Second), dir, MaxClockSkew)
	}
	return ok("the local clock agrees with the platform's Date header (%s apart, to the second; at most %s allowed)", abs.Round(time.Second), MaxClockSkew)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (o Offline) checkPlatformKeys(ctx context.Context) []Finding {
	if o.API == nil {
		return []Finding{warn("", "no platform client to fetch keys with")}
	}
	var out []Finding
	for _, p := range []struct {
		purpose mstudio.Purpose
		what    string
		level   Level
	}{
		{mstudio.PurposeWebhook, "webhook key (verifies every delivery)", Fail},
		{mstudio.PurposeSessionToken, "session-token key (verifies frontend fragments)", Warn},
	} {
		serial, _, err := o.API.CurrentPublicKey(ctx, p.purpose)
		if err != nil {
			out = append(out, Finding{Level: p.level, Message: fmt.Sprintf("the platform's current %s cannot be fetched from %s: %v", p.what, o.APIURL, err),
				Action: "check EXT_MSTUDIO_API_URL (the base, without /v2) and the outbound firewall"})
			continue
		}
		out = append(out, ok("the platform's current %s is fetched (serial %s)", p.what, serial))
	}
	return out
}

// checkSMTP greets the mail server as the mail job does, without sending anything.
func (o Offline) checkSMTP(ctx context.Context) []Finding {
	if o.SMTP == "" {
		return []Finding{ok("EXT_SMTP_URL is not set: invitation and reset links are shown to copy, not mailed")}
	}
	action := "check EXT_SMTP_URL's host and port and the outbound firewall"
	host, _, _ := net.SplitHostPort(o.SMTP)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.SMTP)
	if err != nil {
		return []Finding{fail(action, "the mail server %s cannot be reached: %v", o.SMTP, err)}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl) //nolint:errcheck // a conn that refuses deadlines fails its reads below
	}
	if o.SMTPImplicitTLS {
		tc := tls.Client(conn, &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			return []Finding{fail(action+"; smtps:// needs a port that speaks TLS at once (465)", "TLS with the mail server %s fails: %v", o.SMTP, err)}
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return []Finding{fail(action, "the server at %s does not greet as a mail server: %v", o.SMTP, err)}
	}
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return []Finding{fail(action, "the mail server %s refuses EHLO: %v", o.SMTP, err)}
	}
	if !o.SMTPImplicitTLS && o.SMTPRequireTLS {
		if found, _ := c.Extension("STARTTLS"); !found {
			return []Finding{fail("use a mail server that offers STARTTLS, or smtps:// on port 465",
				"the mail server %s does not offer STARTTLS, which a non-loopback server must: the mail job would refuse to send", o.SMTP)}
		}
	}
	c.Quit() //nolint:errcheck // the greeting is what counted
	return []Finding{ok("the mail server %s answers", o.SMTP)}
}

func (o Offline) checkOIDC(context.Context) []Finding {
	if o.OIDCProvidersFile == "" {
		return []Finding{ok("EXT_OIDC_PROVIDERS_FILE is not set: no operator sign-in providers")}
	}
	return []Finding{ok("%s parses: %d operator sign-in providers", o.OIDCProvidersFile, o.OIDCProviders)}
}
