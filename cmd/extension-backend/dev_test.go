package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// startDev runs `dev` on free ports with its data in dir, and returns its output once the
// demo instance is installed, and a stop function.
func startDev(t *testing.T, dir string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--data", dir, "--secret-delay", "300ms"},
			env(map[string]string{}), stdout, stderr)
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(stdout.String(), "next: ") {
			return stdout.String(), stop
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("dev exited early: %v\n%s\n%s", err, stdout, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("dev did not get ready:\n%s\n%s", stdout, stderr)
	return "", nil
}

var (
	demoInstanceRE = regexp.MustCompile(`demo instance ([0-9a-f-]{36})`)
	simURLRE       = regexp.MustCompile(`(?m)^EXT_MSTUDIO_API_URL=(\S+)$`)
	backendURLRE   = regexp.MustCompile(`backend on (http://\S+),`)
)

func TestDevEndToEnd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	out, stop := startDev(t, dir)
	m := demoInstanceRE.FindStringSubmatch(out)
	sim := simURLRE.FindStringSubmatch(out)
	backend := backendURLRE.FindStringSubmatch(out)
	if m == nil || sim == nil || backend == nil {
		t.Fatalf("dev output lacks the demo instance, the EXT_MSTUDIO_API_URL line or the backend URL:\n%s", out)
	}
	instanceID := m[1]
	if !strings.Contains(out, "installed through the webhook: 204") {
		t.Errorf("the demo instance was not installed through the webhook:\n%s", out)
	}
	vars := map[string]string{
		"EXT_DATABASE_URL":         "sqlite:" + filepath.Join(dir, "extension.db"),
		"EXT_ENCRYPTION_KEYS_FILE": filepath.Join(dir, "encryption.key"),
		"EXT_MSTUDIO_API_URL":      sim[1],
	}
	if got := get(t, backend[1]+"/readyz"); got != 200 {
		t.Errorf("readyz: got %d, want 200", got)
	}
	listed, _, err := runCmd(vars, "instances", "--json")
	if err != nil {
		t.Fatalf("instances: %v", err)
	}
	var list []instanceJSON
	if err := json.Unmarshal([]byte(listed), &list); err != nil || len(list) != 1 || list[0].ID != instanceID {
		t.Fatalf("instances --json: got %s (%v), want the demo instance %s", listed, err, instanceID)
	}
	// dev captures every delivery: the demo install's shows with its capture id.
	waitFor(t, "the demo install's capture", 10*time.Second, func() bool {
		out, _, err := runCmd(vars, "deliveries", "--instance", instanceID, "--json")
		var list []deliveryJSON
		return err == nil && json.Unmarshal([]byte(out), &list) == nil && len(list) > 0 && list[len(list)-1].CaptureID != ""
	})
	token, errOut, err := runCmd(vars, "token", "--instance", instanceID)
	if err != nil || len(strings.TrimSpace(token)) < 20 {
		t.Fatalf("token for the demo instance: got %q, %v\n%s", token, err, errOut)
	}

	// The post-install job fetches the name of the demo instance's project.
	var name string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && name == ""; time.Sleep(100 * time.Millisecond) {
		listed, _, err = runCmd(vars, "instances", "--json")
		if err == nil && json.Unmarshal([]byte(listed), &list) == nil && len(list) == 1 {
			name = list[0].ContextName
		}
	}
	if !strings.HasPrefix(name, "Project ") {
		t.Errorf("context name of the demo instance: got %q, want the simulator's project name", name)
	}
	jobsOut, _, err := runCmd(vars, "jobs", "--json", "--all")
	if err != nil || !strings.Contains(jobsOut, `"kind": "post_install"`) || !strings.Contains(jobsOut, instanceID) {
		t.Errorf("jobs --json: got %v and\n%s\nwant the demo instance's post-install job", err, jobsOut)
	}

	// The printed click-through link signs Ada in, as a click in the control panel would.
	link := regexp.MustCompile(`(http://\S+/internal/open/\S+)`).FindString(out)
	if link == "" {
		t.Fatalf("dev printed no click-through link:\n%s", out)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Jar: jar}).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, "/app/") || !strings.Contains(string(page), "Ada") {
		t.Errorf("click-through: got %d at %s\n%s\nwant Ada signed in on the instance's app page", resp.StatusCode, resp.Request.URL, page)
	}

	// Opening the extension directly signs in through OAuth2 with PKCE at the simulator.
	jar2, _ := cookiejar.New(nil)
	resp, err = (&http.Client{Jar: jar2}).Get(backend[1] + "/login/mstudio")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Request.URL.Path, "/app/") {
		t.Errorf("OAuth2 login: got %d at %s\n%s\nwant signed in on the instance's app page", resp.StatusCode, resp.Request.URL, page)
	}

	// The printed team link: without a session the sign-in page, whose control-panel
	// button signs in; then the team page opens.
	team := regexp.MustCompile(`(http://\S+/app/[0-9a-f-]{36}/team)`).FindString(out)
	jar3, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar3}
	resp, err = browser.Get(team)
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if team == "" || resp.Request.URL.Path != "/app/"+instanceID+"/login" || !strings.Contains(string(page), `href="/login/mstudio"`) {
		t.Fatalf("team link %q: got %d at %s\n%s\nwant the sign-in page with the control-panel sign-in", team, resp.StatusCode, resp.Request.URL, page)
	}
	for _, u := range []string{backend[1] + "/login/mstudio", team} {
		if resp, err = browser.Get(u); err != nil {
			t.Fatal(err)
		}
		page, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != team || !strings.Contains(string(page), "Ada Admin") {
		t.Errorf("team page after the sign-in: %d at %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	if !strings.Contains(out, "e-mail is off") {
		t.Errorf("dev does not say whether e-mail is on:\n%s", out)
	}

	// A frontend fragment's session token, minted by the simulator as the control panel
	// would, is accepted by the backend's fragment route.
	simClient := &http.Client{}
	var users []struct {
		ID     string
		Token  string
		Access bool
	}
	if resp, err := simClient.Get(sim[1] + "/internal/users"); err == nil {
		json.NewDecoder(resp.Body).Decode(&users)
		resp.Body.Close()
	}
	if len(users) == 0 {
		t.Fatal("no simulator users")
	}
	req, _ := http.NewRequest(http.MethodPost, sim[1]+"/v2/extension-instances/"+instanceID+"/sessions/"+"b6f1b8a2-0000-4000-8000-000000000001", nil)
	req.Header.Set("X-Access-Token", users[0].Token)
	var minted struct{ SessionToken string }
	if resp, err := simClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("mint a session token: %v %v", resp, err)
	} else {
		json.NewDecoder(resp.Body).Decode(&minted)
		resp.Body.Close()
	}
	req, _ = http.NewRequest(http.MethodGet, backend[1]+"/mstudio/fragment/session", nil)
	req.Header.Set("x-session-token", minted.SessionToken)
	if resp, err := simClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("fragment session route: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}

	// Send and sign with the dev setup's simulator key, to the dev backend.
	keyFile := filepath.Join(dir, "simulator-keys.json")
	sent, _, err := runCmd(map[string]string{}, "webhook", "send", "--kind", "updated", "--instance", instanceID,
		"--to", backend[1]+"/mstudio/webhooks", "--key-file", keyFile)
	if err != nil || !strings.Contains(sent, "204") || !strings.Contains(sent, "InstanceUpdated for instance "+instanceID) {
		t.Errorf("webhook send: got %q, %v; want the kind, the instance and a 204", sent, err)
	}
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{"hello":"world"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	signed, _, err := runCmd(map[string]string{}, "webhook", "sign", "--file", body, "--key-file", keyFile)
	if err != nil || !strings.Contains(signed, "X-Marketplace-Signature: ") || !strings.Contains(signed, "X-Marketplace-Signature-Algorithm: Ed25519") {
		t.Errorf("webhook sign: got %q, %v", signed, err)
	}
	sent, _, err = runCmd(map[string]string{}, "webhook", "send", "--file", body, "--to", backend[1]+"/mstudio/webhooks", "--key-file", keyFile)
	if err == nil || !strings.Contains(sent, "400") {
		t.Errorf("webhook send of a body that is no payload: got %q, %v; want a 400 and an error", sent, err)
	}

	// A short load run against the dev backend ends with a summary of 2xx answers.
	var benchOut, benchErr bytes.Buffer
	err = run(context.Background(), []string{"bench", "webhooks", "--to", backend[1] + "/mstudio/webhooks", "--duration", "1s",
		"--concurrency", "4", "--instances", "20", "--key-file", keyFile}, env(map[string]string{}), &benchOut, &benchErr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, benchErr.String())
	}
	for _, want := range []string{"throughput", "p99", "204:"} {
		if !strings.Contains(benchOut.String(), want) {
			t.Errorf("bench summary lacks %q:\n%s", want, benchOut.String())
		}
	}
	if strings.Contains(benchOut.String(), "401") || strings.Contains(benchOut.String(), "403") {
		t.Errorf("bench deliveries were refused:\n%s", benchOut.String())
	}

	if err := stop(); err != nil {
		t.Fatalf("dev after Ctrl-C: got %v, want nil", err)
	}

	// A second run reuses the data: the same demo instance, no new install.
	out, _ = startDev(t, dir)
	if m2 := demoInstanceRE.FindStringSubmatch(out); m2 == nil || m2[1] != instanceID || !strings.Contains(out, "from an earlier run") {
		t.Errorf("second dev run: got %q, want the demo instance %s from the earlier run", out, instanceID)
	}
}

func TestSimCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	go func() {
		done <- run(ctx, []string{"sim", "--addr", "127.0.0.1:0", "--key-file", keyFile},
			env(map[string]string{"EXT_EXTENSION_ID": testExtensionID}), stdout, stderr)
	}()
	var simURL string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && simURL == ""; time.Sleep(10 * time.Millisecond) {
		if m := simURLRE.FindStringSubmatch(stdout.String()); m != nil {
			simURL = m[1]
		}
	}
	if simURL == "" {
		cancel()
		t.Fatalf("sim printed no EXT_MSTUDIO_API_URL line:\n%s\n%s", stdout, stderr)
	}
	for _, want := range []string{"EXT_EXTENSION_ID=" + testExtensionID, "Ada Admin", "Otto Outsider", "token "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("sim output lacks %q:\n%s", want, stdout)
		}
	}
	if got := get(t, simURL+"/v2/public-keys/latest?purpose=webhook"); got != 200 {
		t.Errorf("simulator key endpoint: got %d, want 200", got)
	}
	if _, err := os.Stat(keyFile); err != nil {
		t.Errorf("sim --key-file did not save its keys: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("sim after Ctrl-C: got %v, want nil", err)
	}
}

func TestHelpIsNoError(t *testing.T) {
	for _, args := range [][]string{{"serve", "-h"}, {"dev", "-h"}, {"sim", "-h"}, {"webhook", "send", "-h"}, {"bench", "webhooks", "-h"},
		{"webhook", "--help"}, {"webhook", "-h"}, {"bench", "--help"}, {"bench", "help"}} {
		_, _, err := runCmd(map[string]string{}, args...)
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("%v: got %v, want flag.ErrHelp (main exits 0 on it)", args, err)
		}
	}
}

// TestToolUsageErrors: the tools' command-line mistakes are usage errors (exit 2) that
// name the flag, before anything is sent; bench has no default target, so it never loads
// a backend nobody named.
func TestToolUsageErrors(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "keys.json")
	sim, err := mstudiotest.New(mstudiotest.Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	sim.Close()
	vars := map[string]string{"EXT_EXTENSION_ID": testExtensionID}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "webhooks"}, "--to"},
		{[]string{"bench", "webhooks", "--key-file", keyFile, "--duration", "1s"}, "--to"},
		{[]string{"bench", "webhooks", "--to", "http://127.0.0.1:1/", "--key-file", keyFile, "--concurrency", "0"}, "--concurrency"},
		{[]string{"webhook", "send", "--kind", "exploded", "--key-file", keyFile}, "--kind"},
		{[]string{"webhook", "sign", "--key-file", keyFile}, "--file"},
	}
	for _, tt := range tests {
		out, _, err := runCmd(vars, tt.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) || out != "" {
			t.Errorf("%v: got %v (output %q), want a usage error naming %s", tt.args, err, out, tt.want)
		}
	}
	// Without any extension id a payload cannot be built: a usage error too.
	if _, _, err := runCmd(map[string]string{}, "webhook", "send", "--kind", "added", "--key-file", keyFile); !errors.As(err, new(usageError)) ||
		!strings.Contains(err.Error(), "--extension-id") {
		t.Errorf("send without an extension id: got %v, want a usage error naming --extension-id", err)
	}
}
