package webhooks_test

// Helpers shared by the webhook tests and the benchmark: a platform key server, a handler
// wired as in production (real KeyCache, real retryablehttp client, real Store), signed
// deliveries, and snapshots of what the store holds.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
)

// The ids our test extension is configured with.
const (
	testExtensionID   = "3f1e6c2a-8b4d-4e59-9a7c-2d5b8e1f4a60"
	testContributorID = "7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17"
	testContextID     = "5e8f1a2b-3c4d-4e5f-a6b7-c8d9e0f1a2b3"
)

// webhookPath is where the handler is routed.
const webhookPath = "/mstudio/webhooks"

// t0 is the platform time of the first event in a test sequence; at(n) is n seconds later.
var t0 = time.Date(2025, 3, 14, 11, 36, 24, 249313263, time.UTC)

func at(seconds int) time.Time { return t0.Add(time.Duration(seconds) * time.Second) }

// testKey is one of the platform's webhook signing keys.
type testKey struct {
	Serial  string
	Private ed25519.PrivateKey
}

// newTestKey returns a fresh key under a fresh serial.
func newTestKey(t testing.TB) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{Serial: uuid.NewString(), Private: priv}
}

// Public returns the key's public half.
func (k testKey) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// newKeyServer serves the platform's public-key endpoint for the keys by serial:
// GET /v2/public-keys/{serial}?purpose=webhook&format=raw answers
// {"serial","algorithm":"Ed25519","key": base64 raw key}, and 404 {"type":"NotFound",…}
// for a serial it does not hold. The counter counts every request that reached the route.
func newKeyServer(t testing.TB, keys map[string]ed25519.PublicKey) (*httptest.Server, *atomic.Int64) {
	return newKeyServerDelayed(t, keys, 0)
}

// newKeyServerDelayed is newKeyServer with every answer held back by delay, so that
// concurrent lookups surely overlap one fetch.
func newKeyServerDelayed(t testing.TB, keys map[string]ed25519.PublicKey, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	byLower := make(map[string]ed25519.PublicKey, len(keys))
	for s, k := range keys {
		byLower[strings.ToLower(s)] = k
	}
	fetches := new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/public-keys/{serial}", func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if delay > 0 {
			time.Sleep(delay)
		}
		w.Header().Set("Content-Type", "application/json")
		if q := r.URL.Query(); q.Get("purpose") != "webhook" || q.Get("format") != "raw" {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"type": "ValidationError", "message": "want purpose=webhook&format=raw"})
			return
		}
		serial := r.PathValue("serial")
		k, ok := byLower[serial]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"type": "NotFound", "message": "public key " + serial + " not found"})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"serial":    serial,
			"algorithm": "Ed25519",
			"key":       base64.StdEncoding.EncodeToString(k),
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, fetches
}

// handlerOptions configures newTestHandlerWith; the zero values of the optional fields
// give the production behaviour.
type handlerOptions struct {
	Store         *extension.Store
	APIURL        string // the platform API (key server)
	ExtensionID   string
	ContributorID string                  // checked when set
	Logger        *slog.Logger            // nil: discard; else also used for a request log line per request
	KeyCache      mstudio.KeyCacheOptions // negative TTL, clock
	Applied       func(context.Context, extension.LifecycleEvent)
	// Captures and CaptureUnverified as in webhooks.Config.
	Captures          *extension.CaptureRecorder
	CaptureUnverified bool
}

// newTestHandler returns the production front (httpfront: error handler, request log,
// metrics, client address) with the webhook handler routed as cmd's route table routes
// it, wired as production wires it, against the platform API at apiURL.
func newTestHandler(t testing.TB, store *extension.Store, apiURL string, extensionID string) *httpfront.Front {
	t.Helper()
	return newTestHandlerWith(t, handlerOptions{Store: store, APIURL: apiURL, ExtensionID: extensionID})
}

func newTestHandlerWith(t testing.TB, o handlerOptions) *httpfront.Front {
	t.Helper()
	// Short waits: a failing key server must not make a test slow, but the retries run.
	client, err := mstudio.New(o.APIURL, mstudio.Options{
		Logger:    o.Logger,
		RetryMax:  2,
		RetryWait: time.Millisecond,
		Timeout:   3 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	front := httpfront.New(httpfront.Options{Logger: o.Logger,
		LogAttrs: []string{webhooks.LogKeyInstanceID, webhooks.LogKeyEventKind, webhooks.LogKeyRequestID, webhooks.LogKeyOutcome}})
	front.POST(webhookPath, webhooks.New(webhooks.Config{
		Store:         o.Store,
		Keys:          mstudio.NewKeyCache(client, mstudio.PurposeWebhook, o.KeyCache),
		ExtensionID:   o.ExtensionID,
		ContributorID: o.ContributorID,
		Logger:        o.Logger,
		Registerer:    front.Registry,
		Applied:       o.Applied,
		Captures:      o.Captures,

		CaptureUnverified: o.CaptureUnverified,
	}).Receive)
	return front
}

// testEnv is a handler on a real store of one dialect, with a key server that holds Key.
type testEnv struct {
	Store      *extension.Store
	Front      *httpfront.Front
	Key        testKey // the platform's current webhook key, held by KeyServer
	KeyServer  *httptest.Server
	KeyFetches *atomic.Int64
	Logs       *syncBuffer // the handler's and the front's JSON lines
}

// newTestEnv builds a testEnv for the dialect; opts may adjust the handler options
// (ContributorID, KeyCache) before the handler is built.
func newTestEnv(t testing.TB, d extension.Dialect, opts ...func(*handlerOptions)) *testEnv {
	t.Helper()
	env := &testEnv{Store: extensiontest.NewStore(t, d), Key: newTestKey(t), Logs: new(syncBuffer)}
	env.KeyServer, env.KeyFetches = newKeyServer(t, map[string]ed25519.PublicKey{env.Key.Serial: env.Key.Public()})
	o := handlerOptions{
		Store:       env.Store,
		APIURL:      env.KeyServer.URL,
		ExtensionID: testExtensionID,
		Logger:      slog.New(slog.NewJSONHandler(env.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range opts {
		f(&o)
	}
	env.Front = newTestHandlerWith(t, o)
	return env
}

// withContributor configures the contributor id check.
func withContributor(o *handlerOptions) { o.ContributorID = testContributorID }

// serve runs one request through the front.
func serve(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// serve runs one request through the env's front.
func (env *testEnv) serve(req *http.Request) *httptest.ResponseRecorder { return serve(env.Front, req) }

// deliver signs p with the env's key and delivers it.
func (env *testEnv) deliver(t testing.TB, p testPayload) *httptest.ResponseRecorder {
	t.Helper()
	return env.serve(signedRequest(webhookPath, env.Key, p.JSON()))
}

// mustDeliver delivers p and fails the test unless the answer has the status.
func (env *testEnv) mustDeliver(t testing.TB, p testPayload, status int) {
	t.Helper()
	if rec := env.deliver(t, p); rec.Code != status {
		t.Fatalf("deliver %s %s at %s: got status %d (%s), want %d", p.Kind, p.InstanceID, p.createdAtText(), rec.Code, strings.TrimSpace(rec.Body.String()), status)
	}
}

// signedRequest returns a POST of body to target, signed with k as the platform signs.
func signedRequest(target string, k testKey, body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	mstudio.Sign(req.Header, k.Serial, k.Private, body)
	return req
}

// testPayload describes a lifecycle delivery; JSON renders it as the platform does:
// compact, in the platform's field order. Empty fields are left out, which is how the
// tests build deliveries that lack one.
type testPayload struct {
	Kind          string
	InstanceID    string
	RequestID     string
	CreatedAt     time.Time
	CreatedAtRaw  string // when set, sent instead of CreatedAt (another format, or garbage)
	ContextKind   string
	ContextID     string
	Scopes        []string // sent (also when empty) for every kind but the secret rotation
	Enabled       bool
	Secret        string
	VariantKey    string
	ExtensionID   string
	ContributorID string
	Extra         map[string]any // more top-level fields, unknown to the handler
}

// newPayload returns a delivery of the kind for the instance at the platform time, with
// a fresh request id, our extension's meta, a project context, default scopes, enabled,
// and a fresh secret for the kinds that carry one.
func newPayload(kind extension.EventKind, instanceID string, createdAt time.Time) testPayload {
	p := testPayload{
		Kind:          string(kind),
		InstanceID:    instanceID,
		RequestID:     newRequestID(),
		CreatedAt:     createdAt,
		ContextKind:   extension.ContextProject,
		ContextID:     testContextID,
		Scopes:        []string{"project:read", "project:write"},
		Enabled:       true,
		ExtensionID:   testExtensionID,
		ContributorID: testContributorID,
	}
	if kind == extension.EventAdded || kind == extension.EventSecretRotated {
		p.Secret = newTestSecret()
	}
	return p
}

// newRequestID returns a request id like the platform's (UUIDv7).
func newRequestID() string { return uuid.Must(uuid.NewV7()).String() }

// newTestSecret returns a distinctive instance secret, easy to find in a log.
func newTestSecret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return "tsec" + base64.RawURLEncoding.EncodeToString(b)
}

// createdAtLayout is the platform's format: RFC 3339 with nine fractional digits.
const createdAtLayout = "2006-01-02T15:04:05.000000000Z07:00"

func (p testPayload) createdAtText() string {
	if p.CreatedAtRaw != "" {
		return p.CreatedAtRaw
	}
	if p.CreatedAt.IsZero() {
		return ""
	}
	return p.CreatedAt.UTC().Format(createdAtLayout)
}

type wirePayload struct {
	APIVersion string `json:"apiVersion"`
	ID         string `json:"id,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Request    struct {
		ID        string `json:"id,omitempty"`
		CreatedAt string `json:"createdAt,omitempty"`
		Target    struct {
			Method string `json:"method"`
			URL    string `json:"url"`
		} `json:"target"`
	} `json:"request"`
	Context *struct {
		ID   string `json:"id,omitempty"`
		Kind string `json:"kind,omitempty"`
	} `json:"context,omitempty"`
	ConsentedScopes []string `json:"consentedScopes,omitzero"`
	State           *struct {
		Enabled bool `json:"enabled"`
	} `json:"state,omitempty"`
	Meta struct {
		ExtensionID   string `json:"extensionId,omitempty"`
		ContributorID string `json:"contributorId,omitempty"`
	} `json:"meta"`
	Secret     string `json:"secret,omitempty"`
	VariantKey string `json:"variantKey,omitempty"`
}

// JSON returns the delivery's body.
func (p testPayload) JSON() []byte {
	var w wirePayload
	w.APIVersion = "v1"
	w.ID, w.Kind = p.InstanceID, p.Kind
	w.Request.ID, w.Request.CreatedAt = p.RequestID, p.createdAtText()
	w.Request.Target.Method, w.Request.Target.URL = http.MethodPost, "https://ext.example.com"+webhookPath
	if p.ContextID != "" || p.ContextKind != "" {
		w.Context = &struct {
			ID   string `json:"id,omitempty"`
			Kind string `json:"kind,omitempty"`
		}{p.ContextID, p.ContextKind}
	}
	if k, _ := webhooks.ParseKind(p.Kind); k != extension.EventSecretRotated {
		w.ConsentedScopes = p.Scopes
		if w.ConsentedScopes == nil {
			w.ConsentedScopes = []string{}
		}
		w.State = &struct {
			Enabled bool `json:"enabled"`
		}{p.Enabled}
	}
	w.Meta.ExtensionID, w.Meta.ContributorID = p.ExtensionID, p.ContributorID
	w.Secret, w.VariantKey = p.Secret, p.VariantKey
	body, err := json.Marshal(w)
	if err != nil {
		panic(err)
	}
	if len(p.Extra) > 0 {
		extra, err := json.Marshal(p.Extra)
		if err != nil {
			panic(err)
		}
		body = append(append(body[:len(body)-1], ','), extra[1:]...)
	}
	return body
}

// instances returns every instance the store holds, tombstones included.
func instances(t testing.TB, s *extension.Store) []extension.Instance {
	t.Helper()
	out, err := s.Instances(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deliveries returns the journal, newest first.
func deliveries(t testing.TB, s *extension.Store) []extension.Delivery {
	t.Helper()
	out, err := s.Deliveries(context.Background(), "", 10000)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// instance loads one instance and fails the test when it cannot.
func instance(t testing.TB, s *extension.Store, id string) *extension.Instance {
	t.Helper()
	in, err := s.InstanceByID(context.Background(), id)
	if err != nil {
		t.Fatalf("InstanceByID(%s): %v", id, err)
	}
	return in
}

// lastDelivery returns the newest journal row.
func lastDelivery(t testing.TB, s *extension.Store) extension.Delivery {
	t.Helper()
	d := deliveries(t, s)
	if len(d) == 0 {
		t.Fatal("journal is empty")
	}
	return d[0]
}

// syncBuffer collects log output written concurrently.
type syncBuffer = extensiontest.LogBuffer
