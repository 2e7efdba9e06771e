package mstudio_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

// from returns a context of a lookup for the client address.
func from(t testing.TB, addr string) context.Context {
	return mstudio.WithClientAddress(t.Context(), addr)
}

// TestKeyCacheClientBudget: a flood of made-up serials from one address spends that
// address's budget only; beyond it the lookups are refused without a fetch, and another
// address still gets a serial fetched that was not cached.
func TestKeyCacheClientBudget(t *testing.T) {
	const clientBurst = 3
	ks, c := newKeyServer(t)
	realSerial := uuid.NewString()
	realKey := newPublicKey(t)
	ks.add(realSerial, realKey)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
		ClientMissRate: rate.Every(time.Hour), ClientMissBurst: clientBurst,
		MissRate: rate.Every(time.Hour), MissBurst: 100,
	})
	flooder := from(t, "203.0.113.7")
	for i := range 200 {
		_, err := kc.Key(flooder, uuid.NewString())
		want := mstudio.ErrTooManyLookups
		if i < clientBurst {
			want = mstudio.ErrUnknownKey
		}
		if !errors.Is(err, want) {
			t.Fatalf("made-up serial %d: error = %v, want %v", i, err, want)
		}
	}
	if got := ks.total.Load(); got != clientBurst {
		t.Errorf("fetches during the flood = %d, want %d", got, clientBurst)
	}
	// The flooder's address is refused for the real serial too: it has no budget left.
	if _, err := kc.Key(flooder, realSerial); !errors.Is(err, mstudio.ErrTooManyLookups) {
		t.Errorf("real serial from the flooder: error = %v, want %v", err, mstudio.ErrTooManyLookups)
	}
	for _, addr := range []string{"192.0.2.10", "2001:db8:1::5"} {
		got, err := kc.Key(from(t, addr), realSerial)
		if err != nil || !got.Equal(realKey) {
			t.Errorf("real serial from %s: %x, %v; want the key", addr, got, err)
		}
	}
	if got := ks.hitsOf(realSerial); got != 1 {
		t.Errorf("fetches of the real serial = %d, want 1", got)
	}
}

// TestKeyCacheClientBudgetByAddress: IPv4 addresses have a budget each; IPv6 addresses
// share one per /64, which one customer usually holds; an IPv4-mapped address is its
// IPv4 address; what is not an address at all shares one budget.
func TestKeyCacheClientBudgetByAddress(t *testing.T) {
	tests := []struct {
		name, first, second string
		shared              bool
	}{
		{"two IPv4 addresses", "192.0.2.1", "192.0.2.2", false},
		{"one IPv6 /64", "2001:db8:0:1::1", "2001:db8:0:1:ffff::2", true},
		{"two IPv6 /64s", "2001:db8:0:1::1", "2001:db8:0:2::1", false},
		{"IPv4-mapped IPv6", "::ffff:192.0.2.1", "192.0.2.1", true},
		{"no address and junk", "", "not an address", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, c := newKeyServer(t)
			kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
				ClientMissRate: rate.Every(time.Hour), ClientMissBurst: 1,
			})
			if _, err := kc.Key(from(t, tc.first), uuid.NewString()); !errors.Is(err, mstudio.ErrUnknownKey) {
				t.Fatalf("first lookup from %q: %v, want %v", tc.first, err, mstudio.ErrUnknownKey)
			}
			_, err := kc.Key(from(t, tc.second), uuid.NewString())
			if refused := errors.Is(err, mstudio.ErrTooManyLookups); refused != tc.shared {
				t.Errorf("lookup from %q after one from %q: error = %v; want refused = %v", tc.second, tc.first, err, tc.shared)
			}
			if got, want := ks.total.Load(), map[bool]int32{true: 1, false: 2}[tc.shared]; got != want {
				t.Errorf("fetches = %d, want %d", got, want)
			}
		})
	}
}

// TestKeyCacheLookupJoinsFetchInFlight: a lookup of a serial whose fetch is under way
// waits for it and needs no budget, so an address that spent its budget on that very
// serial cannot make others' lookups of it fail.
func TestKeyCacheLookupJoinsFetchInFlight(t *testing.T) {
	ks, c := newKeyServer(t)
	ks.gate = make(chan struct{})
	ks.arrived = make(chan struct{}, 1)
	serial := uuid.NewString()
	key := newPublicKey(t)
	ks.add(serial, key)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
		ClientMissRate: rate.Every(time.Hour), ClientMissBurst: 1,
		MissRate: rate.Every(time.Hour), MissBurst: 1,
	})
	var wg sync.WaitGroup
	lookup := func(addr string) {
		wg.Go(func() {
			if got, err := kc.Key(from(t, addr), serial); err != nil || !got.Equal(key) {
				t.Errorf("lookup from %s: %x, %v; want the key", addr, got, err)
			}
		})
	}
	lookup("203.0.113.7")
	<-ks.arrived // the fetch is under way; both budgets are spent
	if _, err := kc.Key(from(t, "203.0.113.7"), uuid.NewString()); !errors.Is(err, mstudio.ErrTooManyLookups) {
		t.Fatalf("another serial while the budget is spent: %v, want %v", err, mstudio.ErrTooManyLookups)
	}
	for range 5 {
		lookup("203.0.113.7")
		lookup("192.0.2.10")
	}
	time.Sleep(20 * time.Millisecond) // let the lookups reach the fetch in flight
	close(ks.gate)
	wg.Wait()
	if got := ks.hitsOf(serial); got != 1 {
		t.Errorf("fetches = %d, want 1", got)
	}
}

// simKeyServer is the simulator over HTTP (apptest.Platform) and a client of it.
type simKeyServer struct {
	*apptest.Platform
	Client *mstudio.Client
}

func newSimKeyServer(t *testing.T) *simKeyServer {
	t.Helper()
	p := apptest.NewPlatform(t, mstudiotest.Options{})
	return &simKeyServer{Platform: p, Client: newTestClient(t, p.SimURL)}
}

// fetchesBySerial counts the key requests that name a serial, not "latest".
func (s *simKeyServer) fetchesBySerial() int {
	return s.SimHits("GET "+publicKeysPath+"{serial}") - s.SimHits("GET "+publicKeysPath+"latest")
}

// keepCurrent runs kc.KeepCurrent until the test ends.
func keepCurrent(t *testing.T, kc *mstudio.KeyCache) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		kc.KeepCurrent(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// spentClient is the address whose lookups the cache answers from what it holds only:
// spendBudget spends its budget of one.
const spentClient = "203.0.113.99"

func spendBudget(t *testing.T, kc *mstudio.KeyCache) {
	t.Helper()
	if _, err := kc.Key(from(t, spentClient), uuid.NewString()); !errors.Is(err, mstudio.ErrUnknownKey) {
		t.Fatalf("spending the budget: %v, want %v", err, mstudio.ErrUnknownKey)
	}
}

// waitCached waits until the cache holds the serial, looking it up from spentClient,
// which never makes the cache fetch it.
func waitCached(t *testing.T, kc *mstudio.KeyCache, serial string) ed25519.PublicKey {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		k, err := kc.Key(from(t, spentClient), serial)
		switch {
		case err == nil:
			return k
		case !errors.Is(err, mstudio.ErrTooManyLookups):
			t.Fatalf("Key(%s): %v", serial, err)
		case time.Now().After(deadline):
			t.Fatalf("the cache did not get %s within 10 s", serial)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyCacheKeepCurrent: the simulator's current key is cached without a lookup
// asking for it, and so is the key it rotates to, at the next refresh; the old key
// stays. Only the "latest" serial is fetched for it.
func TestKeyCacheKeepCurrent(t *testing.T) {
	for _, purpose := range []mstudio.Purpose{mstudio.PurposeWebhook, mstudio.PurposeSessionToken} {
		t.Run(string(purpose), func(t *testing.T) {
			ks := newSimKeyServer(t)
			logs := new(extensiontest.LogBuffer)
			kc := mstudio.NewKeyCache(ks.Client, purpose, mstudio.KeyCacheOptions{
				RefreshPeriod:  20 * time.Millisecond,
				ClientMissRate: rate.Every(time.Hour), ClientMissBurst: 1,
				Logger: slog.New(slog.NewJSONHandler(logs, nil)),
			})
			spendBudget(t, kc)
			keepCurrent(t, kc)
			current := ks.Sim.WebhookKey()
			if purpose == mstudio.PurposeSessionToken {
				current = ks.Sim.SessionTokenKey()
			}
			if got := waitCached(t, kc, current.Serial); !got.Equal(current.Public()) {
				t.Fatalf("current key = %x, want %x", got, current.Public())
			}
			rotated, err := ks.Sim.RotateKey(string(purpose))
			if err != nil {
				t.Fatal(err)
			}
			if got := waitCached(t, kc, strings.ToUpper(rotated.Serial)); !got.Equal(rotated.Public()) {
				t.Errorf("rotated key = %x, want %x", got, rotated.Public())
			}
			if got, err := kc.Key(from(t, spentClient), current.Serial); err != nil || !got.Equal(current.Public()) {
				t.Errorf("the key before the rotation: %x, %v; want it kept", got, err)
			}
			if got := ks.fetchesBySerial(); got != 1 { // spendBudget's
				t.Errorf("fetches by serial = %d, want 1", got)
			}
			// The line is written just after the key is cached.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), rotated.Serial); time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("log does not name the current key %s:\n%s", rotated.Serial, logs)
				}
			}
			if !strings.Contains(logs.String(), current.Serial) {
				t.Errorf("log does not name the first current key %s:\n%s", current.Serial, logs)
			}
		})
	}
}

// TestKeyCacheKeepCurrentPlatformDown: a platform that does not answer at start is
// logged as a warning and tried again; and a lookup refused for budget brings the next
// look forward, so a key the platform rotated to is found long before the refresh
// period.
func TestKeyCacheKeepCurrentPlatformDown(t *testing.T) {
	ks := newSimKeyServer(t)
	if err := ks.Sim.InjectFault("GET /v2/public-keys/{serial}", mstudiotest.Fault{Status: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	logs := new(extensiontest.LogBuffer)
	kc := mstudio.NewKeyCache(ks.Client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
		RefreshPeriod:  time.Hour,
		RecheckAfter:   10 * time.Millisecond,
		ClientMissRate: rate.Every(time.Hour), ClientMissBurst: 1,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	keepCurrent(t, kc)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "could not be fetched"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning within 10 s; log:\n%s", logs)
		}
	}
	if !strings.Contains(logs.String(), `"level":"WARN"`) || strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("want a warning and no error:\n%s", logs)
	}
	// A lookup by serial while the platform is down is our outage, not the caller's fault.
	if _, err := kc.Key(from(t, "192.0.2.10"), ks.Sim.WebhookKey().Serial); !errors.Is(err, mstudio.ErrKeyUnavailable) {
		t.Errorf("lookup while the platform is down: %v, want %v", err, mstudio.ErrKeyUnavailable)
	}
	ks.Sim.ClearFaults()
	spendBudget(t, kc)
	// The lookups of waitCached are refused for budget, and bring the next look forward:
	// the retry after the failure would come after seconds, a refresh after an hour.
	waitCached(t, kc, ks.Sim.WebhookKey().Serial)
	rotated, err := ks.Sim.RotateKey(mstudiotest.PurposeWebhook)
	if err != nil {
		t.Fatal(err)
	}
	waitCached(t, kc, rotated.Serial)
}

// TestKeyCacheFloodBoundsFetches floods the cache from many goroutines and addresses at
// once while one client looks up a real serial: the key server sees at most the budget.
func TestKeyCacheFloodBoundsFetches(t *testing.T) {
	const (
		flooders    = 8
		perFlooder  = 300
		clientBurst = 4
		// More than the flooders can spend: their own budgets run out first.
		totalBurst = flooders*clientBurst + 8
	)
	ks, c := newKeyServer(t)
	realSerial := uuid.NewString()
	realKey := newPublicKey(t)
	ks.add(realSerial, realKey)
	kc := mstudio.NewKeyCache(c, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{
		ClientMissRate: rate.Every(time.Hour), ClientMissBurst: clientBurst,
		MissRate: rate.Every(time.Hour), MissBurst: totalBurst,
	})
	var wg sync.WaitGroup
	for i := range flooders {
		wg.Go(func() {
			ctx := from(t, fmt.Sprintf("203.0.113.%d", i+1))
			for range perFlooder {
				if _, err := kc.Key(ctx, uuid.NewString()); !errors.Is(err, mstudio.ErrUnknownKey) && !errors.Is(err, mstudio.ErrTooManyLookups) {
					t.Errorf("made-up serial: %v", err)
					return
				}
			}
		})
	}
	got, err := kc.Key(from(t, "192.0.2.10"), realSerial)
	wg.Wait()
	if err != nil || !got.Equal(realKey) {
		t.Errorf("real serial during the flood: %x, %v; want the key", got, err)
	}
	if got, max := ks.total.Load(), int32(flooders*clientBurst+1); got > max {
		t.Errorf("fetches = %d, want at most %d", got, max)
	}
}
