package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/prometheus/client_golang/prometheus"
)

// consoleReconcile gives the pages fixed findings of every kind, which a real
// reconciliation against the simulator makes only slowly (a halt needs failed retries),
// and records the resumes asked for; TestReconcileCommand and TestPlatformReconcile run
// the real one.
type consoleReconcile struct {
	findings []frontend.ReconcileFinding
	mu       sync.Mutex
	resumed  []string
}

func (r *consoleReconcile) Findings(context.Context) ([]frontend.ReconcileFinding, error) {
	return r.findings, nil
}

func (r *consoleReconcile) Resume(_ context.Context, instanceID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumed = append(r.resumed, instanceID)
	return nil
}

func (r *consoleReconcile) resumes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.resumed...)
}

// opsApp is the ops console as serve builds it (newOps), on the shared test app's store,
// with River's UI on an insert-only queue and the sources given.
func opsApp(t *testing.T, app *apptest.App, sources frontend.ConsoleConfig) string {
	t.Helper()
	if _, err := jobs.Migrate(t.Context(), app.Store, app.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	jb, err := jobs.New(t.Context(), jobs.Config{Store: app.Store, DatabaseURL: app.DatabaseURL, Logger: app.Logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jb.Stop(context.Background()) })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := &Config{PublicURL: "http://127.0.0.1:1"} // the backend's, not the console's: the console checks its own host
	front, err := newOps(ctx, cfg, app.Logger, prometheus.NewRegistry(), app.Store, jb, sources)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestOpsConsoleInBrowser drives the console's pages in headless Chromium in English and
// German, with reconcile and doctor sources filled as the merge will fill them and without
// them: every page passes axe-core and is saved as a screenshot; the Resume button resumes
// once, from the page itself; no page shows an instance secret.
func TestOpsConsoleInBrowser(t *testing.T) {
	app := apptest.New(t, apptest.Options{})
	in := app.Install(t, mstudiotest.InstanceSpec{})
	failing := app.Install(t, mstudiotest.InstanceSpec{})
	if err := app.Store.RecordMintFailure(t.Context(), failing.ID, "secret_refused", 403, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec := &consoleReconcile{findings: []frontend.ReconcileFinding{
		{Kind: frontend.ReconcileHalted, InstanceID: in.ID, Detail: "execution 7f… halted after 12 failed attempts", FoundAt: time.Now(), Resumable: true},
		{Kind: frontend.ReconcileLostInstall, InstanceID: "0d5e8f1a-0000-4000-8000-000000000001", FoundAt: time.Now()},
		{Kind: frontend.ReconcileMissedRemoval, InstanceID: failing.ID, FoundAt: time.Now()},
		{Kind: frontend.ReconcileFailed, InstanceID: "0d5e8f1a-0000-4000-8000-000000000002", Detail: "last attempt answered 500", FoundAt: time.Now()},
	}}
	doctor := func(context.Context) []frontend.DoctorFinding {
		return []frontend.DoctorFinding{
			{Check: "encryption keys", Status: frontend.DoctorOK, Detail: "every stored secret opens"},
			{Check: "public URL", Status: frontend.DoctorWarn, Detail: "http on loopback", Fix: "use https outside development"},
			{Check: "platform clock", Status: frontend.DoctorFail, Detail: "42 s apart from the platform's Date", Fix: "run NTP on this machine"},
		}
	}
	full := opsApp(t, app, frontend.ConsoleConfig{Doctor: doctor, Reconcile: rec})
	bare := opsApp(t, app, frontend.ConsoleConfig{})
	// A hand-made form with an id that is no instance id is a 400 page, and no resume.
	if got := opsPost(t, full+"/reconcile/resume", "application/x-www-form-urlencoded", "instance=not-an-instance-id",
		map[string]string{"Sec-Fetch-Site": "same-origin"}); got != http.StatusBadRequest || len(rec.resumes()) != 0 {
		t.Errorf("resume of a made-up id: %d, %d resumes; want 400 and none", got, len(rec.resumes()))
	}
	var secrets []string // what the platform handed over at install, sealed in the store
	for _, s := range []string{in.Secret, in.PendingSecret, failing.Secret, failing.PendingSecret} {
		if s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		t.Fatal("the installed instances carry no secret to look for")
	}
	b := browsertest.New(t)

	for _, lang := range []string{frontend.LangEnglish, frontend.LangGerman} {
		t.Run(lang, func(t *testing.T) {
			p := b.NewContext(t)
			p.Open(full + "/?lang=" + lang)
			q := b.NewContext(t)
			q.Open(bare + "/?lang=" + lang)
			for _, pg := range []struct {
				name   string
				page   *browsertest.Page
				url    string
				status int
				axe    bool
			}{
				{"ops-home", p, full + "/", http.StatusOK, true},
				{"ops-instances", p, full + "/instances", http.StatusOK, true},
				{"ops-instances-search", p, full + "/instances?q=" + in.ID[:8], http.StatusOK, true},
				{"ops-instances-bad-query", p, full + "/instances?state=nonsense", http.StatusBadRequest, true},
				{"ops-instance", p, full + "/instances/" + in.ID, http.StatusOK, true},
				{"ops-instance-token-failing", p, full + "/instances/" + failing.ID, http.StatusOK, true},
				{"ops-instance-unknown", p, full + "/instances/0d5e8f1a-0000-4000-8000-000000000009", http.StatusNotFound, true},
				{"ops-reconcile", p, full + "/reconcile", http.StatusOK, true},
				{"ops-doctor", p, full + "/doctor", http.StatusOK, true},
				{"ops-home-unconfigured", q, bare + "/", http.StatusOK, true},
				{"ops-reconcile-unconfigured", q, bare + "/reconcile", http.StatusOK, true},
				{"ops-doctor-unconfigured", q, bare + "/doctor", http.StatusOK, true},
				// River's own UI: a screenshot to look at; axe-core checks our pages only.
				{"ops-jobs", p, full + "/jobs/", http.StatusOK, false},
			} {
				if status := pg.page.Open(pg.url); status != pg.status {
					t.Errorf("%s: %s answers %d, want %d", pg.name, pg.url, status, pg.status)
				}
				if pg.axe {
					if got := pg.page.Lang(); got != lang {
						t.Errorf("%s: <html lang=%q>, want %q", pg.name, got, lang)
					}
				}
				if pg.name == "ops-jobs" {
					time.Sleep(time.Second) // River's UI renders in the browser; give it a moment for the screenshot
				}
				pg.page.Screenshot(pg.name + "." + lang)
				if pg.axe && browsertest.HasAxe() {
					pg.page.CheckAccessible(pg.name + " (" + lang + ")")
				}
				text := pg.page.Text("body")
				for _, secret := range secrets {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows an instance secret", pg.name)
					}
				}
			}
			// Resume, as the operator does it: the button of the halted finding.
			before := len(rec.resumes())
			p.Open(full + "/reconcile")
			p.Follow("form[action='/reconcile/resume'] button")
			if got := p.Path(); !strings.HasPrefix(got, "/reconcile?resumed=") || !p.Exists(".alert.success") {
				t.Errorf("after Resume the browser is at %s, success shown %v; want /reconcile with a confirmation", got, p.Exists(".alert.success"))
			}
			p.Screenshot("ops-reconcile-resumed." + lang)
			if got := rec.resumes(); len(got) != before+1 || got[len(got)-1] != in.ID {
				t.Errorf("resumes asked for: %v, want one more for %s", got, in.ID)
			}
			if !browsertest.HasAxe() {
				browsertest.Unavailable(t, browsertest.MissingAxe)
			}
		})
	}
}
