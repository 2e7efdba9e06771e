package mstudio_test

// The broker against real stores (SQLite, and PostgreSQL when EXT_TEST_POSTGRES_URL is
// set) and the simulator over HTTP; instances arrive through the real webhook handler.

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/prometheus/client_golang/prometheus"
)

// brokerOptions shapes a broker test environment.
type brokerOptions struct {
	Dialect    extension.Dialect
	Replicas   int           // brokers, each on a store of its own over one database; default 1
	Activation time.Duration // the simulator's secret activation delay; 0: at once
	TokenTTL   time.Duration // the simulator's instance token lifetime; 0: 1 h
	Grace      time.Duration
	Standing   bool // the app's clock stands still until the test moves it; false: the wall clock
}

// brokerEnv is the shared app (apptest) and one or more backend replicas on its database.
// Webhooks reach the app's front, whose handler makes replica 0's broker forget tokens
// as cmd wires it.
type brokerEnv struct {
	*apptest.App
	Stores  []*extension.Store
	Brokers []*mstudio.Broker
}

func newBrokerEnv(t testing.TB, opts brokerOptions) *brokerEnv {
	t.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Activation == 0 {
		opts.Activation = -1
	}
	clock := extensiontest.WallClock()
	if opts.Standing {
		clock = nil // apptest's
	}
	env := &brokerEnv{App: apptest.New(t, apptest.Options{Dialect: opts.Dialect, Clock: clock, Sim: func(o *mstudiotest.Options) {
		o.SecretActivationDelay, o.InstanceTokenTTL = opts.Activation, opts.TokenTTL
		o.RetryBase, o.RetryCap = 5*time.Millisecond, 50*time.Millisecond
	}})}
	for i := range opts.Replicas {
		store := env.Store
		if i > 0 {
			store = env.Replica(t)
		}
		env.Stores = append(env.Stores, store)
		env.Brokers = append(env.Brokers, mstudio.NewBroker(store, env.Client, mstudio.BrokerOptions{
			Owner: "replica-" + string(rune('a'+i)), Grace: opts.Grace, Now: env.Clock.Now,
		}))
	}
	h := webhooks.New(webhooks.Config{
		Store:         env.Store,
		Keys:          mstudio.NewKeyCache(env.Client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID:   env.Sim.ExtensionID(),
		ContributorID: env.Sim.ContributorID(),
		Registerer:    prometheus.NewRegistry(),
		Applied:       env.Brokers[0].Applied,
	})
	env.Front.POST("/mstudio/webhooks", h.Receive)
	env.Sim.SetWebhookURL(env.URL(t) + "/mstudio/webhooks")
	return env
}

// trigger sends a lifecycle call through the simulator and wants it applied. The clock
// moves on a second first, so two events never share a time.
func (env *brokerEnv) trigger(t testing.TB, call string, req mstudiotest.CallRequest) string {
	t.Helper()
	env.Clock.Advance(time.Second)
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

// mints returns the calls of the simulator's token endpoint so far.
func (env *brokerEnv) mints() []brokerMint {
	var out []brokerMint
	for _, c := range env.SimRequests(brokerTokenRoute) {
		var in struct {
			Secret string `json:"extensionInstanceSecret"`
		}
		_ = json.Unmarshal(c.Body, &in)
		out = append(out, brokerMint{in.Secret, c.Status})
	}
	return out
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
