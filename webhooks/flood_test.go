package webhooks_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension/mstudio"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// Client addresses in the flood tests.
const (
	flooderAddr  = "203.0.113.66:40000"
	platformAddr = "198.51.100.1:443"
)

// forgedRequest is a delivery signed by a made-up key under a made-up serial.
func forgedRequest(t testing.TB, body []byte) *http.Request {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signedRequest(webhookPath, testKey{Serial: uuid.NewString(), Private: priv}, body)
}

func from(req *http.Request, addr string) *http.Request {
	req.RemoteAddr = addr
	return req
}

// TestFloodOfMadeUpSerials is the probe's attack: one address floods the handler with
// deliveries under made-up serials, from a cold start, while the platform delivers
// under its key, which is not cached yet, and rotates to a new one midway. The platform's
// deliveries are applied (2xx); the flood is refused with 401 or 429, never 503; the key
// server sees no more fetches than the flooder's budget and the platform's two keys; and
// the log has a few refusal lines, no error.
func TestFloodOfMadeUpSerials(t *testing.T) {
	const (
		flooders         = 4
		floodPerFlooder  = 400
		platformPerKey   = 10
		clientMissBurst  = 5               // KeyCacheOptions' default
		clientMissPeriod = 5 * time.Second // likewise
	)
	platform := apptest.NewPlatform(t, mstudiotest.Options{}) // the key server
	sim, fetches := platform.Sim, func() int64 { return int64(platform.SimHits("GET /v2/public-keys/{serial}")) }
	store := extensiontest.NewStore(t, extension.SQLite)
	logs := new(syncBuffer)
	e := newTestHandlerWith(t, handlerOptions{
		Store: store, APIURL: platform.SimURL, ExtensionID: testExtensionID,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	start := time.Now()
	var sent atomic.Int64
	var floodStatus sync.Map // status → *atomic.Int64
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			body := newPayload(extension.EventAdded, uuid.NewString(), at(0)).JSON()
			for range floodPerFlooder {
				code := serve(e, from(forgedRequest(t, body), flooderAddr)).Code
				n, _ := floodStatus.LoadOrStore(code, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				sent.Add(1)
			}
		})
	}
	for sent.Load() < 100 { // the flood is on
		time.Sleep(time.Millisecond)
	}

	deliverAll := func(k mstudiotest.KeyPair) {
		t.Helper()
		key := testKey{Serial: k.Serial, Private: k.Private}
		for range platformPerKey {
			p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
			rec := serve(e, from(signedRequest(webhookPath, key, p.JSON()), platformAddr))
			if rec.Code != http.StatusNoContent {
				t.Errorf("platform delivery under %s during the flood: %d %s, want 204", k.Serial, rec.Code, rec.Body)
			}
		}
	}
	deliverAll(sim.WebhookKey())
	rotated, err := sim.RotateKey(mstudiotest.PurposeWebhook)
	if err != nil {
		t.Fatal(err)
	}
	deliverAll(rotated)
	stillFlooding := sent.Load() < flooders*floodPerFlooder
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d flooded requests in %s; %d key fetches", sent.Load(), elapsed, fetches())
	if !stillFlooding {
		t.Log("the flood ended before the platform's deliveries did")
	}
	if got := len(instances(t, store)); got != 2*platformPerKey {
		t.Errorf("instances = %d, want %d", got, 2*platformPerKey)
	}
	floodStatus.Range(func(code, n any) bool {
		if code != http.StatusUnauthorized && code != http.StatusTooManyRequests {
			t.Errorf("%d flooded requests answered %d, want 401 or 429", n.(*atomic.Int64).Load(), code)
		}
		return true
	})
	budget := clientMissBurst + int64(elapsed/clientMissPeriod) + 1
	if got, max := fetches(), budget+2; got > max {
		t.Errorf("key fetches = %d in %s, want at most %d (the flooder's budget and the platform's two keys)", got, elapsed, max)
	}

	// The handler's and the front's lines: a few refusals, no error.
	var refusals int
	for l := range strings.Lines(logs.String()) {
		var line struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if line.Level == "ERROR" {
			t.Errorf("error line: %s", l)
		}
		if line.Msg == "webhook refused" {
			refusals++
		}
	}
	// Two reasons (unknown serial, too many lookups), each logged first and then at
	// most once a minute.
	if bound := 2 * (2 + int(elapsed/time.Minute)); refusals == 0 || refusals > bound {
		t.Errorf("%d refusal lines for %d flooded requests, want 1 to %d", refusals, sent.Load(), bound)
	}
}

// TestRefusalsLoggedBounded: many identical refused deliveries write one refusal line,
// at warning level, naming the reason and the client address and no signature.
func TestRefusalsLoggedBounded(t *testing.T) {
	const n = 500
	env := newTestEnv(t, extension.SQLite)
	body := newPayload(extension.EventAdded, uuid.NewString(), at(0)).JSON()
	other := newTestKey(t)
	var signatures []string
	for range n {
		// Signed by another key under the platform's serial: the signature does not match.
		req := signedRequest(webhookPath, env.Key, body)
		mstudio.Sign(req.Header, env.Key.Serial, other.Private, body)
		signatures = append(signatures, req.Header.Get(mstudio.HeaderSignature))
		if rec := env.serve(from(req, flooderAddr)); rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", rec.Code)
		}
	}
	var lines []string
	for l := range strings.Lines(env.Logs.String()) {
		if strings.Contains(l, `"msg":"webhook refused"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d refusal lines for %d identical refusals, want 1:\n%s", len(lines), n, strings.Join(lines, ""))
	}
	for _, want := range []string{`"level":"WARN"`, `"reason":"signature does not match the body"`, `"client":"203.0.113.66"`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("refusal line %s lacks %s", lines[0], want)
		}
	}
	logged := env.Logs.String()
	for _, s := range signatures {
		if strings.Contains(logged, s) {
			t.Fatal("the log carries a signature")
		}
	}
}
