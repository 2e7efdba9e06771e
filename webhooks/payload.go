package webhooks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Payload is a lifecycle webhook body (apiVersion v1). Decoding is tolerant: unknown
// fields are ignored, and the platform is the source of truth for values.
type Payload struct {
	APIVersion string `json:"apiVersion"`
	ID         string `json:"id"` // the extension instance id
	Kind       string `json:"kind"`
	Request    struct {
		ID        string `json:"id"`
		CreatedAt string `json:"createdAt"`
		Target    struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"target"`
	} `json:"request"`
	Context struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"context"`
	ConsentedScopes []string `json:"consentedScopes"`
	State           *struct {
		Enabled *bool `json:"enabled"`
	} `json:"state"`
	Meta struct {
		ExtensionID   string `json:"extensionId"`
		ContributorID string `json:"contributorId"`
	} `json:"meta"`
	Secret     extension.Secret `json:"secret"`
	VariantKey *string          `json:"variantKey"`
}

// kinds maps every spelling the platform has used onto the documented short kind:
// mittwald's own proxy accepts the long ExtensionInstance… forms, and the docs once
// wrote ExtensionsInstanceSecretRotated.
var kinds = map[string]extension.EventKind{
	"ExtensionAddedToContext":             extension.EventAdded,
	"InstanceUpdated":                     extension.EventUpdated,
	"ExtensionInstanceUpdated":            extension.EventUpdated,
	"SecretRotated":                       extension.EventSecretRotated,
	"ExtensionInstanceSecretRotated":      extension.EventSecretRotated,
	"ExtensionsInstanceSecretRotated":     extension.EventSecretRotated,
	"InstanceRemovedFromContext":          extension.EventRemoved,
	"ExtensionInstanceRemovedFromContext": extension.EventRemoved,
}

// ParseKind returns the event kind of a payload kind, and whether it is one we know.
func ParseKind(kind string) (extension.EventKind, bool) {
	k, ok := kinds[kind]
	return k, ok
}

// ErrInvalidPayload wraps every reason a body is refused.
var ErrInvalidPayload = errors.New("invalid payload")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPayload, fmt.Sprintf(format, args...))
}

// Decode parses a body and checks the envelope every kind shares: instance id, kind,
// request id and time, and meta. It does not check the kind: see Payload.Event.
func Decode(body []byte) (*Payload, error) {
	var p Payload
	// go-json-experiment's v1 package reads a body as encoding/json does (the same
	// fields, names matched without regard to case, the last of a name sent twice, invalid
	// UTF-8 replaced: FuzzDecoderMatchesEncodingJSON), at twice the speed with a fifth of
	// the allocations. A body it refuses is read again by encoding/json, whose error says
	// why: the two count a syntax error's offset differently.
	if err := jsonv1.Unmarshal(body, &p); err != nil {
		if err = json.Unmarshal(body, new(Payload)); err == nil {
			return nil, invalid("not a JSON object")
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, invalid("not JSON (offset %d)", se.Offset)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, invalid("field %q has the wrong type", te.Field)
		}
		return nil, invalid("not a JSON object")
	}
	switch {
	case p.APIVersion != "" && p.APIVersion != "v1":
		return nil, invalid("apiVersion %q is not supported", clip(p.APIVersion))
	case p.ID == "":
		return nil, invalid("id (the extension instance id) is missing")
	case !mstudio.IsUUID(p.ID):
		return nil, invalid("id is not a UUID")
	case p.Kind == "":
		return nil, invalid("kind is missing")
	case p.Request.ID == "":
		return nil, invalid("request.id is missing")
	case p.Meta.ExtensionID == "":
		return nil, invalid("meta.extensionId is missing")
	}
	if err := p.checkText(); err != nil {
		return nil, err
	}
	if _, err := p.CreatedAt(); err != nil {
		return nil, err
	}
	return &p, nil
}

// maxClockSkew is how far in the future request.createdAt may lie. An event dated further
// ahead would make every later real event look stale.
const maxClockSkew = time.Hour

// CreatedAt parses request.createdAt, with or without fractional seconds.
func (p *Payload) CreatedAt() (time.Time, error) {
	if p.Request.CreatedAt == "" {
		return time.Time{}, invalid("request.createdAt is missing")
	}
	t, err := time.Parse(time.RFC3339Nano, p.Request.CreatedAt)
	if err != nil {
		return time.Time{}, invalid("request.createdAt is not an RFC 3339 time")
	}
	// Times are kept as Unix nanoseconds, which cover 1678 to 2262.
	if t.Year() < 2000 || t.After(time.Now().Add(maxClockSkew)) {
		return time.Time{}, invalid("request.createdAt %s is not a plausible time", t.UTC().Format(time.RFC3339))
	}
	return t, nil
}

// isDryRun reports whether the signed target URL marks a dry run.
func (p *Payload) isDryRun() bool {
	u, err := url.Parse(p.Request.Target.URL)
	return err == nil && u.Query().Get("dry-run") == "true"
}

// maxIDLength bounds the free-form ids of a payload before they reach the database.
const maxIDLength = 128

// checkText refuses values the database cannot store or should not: NUL bytes (which
// PostgreSQL rejects in text, so the platform would retry forever) and overlong ids. The
// kind is not among them: an unknown one is ignored, and journaled clipped.
func (p *Payload) checkText() error {
	fields := map[string]string{
		"request.id": p.Request.ID, "context.id": p.Context.ID, "context.kind": p.Context.Kind,
		"meta.extensionId": p.Meta.ExtensionID, "meta.contributorId": p.Meta.ContributorID,
	}
	if p.VariantKey != nil {
		fields["variantKey"] = *p.VariantKey
	}
	for name, v := range fields {
		if len(v) > maxIDLength {
			return invalid("%s is longer than %d bytes", name, maxIDLength)
		}
		if strings.ContainsRune(v, 0) {
			return invalid("%s contains a NUL character", name)
		}
	}
	for _, sc := range p.ConsentedScopes {
		if len(sc) > maxIDLength || strings.ContainsRune(sc, 0) {
			return invalid("consentedScopes has an overlong value or a NUL character")
		}
	}
	return nil
}

// Event turns a decoded payload of a known kind into the store's event, checking the
// fields that kind requires.
func (p *Payload) Event() (extension.LifecycleEvent, error) {
	kind, ok := ParseKind(p.Kind)
	if !ok {
		return extension.LifecycleEvent{}, invalid("kind %q is unknown", clip(p.Kind))
	}
	created, err := p.CreatedAt()
	if err != nil {
		return extension.LifecycleEvent{}, err
	}
	ev := extension.LifecycleEvent{
		Kind:        kind,
		RequestID:   p.Request.ID,
		CreatedAt:   created,
		InstanceID:  strings.ToLower(p.ID),
		ContextKind: strings.ToLower(p.Context.Kind),
		ContextID:   p.Context.ID,
		Secret:      p.Secret,
	}
	if kind != extension.EventSecretRotated {
		// A field the payload leaves out keeps its stored value.
		ev.Scopes = p.ConsentedScopes
		if p.State != nil {
			ev.Enabled = p.State.Enabled
		}
		ev.VariantKey = p.VariantKey
	}
	switch kind {
	case extension.EventAdded:
		if p.Context.ID == "" {
			return ev, invalid("context.id is missing")
		}
		if p.Secret.IsZero() {
			return ev, invalid("secret is missing")
		}
	case extension.EventSecretRotated:
		if p.Secret.IsZero() {
			return ev, invalid("secret is missing")
		}
	}
	return ev, nil
}

// clip shortens an untrusted value before it goes into an error text, a log line or the
// journal, cutting on a character boundary so the result stays valid UTF-8.
func clip(s string) string {
	const max = 40
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
