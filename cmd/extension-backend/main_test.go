package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// syncBuffer collects log output written concurrently.
type syncBuffer = extensiontest.LogBuffer

// newPlatform is the platform simulator over HTTP (apptest.Platform), for our extension:
// the key server and token endpoint every other test uses, with its fault API.
func newPlatform(t *testing.T) *apptest.Platform {
	t.Helper()
	return apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID, SecretActivationDelay: -1})
}

// install has the platform install the instance at the backend at base, through the
// webhook, and returns it with its secret.
func install(t *testing.T, base string, p *apptest.Platform, id string) mstudiotest.Instance {
	t.Helper()
	p.Sim.SetWebhookURL(base + "/mstudio/webhooks")
	res, err := p.Sim.Trigger(context.Background(), mstudiotest.CallExtensionAddedToContext, mstudiotest.CallRequest{ExtensionInstanceID: id})
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("install: %+v, %v", res, err)
	}
	in, _ := p.Sim.Instance(id)
	return in
}

// minted counts the instance tokens the platform handed out.
func minted(p *apptest.Platform) int {
	n := 0
	for _, c := range p.SimRequests("POST /v2/extension-instances/{id}/tokens") {
		if c.Status == http.StatusCreated {
			n++
		}
	}
	return n
}

// accepted reports whether the platform takes tok for a call on the instance.
func accepted(t *testing.T, p *apptest.Platform, instanceID, tok string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.SimURL+"/v2/extension-instances/"+instanceID, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Access-Token", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

const (
	testExtensionID = "3f1e6c2a-8b4d-4e59-9a7c-2d5b8e1f4a60"
	testInstanceID  = "b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
	// unknownAtPlatform is an instance our store knows but the platform does not.
	unknownAtPlatform = "c0ffee00-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
)

func addedBody(instanceID, secret string, created time.Time) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"v1","id":%q,"kind":"ExtensionAddedToContext","request":{"id":%q,"createdAt":%q,"target":{"method":"POST","url":"http://x/mstudio/webhooks"}},"context":{"id":"5e8f1a2b-3c4d-4e5f-a6b7-c8d9e0f1a2b3","kind":"project"},"consentedScopes":["project:read"],"state":{"enabled":true},"meta":{"extensionId":%q,"contributorId":"7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17"},"secret":%q}`,
		instanceID, rand.Text(), created.UTC().Format(time.RFC3339Nano), testExtensionID, secret))
}

// env returns a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func testEnv(t *testing.T, apiURL string) map[string]string {
	return map[string]string{
		"EXT_DATABASE_URL":    extensiontest.SQLiteURL(t),
		"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(extensiontest.Key(t)),
		"EXT_EXTENSION_ID":    testExtensionID,
		"EXT_MSTUDIO_API_URL": apiURL,
		"EXT_LOG_LEVEL":       "debug",
	}
}

// startServe runs `serve` on a free port, with flags if given, and returns its base URL,
// its log, and a stop function that cancels it and returns run's error.
func startServe(t *testing.T, vars map[string]string, flags ...string) (string, *syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)
	go func() { done <- run(ctx, args, env(vars), stdout, stderr) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(stdout.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				return "http://" + line.Addr, stdout, stop
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s%s", err, stdout, stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not start listening:\n%s%s", stdout, stderr)
	return "", nil, nil
}

// deliver signs body with the platform's webhook key and delivers it.
func deliver(t *testing.T, base string, p *apptest.Platform, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/mstudio/webhooks", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	k := p.Sim.WebhookKey()
	mstudio.Sign(req.Header, k.Serial, k.Private, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// runCmd runs one tool subcommand against the same environment.
func runCmd(vars map[string]string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, env(vars), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func TestEndToEnd(t *testing.T) {
	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	base, logs, stop := startServe(t, vars)

	if got := get(t, base+"/healthz"); got != http.StatusOK {
		t.Errorf("healthz: got %d, want 200", got)
	}
	if got := get(t, base+"/readyz"); got != http.StatusOK {
		t.Errorf("readyz: got %d, want 200", got)
	}
	secret := install(t, base, p, testInstanceID).Secret

	out, _, err := runCmd(vars, "instances", "--json")
	if err != nil {
		t.Fatalf("instances: %v", err)
	}
	var list []instanceJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("instances --json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].ID != testInstanceID || list[0].ContextKind != "project" || !list[0].Enabled {
		t.Errorf("instances --json: got %+v, want the installed project instance", list)
	}
	if strings.Contains(out, secret) {
		t.Error("instances --json prints the secret")
	}

	out, errOut, err := runCmd(vars, "token", "--instance", testInstanceID)
	if err != nil {
		t.Fatalf("token: %v\n%s", err, errOut)
	}
	token := strings.TrimSpace(out)
	if !accepted(t, p, testInstanceID, token) {
		t.Errorf("token: got %q, want a token the platform accepts", token)
	}
	if got := minted(p); got != 1 {
		t.Errorf("tokens minted with the right secret: got %d, want 1", got)
	}

	_, _, err = runCmd(vars, "token", "--instance", "6f0c1c7e-0000-4000-8000-000000000000")
	if err == nil || !strings.Contains(err.Error(), "not known here") {
		t.Errorf("token for an unknown instance: got %v, want a 'not known here' error", err)
	}
	if got := deliver(t, base, p, addedBody(unknownAtPlatform, secret, time.Now())); got != http.StatusNoContent {
		t.Fatalf("second delivery: got %d", got)
	}
	_, _, err = runCmd(vars, "token", "--instance", unknownAtPlatform)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("token refused by the platform: got %v, want an error naming the 404", err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Error("token error text contains the secret")
	}

	if err := stop(); err != nil {
		t.Errorf("serve after SIGTERM: got %v, want nil", err)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the server log contains the instance secret")
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the server log contains a token")
	}
	var sawRequest bool
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			t.Errorf("log line is not JSON: %s", sc.Text())
			continue
		}
		if line["msg"] == "request" && line["path"] == "/mstudio/webhooks" {
			sawRequest = true
			for _, k := range []string{"instance_id", "event_kind", "request_id", "outcome", "status", "latency"} {
				if _, ok := line[k]; !ok {
					t.Errorf("webhook request log line lacks %q: %s", k, sc.Text())
				}
			}
		}
	}
	if !sawRequest {
		t.Error("no request log line for the delivery")
	}
}

// A delivery in flight when SIGTERM arrives still commits and is acknowledged.
func TestShutdownFinishesDeliveries(t *testing.T) {
	p := newPlatform(t)
	// Slow key fetches (the current key's at start, too) hold the delivery inside the handler.
	if err := p.Sim.InjectFault("GET /v2/public-keys/{serial}", mstudiotest.Fault{Latency: 700 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	vars := testEnv(t, p.SimURL)
	base, _, stop := startServe(t, vars)

	status := make(chan int, 1)
	go func() { status <- deliver(t, base, p, addedBody(testInstanceID, "s-"+rand.Text(), time.Now())) }()
	time.Sleep(200 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	if got := <-status; got != http.StatusNoContent {
		t.Fatalf("delivery in flight at shutdown: got %d, want 204", got)
	}
	out, _, err := runCmd(vars, "instances", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, testInstanceID) {
		t.Errorf("instance from the in-flight delivery is missing:\n%s", out)
	}
}

func TestRekeyCommand(t *testing.T) {
	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	base, _, stop := startServe(t, vars)
	install(t, base, p, testInstanceID)
	stop()

	oldKey := vars["EXT_ENCRYPTION_KEYS"]
	newKey := base64.StdEncoding.EncodeToString(extensiontest.Key(t))
	vars["EXT_ENCRYPTION_KEYS"] = newKey + "," + oldKey
	out, _, err := runCmd(vars, "rekey")
	if err != nil || !strings.HasPrefix(out, "resealed 1 secrets") {
		t.Fatalf("rekey: got %q, %v; want 1 resealed", out, err)
	}
	vars["EXT_ENCRYPTION_KEYS"] = newKey // the old key is gone: the secret must still open
	out, errOut, err := runCmd(vars, "token", "--instance", testInstanceID)
	if err != nil || !accepted(t, p, testInstanceID, strings.TrimSpace(out)) {
		t.Errorf("token after rekey with only the new key: got %q, %v\n%s", out, err, errOut)
	}
}

func TestMigrateCommands(t *testing.T) {
	vars := map[string]string{"EXT_DATABASE_URL": extensiontest.SQLiteURL(t)}
	if _, _, err := runCmd(vars, "instances"); err == nil || !strings.Contains(err.Error(), "migrate up") {
		t.Errorf("instances on an empty database: got %v, want advice to run migrate up", err)
	}
	out, _, err := runCmd(vars, "migrate", "status")
	if err != nil || !strings.Contains(out, "pending") {
		t.Errorf("migrate status before up: got %q, %v", out, err)
	}
	if out, _, err = runCmd(vars, "migrate", "up"); err != nil || !strings.Contains(out, "applied") {
		t.Errorf("migrate up: got %q, %v", out, err)
	}
	if out, _, err = runCmd(vars, "migrate", "up"); err != nil || !strings.Contains(out, "up to date") {
		t.Errorf("second migrate up: got %q, %v", out, err)
	}
	if out, _, err = runCmd(vars, "migrate", "status"); err != nil || strings.Contains(out, "pending") {
		t.Errorf("migrate status after up: got %q, %v", out, err)
	}
	var ue usageError
	if _, _, err := runCmd(vars, "migrate", "sideways"); !errors.As(err, &ue) {
		t.Errorf("migrate sideways: got %v, want a usage error", err)
	}
}
