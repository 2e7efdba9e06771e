package webhooks_test

import (
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// A key that cannot be fetched right now answers 503, so the platform retries; nothing
// is written, and the key is fetched again on the next delivery.
func TestKeyServerFailures(t *testing.T) {
	k := newTestKey(t)
	deliverOnce := func(t *testing.T, apiURL string) (*extension.Store, int) {
		store := extensiontest.NewStore(t, extension.SQLite)
		e := newTestHandler(t, store, apiURL, testExtensionID)
		p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		rec := serve(e, signedRequest(webhookPath, k, p.JSON()))
		if got := instances(t, store); len(got) != 0 {
			t.Errorf("instances written: %+v", got)
		}
		if got := deliveries(t, store); len(got) != 0 {
			t.Errorf("journal rows = %+v, want none", got)
		}
		return store, rec.Code
	}

	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // nothing listens at its address any more
		if _, code := deliverOnce(t, srv.URL); code != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want 503", code)
		}
	})

	t.Run("answers 500", func(t *testing.T) {
		var calls atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"type":"InternalServerError","message":"boom"}`))
		}))
		t.Cleanup(srv.Close)
		if _, code := deliverOnce(t, srv.URL); code != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want 503", code)
		}
		if calls.Load() == 0 {
			t.Error("the key server was never asked")
		}
	})

	t.Run("answers a key that is not Ed25519", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"serial":"` + k.Serial + `","algorithm":"RSA","key":"AAAA"}`))
		}))
		t.Cleanup(srv.Close)
		if _, code := deliverOnce(t, srv.URL); code != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want 503", code)
		}
	})

	t.Run("recovers after 500", func(t *testing.T) {
		var healthy atomic.Bool
		keys, _ := newKeyServer(t, map[string]ed25519.PublicKey{k.Serial: k.Public()})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !healthy.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			keys.Config.Handler.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		store := extensiontest.NewStore(t, extension.SQLite)
		e := newTestHandler(t, store, srv.URL, testExtensionID)
		p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		if rec := serve(e, signedRequest(webhookPath, k, p.JSON())); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("while the key server fails: status = %d, want 503", rec.Code)
		}
		healthy.Store(true)
		// The platform retries with a rebuilt delivery: a new request id, the same event.
		p.RequestID = newRequestID()
		if rec := serve(e, signedRequest(webhookPath, k, p.JSON())); rec.Code != http.StatusNoContent {
			t.Fatalf("after it recovered: status = %d (%s), want 204 (a failed fetch must not be cached)", rec.Code, rec.Body)
		}
		if got := len(instances(t, store)); got != 1 {
			t.Errorf("instances = %d, want 1", got)
		}
	})
}

// An unknown serial answers 401, and is remembered for the negative TTL so that a flood
// of deliveries with it does not reach the platform; after the TTL it is asked again (a
// key announced later is found).
func TestUnknownSerialIsCachedBriefly(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	unknown := newTestKey(t) // the platform does not know it (yet)
	srv, fetches := newKeyServer(t, nil)
	store := extensiontest.NewStore(t, extension.SQLite)
	e := newTestHandlerWith(t, handlerOptions{
		Store: store, APIURL: srv.URL, ExtensionID: testExtensionID,
		KeyCache: mstudio.KeyCacheOptions{NegativeTTL: time.Minute, Now: clock},
	})
	deliver := func() int {
		p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		return serve(e, signedRequest(webhookPath, unknown, p.JSON())).Code
	}

	if code := deliver(); code != http.StatusUnauthorized {
		t.Errorf("first delivery: status = %d, want 401", code)
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("after the first delivery: key fetches = %d, want 1", got)
	}
	for range 10 {
		if code := deliver(); code != http.StatusUnauthorized {
			t.Errorf("within the negative TTL: status = %d, want 401", code)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("within the negative TTL: key fetches = %d, want 1", got)
	}
	advance(time.Minute + time.Second)
	if code := deliver(); code != http.StatusUnauthorized {
		t.Errorf("after the negative TTL: status = %d, want 401", code)
	}
	if got := fetches.Load(); got != 2 {
		t.Errorf("after the negative TTL: key fetches = %d, want 2", got)
	}
	if got := deliveries(t, store); len(got) != 0 {
		t.Errorf("journal rows for unverified deliveries: %+v", got)
	}
}

// Many deliveries signed with a key not yet cached share one fetch.
func TestConcurrentDeliveriesFetchOnce(t *testing.T) {
	const n = 50
	k := newTestKey(t)
	srv, fetches := newKeyServerDelayed(t, map[string]ed25519.PublicKey{k.Serial: k.Public()}, 100*time.Millisecond)
	store := extensiontest.NewStore(t, extension.SQLite)
	e := newTestHandler(t, store, srv.URL, testExtensionID)

	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		req := signedRequest(webhookPath, k, newPayload(extension.EventAdded, uuid.NewString(), at(i)).JSON())
		wg.Go(func() {
			<-start
			codes[i] = serve(e, req).Code
		})
	}
	close(start)
	wg.Wait()

	for i, code := range codes {
		if code != http.StatusNoContent {
			t.Errorf("delivery %d: status = %d, want 204", i, code)
		}
	}
	if got := fetches.Load(); got != 1 {
		t.Errorf("key fetches = %d, want 1", got)
	}
	if got := len(instances(t, store)); got != n {
		t.Errorf("instances = %d, want %d", got, n)
	}
}
