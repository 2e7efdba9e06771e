package webhooks_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	_ "github.com/mattn/go-sqlite3"
)

// The webhook benchmarks compare the full delivery path (verify, decode, seal, ordering
// checks, one transaction with the journal row) with a bare baseline in the same run:
// ed25519.Verify, json.Unmarshal and one INSERT through database/sql on the same SQLite
// settings. Both run 32 concurrent senders. The baseline verifies with crypto/ed25519,
// as a receiver written by hand does; the path's faster verification (curve25519-voi,
// see extension/mstudio) is part of what is measured. Compare with:
//
//	go test ./webhooks -run '^$' -bench 'Deliveries' -benchtime 20000x -count 6 | benchstat -col /path -

const benchExtensionID = "3f1e6c2a-8b4d-4e59-9a7c-2d5b8e1f4a60"

type signedDelivery struct {
	body   []byte
	header http.Header
}

// benchDeliveries signs n ExtensionAddedToContext deliveries for n new instances.
func benchDeliveries(b *testing.B, n int, serial string, priv ed25519.PrivateKey) []signedDelivery {
	b.Helper()
	out := make([]signedDelivery, n)
	now := time.Now()
	for i := range out {
		body := fmt.Appendf(nil, `{"apiVersion":"v1","id":%q,"kind":"ExtensionAddedToContext","request":{"id":%q,"createdAt":%q,"target":{"method":"POST","url":"https://ext.example/mstudio/webhooks"}},"context":{"id":%q,"kind":"project"},"consentedScopes":["project:read","project:write"],"state":{"enabled":true},"meta":{"extensionId":%q,"contributorId":"7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17"},"secret":%q,"variantKey":"default"}`,
			uuid.NewString(), uuid.NewString(), now.Add(time.Duration(i)).UTC().Format(time.RFC3339Nano), uuid.NewString(), benchExtensionID, rand.Text())
		h := http.Header{"Content-Type": {"application/json"}}
		mstudio.Sign(h, serial, priv, body)
		out[i] = signedDelivery{body, h}
	}
	return out
}

func benchKeyServer(b *testing.B, serial string, pub ed25519.PublicKey) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"serial": serial, "algorithm": "Ed25519", "key": base64.StdEncoding.EncodeToString(pub)})
	}))
	b.Cleanup(srv.Close)
	return srv
}

// runParallel hands each of 32 goroutines deliveries in turn until all are sent, and
// reports throughput and the latency percentiles a sender saw.
func runParallel(b *testing.B, deliveries []signedDelivery, send func(signedDelivery) error) {
	var next atomic.Int64
	latencies := make([]time.Duration, len(deliveries))
	b.SetParallelism(16) // 32 senders on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			start := time.Now()
			if err := send(deliveries[i]); err != nil {
				b.Error(err)
				return
			}
			latencies[i] = time.Since(start)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)*50/100].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}

func BenchmarkDeliveries(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	serial := uuid.NewString()

	b.Run("path=baseline", func(b *testing.B) {
		deliveries := benchDeliveries(b, b.N, serial, priv)
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "base.db")+
			"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate&_foreign_keys=on")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(`CREATE TABLE instances (id TEXT PRIMARY KEY, context_kind TEXT, context_id TEXT, consented_scopes TEXT, enabled BOOLEAN, variant_key TEXT, secret TEXT, last_event_ns INTEGER)`); err != nil {
			b.Fatal(err)
		}
		runParallel(b, deliveries, func(d signedDelivery) error {
			sig, err := base64.StdEncoding.DecodeString(d.header.Get(mstudio.HeaderSignature))
			if err != nil || !ed25519.Verify(pub, d.body, sig) {
				return fmt.Errorf("verify failed")
			}
			var p webhooks.Payload
			if err := json.Unmarshal(d.body, &p); err != nil {
				return err
			}
			scopes, _ := json.Marshal(p.ConsentedScopes)
			_, err = db.Exec(`INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				p.ID, p.Context.Kind, p.Context.ID, string(scopes), *p.State.Enabled, *p.VariantKey, p.Secret.Reveal(), time.Now().UnixNano())
			return err
		})
	})

	b.Run("path=full", func(b *testing.B) { benchFull(b, serial, pub, priv, false) })
	// full with every delivery captured (EXT_CAPTURE_DELIVERIES): sealed and written in
	// the background.
	b.Run("path=full-capture", func(b *testing.B) { benchFull(b, serial, pub, priv, true) })
}

// benchFull sends deliveries through the handler on SQLite, capturing them when capture is
// set.
func benchFull(b *testing.B, serial string, pub ed25519.PublicKey, priv ed25519.PrivateKey, capture bool) {
	deliveries := benchDeliveries(b, b.N, serial, priv)
	store := extensiontest.Open(b, extensiontest.SQLiteURL(b), extension.Options{Keys: extensiontest.Keyring(b)})
	client, err := mstudio.New(benchKeyServer(b, serial, pub).URL, mstudio.Options{})
	if err != nil {
		b.Fatal(err)
	}
	var captures *extension.CaptureRecorder
	if capture {
		captures = store.NewCaptureRecorder(nil)
		defer captures.Close()
	}
	e := echo.New()
	e.POST("/mstudio/webhooks", webhooks.New(webhooks.Config{
		Store:       store,
		Keys:        mstudio.NewKeyCache(client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID: benchExtensionID,
		Captures:    captures,
	}).Receive)
	runParallel(b, deliveries, func(d signedDelivery) error {
		req := httptest.NewRequest(http.MethodPost, "/mstudio/webhooks", bytes.NewReader(d.body))
		req.Header = d.header.Clone()
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			return fmt.Errorf("status %d: %s", rec.Code, rec.Body)
		}
		return nil
	})
	if captures != nil {
		b.ReportMetric(float64(captures.Dropped()), "captures-dropped")
	}
}
