package main

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// TestReconcileCommand: serve starts with a contributor token and reconciles in the
// background; `reconcile` prints a lost install as one line with what to do and exits
// non-zero, --json gives the same, the token works from a file, and a wrong or missing
// token is a clear error that changes nothing. The token is in no output.
func TestReconcileCommand(t *testing.T) {
	// Short retries, so that a refused webhook halts soon.
	p := apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID, SecretActivationDelay: -1,
		RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond})
	vars := testEnv(t, p.SimURL)
	vars["EXT_CONTRIBUTOR_ID"] = p.Sim.ContributorID()
	vars["EXT_CONTRIBUTOR_TOKEN"] = p.Sim.ContributorToken()
	base, serveLog, stop := startServe(t, vars)
	if !strings.Contains(serveLog.String(), `"msg":"reconciling with the platform periodically"`) {
		t.Errorf("serve does not say it reconciles:\n%s", serveLog)
	}
	healthy := install(t, base, p, uuid.NewString())

	// An install that a backend acknowledged and lost.
	lostAt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer lostAt.Close()
	p.Sim.SetWebhookURL(lostAt.URL)
	res, err := p.Sim.Trigger(context.Background(), mstudiotest.CallExtensionAddedToContext, mstudiotest.CallRequest{})
	if err != nil || !res.Successful {
		t.Fatalf("lost install: %+v, %v", res, err)
	}
	lost := res.InstanceID
	p.Sim.SetWebhookURL(base + "/mstudio/webhooks")

	stdout, stderr, err := runCmd(vars, "reconcile")
	if !errors.Is(err, errFindings) || exitCode(err) != 1 {
		t.Fatalf("reconcile: %v (exit %d), want the findings error; stderr:\n%s", err, exitCode(err), stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "lost_install: instance "+lost+": ") || !strings.Contains(lines[0], "rotate") {
		t.Errorf("reconcile printed:\n%s\nwant one lost_install line for %s with what to do", stdout, lost)
	}

	// doctor --reconcile reports the same finding as a failure, with what to do.
	stdout, stderr, err = runCmd(vars, "doctor", "--reconcile")
	if !errors.Is(err, errDoctorFailed) || !strings.Contains(stdout, "fail  reconcile: lost_install: instance "+lost) ||
		strings.Contains(stdout, p.Sim.ContributorToken()) {
		t.Errorf("doctor --reconcile: %v\n%s\n%s", err, stdout, stderr)
	}
	delete(vars, "EXT_CONTRIBUTOR_TOKEN")
	if stdout, _, err := runCmd(vars, "doctor", "--reconcile"); !errors.Is(err, errDoctorFailed) || !strings.Contains(stdout, "EXT_CONTRIBUTOR_TOKEN is not set") {
		t.Errorf("doctor --reconcile without a token: %v\n%s", err, stdout)
	}
	vars["EXT_CONTRIBUTOR_TOKEN"] = p.Sim.ContributorToken()

	// An update our endpoint refused until the platform halted the instance's webhooks;
	// --resume resumes it, with one request, and the update then reaches us.
	halted := install(t, base, p, uuid.NewString()).ID
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	defer refusing.Close()
	p.Sim.SetWebhookURL(refusing.URL)
	if _, err := p.Sim.Trigger(context.Background(), mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: halted}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update to halt", 15*time.Second, func() bool { h, _ := p.Sim.WebhookStatus(halted); return h })
	p.Sim.SetWebhookURL(base + "/mstudio/webhooks")
	stdout, _, err = runCmd(vars, "reconcile", "--resume")
	if !errors.Is(err, errFindings) || !strings.Contains(stdout, "halted: instance "+halted+": ") ||
		!strings.Contains(stdout, "resumed: instance "+halted) {
		t.Errorf("reconcile --resume: %v\n%s", err, stdout)
	}
	if p.Sim.ResumeRequests() != 1 || p.Sim.Resumes() != 1 {
		t.Errorf("%d resume requests (%d resumed), want exactly 1", p.Sim.ResumeRequests(), p.Sim.Resumes())
	}
	waitFor(t, "the resumed update to reach us", 15*time.Second, func() bool {
		ex := p.Sim.Executions(halted)
		return len(ex) > 0 && ex[len(ex)-1].State == mstudiotest.ExecutionSuccessful
	})
	if strings.Contains(stdout, healthy.ID) {
		t.Errorf("the healthy instance is reported:\n%s", stdout)
	}

	// The token from a file, and JSON.
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(p.Sim.ContributorToken()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := maps.Clone(vars)
	delete(fromFile, "EXT_CONTRIBUTOR_TOKEN")
	fromFile["EXT_CONTRIBUTOR_TOKEN_FILE"] = file
	stdout, _, err = runCmd(fromFile, "reconcile", "--json")
	if !errors.Is(err, errFindings) {
		t.Fatalf("reconcile --json: %v", err)
	}
	var out reconcileJSON
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("reconcile --json: %v\n%s", err, stdout)
	}
	if len(out.Report.Findings) != 1 || out.Report.Findings[0].InstanceID != lost || out.Report.PlatformInstances != 3 || out.Report.OurInstances != 2 {
		t.Errorf("reconcile --json: %+v", out.Report)
	}

	// Refused and missing tokens: a clear error, nothing printed, nothing changed.
	before, _, _ := runCmd(vars, "reconcile", "--json")
	wrong := maps.Clone(vars)
	wrong["EXT_CONTRIBUTOR_TOKEN"] = "wrong-" + uuid.NewString()
	other := maps.Clone(vars)
	other["EXT_CONTRIBUTOR_TOKEN"] = p.Sim.IssueContributorToken(uuid.NewString())
	missing := maps.Clone(vars)
	delete(missing, "EXT_CONTRIBUTOR_TOKEN")
	noID := maps.Clone(vars)
	delete(noID, "EXT_CONTRIBUTOR_ID")
	for name, tc := range map[string]struct {
		vars map[string]string
		want string
	}{
		"wrong token":       {wrong, "check EXT_CONTRIBUTOR_TOKEN"},
		"other contributor": {other, "check EXT_CONTRIBUTOR_TOKEN"},
		"missing token":     {missing, "EXT_CONTRIBUTOR_TOKEN: not set"},
		"no contributor id": {noID, "EXT_CONTRIBUTOR_ID: required with EXT_CONTRIBUTOR_TOKEN"},
	} {
		stdout, stderr, err := runCmd(tc.vars, "reconcile", "--resume")
		if err == nil || errors.Is(err, errFindings) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
		if stdout != "" {
			t.Errorf("%s: printed %q", name, stdout)
		}
		if token := tc.vars["EXT_CONTRIBUTOR_TOKEN"]; token != "" && (strings.Contains(stderr, token) || strings.Contains(err.Error(), token)) {
			t.Errorf("%s: the token is in the error or the log", name)
		}
	}
	after, _, _ := runCmd(vars, "reconcile", "--json")
	var b, a reconcileJSON
	_ = json.Unmarshal([]byte(before), &b)
	_ = json.Unmarshal([]byte(after), &a)
	if len(a.Report.New) != 0 || len(a.Report.Findings) != len(b.Report.Findings) || a.Report.Resolved != 0 {
		t.Errorf("refused runs changed the findings: before %+v, after %+v", b.Report, a.Report)
	}
	if p.Sim.ResumeRequests() != 1 {
		t.Errorf("%d resume requests, want still the one of --resume", p.Sim.ResumeRequests())
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(serveLog.String(), p.Sim.ContributorToken()) {
		t.Error("the contributor token is in serve's log")
	}
	if !strings.Contains(serveLog.String(), `"contributor_token_set":true`) {
		t.Error("serve's configuration line does not say the contributor token is set")
	}
}
