package mstudiotest

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// coreInstanceResource is MarketplaceExtensionInstance as GET /v2/extension-instances/{id}
// answers it (mstudio-api.md section 9).
type coreInstanceResource struct {
	ID                 string `json:"id"`
	ExtensionID        string `json:"extensionId"`
	ExtensionName      string `json:"extensionName"`
	ContributorID      string `json:"contributorId"`
	ContributorName    string `json:"contributorName"`
	AggregateReference struct {
		Aggregate string `json:"aggregate"`
		Domain    string `json:"domain"`
		ID        string `json:"id"`
	} `json:"aggregateReference"`
	ConsentedScopes        []string `json:"consentedScopes"`
	Disabled               bool     `json:"disabled"`
	PendingInstallation    bool     `json:"pendingInstallation"`
	PendingRemoval         bool     `json:"pendingRemoval"`
	WebhookExecutionHalted bool     `json:"webhookExecutionHalted"`
	Chargeability          struct {
		IsChargeable bool `json:"isChargeable"`
		Reasons      struct {
			IsNonChargeableCustomer bool `json:"isNonChargeableCustomer"`
			IsOwnExtension          bool `json:"isOwnExtension"`
		} `json:"reasons"`
	} `json:"chargeability"`
	CreatedAt  time.Time `json:"createdAt"`
	VariantKey string    `json:"variantKey"`
}

// coreRequiredInstanceFields are the required fields of MarketplaceExtensionInstance and
// the JSON type each must have.
var coreRequiredInstanceFields = map[string]string{
	"id": "string", "extensionId": "string", "extensionName": "string", "contributorId": "string",
	"contributorName": "string", "aggregateReference": "object", "consentedScopes": "array",
	"disabled": "bool", "pendingInstallation": "bool", "pendingRemoval": "bool",
	"webhookExecutionHalted": "bool", "chargeability": "object",
}

// coreCheckRequired reports required fields that are missing, null or of the wrong type,
// in obj and in nested objects named by path ("chargeability.reasons").
func coreCheckRequired(t *testing.T, obj map[string]any, fields map[string]string, where string) {
	t.Helper()
	for name, typ := range fields {
		v, ok := obj[name]
		if !ok || v == nil {
			t.Errorf("%s%s is missing", where, name)
			continue
		}
		var got string
		switch v.(type) {
		case string:
			got = "string"
		case bool:
			got = "bool"
		case float64:
			got = "number"
		case []any:
			got = "array"
		case map[string]any:
			got = "object"
		}
		if got != typ {
			t.Errorf("%s%s = %v (%s), want a %s", where, name, v, got, typ)
		}
	}
}

func TestCoreGetInstanceShape(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 0)
	insiders, _ := coreUsers(t, sim)
	userToken := insiders[0].Token

	tests := []struct {
		name     string
		spec     InstanceSpec
		disable  bool
		useOwn   bool // read it with its own instance token, not a user token
		wantKind string
	}{
		{"project, own token", InstanceSpec{VariantKey: "default"}, false, true, "project"},
		{"customer, own token", InstanceSpec{ContextKind: "customer", Scopes: []string{"customer:read"}}, false, true, "customer"},
		{"project, user token", InstanceSpec{Scopes: []string{"project:read", "project:write", "user:read"}}, false, false, "project"},
		{"disabled, user token", InstanceSpec{}, true, false, "project"},
		{"created disabled, user token", InstanceSpec{Disabled: true}, false, false, "project"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, secret := coreActiveInstance(t, sim, clock, tc.spec)
			token := userToken
			if tc.useOwn {
				token = coreMintOK(t, base, in.ID, secret).PublicToken
			}
			if tc.disable {
				var err error
				if in, err = sim.UpdateInstance(in.ID, func(in *Instance) { in.Disabled = true }); err != nil {
					t.Fatal(err)
				}
			}
			r := coreDo(t, http.MethodGet, base+"/v2/extension-instances/"+in.ID, coreToken(token), nil)
			if r.status != http.StatusOK {
				t.Fatalf("status = %d, want 200 (body %s)", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}

			var raw map[string]any
			if err := json.Unmarshal(r.body, &raw); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			coreCheckRequired(t, raw, coreRequiredInstanceFields, "")
			if agg, ok := raw["aggregateReference"].(map[string]any); ok {
				coreCheckRequired(t, agg, map[string]string{"aggregate": "string", "domain": "string", "id": "string"}, "aggregateReference.")
			}
			if ch, ok := raw["chargeability"].(map[string]any); ok {
				coreCheckRequired(t, ch, map[string]string{"isChargeable": "bool", "reasons": "object"}, "chargeability.")
				if rs, ok := ch["reasons"].(map[string]any); ok {
					coreCheckRequired(t, rs, map[string]string{"isNonChargeableCustomer": "bool", "isOwnExtension": "bool"}, "chargeability.reasons.")
				}
			}

			var got coreInstanceResource
			if err := json.Unmarshal(r.body, &got); err != nil {
				t.Fatalf("body %s: %v", r.body, err)
			}
			want := got // fields with free values (names, chargeability) as answered
			want.ID, want.ExtensionID, want.ContributorID = in.ID, sim.ExtensionID(), sim.ContributorID()
			want.AggregateReference.Aggregate, want.AggregateReference.Domain = tc.wantKind, tc.wantKind
			want.AggregateReference.ID = in.ContextID
			want.ConsentedScopes = in.Scopes
			// disabled is the inverse of the webhook's state.enabled.
			want.Disabled = tc.disable || tc.spec.Disabled
			want.PendingInstallation, want.PendingRemoval, want.WebhookExecutionHalted = false, false, false
			want.CreatedAt = in.CreatedAt
			want.VariantKey = tc.spec.VariantKey
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("instance resource mismatch (-want +got):\n%s", diff)
			}
			if got.ExtensionName == "" || got.ContributorName == "" {
				t.Errorf("extensionName, contributorName = %q, %q; want both set", got.ExtensionName, got.ContributorName)
			}
			for _, id := range []string{got.ID, got.ExtensionID, got.AggregateReference.ID} {
				if !isUUID(id) {
					t.Errorf("id %q is not a UUID", id)
				}
			}
		})
	}
}

func TestCoreGetInstanceErrors(t *testing.T) {
	sim, base, clock := newCoreClockSim(t, 0)
	insiders, outsiders := coreUsers(t, sim)
	in, _ := coreActiveInstance(t, sim, clock, InstanceSpec{})
	removed, _ := coreActiveInstance(t, sim, clock, InstanceSpec{})
	if _, err := sim.UpdateInstance(removed.ID, func(in *Instance) { in.Removed = true }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		id       string
		token    string
		want     int
		wantType string
	}{
		{"unknown instance", uuid.NewString(), insiders[0].Token, http.StatusNotFound, "NotFound"},
		{"removed instance", removed.ID, insiders[0].Token, http.StatusNotFound, "NotFound"},
		{"user without access", in.ID, outsiders[0].Token, http.StatusForbidden, "PermissionDenied"},
		{"no token", in.ID, "", http.StatusUnauthorized, "Unauthorized"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h map[string]string
			if tc.token != "" {
				h = coreToken(tc.token)
			}
			coreCheckError(t, coreDo(t, http.MethodGet, base+"/v2/extension-instances/"+tc.id, h, nil), tc.want, tc.wantType)
		})
	}
}

func TestCoreStateFilePersists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sim", "state.json")
	clock := newCoreClock()
	opts := Options{StateFile: file, Now: clock.Now, SecretActivationDelay: coreActivationDelay}
	first, _ := newCoreSim(t, opts)

	active, secret := coreActiveInstance(t, first, clock, InstanceSpec{VariantKey: "pro", Scopes: []string{"project:read"}})
	customer, _ := coreActiveInstance(t, first, clock, InstanceSpec{ContextKind: "customer"})
	if _, err := first.UpdateInstance(customer.ID, func(in *Instance) { in.Disabled = true }); err != nil {
		t.Fatal(err)
	}
	removed, _ := coreActiveInstance(t, first, clock, InstanceSpec{})
	if _, err := first.UpdateInstance(removed.ID, func(in *Instance) { in.Removed = true }); err != nil {
		t.Fatal(err)
	}
	rotating, _ := coreActiveInstance(t, first, clock, InstanceSpec{})
	if _, err := first.NewPendingSecret(rotating.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := first.CreateInstance(InstanceSpec{}); err != nil { // pending, never delivered
		t.Fatal(err)
	}

	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("state file not written: %v", err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode = %v, want 0600 (it holds secrets)", perm)
	}

	second, base := newCoreSim(t, opts)
	want := first.Instances()
	if len(want) != 5 {
		t.Fatalf("first simulator has %d instances, want 5", len(want))
	}
	if diff := cmp.Diff(want, second.Instances()); diff != "" {
		t.Errorf("instances after reload (-first +second):\n%s", diff)
	}

	tests := []struct {
		name   string
		id     string
		secret string
		want   int
	}{
		{"active instance's secret still works", active.ID, secret, http.StatusCreated},
		{"disabled stays disabled", customer.ID, customer.Secret, http.StatusForbidden},
		{"removed stays removed", removed.ID, removed.Secret, http.StatusNotFound},
		{"old secret works while the rotation is pending", rotating.ID, rotating.Secret, http.StatusCreated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := coreMint(t, base, tc.id, tc.secret); r.status != tc.want {
				t.Errorf("mint on the second simulator: status = %d, want %d (body %s)", r.status, tc.want, r.body)
			}
		})
	}

	t.Run("a new instance is saved next to the loaded ones", func(t *testing.T) {
		added, err := second.CreateInstance(InstanceSpec{})
		if err != nil {
			t.Fatal(err)
		}
		third, _ := newCoreSim(t, opts)
		if _, ok := third.Instance(added.ID); !ok || len(third.Instances()) != 6 {
			t.Errorf("third simulator has %d instances (new one found: %v), want 6 with the new one", len(third.Instances()), ok)
		}
	})
}

func TestCoreStateFileDamaged(t *testing.T) {
	tests := []struct {
		name    string
		content string // "<dir>" makes the state file a directory
	}{
		{"not JSON", "instances!"},
		{"truncated", `{"instances": [{"id": "`},
		{"wrong shape", `{"instances": {"id": 1}}`},
		{"a directory", "<dir>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "state.json")
			var err error
			if tc.content == "<dir>" {
				err = os.Mkdir(file, 0o700)
			} else {
				err = os.WriteFile(file, []byte(tc.content), 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			if sim, err := New(Options{StateFile: file}); err == nil {
				sim.Close()
				t.Errorf("New with a damaged state file: no error")
			}
		})
	}
}
