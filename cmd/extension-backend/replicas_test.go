package main

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// TestTwoReplicas runs two backends as serve assembles them (startBackend: the store,
// migrations and start-up checks, the token broker, the job workers, every route), each
// with its own store and its own HTTP server, on one PostgreSQL database, with one
// platform simulator, and behind one public address as a load balancer puts them. The
// test talks HTTP to each replica by its own address, so it chooses which one serves
// what. It runs wherever the PostgreSQL tests run (EXT_TEST_POSTGRES_URL, set in CI).
func TestTwoReplicas(t *testing.T) {
	tr := newTwoReplicas(t)
	t.Run("deliveries", tr.testDeliveries)
	t.Run("tokens", tr.testTokens)
	t.Run("jobs", tr.testJobs)
	t.Run("sessions", tr.testSessions)
	t.Run("invitations", tr.testInvitations)
	// Last: it turns the simulator's clock back for a moment, which would shorten the
	// instance tokens minted meanwhile.
	t.Run("user token refresh", tr.testUserTokenRefresh)
}

// twoReplicas is the deployment under test.
type twoReplicas struct {
	sim      *apptest.Platform
	simClock *extensiontest.Clock // the simulator's: it runs with the wall clock
	// public is the load balancer's address: EXT_PUBLIC_URL of both replicas (so the
	// Origin of their forms), and where the simulator sends its webhooks.
	public string
	keys   *extension.Keyring // both replicas' EXT_ENCRYPTION_KEYS
	r      [2]*replica
}

// replica is one backend process.
type replica struct {
	name string
	url  string
	b    *backend
	logs *syncBuffer
}

// newTwoReplicas starts both replicas at once, on a fresh PostgreSQL schema (skipping
// without EXT_TEST_POSTGRES_URL, as every PostgreSQL test does); everything ends with t.
func newTwoReplicas(t *testing.T) *twoReplicas {
	t.Helper()
	databaseURL := extensiontest.PostgresURL(t)
	tr := &twoReplicas{simClock: extensiontest.WallClock()}
	tr.sim = apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID, SecretActivationDelay: -1,
		UserTokenTTL: userTokenTTL, Now: tr.simClock.Now})
	key := extensiontest.Key(t)
	var err error
	if tr.keys, err = extension.NewKeyring([][]byte{key}); err != nil {
		t.Fatal(err)
	}
	lb := httptest.NewUnstartedServer(nil)
	tr.public = "http://" + lb.Listener.Addr().String()
	vars := map[string]string{
		"EXT_DATABASE_URL":    databaseURL,
		"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(key),
		"EXT_EXTENSION_ID":    testExtensionID,
		"EXT_MSTUDIO_API_URL": tr.sim.SimURL,
		"EXT_PUBLIC_URL":      tr.public,
		"EXT_LOG_LEVEL":       "info",
	}
	// Both start at once, as the replicas of one deployment do: they migrate the fresh
	// schema (ours and River's) and mark it as the simulator's side by side.
	var stops [2]func()
	var errs [2]error
	var wg sync.WaitGroup
	for i, name := range []string{"A", "B"} {
		wg.Go(func() { tr.r[i], stops[i], errs[i] = startReplica(vars, name) })
	}
	wg.Wait()
	for i := range tr.r {
		if stops[i] != nil {
			t.Cleanup(stops[i])
		}
	}
	for i, err := range errs {
		if err != nil {
			lb.Close()
			t.Fatalf("replica %s: %v", []string{"A", "B"}[i], err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range tr.r {
				t.Logf("replica %s's log, last lines:\n%s", r.name, lastLines(r.logs.String(), 40))
			}
		}
	})
	lb.Config.Handler = roundRobin(tr.r[0].url, tr.r[1].url)
	lb.Start()
	t.Cleanup(lb.Close) // first: no delivery of the simulator reaches a stopped replica
	tr.sim.Sim.SetWebhookURL(tr.public + "/mstudio/webhooks")
	return tr
}

// userTokenTTL is the simulator's lifetime of user tokens.
const userTokenTTL = time.Hour

// startReplica runs one backend with the environment until stop.
func startReplica(vars map[string]string, name string) (_ *replica, stop func(), _ error) {
	cfg, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
	if err != nil {
		return nil, nil, err
	}
	logs := &syncBuffer{}
	logger := newLogger(logs, cfg.LogLevel).With("replica", name)
	ctx, cancel := context.WithCancel(context.Background())
	b, err := startBackend(ctx, cfg, logger, true, defaultWorkers)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		b.close(logger)
		return nil, nil, err
	}
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, ln, b.front, logger) }()
	stop = func() {
		cancel()
		<-served
		b.close(logger)
	}
	return &replica{name: name, url: "http://" + ln.Addr().String(), b: b, logs: logs}, stop, nil
}

// roundRobin is one address in front of the replicas: each request goes to the next.
func roundRobin(targets ...string) http.Handler {
	var urls []*url.URL
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			panic(err)
		}
		urls = append(urls, u)
	}
	var n atomic.Uint64
	return &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(urls[(n.Add(1)-1)%uint64(len(urls))])
	}}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// other is the replica that is not r.
func (tr *twoReplicas) other(r *replica) *replica {
	if r == tr.r[0] {
		return tr.r[1]
	}
	return tr.r[0]
}

// install has the simulator install an instance through the public address, and
// returns it as the simulator keeps it.
func (tr *twoReplicas) install(t *testing.T, req mstudiotest.CallRequest) mstudiotest.Instance {
	t.Helper()
	res, err := tr.sim.Sim.Trigger(t.Context(), mstudiotest.CallExtensionAddedToContext, req)
	if err != nil || !res.Successful {
		t.Fatalf("install: %+v, %v", res, err)
	}
	in, ok := tr.sim.Sim.Instance(res.InstanceID)
	if !ok {
		t.Fatalf("the simulator does not know instance %s", res.InstanceID)
	}
	return in
}

// user returns the simulator's test user of that name.
func (tr *twoReplicas) user(t *testing.T, name string) mstudiotest.User {
	t.Helper()
	for _, u := range tr.sim.Sim.Users() {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("the simulator has no user %q", name)
	return mstudiotest.User{}
}

// signIn clicks through from the control panel to replica r as the user, in browser b.
func (tr *twoReplicas) signIn(t *testing.T, b *http.Client, r *replica, instanceID string, u mstudiotest.User) {
	t.Helper()
	key, err := tr.sim.Sim.NewRetrievalKey(instanceID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"atrek": {key}, "userId": {u.ID}, "instanceId": {instanceID}}
	if resp, body := fetch(t, b, http.MethodGet, r.url+"/mstudio/sso?"+q.Encode(), nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("click-through to replica %s: %d\n%s", r.name, resp.StatusCode, body)
	}
}

// postForm posts a form to u from browser b, as a page of the public address does.
// It reports errors rather than failing, so goroutines may call it.
func (tr *twoReplicas) postForm(b *http.Client, u string, form url.Values) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", tr.public)
	req.Header.Set("Accept-Language", "en")
	resp, err := b.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// waitFor polls cond every 20 ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
