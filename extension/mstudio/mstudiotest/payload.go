package mstudiotest

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The trigger names of the four lifecycle events: the {call} of POST /internal/calls/{call},
// as the platform's local dev server names them, and the kind in the execution log.
const (
	CallExtensionAddedToContext    = "extensionAddedToContext"
	CallInstanceUpdated            = "instanceUpdated"
	CallSecretRotated              = "secretRotated"
	CallInstanceRemovedFromContext = "instanceRemovedFromContext"
)

// lifecycleKind names one lifecycle event in the platform's vocabularies (spec 1.1).
type lifecycleKind struct {
	payload string // the body's "kind", short (documented) form
	call    string // trigger name = ExtensionInstanceWebhookExecution.kind
	dryRun  string // MarketplaceWebhookKind, the platform's dry-run path
	urlKey  string // the extension's webhookUrls.* key
	secret  bool   // the payload carries the instance secret
	state   bool   // the payload carries consentedScopes and state
}

var lifecycleKinds = []lifecycleKind{
	{"ExtensionAddedToContext", CallExtensionAddedToContext, "extension-added-to-context", "extensionAddedToContext", true, true},
	{"InstanceUpdated", CallInstanceUpdated, "extension-instance-updated", "extensionInstanceUpdated", false, true},
	{"SecretRotated", CallSecretRotated, "extension-instance-secret-rotated", "extensionInstanceSecretRotated", true, false},
	{"InstanceRemovedFromContext", CallInstanceRemovedFromContext, "extension-instance-removed-from-context", "extensionInstanceRemovedFromContext", false, true},
}

// payloadAliases are payload kinds the platform has also been seen or documented to use:
// mittwald's own proxy accepts the long forms, and the docs once wrote
// ExtensionsInstanceSecretRotated. BuildPayload sends them as given, so a backend's
// tolerance of them can be tested; the sender itself emits only the short forms.
var payloadAliases = map[string]string{
	"ExtensionInstanceUpdated":            "InstanceUpdated",
	"ExtensionInstanceSecretRotated":      "SecretRotated",
	"ExtensionsInstanceSecretRotated":     "SecretRotated",
	"ExtensionInstanceRemovedFromContext": "InstanceRemovedFromContext",
}

// shortKinds are the names a developer types (`webhook send --kind added`,
// POST /internal/dry-run/added), in any case; every tool and route that takes a kind
// accepts them, so one spelling works everywhere.
var shortKinds = map[string]string{
	"added": "ExtensionAddedToContext", "add": "ExtensionAddedToContext", "install": "ExtensionAddedToContext",
	"updated": "InstanceUpdated", "update": "InstanceUpdated",
	"rotated": "SecretRotated", "rotate": "SecretRotated", "secretrotated": "SecretRotated",
	"removed": "InstanceRemovedFromContext", "remove": "InstanceRemovedFromContext", "uninstall": "InstanceRemovedFromContext",
}

// lookupKind finds an event by any of its names: short, payload kind (and its long
// aliases), trigger name, dry-run kind, webhook URL key.
func lookupKind(name string) (lifecycleKind, bool) {
	if short, ok := payloadAliases[name]; ok {
		name = short
	} else if short, ok := shortKinds[strings.ToLower(name)]; ok {
		name = short
	}
	for _, k := range lifecycleKinds {
		if name == k.payload || name == k.call || name == k.dryRun || name == k.urlKey {
			return k, true
		}
	}
	return lifecycleKind{}, false
}

// PayloadKind returns the payload kind (short form, e.g. "ExtensionAddedToContext") of
// an event named by its trigger name ("extensionAddedToContext") or any other of its
// names: a developer's short name (added, updated, rotated, removed), payload kind and its
// long aliases, dry-run kind, webhook URL key.
func PayloadKind(triggerName string) (string, bool) {
	k, ok := lookupKind(triggerName)
	return k.payload, ok
}

// TriggerName returns the trigger name ("extensionAddedToContext", also the kind in the
// execution log) of an event named by its payload kind or any other of its names.
func TriggerName(payloadKind string) (string, bool) {
	k, ok := lookupKind(payloadKind)
	return k.call, ok
}

// PayloadSpec describes a lifecycle webhook body.
type PayloadSpec struct {
	Kind          string // payload kind, e.g. "ExtensionAddedToContext"; a trigger name is sent in its short payload form
	InstanceID    string
	ExtensionID   string
	ContributorID string
	ContextKind   string // "project" or "customer"
	ContextID     string
	Scopes        []string // consentedScopes; nil is sent as []
	Enabled       bool     // state.enabled
	VariantKey    string   // sent when not empty
	Secret        string   // required for ExtensionAddedToContext and SecretRotated; ignored for the others
	RequestID     string   // default: a new UUIDv7, as the platform's request ids are
	CreatedAt     time.Time
	TargetURL     string // request.target.url: the URL the delivery is posted to, query included
}

// The wire form. Field order is the order the platform was observed to send (the
// signature vector): it matters only for reproducing bytes.
type wirePayload struct {
	APIVersion      string      `json:"apiVersion"`
	ID              string      `json:"id"`
	Kind            string      `json:"kind"`
	Request         wireRequest `json:"request"`
	Context         wireContext `json:"context"`
	ConsentedScopes []string    `json:"consentedScopes,omitzero"` // omitted only when nil: [] is sent
	State           *wireState  `json:"state,omitempty"`
	Meta            wireMeta    `json:"meta"`
	Secret          string      `json:"secret,omitempty"`
	VariantKey      string      `json:"variantKey,omitempty"` // last: position UNVERIFIED, fixtures put it there
}

type wireRequest struct {
	ID        string     `json:"id"`
	CreatedAt string     `json:"createdAt"`
	Target    wireTarget `json:"target"`
}

type wireTarget struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type wireContext struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
}

type wireState struct {
	Enabled bool `json:"enabled"`
}

type wireMeta struct {
	ExtensionID   string `json:"extensionId"`
	ContributorID string `json:"contributorId"`
}

// BuildPayload returns the compact JSON body of a lifecycle webhook, with exactly the
// fields the platform sends for the kind (spec 3.4): SecretRotated has neither
// consentedScopes nor state, and only ExtensionAddedToContext and SecretRotated carry
// the secret. request.createdAt is RFC 3339 in UTC with nanoseconds, as observed.
func BuildPayload(p PayloadSpec) ([]byte, error) {
	k, ok := lookupKind(p.Kind)
	if !ok {
		return nil, errorf("payload kind %q is unknown", p.Kind)
	}
	kind := p.Kind
	if kind != k.payload && payloadAliases[kind] == "" {
		kind = k.payload // a trigger, dry-run or URL-key name: send the documented form
	}
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"InstanceID", p.InstanceID}, {"ExtensionID", p.ExtensionID}, {"ContributorID", p.ContributorID},
		{"ContextKind", p.ContextKind}, {"ContextID", p.ContextID}, {"TargetURL", p.TargetURL},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if k.secret && p.Secret == "" {
		missing = append(missing, "Secret")
	}
	if len(missing) > 0 {
		return nil, errorf("payload %s: %s missing", kind, strings.Join(missing, ", "))
	}
	if p.RequestID == "" {
		p.RequestID = uuid.Must(uuid.NewV7()).String()
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	w := wirePayload{
		APIVersion: "v1",
		ID:         p.InstanceID,
		Kind:       kind,
		Request: wireRequest{
			ID:        p.RequestID,
			CreatedAt: p.CreatedAt.UTC().Format(time.RFC3339Nano),
			Target:    wireTarget{Method: "POST", URL: p.TargetURL},
		},
		Context:    wireContext{ID: p.ContextID, Kind: p.ContextKind},
		Meta:       wireMeta{ExtensionID: p.ExtensionID, ContributorID: p.ContributorID},
		VariantKey: p.VariantKey,
	}
	if k.state {
		w.ConsentedScopes = p.Scopes
		if w.ConsentedScopes == nil {
			w.ConsentedScopes = []string{}
		}
		w.State = &wireState{Enabled: p.Enabled}
	}
	if k.secret {
		w.Secret = p.Secret
	}
	// encoding/json's default escaping of <, > and & (a dry run's target URL has an &)
	// is kept: the platform's nanosecond timestamps and UUIDv7 request ids suggest it is
	// written in Go, which escapes them too. UNVERIFIED; every JSON decoder reads both.
	body, err := json.Marshal(w)
	if err != nil {
		return nil, errorf("payload %s: %v", kind, err)
	}
	return body, nil
}
