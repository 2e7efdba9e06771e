package frontend_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// An owner downloads the instance's data as a JSON attachment, and the download is in the
// audit log; a member gets a page that says whom to ask, and no data. The settings page
// links to it in both languages.
func TestExportDownload(t *testing.T) {
	env := newTeamEnv(t, apptest.Options{})
	p := env.Pages
	env.Front.GET("/app/:instanceId/export", p.ExportData, p.RequireSession())
	env.Front.GET("/app/:instanceId/settings/sign-in", p.SignInSettings, p.RequireSession())
	other := env.Install(t, mstudiotest.InstanceSpec{})
	env.signIn(t, apptest.Browser(t), other, env.User(t, "Otto Outsider"))

	for lang, want := range map[string][2]string{"en": {"Download data (JSON)", "keep this data for 30 days"},
		"de": {"Daten herunterladen (JSON)", "noch 30 Tage auf"}} {
		resp, body := env.do(t, env.ada, http.MethodGet, frontend.SignInSettingsPath(env.in.ID)+"?lang="+lang, nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/app/`+env.in.ID+`/export" download>`+want[0]) {
			t.Errorf("settings page (%s): %d, no download link %q", lang, resp.StatusCode, want[0])
		}
		if !strings.Contains(body, want[1]) {
			t.Errorf("settings page (%s) does not say how long the data is kept after a removal (%q)", lang, want[1])
		}
	}

	resp, body := env.do(t, env.ada, http.MethodGet, frontend.ExportPath(env.in.ID), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export: %d\n%s", resp.StatusCode, body)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="instance-`+env.in.ID+"-") || !strings.HasSuffix(cd, `.json"`) {
		t.Errorf("Content-Disposition %q, want an attachment named after the instance", cd)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	var doc extension.Export
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if doc.InstanceID != env.in.ID || len(doc.Tables["accounts"].Rows) != 1 || doc.Tables["accounts"].Rows[0]["id"] != env.adaID {
		t.Errorf("export of %s with accounts %v, want %s with Ada's", doc.InstanceID, doc.Tables["accounts"].Rows, env.in.ID)
	}
	if strings.Contains(body, other.ID) || strings.Contains(body, "Otto Outsider") {
		t.Error("the export holds data of another instance")
	}
	if kinds := auditKindsOf(t, env, env.in.ID); len(kinds) == 0 || kinds[0] != extension.AuditDataExported {
		t.Errorf("newest audit events %v, want %s first", kinds, extension.AuditDataExported)
	}

	token := env.invite(t, "member@example.com", extension.RoleMember)
	member := env.accept(t, token, "Member", "correct horse battery staple")
	for lang, want := range map[string]string{"en": "ask an owner", "de": "frag einen Inhaber"} {
		resp, body = env.do(t, member, http.MethodGet, frontend.ExportPath(env.in.ID)+"?lang="+lang, nil, nil)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Disposition") != "" || !strings.Contains(body, want) {
			t.Errorf("a member's export (%s): %d %q, want 403 and a page with %q", lang, resp.StatusCode, resp.Header.Get("Content-Disposition"), want)
		}
	}
}

// auditKindsOf lists an instance's audit kinds, newest first.
func auditKindsOf(t *testing.T, env *teamEnv, instanceID string) []string {
	t.Helper()
	evs, _, err := env.Store.AuditEvents(t.Context(), instanceID, extension.AuditFilter{}, extension.AuditPage{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	return kinds
}
