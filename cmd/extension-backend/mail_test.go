package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// EXT_SMTP_URL and EXT_MAIL_FROM: read from the environment or a file, checked at start
// with one line that names the variable and never shows the password; the summary of the
// configuration masks it too.
func TestMailConfig(t *testing.T) {
	const password = "hunter2-smtp-password"
	key := base64.StdEncoding.EncodeToString(extensiontest.Key(t))
	urlFile := filepath.Join(t.TempDir(), "smtp")
	if err := os.WriteFile(urlFile, []byte("smtps://mailer:"+password+"@mail.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		vars    map[string]string
		wantErr string
	}{
		{"bad scheme", map[string]string{"EXT_SMTP_URL": "http://mailer:" + password + "@mail.example.com", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: want smtp://"},
		{"bad port", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com:99999", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: the port"},
		{"unparsable", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail example.com:x", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: not a URL"},
		{"user without password", map[string]string{"EXT_SMTP_URL": "smtp://mailer@mail.example.com", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: give both"},
		{"no sender", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com"}, "EXT_MAIL_FROM: required with EXT_SMTP_URL"},
		{"bad sender", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com", "EXT_MAIL_FROM": "not an address"}, "EXT_MAIL_FROM: not an e-mail address"},
		{"sender alone", map[string]string{"EXT_MAIL_FROM": "x@example.com"}, "EXT_MAIL_FROM: set, but EXT_SMTP_URL is not"},
		{"url and file", map[string]string{"EXT_SMTP_URL": "smtp://h", "EXT_SMTP_URL_FILE": urlFile, "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL and EXT_SMTP_URL_FILE are both set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]string{"EXT_ENCRYPTION_KEYS": key, "EXT_EXTENSION_ID": testExtensionID}
			for k, v := range c.vars {
				vars[k] = v
			}
			_, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
			if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
				t.Fatalf("got %v, want an error starting %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "\n") {
				t.Errorf("the error shows the password or is not one line: %v", err)
			}
		})
	}
	cfg, err := loadConfig(env(map[string]string{"EXT_ENCRYPTION_KEYS": key, "EXT_EXTENSION_ID": testExtensionID,
		"EXT_SMTP_URL_FILE": urlFile, "EXT_MAIL_FROM": "Extension <extension@example.com>"}), needs{keys: true, extensionID: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP == nil || cfg.SMTP.Host != "mail.example.com" || cfg.SMTP.Port != 465 || !cfg.SMTP.ImplicitTLS ||
		cfg.SMTP.Password.Reveal() != password || cfg.MailFrom != `"Extension" <extension@example.com>` {
		t.Fatalf("read %+v, from %q", cfg.SMTP, cfg.MailFrom)
	}
	if mc := mailConfig(cfg); mc == nil || mc.From != cfg.MailFrom {
		t.Errorf("mail config %+v", mc)
	}
	var out strings.Builder
	newLogger(&out, 0).Info("starting", "config", cfg)
	if strings.Contains(out.String(), password) || !strings.Contains(out.String(), `"smtp":"smtps://mailer:xxxxx@mail.example.com:465"`) {
		t.Errorf("the configuration's summary: %s", out.String())
	}
	if cfg, err := loadConfig(env(map[string]string{"EXT_ENCRYPTION_KEYS": key}), needs{keys: true}); err != nil || cfg.SMTP != nil || mailConfig(cfg) != nil {
		t.Errorf("without EXT_SMTP_URL: %+v, %v", cfg, err)
	}
}
