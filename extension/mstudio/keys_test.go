package mstudio_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

const publicKeysPath = "/v2/public-keys/"

// newPublicKey returns a fresh Ed25519 public key.
func newPublicKey(t testing.TB) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// keyServer is a fake of the platform's public-key endpoint. It knows a set of keys by
// serial and counts the requests per serial as they arrive on the wire.
type keyServer struct {
	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	hits    map[string]int
	queries []string

	total atomic.Int32
	// gate, when not nil, holds every answer until it is closed.
	gate chan struct{}
	// arrived, when not nil, receives one value per request as it arrives.
	arrived chan struct{}
	// cancelled counts requests whose context ended while they waited on the gate.
	cancelled atomic.Int32
}

func newKeyServer(t *testing.T) (*keyServer, *mstudio.Client) {
	t.Helper()
	ks := &keyServer{keys: map[string]ed25519.PublicKey{}, hits: map[string]int{}}
	srv := newServer(t, ks.ServeHTTP)
	return ks, newTestClient(t, srv.URL)
}

func (ks *keyServer) add(serial string, k ed25519.PublicKey) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.keys[serial] = k
}

func (ks *keyServer) hitsOf(serial string) int {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	return ks.hits[serial]
}

func (ks *keyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ks.total.Add(1)
	serial, ok := strings.CutPrefix(r.URL.Path, publicKeysPath)
	ks.mu.Lock()
	ks.hits[serial]++
	ks.queries = append(ks.queries, r.URL.RawQuery)
	k, known := ks.keys[serial]
	ks.mu.Unlock()
	if ks.arrived != nil {
		ks.arrived <- struct{}{}
	}
	if ks.gate != nil {
		select {
		case <-ks.gate:
		case <-r.Context().Done():
			ks.cancelled.Add(1)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok || !known {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"type":"NotFound","message":"public key %s not found"}`, serial)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{
		"serial":    serial,
		"algorithm": "Ed25519",
		"key":       base64.StdEncoding.EncodeToString(k),
	})
}

func TestPublicKey(t *testing.T) {
	key := newPublicKey(t)
	const serial = "6d2f8a1c-4b3e-4f5a-9d8c-7b6a5e4d3c2b"
	encoded := base64.StdEncoding.EncodeToString(key)
	tests := []struct {
		name      string
		status    int
		body      string
		want      ed25519.PublicKey
		wantErr   error // checked with errors.Is; nil: success
		wantCalls int32
	}{
		{
			name:      "raw key",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","algorithm":"Ed25519","key":"` + encoded + `"}`,
			want:      key,
			wantCalls: 1,
		},
		{
			name:      "unknown fields ignored",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","algorithm":"Ed25519","key":"` + encoded + `","createdAt":"2025-01-01T00:00:00Z"}`,
			want:      key,
			wantCalls: 1,
		},
		{
			name:      "not found",
			status:    http.StatusNotFound,
			body:      `{"type":"NotFound","message":"no such key"}`,
			wantErr:   mstudio.ErrUnknownKey,
			wantCalls: 1,
		},
		{
			name:      "not found without body",
			status:    http.StatusNotFound,
			wantErr:   mstudio.ErrUnknownKey,
			wantCalls: 1,
		},
		{
			name:      "server error",
			status:    http.StatusInternalServerError,
			body:      `{"type":"InternalError","message":"boom"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1, // a 500 is not repeated
		},
		{
			name:      "unavailable",
			status:    http.StatusServiceUnavailable,
			body:      `{"type":"Unavailable","message":"later"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1 + testRetryMax,
		},
		{
			name:      "rate limited",
			status:    http.StatusTooManyRequests,
			body:      `{"type":"RateLimitError","message":"too many requests"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1 + testRetryMax,
		},
		{
			name:      "forbidden",
			status:    http.StatusForbidden,
			body:      `{"type":"PermissionDenied","message":"no"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:      "other algorithm",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","algorithm":"ES256","key":"` + encoded + `"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:      "no algorithm",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","key":"` + encoded + `"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:   "key of 31 bytes",
			status: http.StatusOK,
			body: `{"serial":"` + serial + `","algorithm":"Ed25519","key":"` +
				base64.StdEncoding.EncodeToString(key[:31]) + `"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:   "key of 33 bytes",
			status: http.StatusOK,
			body: `{"serial":"` + serial + `","algorithm":"Ed25519","key":"` +
				base64.StdEncoding.EncodeToString(append(append([]byte{}, key...), 0)) + `"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:      "empty key",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","algorithm":"Ed25519","key":""}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:      "key not base64",
			status:    http.StatusOK,
			body:      `{"serial":"` + serial + `","algorithm":"Ed25519","key":"not base64!"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:   "key in spki format",
			status: http.StatusOK,
			body: `{"serial":"` + serial + `","algorithm":"Ed25519","key":"-----BEGIN PUBLIC KEY-----\n` +
				`MCowBQYDK2VwAyEA` + encoded + `\n-----END PUBLIC KEY-----\n"}`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
		{
			name:      "not json",
			status:    http.StatusOK,
			body:      `key`,
			wantErr:   mstudio.ErrKeyUnavailable,
			wantCalls: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var gotPath, gotQuery, gotToken string
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				gotPath, gotQuery, gotToken = r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Access-Token")
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			c := newTestClient(t, srv.URL)
			got, err := c.PublicKey(t.Context(), serial, mstudio.PurposeWebhook)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("PublicKey: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("PublicKey error = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == mstudio.ErrKeyUnavailable && errors.Is(err, mstudio.ErrUnknownKey) {
				t.Errorf("PublicKey error = %v, want it not to be %v", err, mstudio.ErrUnknownKey)
			}
			if !got.Equal(tc.want) {
				t.Errorf("key = %x, want %x", got, tc.want)
			}
			if n := calls.Load(); n != tc.wantCalls {
				t.Errorf("server got %d calls, want %d", n, tc.wantCalls)
			}
			if want := publicKeysPath + serial; gotPath != want {
				t.Errorf("path = %q, want %q", gotPath, want)
			}
			if want := "format=raw&purpose=webhook"; gotQuery != want {
				t.Errorf("query = %q, want %q", gotQuery, want)
			}
			if gotToken != "" {
				t.Errorf("X-Access-Token = %q, want none", gotToken)
			}
		})
	}
}

func TestPublicKeyPurpose(t *testing.T) {
	tests := []struct {
		name    string
		purpose mstudio.Purpose
	}{
		{"webhook", mstudio.PurposeWebhook},
		{"session token", mstudio.PurposeSessionToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, c := newKeyServer(t)
			serial := uuid.NewString()
			key := newPublicKey(t)
			ks.add(serial, key)
			got, err := c.PublicKey(t.Context(), serial, tc.purpose)
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			if !got.Equal(key) {
				t.Errorf("key = %x, want %x", got, key)
			}
			want := []string{"format=raw&purpose=" + string(tc.purpose)}
			if diff := cmp.Diff(want, ks.queries); diff != "" {
				t.Errorf("queries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPublicKeyUnreachable(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	c := newTestClient(t, srv.URL)
	srv.Close()
	_, err := c.PublicKey(t.Context(), uuid.NewString(), mstudio.PurposeWebhook)
	if !errors.Is(err, mstudio.ErrKeyUnavailable) {
		t.Errorf("error = %v, want %v", err, mstudio.ErrKeyUnavailable)
	}
}

func TestKeyCacheCachesPerSerial(t *testing.T) {
	ks, c := newKeyServer(t)
	serials := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	keys := map[string]ed25519.PublicKey{}
	for _, s := range serials {
		keys[s] = newPublicKey(t)
		ks.add(s, keys[s])
	}
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	for round := range 3 {
		for _, s := range serials {
			got, err := kc.Key(t.Context(), s)
			if err != nil {
				t.Errorf("round %d: Key(%s): %v", round, s, err)
				continue
			}
			if !got.Equal(keys[s]) {
				t.Errorf("round %d: Key(%s) = %x, want %x", round, s, got, keys[s])
			}
		}
	}
	for _, s := range serials {
		if got := ks.hitsOf(s); got != 1 {
			t.Errorf("fetches of %s = %d, want 1", s, got)
		}
	}
}

// TestKeyCacheConcurrentOneFetch starts many lookups of one serial at once, against a key
// server that answers at once, many times over: every round must fetch exactly once.
func TestKeyCacheConcurrentOneFetch(t *testing.T) {
	const callers = 100
	const rounds = 500
	ks, c := newKeyServer(t)
	for round := range rounds {
		serial := uuid.NewString()
		key := newPublicKey(t)
		ks.add(serial, key)
		kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
		start := make(chan struct{})
		var wg sync.WaitGroup
		var failed atomic.Int32
		for range callers {
			wg.Go(func() {
				<-start
				got, err := kc.Key(t.Context(), serial)
				if err != nil || !got.Equal(key) {
					failed.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := failed.Load(); n != 0 {
			t.Errorf("round %d: %d of %d callers did not get the key", round, n, callers)
		}
		if got := ks.hitsOf(serial); got != 1 {
			t.Errorf("round %d: fetches = %d, want 1", round, got)
		}
	}
}

// TestKeyCacheConcurrentOneFetchWhileInFlight holds the key server's answer until every
// caller has started, so all of them find the fetch in flight.
func TestKeyCacheConcurrentOneFetchWhileInFlight(t *testing.T) {
	const callers = 100
	ks, c := newKeyServer(t)
	ks.gate = make(chan struct{})
	serial := uuid.NewString()
	key := newPublicKey(t)
	ks.add(serial, key)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	var wg sync.WaitGroup
	var started sync.WaitGroup
	results := make([]error, callers)
	for i := range callers {
		started.Add(1)
		wg.Go(func() {
			started.Done()
			got, err := kc.Key(t.Context(), serial)
			if err == nil && !got.Equal(key) {
				err = fmt.Errorf("got key %x, want %x", got, key)
			}
			results[i] = err
		})
	}
	started.Wait()
	time.Sleep(50 * time.Millisecond) // let the callers reach the shared fetch
	close(ks.gate)
	wg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := ks.hitsOf(serial); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
}

// TestKeyCacheCancelledCallerKeepsSharedFetch: the caller that started a fetch gives up;
// another caller waiting on the same fetch still gets the key.
func TestKeyCacheCancelledCallerKeepsSharedFetch(t *testing.T) {
	ks, c := newKeyServer(t)
	ks.gate = make(chan struct{})
	ks.arrived = make(chan struct{}, 10)
	serial := uuid.NewString()
	key := newPublicKey(t)
	ks.add(serial, key)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})

	ctxA, cancelA := context.WithCancel(t.Context())
	defer cancelA()
	errA := make(chan error, 1)
	go func() {
		_, err := kc.Key(ctxA, serial)
		errA <- err
	}()
	<-ks.arrived // A's fetch is at the key server

	type result struct {
		key ed25519.PublicKey
		err error
	}
	resB := make(chan result, 1)
	go func() {
		k, err := kc.Key(t.Context(), serial)
		resB <- result{k, err}
	}()
	time.Sleep(20 * time.Millisecond) // let B join the fetch in flight

	cancelA()
	select {
	case err := <-errA:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled caller: error = %v, want %v", err, context.Canceled)
		}
		if !errors.Is(err, mstudio.ErrKeyUnavailable) {
			t.Errorf("cancelled caller: error = %v, want %v", err, mstudio.ErrKeyUnavailable)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled caller did not return")
	}
	// Give a cancellation that wrongly reached the shared fetch time to arrive at the server.
	time.Sleep(100 * time.Millisecond)
	close(ks.gate)

	select {
	case r := <-resB:
		if r.err != nil {
			t.Errorf("waiting caller: %v", r.err)
		} else if !r.key.Equal(key) {
			t.Errorf("waiting caller: key = %x, want %x", r.key, key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting caller did not return")
	}
	if n := ks.cancelled.Load(); n != 0 {
		t.Errorf("key server saw %d cancelled fetches, want 0", n)
	}
	if got := ks.hitsOf(serial); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
	// The shared fetch filled the cache.
	if _, err := kc.Key(t.Context(), serial); err != nil {
		t.Errorf("Key after the shared fetch: %v", err)
	}
	if got := ks.hitsOf(serial); got != 1 {
		t.Errorf("fetches after a cached lookup = %d, want 1", got)
	}
}

func TestKeyCacheUnknownSerialNegativeCache(t *testing.T) {
	const ttl = 10 * time.Second
	ks, c := newKeyServer(t)
	clock := extensiontest.NewClock(time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC))
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{NegativeTTL: ttl, Now: clock.Now})
	serial := uuid.NewString()
	key := newPublicKey(t)

	steps := []struct {
		name      string
		advance   time.Duration
		announce  bool // the platform learns the key before this step
		wantErr   error
		wantKey   ed25519.PublicKey
		wantFetch int
	}{
		{name: "first lookup fetches", wantErr: mstudio.ErrUnknownKey, wantFetch: 1},
		{name: "second lookup is cached", wantErr: mstudio.ErrUnknownKey, wantFetch: 1},
		{name: "key announced but still negatively cached", announce: true, advance: ttl - time.Nanosecond,
			wantErr: mstudio.ErrUnknownKey, wantFetch: 1},
		{name: "after the TTL fetched again", advance: time.Nanosecond, wantKey: key, wantFetch: 2},
		{name: "then cached for good", advance: 24 * time.Hour, wantKey: key, wantFetch: 2},
	}
	for _, st := range steps {
		if st.announce {
			ks.add(serial, key)
		}
		clock.Advance(st.advance)
		got, err := kc.Key(t.Context(), serial)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
			t.Errorf("%s: error = %v, want %v", st.name, err, st.wantErr)
		}
		if !got.Equal(st.wantKey) {
			t.Errorf("%s: key = %x, want %x", st.name, got, st.wantKey)
		}
		if n := ks.hitsOf(serial); n != st.wantFetch {
			t.Errorf("%s: fetches = %d, want %d", st.name, n, st.wantFetch)
		}
	}
}

func TestKeyCacheUnknownSerialRefetchedAfterTTL(t *testing.T) {
	const ttl = 30 * time.Second
	ks, c := newKeyServer(t)
	clock := extensiontest.NewClock(time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC))
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{NegativeTTL: ttl, Now: clock.Now})
	serial := uuid.NewString()
	for i := range 3 {
		if _, err := kc.Key(t.Context(), serial); !errors.Is(err, mstudio.ErrUnknownKey) {
			t.Errorf("lookup %d: error = %v, want %v", i, err, mstudio.ErrUnknownKey)
		}
		if got, want := ks.hitsOf(serial), i+1; got != want {
			t.Errorf("lookup %d: fetches = %d, want %d", i, got, want)
		}
		clock.Advance(ttl)
	}
}

func TestKeyCacheBadSerial(t *testing.T) {
	valid := uuid.NewString()
	tests := []struct {
		name   string
		serial string
	}{
		{"empty", ""},
		{"path traversal", "../x"},
		{"path traversal of 36 chars", "../../../../v2/extension-instances/x"},
		{"36 chars with slashes", "aaaaaaaa/bbbb/cccc/dddd/eeeeeeeeeeee"},
		{"36 chars not hex", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"},
		{"36 chars hyphens misplaced", "aaaaaaaaa-aaa-aaaa-aaaa-aaaaaaaaaaaa"},
		{"36 chars with query", "00000000-0000-0000-0000-0000000000?a"},
		{"36 chars with percent", "00000000-0000-0000-0000-00000000%2F0"},
		{"36 chars with space", "00000000-0000-0000-0000-00000000000 "},
		{"36 chars with NUL", "00000000-0000-0000-0000-00000000000\x00"},
		{"36 chars of multibyte", strings.Repeat("é", 18)},
		{"latest", "latest"},
		{"uuid without hyphens", strings.ReplaceAll(valid, "-", "")},
		{"uuid in braces", "{" + valid + "}"},
		{"urn uuid", "urn:uuid:" + valid},
		{"uuid with trailing newline", valid + "\n"},
		{"uuid with leading space", " " + valid},
		{"uuid with suffix", valid + "/../x"},
	}
	ks, c := newKeyServer(t)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := ks.total.Load()
			k, err := kc.Key(t.Context(), tc.serial)
			if !errors.Is(err, mstudio.ErrBadSerial) {
				t.Errorf("Key(%q) error = %v, want %v", tc.serial, err, mstudio.ErrBadSerial)
			}
			if k != nil {
				t.Errorf("Key(%q) = %x, want no key", tc.serial, k)
			}
			if got := ks.total.Load() - before; got != 0 {
				t.Errorf("Key(%q) made %d fetches, want 0", tc.serial, got)
			}
			if _, err := mstudio.CanonicalSerial(tc.serial); !errors.Is(err, mstudio.ErrBadSerial) {
				t.Errorf("CanonicalSerial(%q) error = %v, want %v", tc.serial, err, mstudio.ErrBadSerial)
			}
		})
	}
}

func TestKeyCacheSerialCase(t *testing.T) {
	ks, c := newKeyServer(t)
	lower := uuid.NewString()
	upper := strings.ToUpper(lower)
	mixed := lower[:18] + strings.ToUpper(lower[18:])
	key := newPublicKey(t)
	ks.add(lower, key)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	for _, s := range []string{upper, lower, mixed, upper} {
		got, err := kc.Key(t.Context(), s)
		if err != nil {
			t.Errorf("Key(%s): %v", s, err)
			continue
		}
		if !got.Equal(key) {
			t.Errorf("Key(%s) = %x, want %x", s, got, key)
		}
	}
	ks.mu.Lock()
	hits := maps.Clone(ks.hits)
	ks.mu.Unlock()
	if diff := cmp.Diff(map[string]int{lower: 1}, hits); diff != "" {
		t.Errorf("fetches by requested serial (-want +got):\n%s", diff)
	}
}

// TestKeyCacheMissRateLimit: lookups of serials not cached, each from another address,
// share one budget; beyond it they are refused at once, as the clients' doing, while
// cached keys and serials known to be unknown still answer.
func TestKeyCacheMissRateLimit(t *testing.T) {
	const burst = 2
	ks, c := newKeyServer(t)
	known := uuid.NewString()
	knownKey := newPublicKey(t)
	ks.add(known, knownKey)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
		MissRate:  rate.Every(time.Hour),
		MissBurst: burst,
	})
	from := func(i int) context.Context {
		return mstudio.WithClientAddress(t.Context(), fmt.Sprintf("198.51.100.%d", i+1))
	}

	// A known key fetched before the flood uses one token and stays served from the cache.
	if _, err := kc.Key(from(100), known); err != nil {
		t.Fatalf("Key(known): %v", err)
	}
	var unknown []string
	for i := range 10 {
		s := uuid.NewString()
		unknown = append(unknown, s)
		before := ks.total.Load()
		_, err := kc.Key(from(i), s)
		fetches := ks.total.Load() - before
		if i < burst-1 {
			if !errors.Is(err, mstudio.ErrUnknownKey) {
				t.Errorf("unknown serial %d: error = %v, want %v", i, err, mstudio.ErrUnknownKey)
			}
			if fetches != 1 {
				t.Errorf("unknown serial %d: fetches = %d, want 1", i, fetches)
			}
			continue
		}
		if !errors.Is(err, mstudio.ErrTooManyLookups) {
			t.Errorf("unknown serial %d (beyond the burst): error = %v, want %v", i, err, mstudio.ErrTooManyLookups)
		}
		if errors.Is(err, mstudio.ErrUnknownKey) || errors.Is(err, mstudio.ErrKeyUnavailable) {
			t.Errorf("unknown serial %d (beyond the burst): error = %v, must claim neither an unknown key nor our outage", i, err)
		}
		if fetches != 0 {
			t.Errorf("unknown serial %d (beyond the burst): fetches = %d, want 0", i, fetches)
		}
	}
	total := ks.total.Load()
	// The cached key and the negatively cached serial still answer without a fetch.
	if got, err := kc.Key(from(0), known); err != nil || !got.Equal(knownKey) {
		t.Errorf("Key(known) during the flood = %x, %v; want %x, nil", got, err, knownKey)
	}
	if _, err := kc.Key(from(0), unknown[0]); !errors.Is(err, mstudio.ErrUnknownKey) {
		t.Errorf("Key(negatively cached) during the flood: error = %v, want %v", err, mstudio.ErrUnknownKey)
	}
	if got := ks.total.Load(); got != total {
		t.Errorf("fetches during the flood = %d, want %d", got, total)
	}
}

// TestKeyCacheTransientFailureNotCached: a key server failure is not remembered; the next
// lookup fetches again.
func TestKeyCacheTransientFailureNotCached(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	var calls atomic.Int32
	serial := uuid.NewString()
	key := newPublicKey(t)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"serial": serial, "algorithm": "Ed25519", "key": base64.StdEncoding.EncodeToString(key),
		})
	})
	kc := mstudio.NewKeyCache(newTestClient(t, srv.URL), mstudio.PurposeWebhook, mstudio.KeyCacheOptions{})
	if _, err := kc.Key(t.Context(), serial); !errors.Is(err, mstudio.ErrKeyUnavailable) {
		t.Errorf("while the key server fails: error = %v, want %v", err, mstudio.ErrKeyUnavailable)
	}
	fail.Store(false)
	got, err := kc.Key(t.Context(), serial)
	if err != nil {
		t.Fatalf("after the key server recovered: %v", err)
	}
	if !got.Equal(key) {
		t.Errorf("key = %x, want %x", got, key)
	}
	if n := calls.Load(); n != 1+testRetryMax+1 {
		t.Errorf("calls = %d, want %d", n, 1+testRetryMax+1)
	}
}

func FuzzCanonicalSerial(f *testing.F) {
	for _, s := range []string{
		"a73d94dd-bf8a-4a74-967b-f7a0dd1de71f",
		"A73D94DD-BF8A-4A74-967B-F7A0DD1DE71F",
		"6d2f8a1c-4b3e-4f5a-9d8c-7b6a5e4d3c2b",
		"00000000-0000-0000-0000-000000000000",
		"../x",
		"../../../../v2/extension-instances/x",
		"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
		"{a73d94dd-bf8a-4a74-967b-f7a0dd1de71f}",
		"urn:uuid:a73d94dd-bf8a-4a74-967b-f7a0dd1de71f",
		"a73d94ddbf8a4a74967bf7a0dd1de71f",
		"latest",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, serial string) {
		got, err := mstudio.CanonicalSerial(serial)
		if err != nil {
			if !errors.Is(err, mstudio.ErrBadSerial) {
				t.Errorf("CanonicalSerial(%q) error = %v, want %v", serial, err, mstudio.ErrBadSerial)
			}
			if got != "" {
				t.Errorf("CanonicalSerial(%q) = %q with an error, want empty", serial, got)
			}
			return
		}
		if len(got) != 36 {
			t.Errorf("CanonicalSerial(%q) = %q of length %d, want 36", serial, got, len(got))
		}
		if got != strings.ToLower(got) {
			t.Errorf("CanonicalSerial(%q) = %q, not lower case", serial, got)
		}
		if !strings.EqualFold(got, serial) {
			t.Errorf("CanonicalSerial(%q) = %q, not the same serial", serial, got)
		}
		u, err := uuid.Parse(got)
		if err != nil {
			t.Errorf("CanonicalSerial(%q) = %q, not a UUID: %v", serial, got, err)
		} else if u.String() != got {
			t.Errorf("CanonicalSerial(%q) = %q, want the canonical form %q", serial, got, u.String())
		}
		for _, r := range got {
			if !strings.ContainsRune("0123456789abcdef-", r) {
				t.Errorf("CanonicalSerial(%q) = %q contains %q", serial, got, r)
			}
		}
		if again, err := mstudio.CanonicalSerial(got); err != nil || again != got {
			t.Errorf("CanonicalSerial(%q) = %q, %v; want it unchanged", got, again, err)
		}
	})
}
