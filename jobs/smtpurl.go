package jobs

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
)

// SMTPConfig is the mail server of EXT_SMTP_URL.
type SMTPConfig struct {
	Host     string
	Port     int
	Username string           // empty: no authentication
	Password extension.Secret // set exactly when Username is
	// ImplicitTLS (smtps://) speaks TLS from the first byte; otherwise (smtp://) the
	// connection turns to TLS with STARTTLS.
	ImplicitTLS bool
	// RequireTLS refuses a server that does not offer STARTTLS rather than send in the
	// clear. ParseSMTPURL sets it for every host but a loopback one (a relay on this
	// machine, or a test server).
	RequireTLS bool
}

// Default ports: submission with STARTTLS, and submission over implicit TLS (RFC 8314).
const (
	smtpPort  = 587
	smtpsPort = 465
)

// The problems of an SMTP URL. None quotes the URL: it carries a password.
var (
	errSMTPURL      = errors.New("not a URL: want smtp://USER:PASSWORD@HOST:PORT or smtps://USER:PASSWORD@HOST:PORT (percent-encode @ : / ? # in the password)")
	errSMTPScheme   = errors.New("want smtp:// (STARTTLS) or smtps:// (TLS from the start)")
	errSMTPHost     = errors.New("no valid host: want smtp://USER:PASSWORD@HOST:PORT (percent-encode @ : / ? # in the password)")
	errSMTPPort     = errors.New("the port must be a number from 1 to 65535")
	errSMTPExtra    = errors.New("want no path, query or fragment after HOST:PORT (percent-encode @ : / ? # in the password)")
	errSMTPUserPass = errors.New("give both a user and a password (smtp://USER:PASSWORD@HOST), or neither")
	errSMTPControl  = errors.New("the user or the password holds a control character")
)

// maxSMTPURL bounds the URL looked at.
const maxSMTPURL = 4096

// ParseSMTPURL reads EXT_SMTP_URL: smtp://[USER:PASSWORD@]HOST[:PORT] (STARTTLS, port 587
// by default) or smtps://… (implicit TLS, port 465 by default). User and password are
// percent-decoded. Its errors never quote the URL.
func ParseSMTPURL(raw string) (SMTPConfig, error) {
	if len(raw) > maxSMTPURL {
		return SMTPConfig{}, errSMTPURL
	}
	u, err := url.Parse(raw)
	if err != nil {
		return SMTPConfig{}, errSMTPURL // url's own text would quote the password
	}
	var c SMTPConfig
	switch u.Scheme {
	case "smtp":
	case "smtps":
		c.ImplicitTLS = true
	default:
		return SMTPConfig{}, errSMTPScheme
	}
	if u.Opaque != "" {
		return SMTPConfig{}, errSMTPHost
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawFragment != "" {
		return SMTPConfig{}, errSMTPExtra
	}
	c.Host = strings.ToLower(u.Hostname())
	if !validHost(c.Host) {
		return SMTPConfig{}, errSMTPHost
	}
	c.Port = smtpPort
	if c.ImplicitTLS {
		c.Port = smtpsPort
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || len(p) > 5 {
			return SMTPConfig{}, errSMTPPort
		}
		c.Port = n
	}
	if u.User != nil {
		pass, ok := u.User.Password()
		c.Username = u.User.Username()
		if c.Username == "" || !ok || pass == "" {
			return SMTPConfig{}, errSMTPUserPass
		}
		// AUTH PLAIN separates its fields with NUL; no control character belongs in either.
		if strings.ContainsFunc(c.Username+pass, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return SMTPConfig{}, errSMTPControl
		}
		c.Password = extension.Secret(pass)
	}
	c.RequireTLS = !c.ImplicitTLS && !isLoopbackHost(c.Host)
	return c, nil
}

// validHost accepts an IP address or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return !strings.Contains(h, "%") // no zone: it names an interface of this machine
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
				return false
			}
		}
	}
	return true
}

// isLoopbackHost reports whether the host is this machine.
func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// String shows the server without the password, for logs and the configuration's
// summary.
func (c SMTPConfig) String() string {
	scheme := "smtp"
	if c.ImplicitTLS {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: hostPort(c.Host, c.Port)}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, "xxxxx")
	}
	return u.String()
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}
