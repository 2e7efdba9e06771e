package webhooks_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// signatureVector is a delivery signed by the platform itself, taken from mittwald's own
// verifier tests. The signature format's own tests (extension/mstudio) keep it; here it
// shows that the handler applies a real platform delivery.
type signatureVector struct {
	Serial             string `json:"serial"`
	Algorithm          string `json:"algorithm"`
	PublicKeyRawBase64 string `json:"publicKeyRawBase64"`
	SignatureBase64    string `json:"signatureBase64"`
	Body               string `json:"body"`
}

// The ids in the vector's body.
const (
	vectorExtensionID   = "fc8ecde1-e69c-4559-b01b-e655d7d0290a"
	vectorContributorID = "901c7cd0-d869-4290-ab55-867b63227896"
	vectorInstanceID    = "4f9bed5a-ea27-4b31-8cb4-5fd8f1d35cf7"
	vectorRequestID     = "01922b26-f489-74bc-98a4-b2a50584864d"
)

var vectorFile = filepath.Join("..", "extension", "mstudio", "testdata", "mstudio-upstream-webhook-signature-vector.json")

func loadVector(t testing.TB) signatureVector {
	t.Helper()
	data, err := os.ReadFile(vectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var v signatureVector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// PublicKey returns the platform key the vector is signed with.
func (v signatureVector) PublicKey(t testing.TB) ed25519.PublicKey {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(v.PublicKeyRawBase64)
	if err != nil || len(k) != ed25519.PublicKeySize {
		t.Fatalf("vector public key: %d bytes, %v", len(k), err)
	}
	return k
}

// Header returns the three signature headers the platform sent.
func (v signatureVector) Header() http.Header {
	h := http.Header{}
	h.Set(mstudio.HeaderSerial, v.Serial)
	h.Set(mstudio.HeaderAlgorithm, v.Algorithm)
	h.Set(mstudio.HeaderSignature, v.SignatureBase64)
	return h
}

func TestRealVectorThroughHandler(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			v := loadVector(t)
			store := extensiontest.NewStore(t, d)
			srv, fetches := newKeyServer(t, map[string]ed25519.PublicKey{v.Serial: v.PublicKey(t)})
			e := newTestHandlerWith(t, handlerOptions{Store: store, APIURL: srv.URL, ExtensionID: vectorExtensionID, ContributorID: vectorContributorID})

			// First a copy with one byte changed: refused, nothing written.
			tampered := bytes.Replace([]byte(v.Body), []byte(`"enabled":true`), []byte(`"enabled":TRUE`), 1)
			if rec := serve(e, newVectorRequest(v, tampered)); rec.Code != http.StatusUnauthorized {
				t.Errorf("tampered vector: status = %d, want 401", rec.Code)
			}
			if got, journal := instances(t, store), deliveries(t, store); len(got) != 0 || len(journal) != 0 {
				t.Errorf("tampered vector wrote %d instances and %d journal rows, want none", len(got), len(journal))
			}

			req := newVectorRequest(v, []byte(v.Body))
			rec := serve(e, req)
			if rec.Code != http.StatusNoContent {
				t.Fatalf("status = %d (%s), want 204", rec.Code, rec.Body)
			}
			if got := fetches.Load(); got != 1 {
				t.Errorf("key fetches = %d, want 1", got)
			}
			created, err := time.Parse(time.RFC3339Nano, "2024-09-25T21:47:06.249313263Z")
			if err != nil {
				t.Fatal(err)
			}
			want := extension.Instance{
				ID:              vectorInstanceID,
				ContextKind:     extension.ContextProject,
				ContextID:       "63350a60-2a95-4833-848f-2f653d0f0ac9",
				ConsentedScopes: []string{"some:foo", "scope:bar"},
				Enabled:         true,
				LastEventNano:   created.UnixNano(),
			}
			ignore := cmpopts.IgnoreFields(extension.Instance{}, "SealedSecret", "CreatedAt", "UpdatedAt")
			if diff := cmp.Diff([]extension.Instance{want}, instances(t, store), ignore); diff != "" {
				t.Errorf("instances (-want +got):\n%s", diff)
			}
			in, secret, err := store.InstanceCredentials(context.Background(), vectorInstanceID)
			if err != nil {
				t.Fatalf("InstanceCredentials: %v", err)
			}
			if got := secret.Reveal(); got != "new secret" {
				t.Errorf("secret = %q, want %q", got, "new secret")
			}
			if strings.Contains(in.SealedSecret, "new secret") {
				t.Errorf("the stored secret is not sealed: %q", in.SealedSecret)
			}
			d := lastDelivery(t, store)
			if d.Outcome != extension.OutcomeApplied || d.RequestID != vectorRequestID || d.InstanceID != vectorInstanceID || d.Kind != string(extension.EventAdded) {
				t.Errorf("journal row = %+v, want applied %s for %s", d, vectorRequestID, vectorInstanceID)
			}
			if d.EventCreatedAt == nil || !d.EventCreatedAt.Equal(created.Truncate(time.Microsecond)) && !d.EventCreatedAt.Equal(created) {
				t.Errorf("journal createdAt = %v, want %v", d.EventCreatedAt, created)
			}

			// The same captured request again: acknowledged, nothing changes.
			before := instances(t, store)
			if rec := serve(e, newVectorRequest(v, []byte(v.Body))); rec.Code != http.StatusNoContent {
				t.Errorf("replay: status = %d, want 204", rec.Code)
			}
			if diff := cmp.Diff(before, instances(t, store)); diff != "" {
				t.Errorf("replay changed instances (-before +after):\n%s", diff)
			}
			if d := lastDelivery(t, store); d.Outcome != extension.OutcomeDuplicate {
				t.Errorf("replay journaled %q, want %q", d.Outcome, extension.OutcomeDuplicate)
			}
		})
	}
}

// newVectorRequest returns a delivery of body with the vector's signature headers.
func newVectorRequest(v signatureVector, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, webhookPath, bytes.NewReader(body))
	req.Header = v.Header()
	req.Header.Set("Content-Type", "application/json")
	return req
}
