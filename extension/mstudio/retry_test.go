package mstudio_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// Routes as the simulator lists them, for InjectFault.
const (
	projectRoute = "GET /v2/projects/{id}"
	mintRoute    = "POST /v2/extension-instances/{id}/tokens"
	redeemRoute  = "POST /v2/authenticate-token-retrieval-key"
	refreshRoute = "PUT /v2/users/self/sessions"
)

// simCall is one client call against a simEnv. prepare gets what the call needs (a token,
// a retrieval key) before any fault is injected, and returns the path the call reaches and
// the call itself.
type simCall struct {
	name       string
	route      string
	idempotent bool
	prepare    func(t *testing.T, env *simEnv) (path string, run func(context.Context, *mstudio.Client) error)
}

var simCalls = []simCall{
	{"get project", projectRoute, true, func(t *testing.T, env *simEnv) (string, func(context.Context, *mstudio.Client) error) {
		token := env.instanceToken(t)
		return "/v2/projects/" + env.Instance.ContextID, func(ctx context.Context, c *mstudio.Client) error {
			_, err := c.Project(ctx, token, env.Instance.ContextID)
			return err
		}
	}},
	{"mint instance token", mintRoute, true, func(t *testing.T, env *simEnv) (string, func(context.Context, *mstudio.Client) error) {
		return "/v2/extension-instances/" + env.Instance.ID + "/tokens", func(ctx context.Context, c *mstudio.Client) error {
			_, err := c.InstanceToken(ctx, env.Instance.ID, extension.Secret(env.Instance.Secret))
			return err
		}
	}},
	{"refresh user token", refreshRoute, true, func(t *testing.T, env *simEnv) (string, func(context.Context, *mstudio.Client) error) {
		tok := env.userToken(t)
		return "/v2/users/self/sessions", func(ctx context.Context, c *mstudio.Client) error {
			_, err := c.RefreshUserToken(ctx, tok.Token, tok.RefreshToken)
			return err
		}
	}},
	{"redeem retrieval key", redeemRoute, false, func(t *testing.T, env *simEnv) (string, func(context.Context, *mstudio.Client) error) {
		user := env.user(t)
		key, err := env.Sim.NewRetrievalKey(env.Instance.ID, user.ID)
		if err != nil {
			t.Fatal(err)
		}
		return "/v2/authenticate-token-retrieval-key", func(ctx context.Context, c *mstudio.Client) error {
			_, err := c.RedeemRetrievalKey(ctx, key, user.ID)
			return err
		}
	}},
}

// TestRetryByFault runs every kind of call into one injected fault and counts what
// reached the simulator: idempotent calls are repeated after 429, 502, 503, 504 and a
// lost connection, never after 500 or another 4xx; the single-use ATReK exchange is never
// repeated once it may have reached the platform.
func TestRetryByFault(t *testing.T) {
	faults := []struct {
		name    string
		fault   mstudiotest.Fault
		retried bool // for an idempotent call
	}{
		{"429", mstudiotest.Fault{Status: http.StatusTooManyRequests}, true},
		{"429 with Retry-After", mstudiotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 3600}, true},
		{"502", mstudiotest.Fault{Status: http.StatusBadGateway}, true},
		{"503", mstudiotest.Fault{Status: http.StatusServiceUnavailable}, true},
		{"504", mstudiotest.Fault{Status: http.StatusGatewayTimeout}, true},
		{"connection dropped", mstudiotest.Fault{Drop: true}, true},
		{"500", mstudiotest.Fault{Status: http.StatusInternalServerError}, false},
		{"400", mstudiotest.Fault{Status: http.StatusBadRequest}, false},
		{"401", mstudiotest.Fault{Status: http.StatusUnauthorized}, false},
		{"403", mstudiotest.Fault{Status: http.StatusForbidden}, false},
		{"404", mstudiotest.Fault{Status: http.StatusNotFound}, false},
		{"409", mstudiotest.Fault{Status: http.StatusConflict}, false},
	}
	for _, sc := range simCalls {
		for _, ft := range faults {
			t.Run(sc.name+"/"+ft.name, func(t *testing.T) {
				env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
				path, run := sc.prepare(t, env)
				method, _, _ := strings.Cut(sc.route, " ")
				fault := ft.fault
				fault.Times = 1 // the second attempt, if any, goes through
				env.Sim.InjectFault(sc.route, fault)
				// The simulator's 429 carries X-RateLimit-Reset of up to a minute; the cap
				// keeps the test fast.
				c := newClient(t, env.SimURL, mstudio.Options{MaxRetryWait: 20 * time.Millisecond})
				err := run(t.Context(), c)

				wantCalls, wantOK := 1, false
				if ft.retried && sc.idempotent {
					wantCalls, wantOK = 2, true
				}
				if got := env.SimHits(method + " " + path); got != wantCalls {
					t.Errorf("simulator got %d requests, want %d", got, wantCalls)
				}
				switch {
				case wantOK && err != nil:
					t.Errorf("call after one fault: %v", err)
				case !wantOK && err == nil:
					t.Error("call into the fault: got nil error, want one")
				case !wantOK && fault.Status != 0 && apiStatus(err) != fault.Status:
					t.Errorf("error %v: status %d, want %d", err, apiStatus(err), fault.Status)
				case !wantOK && fault.Drop && apiStatus(err) != 0:
					t.Errorf("error %v is a platform error, want a transport error", err)
				}
			})
		}
	}
}

// TestRetryGivesUp: a fault that stays is tried 1+RetryMax times and its answer returned.
func TestRetryGivesUp(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
	path, run := simCalls[0].prepare(t, env)
	env.Sim.InjectFault(projectRoute, mstudiotest.Fault{Status: http.StatusServiceUnavailable})
	err := run(t.Context(), newClient(t, env.SimURL, mstudio.Options{}))
	if got := apiStatus(err); got != http.StatusServiceUnavailable {
		t.Errorf("error %v: status %d, want %d", err, got, http.StatusServiceUnavailable)
	}
	if got, want := env.SimHits(http.MethodGet+" "+path), 1+testRetryMax; got != want {
		t.Errorf("simulator got %d requests, want %d", got, want)
	}
}

// TestRetrievalKeyExchangeSentOnce: once the exchange may have reached the platform, it is
// not sent again, whatever happened to it, and the caller learns of the failure.
func TestRetrievalKeyExchangeSentOnce(t *testing.T) {
	tests := []struct {
		name    string
		fault   mstudiotest.Fault
		timeout time.Duration
	}{
		{"503", mstudiotest.Fault{Status: http.StatusServiceUnavailable}, 0},
		{"502", mstudiotest.Fault{Status: http.StatusBadGateway}, 0},
		{"504", mstudiotest.Fault{Status: http.StatusGatewayTimeout}, 0},
		{"429", mstudiotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 1}, 0},
		{"500", mstudiotest.Fault{Status: http.StatusInternalServerError}, 0},
		{"connection dropped", mstudiotest.Fault{Drop: true}, 0},
		{"connection dropped late", mstudiotest.Fault{Drop: true, Latency: 20 * time.Millisecond}, 0},
		{"answer slower than the deadline", mstudiotest.Fault{Latency: 10 * time.Second}, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
			user := env.user(t)
			key, err := env.Sim.NewRetrievalKey(env.Instance.ID, user.ID)
			if err != nil {
				t.Fatal(err)
			}
			env.Sim.InjectFault(redeemRoute, tc.fault)
			c := newClient(t, env.SimURL, mstudio.Options{RetryMax: 3, Timeout: tc.timeout})
			tok, err := c.RedeemRetrievalKey(t.Context(), key, user.ID)
			if err == nil {
				t.Fatalf("RedeemRetrievalKey = %+v, nil; want an error", tok)
			}
			if got := env.SimHits("POST /v2/authenticate-token-retrieval-key"); got != 1 {
				t.Errorf("simulator got %d exchanges, want exactly 1", got)
			}
			if tc.timeout > 0 && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error = %v, want a deadline error", err)
			}
		})
	}

	// A server that read the whole request before the connection broke: the platform may
	// well have spent the key.
	t.Run("reset after the request was read", func(t *testing.T) {
		var calls atomic.Int32
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			io.Copy(io.Discard, r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			conn.(*net.TCPConn).SetLinger(0) // a reset rather than an orderly close
			conn.Close()
		})
		c := newClient(t, srv.URL, mstudio.Options{RetryMax: 3})
		if _, err := c.RedeemRetrievalKey(t.Context(), testRetrievalKey, testUserID); err == nil {
			t.Fatal("got nil error, want one")
		}
		if got := calls.Load(); got != 1 {
			t.Errorf("server got %d exchanges, want exactly 1", got)
		}
	})
}

// closedAddr returns an address on loopback where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// countingDialer dials through to the real network and counts the dials; the first
// refuse of them go to an address where nothing listens.
type countingDialer struct {
	refuse int32
	closed string
	dials  atomic.Int32
}

func (d *countingDialer) client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.dials.Add(1) <= d.refuse {
			addr = d.closed
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
}

// TestRetryConnectionRefused: a refused connection never reached the platform, so every
// call is repeated after it, the single-use ATReK exchange too.
func TestRetryConnectionRefused(t *testing.T) {
	for _, sc := range simCalls {
		t.Run(sc.name+"/always refused", func(t *testing.T) {
			env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
			_, run := sc.prepare(t, env)
			d := &countingDialer{refuse: 1 << 30, closed: closedAddr(t)}
			c := newClient(t, env.SimURL, mstudio.Options{HTTPClient: d.client()})
			err := run(t.Context(), c)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("error = %v, want connection refused", err)
			}
			if got, want := d.dials.Load(), int32(1+testRetryMax); got != want {
				t.Errorf("dials = %d, want %d", got, want)
			}
		})
		t.Run(sc.name+"/refused once", func(t *testing.T) {
			env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
			path, run := sc.prepare(t, env)
			method, _, _ := strings.Cut(sc.route, " ")
			d := &countingDialer{refuse: 1, closed: closedAddr(t)}
			c := newClient(t, env.SimURL, mstudio.Options{HTTPClient: d.client()})
			if err := run(t.Context(), c); err != nil {
				t.Fatalf("call after one refused connection: %v", err)
			}
			if got := d.dials.Load(); got != 2 {
				t.Errorf("dials = %d, want 2", got)
			}
			if got := env.SimHits(method + " " + path); got != 1 {
				t.Errorf("simulator got %d requests, want 1", got)
			}
		})
	}

	t.Run("closed listener", func(t *testing.T) {
		c := newClient(t, "http://"+closedAddr(t), mstudio.Options{})
		_, err := c.RedeemRetrievalKey(t.Context(), testRetrievalKey, testUserID)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("error = %v, want connection refused", err)
		}
	})
}

// retryAfterServer answers the first request with status and headers, then 200 with a
// public key body, and records when each request arrived.
type retryAfterServer struct {
	status  int
	headers map[string]string
	mu      sync.Mutex
	arrived []time.Time
}

func (s *retryAfterServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.arrived = append(s.arrived, time.Now())
	n := len(s.arrived)
	s.mu.Unlock()
	if n == 1 {
		for k, v := range s.headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(s.status)
		io.WriteString(w, `{"type":"RateLimitError","message":"too many requests"}`)
		return
	}
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"publicToken":"tok","expiry":"2030-01-01T00:00:00Z"}`)
}

func (s *retryAfterServer) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.arrived...)
}

// TestRetryAfterHonouredAndCapped: a wait the platform asks for is kept, but never longer
// than MaxRetryWait: with a cap of 50 ms, Retry-After: 3600 must not hold the call up.
// The upper bound is a context deadline, not a timed assertion.
func TestRetryAfterHonouredAndCapped(t *testing.T) {
	const maxWait = 50 * time.Millisecond
	tests := []struct {
		name    string
		status  int
		headers map[string]string
		honour  bool // the attempts must be at least maxWait apart
	}{
		{"429 Retry-After seconds", http.StatusTooManyRequests, map[string]string{"Retry-After": "3600"}, true},
		{"503 Retry-After seconds", http.StatusServiceUnavailable, map[string]string{"Retry-After": "3600"}, true},
		{"429 Retry-After date", http.StatusTooManyRequests, map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, true},
		{"429 Retry-After max int64", http.StatusTooManyRequests, map[string]string{"Retry-After": strconv.FormatInt(1<<63-1, 10)}, true},
		{"429 X-RateLimit-Reset", http.StatusTooManyRequests, map[string]string{"X-RateLimit-Reset": "3600", "X-RateLimit-Remaining": "0"}, true},
		{"429 Retry-After wins over X-RateLimit-Reset", http.StatusTooManyRequests, map[string]string{"Retry-After": "3600", "X-RateLimit-Reset": "0"}, true},
		{"429 Retry-After garbage", http.StatusTooManyRequests, map[string]string{"Retry-After": "soon"}, false},
		{"429 Retry-After negative", http.StatusTooManyRequests, map[string]string{"Retry-After": "-5"}, false},
		{"429 Retry-After date past", http.StatusTooManyRequests, map[string]string{"Retry-After": "Mon, 02 Jan 2006 15:04:05 GMT"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &retryAfterServer{status: tc.status, headers: tc.headers}
			srv := newServer(t, s.ServeHTTP)
			c := newClient(t, srv.URL, mstudio.Options{MaxRetryWait: maxWait})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if _, err := c.InstanceToken(ctx, testInstanceID, testSecret); err != nil {
				t.Fatalf("InstanceToken: %v", err)
			}
			at := s.times()
			if len(at) != 2 {
				t.Fatalf("server got %d requests, want 2", len(at))
			}
			if gap := at[1].Sub(at[0]); tc.honour && gap < maxWait {
				t.Errorf("second attempt %v after the first, want at least %v", gap, maxWait)
			}
		})
	}

	t.Run("simulator 429 Retry-After: 3600", func(t *testing.T) {
		env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
		path, run := simCalls[0].prepare(t, env)
		env.Sim.InjectFault(projectRoute, mstudiotest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 3600, Times: 1})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if err := run(ctx, newClient(t, env.SimURL, mstudio.Options{MaxRetryWait: maxWait})); err != nil {
			t.Fatalf("Project: %v", err)
		}
		if got := env.SimHits(http.MethodGet + " " + path); got != 2 {
			t.Errorf("simulator got %d requests, want 2", got)
		}
	})

	// X-RateLimit-Reset tells when the window resets, which the platform sends on every
	// answer: on a 503 it is no reason to wait. Were it honoured here, the default cap of
	// 30 s would outlast the 2 s deadline and the call would fail.
	t.Run("X-RateLimit-Reset on a 503 ignored", func(t *testing.T) {
		s := &retryAfterServer{status: http.StatusServiceUnavailable, headers: map[string]string{"X-RateLimit-Reset": "3600"}}
		c := newClient(t, newServer(t, s.ServeHTTP).URL, mstudio.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		if _, err := c.InstanceToken(ctx, testInstanceID, testSecret); err != nil {
			t.Fatalf("InstanceToken: %v", err)
		}
	})
}

// TestRetryAfterBeyondDeadline: when the wait asked for outlasts the call's deadline, the
// client hands back the platform's answer at once instead of sleeping into a deadline
// error.
func TestRetryAfterBeyondDeadline(t *testing.T) {
	s := &retryAfterServer{status: http.StatusTooManyRequests, headers: map[string]string{"Retry-After": "3600"}}
	c := newClient(t, newServer(t, s.ServeHTTP).URL, mstudio.Options{Timeout: 5 * time.Second}) // MaxRetryWait 30 s
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := c.InstanceToken(ctx, testInstanceID, testSecret)
	if got := apiStatus(err); got != http.StatusTooManyRequests {
		t.Errorf("error %v: status %d, want %d", err, got, http.StatusTooManyRequests)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v is a deadline error, want the 429", err)
	}
	if got := len(s.times()); got != 1 {
		t.Errorf("server got %d requests, want 1", got)
	}
}

// TestDeadline: an answer slower than the deadline fails the call with a deadline error,
// whether the deadline is the client's Timeout or the caller's, and is not repeated.
func TestDeadline(t *testing.T) {
	tests := []struct {
		name          string
		timeout       time.Duration // Options.Timeout
		callerTimeout time.Duration
	}{
		{"client timeout", 100 * time.Millisecond, 0},
		{"caller deadline", 10 * time.Second, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		for _, sc := range simCalls {
			t.Run(tc.name+"/"+sc.name, func(t *testing.T) {
				env := newSimEnv(t, mstudiotest.Options{}, mstudiotest.CallRequest{})
				path, run := sc.prepare(t, env)
				method, _, _ := strings.Cut(sc.route, " ")
				env.Sim.InjectFault(sc.route, mstudiotest.Fault{Latency: 10 * time.Second})
				ctx := t.Context()
				if tc.callerTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.callerTimeout)
					defer cancel()
				}
				err := run(ctx, newClient(t, env.SimURL, mstudio.Options{Timeout: tc.timeout}))
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("error = %v, want a deadline error", err)
				}
				if got := env.SimHits(method + " " + path); got != 1 {
					t.Errorf("simulator got %d requests, want 1", got)
				}
			})
		}
	}
}
