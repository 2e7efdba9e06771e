package mstudiotest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// senderTestdata is the webhook package's collection of real and documented payloads.
var senderTestdata = filepath.Join("..", "..", "..", "webhooks", "testdata")

// senderSpecOf reads a payload back into the spec that should build it.
func senderSpecOf(t *testing.T, body []byte) PayloadSpec {
	t.Helper()
	p, err := webhooks.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	created, err := p.CreatedAt()
	if err != nil {
		t.Fatal(err)
	}
	spec := PayloadSpec{
		Kind: p.Kind, InstanceID: p.ID, ExtensionID: p.Meta.ExtensionID, ContributorID: p.Meta.ContributorID,
		ContextKind: p.Context.Kind, ContextID: p.Context.ID, Scopes: p.ConsentedScopes,
		Secret: p.Secret.Reveal(), RequestID: p.Request.ID, CreatedAt: created, TargetURL: p.Request.Target.URL,
	}
	if p.State != nil && p.State.Enabled != nil {
		spec.Enabled = *p.State.Enabled
	}
	if p.VariantKey != nil {
		spec.VariantKey = *p.VariantKey
	}
	return spec
}

// TestBuildPayloadReproducesPlatformBytes builds the platform's own signed delivery, and
// the documented examples, byte for byte: field order, compactness, time format.
func TestBuildPayloadReproducesPlatformBytes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "testdata", "mstudio-upstream-webhook-signature-vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vector struct {
		PublicKey string `json:"publicKeyRawBase64"`
		Signature string `json:"signatureBase64"`
		Body      string `json:"body"`
	}
	if err := json.Unmarshal(data, &vector); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body string
	}{{"signature vector", vector.Body}}
	for _, f := range []string{"added-to-context.json", "instance-updated.json", "secret-rotated.json", "removed-from-context.json"} {
		data, err := os.ReadFile(filepath.Join(senderTestdata, f))
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, body string }{f, strings.TrimSpace(string(data))})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := senderSpecOf(t, []byte(tt.body))
			got, err := BuildPayload(spec)
			if err != nil {
				t.Fatal(err)
			}
			// The builder writes times in UTC, as the platform does; one fixture has an offset.
			want := strings.Replace(tt.body, `"2025-03-16T09:30:00.5+02:00"`, `"2025-03-16T07:30:00.5Z"`, 1)
			if diff := cmp.Diff(want, string(got)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	// The platform's signature holds over the rebuilt bytes.
	key, _ := base64.StdEncoding.DecodeString(vector.PublicKey)
	sig, _ := base64.StdEncoding.DecodeString(vector.Signature)
	body, err := BuildPayload(senderSpecOf(t, []byte(vector.Body)))
	if err != nil || !ed25519.Verify(key, body, sig) {
		t.Errorf("the platform's signature does not verify over the built body (err %v)", err)
	}
}

// senderTopKeys lists a JSON object's keys in order.
func senderTopKeys(t *testing.T, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestBuildPayloadKinds(t *testing.T) {
	base := PayloadSpec{
		InstanceID: uuid.NewString(), ExtensionID: uuid.NewString(), ContributorID: uuid.NewString(),
		ContextKind: "customer", ContextID: uuid.NewString(), Scopes: []string{"customer:read"}, Enabled: true,
		VariantKey: "pro", Secret: "s3cr3t", CreatedAt: time.Date(2025, 3, 14, 11, 36, 24, 249313263, time.UTC),
		RequestID: uuid.NewString(), TargetURL: "https://ext.example/hooks?dry-run=true&executing-user-id=u",
	}
	envelope := []string{"apiVersion", "id", "kind", "request", "context"}
	tests := []struct {
		kind, wantKind string
		wantKeys       []string
		secret         bool
	}{
		{"ExtensionAddedToContext", "ExtensionAddedToContext", append(envelope, "consentedScopes", "state", "meta", "secret", "variantKey"), true},
		{"InstanceUpdated", "InstanceUpdated", append(envelope, "consentedScopes", "state", "meta", "variantKey"), false},
		{"SecretRotated", "SecretRotated", append(envelope, "meta", "secret", "variantKey"), true},
		{"InstanceRemovedFromContext", "InstanceRemovedFromContext", append(envelope, "consentedScopes", "state", "meta", "variantKey"), false},
		{"instanceUpdated", "InstanceUpdated", append(envelope, "consentedScopes", "state", "meta", "variantKey"), false},
		{"extension-instance-secret-rotated", "SecretRotated", append(envelope, "meta", "secret", "variantKey"), true},
		{"ExtensionInstanceRemovedFromContext", "ExtensionInstanceRemovedFromContext", append(envelope, "consentedScopes", "state", "meta", "variantKey"), false},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			spec := base
			spec.Kind = tt.kind
			body, err := BuildPayload(spec)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantKeys, senderTopKeys(t, body)); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			p, err := webhooks.Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := p.Event()
			if err != nil {
				t.Fatal(err)
			}
			short, _ := PayloadKind(tt.kind)
			if p.Kind != tt.wantKind || string(ev.Kind) != short {
				t.Errorf("kind %s (event %s), want %s (event %s)", p.Kind, ev.Kind, tt.wantKind, short)
			}
			if ev.InstanceID != spec.InstanceID || ev.ContextKind != spec.ContextKind || ev.ContextID != spec.ContextID ||
				ev.RequestID != spec.RequestID || !ev.CreatedAt.Equal(spec.CreatedAt) ||
				p.Meta.ExtensionID != spec.ExtensionID || p.Meta.ContributorID != spec.ContributorID ||
				p.Request.Target.URL != spec.TargetURL || p.Request.Target.Method != "POST" {
				t.Errorf("envelope does not round-trip: %+v", p)
			}
			if got := ev.Secret.Reveal(); (got == spec.Secret) != tt.secret || (got == "") == tt.secret {
				t.Errorf("secret round-trips %v, want %v", got == spec.Secret, tt.secret)
			}
			if p.State != nil {
				if diff := cmp.Diff(spec.Scopes, ev.Scopes); diff != "" || ev.Enabled == nil || !*ev.Enabled || ev.VariantKey == nil || *ev.VariantKey != "pro" {
					t.Errorf("state does not round-trip: scopes %v enabled %v variant %v", ev.Scopes, ev.Enabled, ev.VariantKey)
				}
			}
		})
	}
}

func TestBuildPayloadDefaults(t *testing.T) {
	before := time.Now()
	body, err := BuildPayload(PayloadSpec{
		Kind: "InstanceUpdated", InstanceID: uuid.NewString(), ExtensionID: uuid.NewString(), ContributorID: uuid.NewString(),
		ContextKind: "project", ContextID: uuid.NewString(), TargetURL: "http://127.0.0.1/hooks",
	})
	if err != nil {
		t.Fatal(err)
	}
	p, err := webhooks.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := uuid.Parse(p.Request.ID); err != nil || id.Version() != 7 {
		t.Errorf("request.id %q is not a UUIDv7", p.Request.ID)
	}
	created, _ := p.CreatedAt()
	if created.Before(before.Add(-time.Second)) || created.After(time.Now().Add(time.Second)) || !strings.HasSuffix(p.Request.CreatedAt, "Z") {
		t.Errorf("request.createdAt %s is not now in UTC", p.Request.CreatedAt)
	}
	// Scopes left nil are sent as an empty list, not left out; no variant, no variantKey.
	if !strings.Contains(string(body), `"consentedScopes":[]`) || strings.Contains(string(body), "variantKey") {
		t.Errorf("body %s", body)
	}
}

func TestBuildPayloadRefusesIncompleteSpecs(t *testing.T) {
	full := PayloadSpec{
		Kind: "ExtensionAddedToContext", InstanceID: uuid.NewString(), ExtensionID: uuid.NewString(), ContributorID: uuid.NewString(),
		ContextKind: "project", ContextID: uuid.NewString(), Secret: "s", TargetURL: "http://127.0.0.1/hooks",
	}
	tests := []struct {
		name   string
		change func(*PayloadSpec)
		want   string
	}{
		{"unknown kind", func(p *PayloadSpec) { p.Kind = "ExtensionExploded" }, "unknown"},
		{"no kind", func(p *PayloadSpec) { p.Kind = "" }, "unknown"},
		{"no secret on install", func(p *PayloadSpec) { p.Secret = "" }, "Secret"},
		{"no secret on rotation", func(p *PayloadSpec) { p.Kind, p.Secret = "SecretRotated", "" }, "Secret"},
		{"no instance", func(p *PayloadSpec) { p.InstanceID = "" }, "InstanceID"},
		{"no extension", func(p *PayloadSpec) { p.ExtensionID = "" }, "ExtensionID"},
		{"no context", func(p *PayloadSpec) { p.ContextID, p.ContextKind = "", "" }, "ContextKind, ContextID"},
		{"no target", func(p *PayloadSpec) { p.TargetURL = "" }, "TargetURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := full
			tt.change(&spec)
			body, err := BuildPayload(spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %s, %v; want an error naming %s", body, err, tt.want)
			}
		})
	}
	// A secret given to a kind without one is left out rather than refused.
	spec := full
	spec.Kind = "InstanceUpdated"
	if body, err := BuildPayload(spec); err != nil || strings.Contains(string(body), `"secret"`) {
		t.Errorf("InstanceUpdated with a secret: %s, %v", body, err)
	}
}

func TestPayloadKindVocabularies(t *testing.T) {
	tests := []struct{ name, payload, trigger string }{
		{"extensionAddedToContext", "ExtensionAddedToContext", CallExtensionAddedToContext},
		{"instanceUpdated", "InstanceUpdated", CallInstanceUpdated},
		{"secretRotated", "SecretRotated", CallSecretRotated},
		{"instanceRemovedFromContext", "InstanceRemovedFromContext", CallInstanceRemovedFromContext},
		{"ExtensionAddedToContext", "ExtensionAddedToContext", CallExtensionAddedToContext},
		{"extension-instance-updated", "InstanceUpdated", CallInstanceUpdated},
		{"extensionInstanceSecretRotated", "SecretRotated", CallSecretRotated},
		{"ExtensionsInstanceSecretRotated", "SecretRotated", CallSecretRotated},
		{"ExtensionInstanceRemovedFromContext", "InstanceRemovedFromContext", CallInstanceRemovedFromContext},
		{"added", "ExtensionAddedToContext", CallExtensionAddedToContext},
		{"Install", "ExtensionAddedToContext", CallExtensionAddedToContext},
		{"updated", "InstanceUpdated", CallInstanceUpdated},
		{"rotated", "SecretRotated", CallSecretRotated},
		{"secretrotated", "SecretRotated", CallSecretRotated},
		{"REMOVED", "InstanceRemovedFromContext", CallInstanceRemovedFromContext},
		{"uninstall", "InstanceRemovedFromContext", CallInstanceRemovedFromContext},
	}
	for _, tt := range tests {
		p, ok := PayloadKind(tt.name)
		c, ok2 := TriggerName(tt.name)
		if !ok || !ok2 || p != tt.payload || c != tt.trigger {
			t.Errorf("%s: PayloadKind %q %v, TriggerName %q %v; want %q, %q", tt.name, p, ok, c, ok2, tt.payload, tt.trigger)
		}
		if back, _ := PayloadKind(c); back != tt.payload {
			t.Errorf("%s: PayloadKind(TriggerName) = %q, want %q", tt.name, back, tt.payload)
		}
	}
	for _, name := range []string{"", "extensionadded", "InstanceDeleted", "adde", "instanceupdated", "deleted"} {
		if p, ok := PayloadKind(name); ok {
			t.Errorf("PayloadKind(%q) = %q, true; want unknown", name, p)
		}
	}
}
