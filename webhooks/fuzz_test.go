package webhooks_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
)

// samplePayloads returns the captured payloads in testdata by file name, one per kind,
// and the body of the platform-signed vector.
func samplePayloads(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = data
	}
	out[filepath.Base(vectorFile)] = []byte(loadVector(t).Body)
	if len(out) < 5 {
		t.Fatalf("found %d samples in testdata, want 5", len(out))
	}
	return out
}

func TestDecodeSamples(t *testing.T) {
	want := map[string]extension.EventKind{
		"added-to-context.json":                          extension.EventAdded,
		"instance-updated.json":                          extension.EventUpdated,
		"secret-rotated.json":                            extension.EventSecretRotated,
		"removed-from-context.json":                      extension.EventRemoved,
		"mstudio-upstream-webhook-signature-vector.json": extension.EventAdded,
	}
	for name, body := range samplePayloads(t) {
		t.Run(name, func(t *testing.T) {
			p, err := webhooks.Decode(body)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			ev, err := p.Event()
			if err != nil {
				t.Fatalf("Event: %v", err)
			}
			if ev.Kind != want[name] {
				t.Errorf("kind = %q, want %q", ev.Kind, want[name])
			}
			if ev.InstanceID == "" || ev.RequestID == "" || ev.CreatedAt.IsZero() {
				t.Errorf("event lacks its envelope: %+v", ev)
			}
		})
	}
}

// FuzzDecode: Decode and Event never panic; what they accept has the envelope every
// later step relies on, and every refusal is an ErrInvalidPayload.
func FuzzDecode(f *testing.F) {
	for _, sample := range samplePayloads(f) {
		f.Add(sample)
	}
	for _, kind := range []extension.EventKind{extension.EventAdded, extension.EventUpdated, extension.EventSecretRotated, extension.EventRemoved} {
		p := newPayload(kind, uuid.NewString(), at(0))
		p.Extra = map[string]any{"unknown": []any{1, "two", nil}}
		f.Add(p.JSON())
		p.CreatedAtRaw = "2025-03-14T11:36:24+01:00"
		f.Add(p.JSON())
	}
	f.Add([]byte(`{"id":"4F9BED5A-EA27-4B31-8CB4-5FD8F1D35CF7","kind":"SecretRotated","request":{"id":"x","createdAt":"2024-09-25T21:47:06Z"},"meta":{"extensionId":"e"},"secret":"s"}`))
	f.Add([]byte(`{"id":"4f9bed5a-ea27-4b31-8cb4-5fd8f1d35cf7","kind":"ExtensionAddedToContext","request":{"id":"x","createdAt":"2024-09-25T21:47:06Z"},"meta":{"extensionId":"e"},"secret":null,"state":null,"consentedScopes":null}`))
	f.Add([]byte(`{"apiVersion":1}`))
	f.Add([]byte(`{"state":{"enabled":"yes"}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))

	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := webhooks.Decode(body)
		if err != nil {
			if !errors.Is(err, webhooks.ErrInvalidPayload) {
				t.Fatalf("Decode error %v is not an ErrInvalidPayload", err)
			}
			return
		}
		if p == nil {
			t.Fatal("Decode returned neither a payload nor an error")
		}
		created, err := p.CreatedAt()
		switch {
		case p.ID == "" || p.Kind == "" || p.Request.ID == "" || p.Meta.ExtensionID == "":
			t.Fatalf("Decode accepted a payload without its envelope: %+v", p)
		case !isCanonicalUUID(strings.ToLower(p.ID)):
			t.Fatalf("Decode accepted instance id %q", p.ID)
		case err != nil:
			t.Fatalf("Decode accepted createdAt %q: %v", p.Request.CreatedAt, err)
		}

		kind, known := webhooks.ParseKind(p.Kind)
		ev, err := p.Event()
		if !known {
			if err == nil {
				t.Fatalf("Event accepted unknown kind %q", p.Kind)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, webhooks.ErrInvalidPayload) {
				t.Fatalf("Event error %v is not an ErrInvalidPayload", err)
			}
			return
		}
		switch {
		case ev.Kind != kind:
			t.Fatalf("event kind %q, want %q", ev.Kind, kind)
		case ev.InstanceID != strings.ToLower(p.ID) || !isCanonicalUUID(ev.InstanceID):
			t.Fatalf("event instance id %q from %q", ev.InstanceID, p.ID)
		case ev.RequestID == "":
			t.Fatal("event without request id")
		case !ev.CreatedAt.Equal(created):
			t.Fatalf("event time %v, payload time %v", ev.CreatedAt, created)
		case (kind == extension.EventAdded || kind == extension.EventSecretRotated) && ev.Secret.IsZero():
			t.Fatalf("%s accepted without a secret", kind)
		case kind == extension.EventAdded && ev.ContextID == "":
			t.Fatalf("%s accepted without a context id", kind)
		case kind != extension.EventSecretRotated && (ev.Scopes == nil) != (p.ConsentedScopes == nil):
			// nil means "not sent, keep the stored scopes": exactly when the payload has none.
			t.Fatalf("%s event scopes nil %v, payload scopes nil %v", kind, ev.Scopes == nil, p.ConsentedScopes == nil)
		case kind == extension.EventSecretRotated && ev.Scopes != nil:
			t.Fatalf("%s event with scopes: a rotation carries none", kind)
		}
	})
}

// isCanonicalUUID reports whether s is a UUID in its lower-case 36-character form.
func isCanonicalUUID(s string) bool {
	u, err := uuid.Parse(s)
	return err == nil && u.String() == s
}
