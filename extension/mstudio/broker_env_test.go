package mstudio_test

// The broker against real stores (SQLite, and PostgreSQL when EXT_TEST_POSTGRES_URL is
// set) and the simulator over HTTP; instances arrive through the real webhook handler.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// brokerOptions shapes a broker test environment.
type brokerOptions struct {
	Dialect    extension.Dialect
	Replicas   int           // brokers, each on a store of its own over one database; default 1
	Activation time.Duration // the simulator's secret activation delay; 0: at once
	TokenTTL   time.Duration // the simulator's instance token lifetime; 0: 1 h
	Grace      time.Duration
	Clock      *brokerClock // the clock of the simulator, stores and brokers; nil: the wall clock
}

// brokerEnv is the simulator and one or more backend replicas on one database. Webhooks
// reach replica 0, whose broker forgets tokens as cmd wires it.
type brokerEnv struct {
	Sim     *mstudiotest.Server
	SimURL  string
	Mints   *brokerMints
	Client  *mstudio.Client
	Stores  []*extension.Store
	Brokers []*mstudio.Broker
	clock   *brokerClock
}

func newBrokerEnv(t testing.TB, opts brokerOptions) *brokerEnv {
	t.Helper()
	if opts.Dialect == "" {
		opts.Dialect = extension.SQLite
	}
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	activation := opts.Activation
	if activation == 0 {
		activation = -1
	}
	env := &brokerEnv{Mints: &brokerMints{}, clock: opts.Clock}
	var now func() time.Time
	if opts.Clock != nil {
		now = opts.Clock.Now
	}
	sim, err := mstudiotest.New(mstudiotest.Options{
		SecretActivationDelay: activation, InstanceTokenTTL: opts.TokenTTL, Now: now,
		RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.Sim = sim
	simSrv := httptest.NewServer(env.Mints.wrap(sim))
	t.Cleanup(simSrv.Close)
	env.SimURL = simSrv.URL
	if env.Client, err = mstudio.New(simSrv.URL, mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}

	url := extensiontest.URL(t, opts.Dialect)
	keys := extensiontest.Keyring(t)
	for i := range opts.Replicas {
		store := extensiontest.Open(t, url, extension.Options{Keys: keys, Now: now})
		env.Stores = append(env.Stores, store)
		env.Brokers = append(env.Brokers, mstudio.NewBroker(store, env.Client, mstudio.BrokerOptions{
			Owner: "replica-" + string(rune('a'+i)), Grace: opts.Grace, Now: now,
		}))
	}

	e := echo.New()
	webhooks.New(webhooks.Config{
		Store:         env.Stores[0],
		Keys:          mstudio.NewKeyCache(env.Client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID:   sim.ExtensionID(),
		ContributorID: sim.ContributorID(),
		Registerer:    prometheus.NewRegistry(),
		Applied:       env.Brokers[0].Applied,
	}).Routes(e)
	backend := httptest.NewServer(e)
	t.Cleanup(backend.Close)
	t.Cleanup(sim.Close) // first: no delivery outlives the backend
	sim.SetWebhookURL(backend.URL + "/mstudio/webhooks")
	return env
}

// trigger sends a lifecycle call through the simulator and wants it applied. A fake clock
// moves on a second first, so two events never share a time.
func (env *brokerEnv) trigger(t testing.TB, call string, req mstudiotest.CallRequest) string {
	t.Helper()
	if env.clock != nil {
		env.clock.Advance(time.Second)
	}
	res, err := env.Sim.Trigger(context.Background(), call, req)
	if err != nil {
		t.Fatalf("%s: %v", call, err)
	}
	if !res.Successful {
		t.Fatalf("%s: the backend answered %d %q", call, res.StatusCode, res.Body)
	}
	return res.InstanceID
}

// install adds an instance through the webhook path and returns its id.
func (env *brokerEnv) install(t testing.TB) string {
	t.Helper()
	return env.trigger(t, mstudiotest.CallExtensionAddedToContext, mstudiotest.CallRequest{})
}

func (env *brokerEnv) setDisabled(t testing.TB, id string, disabled bool) {
	t.Helper()
	env.trigger(t, mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: id, ExtensionInstanceDisabled: &disabled})
}

// accepted reports whether the simulator takes tok for the instance, on an API call.
func (env *brokerEnv) accepted(t testing.TB, id string, tok mstudio.InstanceToken) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, env.SimURL+"/v2/extension-instances/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Access-Token", tok.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET the instance with its token: %v", err)
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// brokerMint is one call of the simulator's token endpoint.
type brokerMint struct {
	Secret string
	Status int
}

// brokerMints records the calls of the simulator's token endpoint.
type brokerMints struct {
	mu    sync.Mutex
	calls []brokerMint
}

func (m *brokerMints) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/v2/extension-instances/") || !strings.HasSuffix(r.URL.Path, "/tokens") {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var in struct {
			Secret string `json:"extensionInstanceSecret"`
		}
		_ = json.Unmarshal(body, &in)
		sw := &brokerStatusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		m.mu.Lock()
		m.calls = append(m.calls, brokerMint{in.Secret, sw.status})
		m.mu.Unlock()
	})
}

// all returns the calls so far.
func (m *brokerMints) all() []brokerMint {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]brokerMint(nil), m.calls...)
}

// count returns how many calls were made.
func (m *brokerMints) count() int { return len(m.all()) }

type brokerStatusWriter struct {
	http.ResponseWriter
	status int
}

func (w *brokerStatusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// brokerClock is a settable clock, safe for concurrent use.
type brokerClock struct {
	mu sync.Mutex
	t  time.Time
}

func newBrokerClock() *brokerClock {
	// Whole microseconds: PostgreSQL keeps no more.
	return &brokerClock{t: time.Now().UTC().Truncate(time.Microsecond)}
}

func (c *brokerClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *brokerClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// brokerForEachDialect runs fn as a subtest per dialect.
func brokerForEachDialect(t *testing.T, fn func(t *testing.T, d extension.Dialect)) {
	t.Helper()
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, d) })
	}
}

// brokerToken calls Token and fails the test on an error.
func brokerToken(t testing.TB, b *mstudio.Broker, id string) mstudio.InstanceToken {
	t.Helper()
	tok, err := b.Token(context.Background(), id)
	if err != nil {
		t.Fatalf("Token(%s): %v", id, err)
	}
	return tok
}
