package extension

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// ErrInvalidEmail is returned for a string that is not an e-mail address we accept. Its
// wrapped texts say why, never what the address was.
var ErrInvalidEmail = errors.New("extension: invalid e-mail address")

// Limits of an address: RFC 5321 allows 64 octets of local part and 254 in all (the 256 of
// a path minus its angle brackets). maxEmailInput bounds the work done on untrusted input
// before those are checked.
const (
	maxEmailLocal = 64
	maxEmail      = 254
	maxEmailInput = 1024
)

// NormalizeEmail returns the form of an e-mail address that identifies a local account:
// surrounding space trimmed, Unicode NFC, lower-case, the domain in ASCII (IDNA 2008, the
// lookup profile: "Bücher.example" becomes "xn--bcher-kva.example"). It accepts exactly one
// "@", an unquoted local part of printable characters without spaces, the specials of RFC
// 5322 or empty dot-separated parts, and a domain of at least two labels. Lower-casing the
// local part is not what RFC 5321 allows a mail server, but no provider we meet treats
// "Ada@" and "ada@" as two people, and two accounts that differ only so would be a trap.
// It is idempotent: a normalised address normalises to itself.
func NormalizeEmail(raw string) (string, error) {
	if len(raw) > maxEmailInput {
		return "", fmt.Errorf("%w: too long", ErrInvalidEmail)
	}
	if !utf8.ValidString(raw) {
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalidEmail)
	}
	s := norm.NFC.String(strings.ToLower(norm.NFC.String(strings.TrimSpace(raw))))
	if strings.Count(s, "@") != 1 {
		return "", fmt.Errorf("%w: want exactly one @", ErrInvalidEmail)
	}
	local, domain, _ := strings.Cut(s, "@")
	if err := checkEmailLocal(local); err != nil {
		return "", err
	}
	ascii, ok := asciiDomain(domain)
	if !ok {
		return "", fmt.Errorf("%w: not a domain name", ErrInvalidEmail)
	}
	out := local + "@" + ascii
	if len(out) > maxEmail {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidEmail, maxEmail)
	}
	return out, nil
}

// checkEmailLocal checks the part before the "@": RFC 5322's dot-atom, widened to any
// printable Unicode letter (RFC 6531), without quoted strings or comments.
func checkEmailLocal(local string) error {
	switch {
	case local == "":
		return fmt.Errorf("%w: nothing before the @", ErrInvalidEmail)
	case len(local) > maxEmailLocal:
		return fmt.Errorf("%w: more than %d bytes before the @", ErrInvalidEmail, maxEmailLocal)
	case strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, ".."):
		return fmt.Errorf("%w: empty part between dots", ErrInvalidEmail)
	}
	for _, r := range local {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return fmt.Errorf("%w: a space, control or special character before the @", ErrInvalidEmail)
		}
	}
	return nil
}

// asciiDomain returns a domain name in lower-case ASCII (IDNA 2008, lookup profile) and
// whether it is one we accept: valid UTF-8, labels within limits, and stable, so that the
// ASCII form maps to itself (an undecodable byte would otherwise become U+FFFD and then a
// label that no longer validates).
func asciiDomain(d string) (string, bool) {
	if !utf8.ValidString(d) {
		return "", false
	}
	ascii, err := idna.Lookup.ToASCII(d)
	if err != nil || !validDomainLabels(ascii) || len(ascii) > 253 {
		return "", false
	}
	ascii = strings.ToLower(ascii)
	if again, err := idna.Lookup.ToASCII(ascii); err != nil || again != ascii {
		return "", false
	}
	return ascii, true
}

// validDomainLabels reports whether an ASCII domain has at least two labels, each of 1 to
// 63 bytes (the lookup profile leaves lengths and empty labels unchecked).
func validDomainLabels(ascii string) bool {
	labels := strings.Split(ascii, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
	}
	return true
}

// EmailDomain returns the domain of an address that NormalizeEmail returned.
func EmailDomain(normalized string) string {
	_, domain, _ := strings.Cut(normalized, "@")
	return domain
}
