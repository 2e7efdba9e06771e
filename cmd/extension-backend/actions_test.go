package main

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/prometheus/client_golang/prometheus"
)

// actionApp is the production route table with the job queue working, on the shared test
// app; instances are installed through the simulator's webhook to the real handler.
func actionApp(t *testing.T) (*apptest.App, string) { return jobsApp(t, false) }

// jobsApp is actionApp; with ownOrigin the backend's public URL is the test server's
// address, as a browser reaches it (its forms then come from our own origin).
func jobsApp(t *testing.T, ownOrigin bool) (*apptest.App, string) {
	t.Helper()
	app := apptest.New(t, apptest.Options{Clock: extensiontest.WallClock(), Sim: func(o *mstudiotest.Options) { o.SecretActivationDelay = -1 }})
	ctx := t.Context()
	if _, err := jobs.Migrate(ctx, app.Store, app.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	broker := mstudio.NewBroker(app.Store, app.Client, mstudio.BrokerOptions{Logger: app.Logger})
	jb, err := jobs.New(ctx, jobs.Config{Store: app.Store, DatabaseURL: app.DatabaseURL, Tokens: broker, Client: app.Client,
		Workers: 4, Logger: app.Logger, PostInstallDelay: -1, PollInterval: 50 * time.Millisecond, RetryWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jb.Stop(t.Context()) })
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	cfg := &Config{PublicURL: apptest.PublicURL, ExtensionID: app.Sim.ExtensionID(), DefaultRole: "member"}
	if ownOrigin {
		cfg.PublicURL = base
	}
	front, err := newHTTP(ctx, cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, afterApply(broker, jb), jb)
	if err != nil {
		t.Fatal(err)
	}
	if err := jb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = front
	srv.Start()
	t.Cleanup(srv.Close)
	app.Sim.SetWebhookURL(base + "/mstudio/webhooks")
	return app, base
}

// signedInAs installs an instance with the scopes and clicks through as Ada.
func signedInAs(t *testing.T, app *apptest.App, base string, req mstudiotest.CallRequest) (*http.Client, string) {
	t.Helper()
	res, err := app.Sim.Trigger(t.Context(), mstudiotest.CallExtensionAddedToContext, req)
	if err != nil || !res.Successful {
		t.Fatalf("install: %+v, %v", res, err)
	}
	ada := app.User(t, "Ada Admin")
	key, err := app.Sim.NewRetrievalKey(res.InstanceID, ada.ID)
	if err != nil {
		t.Fatal(err)
	}
	b := apptest.Browser(t)
	sso := "/mstudio/sso?" + url.Values{"atrek": {key}, "userId": {ada.ID}, "instanceId": {res.InstanceID}}.Encode()
	if resp, body := fetch(t, b, http.MethodGet, base+sso, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("click-through: %d\n%s", resp.StatusCode, body)
	}
	return b, res.InstanceID
}

func post(t *testing.T, b *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", apptest.PublicURL)
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, apptest.Body(t, resp)
}

// TestRenameProjectPages: a signed-in user starts the worked domain action on its page,
// follows it to its end on the action's page, and the dashboard shows the new name.
func TestRenameProjectPages(t *testing.T) {
	app, base := actionApp(t)
	b, id := signedInAs(t, app, base, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read", "project:write"}})
	page := base + "/app/" + id + "/actions/rename-project"
	if resp, body := fetch(t, b, http.MethodGet, page, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="name"`) {
		t.Fatalf("rename page: %d\n%s", resp.StatusCode, body)
	}
	if resp, body := post(t, b, page, url.Values{"name": {"   "}}); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "1 to 255 characters") {
		t.Errorf("empty name: %d\n%s", resp.StatusCode, body)
	}
	resp, _ := post(t, b, page, url.Values{"name": {"Shop & Blog"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/app/"+id+"/actions/") {
		t.Fatalf("start: %d to %q", resp.StatusCode, loc)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, body := fetch(t, b, http.MethodGet, base+loc, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("action page: %d\n%s", resp.StatusCode, body)
		}
		if strings.Contains(body, "The project has its new name.") {
			if strings.Contains(body, `http-equiv="refresh"`) {
				t.Error("a finished action's page still reloads itself")
			}
			break
		}
		if !strings.Contains(body, `http-equiv="refresh"`) {
			t.Fatalf("a running action's page does not reload itself:\n%s", body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the action did not end:\n%s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, body := fetch(t, b, http.MethodGet, base+"/app/"+id, nil); !strings.Contains(body, "Shop &amp; Blog") {
		t.Errorf("the dashboard does not show the new name:\n%s", body)
	}
	// Another browser, not signed in, sees nothing of the action.
	if resp, _ := fetch(t, apptest.Browser(t), http.MethodGet, base+loc, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the action page without a session: %d", resp.StatusCode)
	}
}

// Without the scope the page says what is missing and what to do, and a post is refused.
func TestRenameProjectMissingScope(t *testing.T) {
	app, base := actionApp(t)
	b, id := signedInAs(t, app, base, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read"}})
	page := base + "/app/" + id + "/actions/rename-project"
	resp, body := fetch(t, b, http.MethodGet, page, http.Header{"Accept-Language": {"de"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "fehlt die Berechtigung") || strings.Contains(body, `name="name"`) {
		t.Errorf("rename page without the scope: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := post(t, b, page, url.Values{"name": {"x"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("post without the scope: %d", resp.StatusCode)
	}
	if list, err := app.Store.Actions(t.Context(), id, 10); err != nil || len(list) != 0 {
		t.Errorf("actions after a refused post: %+v, %v", list, err)
	}
}

// TestDashboard: the dashboard says which permissions the extension lacks and what to
// do, shows the control panel's messages to this instance only, and how its background
// jobs did, with the job queue at work.
func TestDashboard(t *testing.T) {
	app, base := actionApp(t)
	b, id := signedInAs(t, app, base, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read"}})
	other, otherID := signedInAs(t, app, base, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read", "project:write"}})
	// A secret rotation for the first instance only.
	if res, err := app.Sim.Trigger(t.Context(), mstudiotest.CallSecretRotated, mstudiotest.CallRequest{ExtensionInstanceID: id}); err != nil || !res.Successful {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var resp *http.Response
		resp, body = fetch(t, b, http.MethodGet, base+"/app/"+id, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("dashboard: %d\n%s", resp.StatusCode, body)
		}
		if strings.Contains(body, "All background tasks have finished.") || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{
		"The extension is missing permissions it needs.", "agrees to the new permissions", "missing",
		"The extension was added", "Its access key was renewed", "taken over",
		"All background tasks have finished.",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q:\n%s", want, body)
		}
	}
	_, body = fetch(t, other, http.MethodGet, base+"/app/"+otherID, http.Header{"Accept-Language": {"de"}})
	for _, want := range []string{"Die Erweiterung hat alle Berechtigungen, die sie braucht.", "Die Erweiterung wurde hinzugefügt"} {
		if !strings.Contains(body, want) {
			t.Errorf("other dashboard lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "Zugangsschlüssel wurde erneuert") {
		t.Errorf("the other instance's dashboard shows the first one's rotation:\n%s", body)
	}
}
