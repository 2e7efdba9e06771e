package mstudiotest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
)

const coreKeyRoute = "GET /v2/public-keys/{serial}"

func TestCoreFaults(t *testing.T) {
	tests := []struct {
		name           string
		fault          Fault
		wantStatus     int // 0: the connection is dropped
		wantType       string
		wantRetryAfter string
		minDelay       time.Duration
	}{
		{"latency only", Fault{Latency: 150 * time.Millisecond}, http.StatusOK, "", "", 150 * time.Millisecond},
		{"rate limited", Fault{Status: http.StatusTooManyRequests, RetryAfter: 7}, http.StatusTooManyRequests, "RateLimitError", "7", 0},
		{"rate limited without Retry-After", Fault{Status: http.StatusTooManyRequests}, http.StatusTooManyRequests, "RateLimitError", "", 0},
		{"unavailable", Fault{Status: http.StatusServiceUnavailable}, http.StatusServiceUnavailable, "", "", 0},
		{"internal error", Fault{Status: http.StatusInternalServerError}, http.StatusInternalServerError, "", "", 0},
		{"slow and unavailable", Fault{Latency: 100 * time.Millisecond, Status: http.StatusServiceUnavailable}, http.StatusServiceUnavailable, "", "", 100 * time.Millisecond},
		{"dropped", Fault{Drop: true}, 0, "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newCoreSim(t, Options{})
			sim.InjectFault(coreKeyRoute, tc.fault)
			url := base + "/v2/public-keys/latest"
			for attempt := range 2 { // Times 0: every request until cleared
				start := time.Now()
				if tc.wantStatus == 0 {
					resp, err := http.Get(url)
					if err == nil {
						resp.Body.Close()
						t.Fatalf("attempt %d: status %d, want a transport error", attempt, resp.StatusCode)
					}
					continue
				}
				r := coreDo(t, http.MethodGet, url, nil, nil)
				if d := time.Since(start); d < tc.minDelay {
					t.Errorf("attempt %d: answered after %v, want at least %v", attempt, d, tc.minDelay)
				}
				if tc.wantStatus == http.StatusOK {
					if r.status != http.StatusOK {
						t.Errorf("attempt %d: status = %d, want 200 (body %s)", attempt, r.status, r.body)
					}
					continue
				}
				coreCheckError(t, r, tc.wantStatus, tc.wantType)
				if got := r.header.Get("Retry-After"); got != tc.wantRetryAfter {
					t.Errorf("attempt %d: Retry-After = %q, want %q", attempt, got, tc.wantRetryAfter)
				}
				if tc.wantStatus == http.StatusTooManyRequests {
					if got := r.header.Get("X-RateLimit-Remaining"); got != "0" {
						t.Errorf("attempt %d: X-RateLimit-Remaining = %q, want 0", attempt, got)
					}
				}
			}
			// Only the faulty route misbehaves.
			if r := coreDo(t, http.MethodGet, base+"/internal/users", nil, nil); r.status != http.StatusOK {
				t.Errorf("another route: status = %d, want 200", r.status)
			}
			sim.ClearFaults()
			if r := coreDo(t, http.MethodGet, url, nil, nil); r.status != http.StatusOK {
				t.Errorf("after ClearFaults: status = %d, want 200", r.status)
			}
		})
	}
}

func TestCoreFaultTimesCountsDown(t *testing.T) {
	tests := []struct {
		name  string
		fault Fault
		bad   int // requests that hit the fault
	}{
		{"one 503", Fault{Status: http.StatusServiceUnavailable, Times: 1}, 1},
		{"three 429s", Fault{Status: http.StatusTooManyRequests, RetryAfter: 1, Times: 3}, 3},
		{"two drops", Fault{Drop: true, Times: 2}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, base := newCoreSim(t, Options{})
			sim.InjectFault(coreKeyRoute, tc.fault)
			// No keep-alive: a dropped connection must not be retried by the transport.
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			url := base + "/v2/public-keys/latest"
			for i := range tc.bad + 2 {
				resp, err := client.Get(url)
				status := 0
				if err == nil {
					status = resp.StatusCode
					resp.Body.Close()
				}
				wantFault := i < tc.bad
				gotFault := err != nil || status != http.StatusOK
				if gotFault != wantFault {
					t.Errorf("request %d: status %d, error %v; want a fault: %v", i+1, status, err, wantFault)
				}
			}
			sim.faults.mu.Lock()
			_, left := sim.faults.routes[coreKeyRoute]
			sim.faults.mu.Unlock()
			if left {
				t.Errorf("fault still registered after its %d times", tc.bad)
			}
		})
	}
}

func TestCoreFaultsOverHTTP(t *testing.T) {
	sim, base := newCoreSim(t, Options{})
	url := base + "/v2/public-keys/latest"
	steps := []struct {
		name       string
		method     string
		body       any
		wantStatus int
		wantKey    int // status of GET /v2/public-keys/latest afterwards
	}{
		{"inject a 503", http.MethodPut, map[string]any{"route": coreKeyRoute, "status": 503}, http.StatusNoContent, http.StatusServiceUnavailable},
		{"replace it with a 429", http.MethodPut, map[string]any{"route": coreKeyRoute, "status": 429, "retryAfter": 3}, http.StatusNoContent, http.StatusTooManyRequests},
		{"clear", http.MethodDelete, nil, http.StatusNoContent, http.StatusOK},
		{"inject latency", http.MethodPut, map[string]any{"route": coreKeyRoute, "latencyMs": 50}, http.StatusNoContent, http.StatusOK},
		{"inject a single 500", http.MethodPut, map[string]any{"route": coreKeyRoute, "status": 500, "times": 1}, http.StatusNoContent, http.StatusInternalServerError},
		{"the single 500 is used up; a fault on another route", http.MethodPut, map[string]any{"route": "GET /v2/customers/{id}", "status": 503}, http.StatusNoContent, http.StatusOK},
		{"missing route", http.MethodPut, map[string]any{"status": 503}, http.StatusBadRequest, http.StatusOK},
		{"not JSON", http.MethodPut, "{route", http.StatusBadRequest, http.StatusOK},
		{"clear again", http.MethodDelete, nil, http.StatusNoContent, http.StatusOK},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			r := coreDo(t, st.method, base+"/internal/faults", nil, st.body)
			if st.wantStatus == http.StatusBadRequest {
				coreCheckError(t, r, st.wantStatus, "ValidationError")
			} else if r.status != st.wantStatus {
				t.Errorf("%s /internal/faults: status = %d, want %d (body %s)", st.method, r.status, st.wantStatus, r.body)
			}
			if r := coreDo(t, http.MethodGet, url, nil, nil); r.status != st.wantKey {
				t.Errorf("GET key afterwards: status = %d, want %d", r.status, st.wantKey)
			}
		})
	}
	t.Run("latency from PUT is applied", func(t *testing.T) {
		sim.ClearFaults()
		r := coreDo(t, http.MethodPut, base+"/internal/faults", nil, map[string]any{"route": coreKeyRoute, "latencyMs": 120})
		if r.status != http.StatusNoContent {
			t.Fatalf("PUT: status = %d, want 204", r.status)
		}
		start := time.Now()
		coreDo(t, http.MethodGet, url, nil, nil)
		if d := time.Since(start); d < 120*time.Millisecond {
			t.Errorf("answered after %v, want at least 120ms", d)
		}
	})
	t.Run("a fault on GET /internal/users, cleared by DELETE", func(t *testing.T) {
		sim.ClearFaults()
		coreDo(t, http.MethodPut, base+"/internal/faults", nil, map[string]any{"route": "GET /internal/users", "status": 503})
		coreCheckError(t, coreDo(t, http.MethodGet, base+"/internal/users", nil, nil), http.StatusServiceUnavailable, "")
		if r := coreDo(t, http.MethodDelete, base+"/internal/faults", nil, nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: status = %d, want 204", r.status)
		}
		if r := coreDo(t, http.MethodGet, base+"/internal/users", nil, nil); r.status != http.StatusOK {
			t.Errorf("after DELETE: status = %d, want 200", r.status)
		}
	})
}

// TestCoreClientRetriesFaults runs the backend's real client, with its retries, against
// injected faults.
func TestCoreClientRetriesFaults(t *testing.T) {
	tests := []struct {
		name         string
		fault        Fault
		wantAttempts int64
		wantErr      bool
	}{
		{"two 503s, then success", Fault{Status: http.StatusServiceUnavailable, Times: 2}, 3, false},
		{"one 429, then success", Fault{Status: http.StatusTooManyRequests, RetryAfter: 0, Times: 1}, 2, false},
		{"503 until the retries run out", Fault{Status: http.StatusServiceUnavailable}, 4, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Close)
			var attempts atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				sim.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			c := newCoreClient(t, srv.URL) // RetryMax 3

			sim.InjectFault(coreKeyRoute, tc.fault)
			got, err := c.PublicKey(context.Background(), sim.WebhookKey().Serial, mstudio.PurposeWebhook)
			if n := attempts.Load(); n != tc.wantAttempts {
				t.Errorf("attempts = %d, want %d", n, tc.wantAttempts)
			}
			if tc.wantErr {
				var apiErr *mstudio.Error
				if !errors.Is(err, mstudio.ErrKeyUnavailable) || !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
					t.Errorf("PublicKey error = %v, want ErrKeyUnavailable with the 503", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("PublicKey: %v", err)
			}
			if !got.Equal(sim.WebhookKey().Public()) {
				t.Errorf("PublicKey = %x, want %x", got, sim.WebhookKey().Public())
			}
		})
	}

	t.Run("instance token after a 503", func(t *testing.T) {
		sim, base, clock := newCoreClockSim(t, 0)
		in, secret := coreActiveInstance(t, sim, clock, InstanceSpec{})
		sim.InjectFault("POST /v2/extension-instances/{id}/tokens", Fault{Status: http.StatusServiceUnavailable, Times: 1})
		tok, err := newCoreClient(t, base).InstanceToken(context.Background(), in.ID, extension.Secret(secret))
		if err != nil {
			t.Fatalf("InstanceToken: %v", err)
		}
		if r := coreDo(t, http.MethodGet, base+"/v2/projects/"+in.ContextID, coreToken(tok.Token.Reveal()), nil); r.status != http.StatusOK {
			t.Errorf("token after retry: status = %d, want 200", r.status)
		}
	})
}

func TestCoreRateLimitHeaders(t *testing.T) {
	clock := newCoreClock()
	_, base := newCoreSim(t, Options{RateLimit: 50, Now: clock.Now})
	tests := []struct {
		name          string
		advance       time.Duration // before the request
		path          string
		wantRemaining int
		wantReset     int
	}{
		{"first request", 0, "/v2/public-keys/latest", 49, 60},
		{"second request", 10 * time.Second, "/internal/users", 48, 50},
		{"third request, another route", 20 * time.Second, "/v2/public-keys/latest", 47, 30},
		{"a 404 counts too", 0, "/v2/public-keys/00000000-0000-4000-8000-000000000000", 46, 30},
		{"new window", 31 * time.Second, "/v2/public-keys/latest", 49, 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(tc.advance)
			r := coreDo(t, http.MethodGet, base+tc.path, nil, nil)
			for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
				if r.header.Get(h) == "" {
					t.Errorf("%s missing", h)
				}
			}
			got := map[string]string{
				"X-RateLimit-Limit":     r.header.Get("X-RateLimit-Limit"),
				"X-RateLimit-Remaining": r.header.Get("X-RateLimit-Remaining"),
				"X-RateLimit-Reset":     r.header.Get("X-RateLimit-Reset"),
			}
			want := map[string]string{
				"X-RateLimit-Limit":     "50",
				"X-RateLimit-Remaining": strconv.Itoa(tc.wantRemaining),
				"X-RateLimit-Reset":     strconv.Itoa(tc.wantReset),
			}
			for h, w := range want {
				if got[h] != w {
					t.Errorf("%s = %q, want %q", h, got[h], w)
				}
			}
		})
	}

	t.Run("remaining decreases and stops at zero", func(t *testing.T) {
		_, base := newCoreSim(t, Options{RateLimit: 3})
		var got []string
		for range 5 {
			got = append(got, coreDo(t, http.MethodGet, base+"/v2/public-keys/latest", nil, nil).header.Get("X-RateLimit-Remaining"))
		}
		want := []string{"2", "1", "0", "0", "0"}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("X-RateLimit-Remaining = %v, want %v", got, want)
				break
			}
		}
	})
}
