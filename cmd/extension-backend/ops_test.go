package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/frontend"
	"github.com/labstack/echo/v4"
)

// TestOpsConsoleConfig: the console is off unless EXT_OPS_ADDR is set, and a bad address
// fails the start naming the variable.
func TestOpsConsoleConfig(t *testing.T) {
	vars := map[string]string{"EXT_ENCRYPTION_KEYS": "", "EXT_EXTENSION_ID": testExtensionID}
	cfg, err := loadConfig(env(vars), needs{})
	if err != nil || cfg.OpsAddr != "" {
		t.Fatalf("default OpsAddr = %q, %v; want off", cfg.OpsAddr, err)
	}
	for _, ok := range []string{"127.0.0.1:9090", ":9090", "[::1]:0", "localhost:9100"} {
		vars["EXT_OPS_ADDR"] = ok
		if cfg, err := loadConfig(env(vars), needs{}); err != nil || cfg.OpsAddr != ok {
			t.Errorf("EXT_OPS_ADDR=%q: %v, %v; want it taken", ok, cfg, err)
		}
	}
	for _, bad := range []string{"9090", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:-1", ":8080"} {
		vars["EXT_OPS_ADDR"] = bad
		if _, err := loadConfig(env(vars), needs{}); err == nil || !strings.HasPrefix(err.Error(), "EXT_OPS_ADDR: ") {
			t.Errorf("EXT_OPS_ADDR=%q: %v; want an error naming EXT_OPS_ADDR", bad, err)
		}
	}
}

// opsAddr waits for serve's log line of the ops console's listener and returns its URL.
func opsAddr(t *testing.T, logs *syncBuffer) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "ops console listening" {
				return "http://" + line.Addr
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no ops console listening:\n%s", logs)
	return ""
}

// opsGet GETs url and returns the status and body.
// TestOpsConsoleHostCheck: a request whose Host is a name the operator did not list is
// refused with 421 (a DNS-rebinding page would send its own name); IP literals,
// localhost and EXT_OPS_HOSTS are taken, and /metrics answers any Host.
func TestOpsConsoleHostCheck(t *testing.T) {
	vars := map[string]string{"EXT_ENCRYPTION_KEYS": "", "EXT_EXTENSION_ID": testExtensionID, "EXT_OPS_HOSTS": "ops.example.com, Console.Example.ORG"}
	cfg, err := loadConfig(env(vars), needs{})
	if err != nil || len(cfg.OpsHosts) != 2 || cfg.OpsHosts[1] != "console.example.org" {
		t.Fatalf("EXT_OPS_HOSTS: %v, %v", cfg, err)
	}
	for _, bad := range []string{"https://ops.example.com", "ops.example.com:9090", "ops..example.com", "-ops.example.com", "ops example"} {
		vars["EXT_OPS_HOSTS"] = bad
		if _, err := loadConfig(env(vars), needs{}); err == nil || !strings.Contains(err.Error(), "EXT_OPS_HOSTS") {
			t.Errorf("EXT_OPS_HOSTS=%q: %v, want refused naming the variable", bad, err)
		}
	}

	e := echo.New()
	e.Pre(opsHostCheck("ops.internal:9090", []string{"ops.example.com"}))
	for _, p := range []string{"/", "/metrics"} {
		e.GET(p, func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	}
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"127.0.0.1:9090", "/", http.StatusOK},
		{"[::1]:9090", "/", http.StatusOK},
		{"localhost:9090", "/", http.StatusOK},
		{"ops.internal:9090", "/", http.StatusOK},
		{"OPS.example.com.", "/", http.StatusOK},
		{"attacker.example:9090", "/", http.StatusMisdirectedRequest},
		{"ops.example.com.attacker.example", "/", http.StatusMisdirectedRequest},
		{"attacker.example", "/metrics", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, tc.path, nil)
		req.Host = tc.host
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("Host %s %s: %d, want %d", tc.host, tc.path, rec.Code, tc.want)
		}
	}
}

func opsGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// opsPost sends a POST with the headers given (a browser's Sec-Fetch-Site, Origin) and
// returns the status.
func opsPost(t *testing.T, url, contentType, body string, header map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsConsoleServe runs serve with EXT_OPS_ADDR: the console's pages and /metrics
// answer on that listener only, none shows a secret or a token, and the two changes it
// offers refuse a cross-site request, as River's UI refuses every change but a retry.
func TestOpsConsoleServe(t *testing.T) {
	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	vars["EXT_OPS_ADDR"] = "127.0.0.1:0"
	base, logs, stop := startServe(t, vars)
	ops := opsAddr(t, logs)

	in := install(t, base, p, testInstanceID)
	out, errOut, err := runCmd(vars, "token", "--instance", testInstanceID)
	if err != nil {
		t.Fatalf("token: %v\n%s", err, errOut)
	}
	token := strings.TrimSpace(out)
	// An instance the platform does not know: its mint fails, and the console says so.
	if got := deliver(t, base, p, addedBody(unknownAtPlatform, "another-s3cret-of-this-test", time.Now())); got != http.StatusNoContent {
		t.Fatalf("second install: %d", got)
	}
	if _, _, err := runCmd(vars, "token", "--instance", unknownAtPlatform); err == nil {
		t.Fatal("token of an instance the platform does not know: nil error")
	}
	secrets := map[string]string{"instance secret": in.Secret, "instance token": token,
		"other secret": "another-s3cret-of-this-test", "encryption key": vars["EXT_ENCRYPTION_KEYS"]}

	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/", http.StatusOK, "EXT_OPS_ADDR"},
		{"/?lang=de", http.StatusOK, "Zugangskontrolle"},
		{"/instances", http.StatusOK, testInstanceID},
		{"/instances?q=" + testInstanceID[:8], http.StatusOK, "/instances/" + testInstanceID},
		{"/instances?state=removed", http.StatusOK, "No instance matches"},
		{"/instances?state=gone", http.StatusBadRequest, "does not exist"},
		{"/instances/" + testInstanceID, http.StatusOK, "applied"},
		{"/instances/" + unknownAtPlatform, http.StatusOK, "refused (HTTP 404)"},
		{"/instances/" + unknownAtPlatform + "?lang=de", http.StatusOK, "Abruf abgelehnt"},
		{"/instances/6f0c1c7e-0000-4000-8000-000000000000", http.StatusNotFound, "No such instance"},
		{"/reconcile", http.StatusOK, "Reconcile is not configured"},
		{"/doctor", http.StatusOK, "EXT_EXTENSION_ID is " + testExtensionID}, // serve's own offline checks
		{"/jobs/", http.StatusOK, "<div id=\"root\""},
		{"/metrics", http.StatusOK, "extension_webhook_deliveries_total"},
		{"/healthz", http.StatusOK, "ok"},
	} {
		status, body := opsGet(t, ops+tc.path)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d, want %d with %q:\n%.2000s", tc.path, status, tc.status, tc.want, body)
		}
		for what, s := range secrets {
			if s != "" && strings.Contains(body, s) {
				t.Errorf("GET %s shows the %s", tc.path, what)
			}
		}
	}
	// The instance page shows the token as cached, with its expiry.
	if _, body := opsGet(t, ops+"/instances/"+testInstanceID); !strings.Contains(body, "Cached token expires") {
		t.Errorf("the instance page does not show the cached token's expiry:\n%.3000s", body)
	}
	// River's UI may not be framed: a framing page could lure a click on its retry button.
	if resp, err := http.Get(ops + "/jobs/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if got := resp.Header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("/jobs/ X-Frame-Options %q, want DENY", got)
		}
	}
	// The console is not on the backend's listener.
	if status, _ := opsGet(t, base+"/instances"); status != http.StatusNotFound {
		t.Errorf("GET /instances on the backend's listener = %d, want 404", status)
	}

	form := "application/x-www-form-urlencoded"
	jsonType := "application/json"
	retry := `{"ids":["1"]}`
	for _, tc := range []struct {
		name, path, contentType, body string
		header                        map[string]string
		want                          int
	}{
		{"resume cross-site", "/reconcile/resume", form, "instance=" + testInstanceID, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"resume same-site", "/reconcile/resume", form, "instance=" + testInstanceID, map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"resume from another origin", "/reconcile/resume", form, "instance=" + testInstanceID, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"resume without origin", "/reconcile/resume", form, "instance=" + testInstanceID, nil, http.StatusForbidden},
		{"resume same-origin, reconcile off", "/reconcile/resume", form, "instance=" + testInstanceID, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNotFound},
		{"retry cross-site", "/jobs/api/jobs/retry", jsonType, retry, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"retry from another origin", "/jobs/api/jobs/retry", "text/plain", retry, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"retry without origin", "/jobs/api/jobs/retry", jsonType, retry, nil, http.StatusForbidden},
		{"retry same-origin", "/jobs/api/jobs/retry", jsonType, retry, map[string]string{"Origin": ops}, http.StatusOK},
		{"cancel same-origin", "/jobs/api/jobs/cancel", jsonType, retry, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusForbidden},
		{"delete same-origin", "/jobs/api/jobs/delete", jsonType, retry, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusForbidden},
		{"pause a queue same-origin", "/jobs/api/queues/default/pause", jsonType, "{}", map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusForbidden},
	} {
		if got := opsPost(t, ops+tc.path, tc.contentType, tc.body, tc.header); got != tc.want {
			t.Errorf("%s: POST %s = %d, want %d", tc.name, tc.path, got, tc.want)
		}
	}

	if err := stop(); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(logs.String(), s) {
			t.Errorf("the log holds the %s", what)
		}
	}
}

// TestCachedDoctor: page loads within the cache time share one run of the checks; the
// next load after it runs them again.
func TestCachedDoctor(t *testing.T) {
	runs := 0
	src := cachedDoctor(50*time.Millisecond, func(context.Context) []frontend.DoctorFinding {
		runs++
		return []frontend.DoctorFinding{{Check: "c", Status: frontend.DoctorOK}}
	})
	for range 3 {
		if got := src(context.Background()); len(got) != 1 {
			t.Fatalf("got %v", got)
		}
	}
	if runs != 1 {
		t.Errorf("%d runs for three loads within the cache time, want 1", runs)
	}
	time.Sleep(60 * time.Millisecond)
	src(context.Background())
	if runs != 2 {
		t.Errorf("%d runs after the cache time, want 2", runs)
	}
}
