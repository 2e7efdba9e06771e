package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// metricName finds the metric names in a PromQL expression: our families and the Go
// and process collectors', so a function, a label or a keyword is never taken for one.
var metricName = regexp.MustCompile(`\b(?:extension|go|process)_[a-z0-9_]+\b`)

// promExprs reads the expressions of the alert rules and of the dashboard's panels.
func promExprs(t *testing.T) map[string][]string {
	t.Helper()
	root := filepath.Join("..", "..", "deploy")
	exprs := map[string][]string{}

	raw, err := os.ReadFile(filepath.Join(root, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr, For string
				Labels           map[string]string
				Annotations      map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alerts.yml: rule %+v lacks a name, expression, severity or summary", r)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("alerts.yml: %s: for %q: %v", r.Alert, r.For, err)
			}
			exprs["alert "+r.Alert] = append(exprs["alert "+r.Alert], r.Expr)
		}
	}
	for _, want := range []string{"ExtensionInstanceHalted", "ExtensionDeliveryRefusalsRising", "ExtensionTokenMintFailures", "ExtensionJobQueueAge", "ExtensionHTTP5xx"} {
		if exprs["alert "+want] == nil {
			t.Errorf("alerts.yml has no alert %s", want)
		}
	}

	raw, err = os.ReadFile(filepath.Join(root, "grafana", "extension-backend.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("extension-backend.json: %v", err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Errorf("extension-backend.json: uid %q, %d panels; want a dashboard", dash.UID, len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs["panel "+p.Title] = append(exprs["panel "+p.Title], tg.Expr)
		}
	}
	for where, es := range exprs {
		for _, e := range es {
			if !balanced(e) {
				t.Errorf("%s: unbalanced brackets in %q", where, e)
			}
		}
	}
	return exprs
}

// balanced reports whether the brackets of a PromQL expression pair up, outside quotes.
func balanced(s string) bool {
	var stack []rune
	pair := map[rune]rune{')': '(', ']': '[', '}': '{'}
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pair[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pair[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !quoted
}

// TestDashboardsNameExportedMetrics checks that every metric the Grafana dashboard and
// the alert rules name is one a running serve exports on /metrics, on the backend's and
// on the ops console's listener, once it has done what makes each series appear.
func TestDashboardsNameExportedMetrics(t *testing.T) {
	exprs := promExprs(t)

	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	vars["EXT_OPS_ADDR"] = "127.0.0.1:0"
	// With a contributor token serve reconciles with the platform and exports its gauge.
	vars["EXT_CONTRIBUTOR_TOKEN"] = p.Sim.ContributorToken()
	vars["EXT_CONTRIBUTOR_ID"] = p.Sim.ContributorID()
	base, logs, _ := startServe(t, vars)
	ops := opsAddr(t, logs)
	// What makes the vectors' series appear: an applied delivery, a refused one (another
	// extension's), one refused before verification, a page of the console, a mint.
	install(t, base, p, testInstanceID)
	foreign := strings.Replace(string(addedBody(unknownAtPlatform, "s3cret", time.Now())), testExtensionID, "00000000-0000-4000-8000-000000000000", 1)
	if got := deliver(t, base, p, []byte(foreign)); got != http.StatusForbidden {
		t.Errorf("foreign delivery: %d, want 403", got)
	}
	if got := opsPost(t, base+"/mstudio/webhooks", "application/json", "{}", nil); got != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d, want 401", got)
	}
	if status, _ := opsGet(t, ops+"/"); status != http.StatusOK {
		t.Errorf("ops console: %d", status)
	}

	exported := func(url string) map[string]bool {
		status, body := opsGet(t, url)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d", url, status)
		}
		names := map[string]bool{}
		for _, line := range strings.Split(body, "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, _, _ := strings.Cut(line, "{")
			name, _, _ = strings.Cut(name, " ")
			names[name] = true
		}
		return names
	}
	// The post-install job mints the instance's token: wait for its series.
	var names map[string]bool
	waitUntil(t, "a token mint counted", func() bool {
		names = exported(base + "/metrics")
		_, body := opsGet(t, base+"/metrics")
		return strings.Contains(body, `extension_token_mints_total{outcome="ok"} 1`)
	})
	opsNames := exported(ops + "/metrics")

	var missing []string
	for where, es := range exprs {
		for _, e := range es {
			for _, m := range metricName.FindAllString(e, -1) {
				if !names[m] || !opsNames[m] {
					missing = append(missing, where+": "+m)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("named but not exported (backend %d names, ops %d):\n%s", len(names), len(opsNames), strings.Join(missing, "\n"))
	}
}

// waitUntil polls cond until it holds, for up to 30 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
