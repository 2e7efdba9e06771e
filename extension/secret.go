package extension

import (
	"fmt"
	"log/slog"
)

// Secret holds a credential in memory: an instance secret, an access token, a refresh token.
// It prints as [redacted] through fmt, log/slog and encoding/json, so a value that strays
// into a log line or an error text does not leak; Reveal is the one way to read it.
//
// Two places are beyond its reach, so keep secrets out of them: a map key (encoding/json
// writes string-kind keys as they are) and an unexported struct field printed by fmt
// (fmt cannot call methods there).
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value, for the one place that must send it.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether no secret is set.
func (s Secret) IsZero() bool { return s == "" }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer, so %#v is covered too.
func (s Secret) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb, %x and %q included, prints the placeholder.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler, for encoders that use it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
