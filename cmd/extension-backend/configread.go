package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/jobs"
)

// envReader reads the environment one setting at a time, with one reader per kind of
// setting. The first problem sticks: later reads return zero values and keep it, so
// loadConfig reads straight through and reports the first wrong variable in one line that
// starts with its name.
type envReader struct {
	getenv func(string) string
	err    error
}

// fail records a problem with the variable name, unless an earlier one was recorded.
func (r *envReader) fail(name, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s: %w", name, fmt.Errorf(format, args...))
	}
}

// check records a problem with the variable name when ok is false.
func (r *envReader) check(name string, ok bool, format string, args ...any) {
	if !ok {
		r.fail(name, format, args...)
	}
}

// str reads a plain setting, def when unset.
func (r *envReader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

// secret reads a secret from NAME or from the file named by NAME_FILE (docker-compose
// secrets), never both; def when neither is set. This is the only place NAME_FILE is read.
func (r *envReader) secret(name, def string) extension.Secret {
	v, file := r.getenv(name), r.getenv(name+"_FILE")
	switch {
	case r.err != nil:
		return ""
	case file != "" && v != "":
		r.err = fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
		return ""
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner // the file's name is in the variable: not repeated
			}
			r.fail(name+"_FILE", "%w", err)
			return ""
		}
		v = strings.TrimSpace(string(b))
	}
	if v == "" {
		v = def
	}
	return extension.Secret(v)
}

// databaseURL reads a database URL (a secret: it may carry a password).
func (r *envReader) databaseURL(name, def string) extension.Secret {
	v := r.secret(name, def)
	if r.err != nil {
		return ""
	}
	if _, _, err := extension.ParseDatabaseURL(v.Reveal()); err != nil {
		r.fail(name, "%w", err)
		return ""
	}
	return v
}

// keys reads encryption keys (a secret): comma-separated, base64, 32 bytes each.
func (r *envReader) keys(name string, required bool) [][]byte {
	raw := r.secret(name, "")
	if r.err != nil {
		return nil
	}
	keys, err := parseKeys(raw.Reveal())
	switch {
	case err != nil:
		r.fail(name, "%w", err)
	case required && len(keys) == 0:
		r.fail(name, "required: comma-separated base64 32-byte keys (make one with: openssl rand -base64 32)")
	}
	return keys
}

// httpURL reads an http(s) base URL, without a trailing slash.
func (r *envReader) httpURL(name, def string) string {
	v := strings.TrimSuffix(r.str(name, def), "/")
	if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.fail(name, "%q is not an http(s) URL", v)
	}
	return v
}

// uuid reads a platform id, lower-cased; what says where to find it when it is required.
func (r *envReader) uuid(name string, required bool, what string) string {
	v := strings.ToLower(r.getenv(name))
	switch {
	case v == "" && required:
		r.fail(name, "required: %s", what)
	case v != "" && !mstudio.IsUUID(v):
		r.fail(name, "not a UUID")
	}
	return v
}

// duration reads a Go duration of at least atLeast.
func (r *envReader) duration(name, def, atLeast string) time.Duration {
	least, err := time.ParseDuration(atLeast)
	if err != nil {
		panic(err) // a constant of ours
	}
	v, err := time.ParseDuration(r.str(name, def))
	if err != nil || v < least {
		r.fail(name, "%q: want a duration of at least %s, such as %s", r.getenv(name), atLeast, def)
	}
	return v
}

// captureRetention reads how long captured deliveries are kept (parseCaptureRetention);
// unset is 0, off.
func (r *envReader) captureRetention(name string) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return 0
	}
	d, err := parseCaptureRetention(v)
	if err != nil {
		r.fail(name, "%w; leave it empty to capture nothing", err)
	}
	return d
}

// cidrs reads a comma-separated list of CIDRs; a bare address is its own /32 or /128.
func (r *envReader) cidrs(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range splitList(r.getenv(name)) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				r.fail(name, "%q is not a CIDR", s)
				return nil
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// logLevel reads a log level by name.
func (r *envReader) logLevel(name, def string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(r.str(name, def))); err != nil {
		r.fail(name, "%q: want debug, info, warn or error", r.getenv(name))
	}
	return l
}

// role reads the name of a role given to users automatically: never owner, which only
// an instance's first user gets.
func (r *envReader) role(name, def string) string {
	v := r.str(name, def)
	if !validRole(v) {
		r.fail(name, "%q: want a lower-case role name other than owner, such as member", v)
	}
	return v
}

// mail reads the mail server (a secret: its URL carries the password) and the sender,
// which it requires. Neither problem quotes the URL.
func (r *envReader) mail(urlName, fromName string) (*jobs.SMTPConfig, string) {
	raw := r.secret(urlName, "")
	from := strings.TrimSpace(r.getenv(fromName))
	if r.err != nil {
		return nil, ""
	}
	if raw.IsZero() {
		r.check(fromName, from == "", "set, but %s is not: no e-mail would be sent; set both, or neither", urlName)
		return nil, ""
	}
	smtp, err := jobs.ParseSMTPURL(raw.Reveal())
	if err != nil {
		r.fail(urlName, "%w", err)
		return nil, ""
	}
	if from == "" {
		r.fail(fromName, "required with %s: the sender address of the e-mails, such as extension@example.com", urlName)
		return nil, ""
	}
	if from, err = jobs.ParseMailFrom(from); err != nil {
		r.fail(fromName, "%w", err)
		return nil, ""
	}
	return &smtp, from
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

// oidcProviders reads the operator's OpenID Connect providers from the file named by the
// variable (none when unset): a problem names the file, the line and the field, and stops
// startup.
func (r *envReader) oidcProviders(name string) (string, []extension.OperatorProvider) {
	path := r.getenv(name)
	if path == "" || r.err != nil {
		return path, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		r.fail(name, "%v", err)
		return path, nil
	}
	ps, err := frontend.ParseOperatorProviders(data, r.getenv)
	if err != nil {
		r.fail(name, "%s: %v", path, err)
		return path, nil
	}
	return path, ps
}

// hostNames reads a comma-separated list of DNS host names (no scheme, port or path).
func (r *envReader) hostNames(name string) []string {
	var out []string
	for _, h := range splitList(r.getenv(name)) {
		if !validHostName(h) {
			r.fail(name, "%q is not a host name: write names such as ops.example.com, comma-separated, without scheme or port", h)
			return nil
		}
		out = append(out, strings.ToLower(h))
	}
	return out
}

// validHostName reports whether h is a DNS name of letters, digits, hyphens and dots.
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// listenAddr reads an optional listen address, HOST:PORT or :PORT with a port number
// (0 picks a free one); "" when unset.
func (r *envReader) listenAddr(name string) string {
	v := strings.TrimSpace(r.getenv(name))
	if v == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		r.fail(name, "%q is not a listen address: write HOST:PORT or :PORT, e.g. 127.0.0.1:9090", v)
		return ""
	}
	return v
}
