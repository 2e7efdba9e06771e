package atrek_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// Client addresses in the flood tests.
const (
	flooderAddr = "203.0.113.66:40000"
	userAddr    = "198.51.100.20:51000"
)

// fragmentFront serves the verifier's middleware through Echo as production does, with
// the client address taken from the connection.
func fragmentFront(v *atrek.SessionTokenVerifier) *httpfront.Front {
	ec := httpfront.New(httpfront.Options{})
	ec.GET("/f", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) }, v.Middleware())
	return ec
}

func fragmentRequest(ec *httpfront.Front, raw, addr string) int {
	req := httptest.NewRequest(http.MethodGet, "/f", nil)
	req.RemoteAddr = addr
	req.Header.Set(atrek.HeaderSessionToken, raw)
	rec := httptest.NewRecorder()
	ec.ServeHTTP(rec, req)
	return rec.Code
}

// forgeUnderSerial signs a genuine token's claims with a made-up key, naming the serial.
func forgeUnderSerial(t testing.TB, raw, serial string, key ed25519.PrivateKey) string {
	t.Helper()
	claims := claimsOf(t, raw)
	claims["publicKeySerial"] = serial
	return forge(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": serial}, claims, jwt.SigningMethodEdDSA, key)
}

// TestSessionTokensDuringFlood: one address floods a cold verifier with tokens under
// made-up serials while a user's fragment sends genuine tokens, whose key is not cached
// yet, and the platform rotates its session_token key midway. The genuine tokens are
// accepted; the forgeries get 401, never 503; the key server sees no more fetches than
// the flooder's budget and the two genuine keys; the log has a few lines, no error.
func TestSessionTokensDuringFlood(t *testing.T) {
	const (
		flooders         = 4
		perFlooder       = 300
		perKey           = 10
		clientMissBurst  = 5 // KeyCacheOptions' defaults
		clientMissPeriod = 5 * time.Second
	)
	e := newFragmentEnv(t)
	logs := new(extensiontest.LogBuffer)
	v := e.newVerifier(t, e.Client, atrek.VerifierOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ec := fragmentFront(v)
	_, forgingKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	genuine := e.token(t, e.Instance)
	before := e.SimHits(routeKeys)

	start := time.Now()
	var sent atomic.Int64
	var wrong sync.Map // unexpected status → count
	var wg sync.WaitGroup
	for range flooders {
		wg.Go(func() {
			for range perFlooder {
				if code := fragmentRequest(ec, forgeUnderSerial(t, genuine, uuid.NewString(), forgingKey), flooderAddr); code != http.StatusUnauthorized {
					n, _ := wrong.LoadOrStore(code, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
				}
				sent.Add(1)
			}
		})
	}
	for sent.Load() < 100 { // the flood is on
		time.Sleep(time.Millisecond)
	}
	useFragment := func() {
		t.Helper()
		for range perKey {
			if code := fragmentRequest(ec, e.token(t, e.Instance), userAddr); code != http.StatusNoContent {
				t.Errorf("genuine token during the flood: %d, want 204", code)
			}
		}
	}
	useFragment()
	if _, err := e.Sim.RotateKey(mstudiotest.PurposeSessionToken); err != nil {
		t.Fatal(err)
	}
	useFragment()
	stillFlooding := sent.Load() < flooders*perFlooder
	wg.Wait()
	elapsed := time.Since(start)
	fetches := e.SimHits(routeKeys) - before
	t.Logf("%d forged tokens in %s; %d key fetches", sent.Load(), elapsed, fetches)
	if !stillFlooding {
		t.Log("the flood ended before the genuine requests did")
	}

	wrong.Range(func(code, n any) bool {
		t.Errorf("%d forged tokens answered %d, want 401", n.(*atomic.Int64).Load(), code)
		return true
	})
	if max := clientMissBurst + int(elapsed/clientMissPeriod) + 1 + 2; fetches > max {
		t.Errorf("key fetches = %d in %s, want at most %d (the flooder's budget and the two genuine keys)", fetches, elapsed, max)
	}
	var refusals int
	for l := range strings.Lines(logs.String()) {
		var line struct{ Level, Msg string }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if line.Level == "ERROR" {
			t.Errorf("error line: %s", l)
		}
		if line.Msg == "session token refused" {
			refusals++
		}
	}
	// Two reasons (unknown serial, too many lookups), each logged first and then at most
	// once a minute.
	if bound := 2 * (2 + int(elapsed/time.Minute)); refusals == 0 || refusals > bound {
		t.Errorf("%d refusal lines for %d forged tokens, want 1 to %d:\n%s", refusals, sent.Load(), bound, logs)
	}
}

// TestSessionTokenRefusalsLoggedBounded: many identical refusals write one line, at
// warning level, with the reason and the client address and no piece of a token.
func TestSessionTokenRefusalsLoggedBounded(t *testing.T) {
	const n = 300
	e := newFragmentEnv(t)
	logs := new(extensiontest.LogBuffer)
	v := e.newVerifier(t, e.Client, atrek.VerifierOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	ec := fragmentFront(v)
	_, forgingKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial := e.Sim.SessionTokenKey().Serial
	var forged []string
	for range n {
		raw := forgeUnderSerial(t, e.token(t, e.Instance), serial, forgingKey)
		forged = append(forged, raw)
		if code := fragmentRequest(ec, raw, flooderAddr); code != http.StatusUnauthorized {
			t.Fatalf("forged token: %d, want 401", code)
		}
	}
	logged := logs.String()
	if got := strings.Count(logged, "\n"); got != 1 {
		t.Fatalf("%d log lines for %d identical refusals, want 1:\n%s", got, n, logged)
	}
	for _, want := range []string{`"level":"WARN"`, `"msg":"session token refused"`, `"reason":"signature does not verify"`, `"client":"203.0.113.66"`} {
		if !strings.Contains(logged, want) {
			t.Errorf("log line %s lacks %s", logged, want)
		}
	}
	for _, raw := range forged {
		assertNoToken(t, logged, raw)
	}
}
