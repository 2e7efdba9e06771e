package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// An owner finds the download of the instance's data on the sign-in settings page, in
// English and in German, clicks it, and the browser saves the instance's JSON under a
// name of its own.
func TestExportDownloadInBrowser(t *testing.T) {
	app, base := browserApp(t)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	ada := app.User(t, "Ada Admin")
	b := browsertest.New(t)
	for _, lang := range []string{frontend.LangEnglish, frontend.LangGerman} {
		t.Run(lang, func(t *testing.T) {
			copy := pageCopy(t, lang)
			p := b.NewContext(t)
			p.Open(base + "/signed-out?lang=" + lang)
			p.Open(clickThrough(t, app, base, in, ada))
			if status := p.Open(base + frontend.SignInSettingsPath(in.ID)); status != http.StatusOK {
				t.Fatalf("settings page: %d", status)
			}
			if got, want := p.Text("#data h2"), copy["export.title"]; got != want {
				t.Errorf("heading %q, want %q", got, want)
			}
			if got, want := p.Text("#export-link"), copy["export.download"]; got != want {
				t.Errorf("link %q, want %q", got, want)
			}
			// browserApp's configuration keeps no grace period (EXT_RETENTION_AFTER_REMOVAL=0).
			if got, want := p.Text("#data .hint"), copy["export.removal_soon"]; got != want {
				t.Errorf("hint %q, want %q", got, want)
			}
			p.Screenshot("settings-data-export." + lang)
			name, content := p.Download("#export-link")
			if !strings.HasPrefix(name, "instance-"+in.ID+"-") || !strings.HasSuffix(name, ".json") {
				t.Errorf("saved as %q, want instance-%s-….json", name, in.ID)
			}
			var doc extension.Export
			if err := json.Unmarshal(content, &doc); err != nil {
				t.Fatalf("the download is not JSON: %v\n%.200s", err, content)
			}
			if doc.InstanceID != in.ID || len(doc.Tables["accounts"].Rows) != 1 || doc.Tables["accounts"].Rows[0]["name"] != ada.Name {
				t.Errorf("download of %s with accounts %v, want %s with Ada's", doc.InstanceID, doc.Tables["accounts"].Rows, in.ID)
			}
			// The page stays where it was: a download is no navigation.
			if got := p.Path(); !strings.HasPrefix(got, frontend.SignInSettingsPath(in.ID)) {
				t.Errorf("after the download the tab shows %s", got)
			}
		})
	}
}
