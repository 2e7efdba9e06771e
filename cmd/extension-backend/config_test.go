package main

import (
	"encoding/base64"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

func TestLoadConfigErrors(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(extensiontest.Key(t))
	good := func() map[string]string {
		return map[string]string{"EXT_ENCRYPTION_KEYS": key, "EXT_EXTENSION_ID": testExtensionID}
	}
	missingFile := filepath.Join(t.TempDir(), "absent")
	tests := []struct {
		name    string
		change  map[string]string
		wantErr string // the variable named, and what is wrong
	}{
		{"missing keys", map[string]string{"EXT_ENCRYPTION_KEYS": ""}, "EXT_ENCRYPTION_KEYS: required"},
		{"key not base64", map[string]string{"EXT_ENCRYPTION_KEYS": "not base64!"}, "EXT_ENCRYPTION_KEYS: key 1 is not base64"},
		{"short key", map[string]string{"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(make([]byte, 16))}, "EXT_ENCRYPTION_KEYS: key 1 is 16 bytes, want 32"},
		{"zero key", map[string]string{"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(make([]byte, 32))}, "EXT_ENCRYPTION_KEYS: key 1 is weak"},
		{"second key bad", map[string]string{"EXT_ENCRYPTION_KEYS": key + ",abc"}, "EXT_ENCRYPTION_KEYS: key 2"},
		{"duplicate key", map[string]string{"EXT_ENCRYPTION_KEYS": key + "," + key}, "EXT_ENCRYPTION_KEYS: key 2 is listed twice"},
		{"missing extension id", map[string]string{"EXT_EXTENSION_ID": ""}, "EXT_EXTENSION_ID: required"},
		{"extension id not uuid", map[string]string{"EXT_EXTENSION_ID": "my-extension"}, "EXT_EXTENSION_ID: not a UUID"},
		{"contributor id not uuid", map[string]string{"EXT_CONTRIBUTOR_ID": "x"}, "EXT_CONTRIBUTOR_ID: not a UUID"},
		{"database url scheme", map[string]string{"EXT_DATABASE_URL": "mysql://db/x"}, "EXT_DATABASE_URL: want"},
		{"database url empty sqlite path", map[string]string{"EXT_DATABASE_URL": "sqlite:"}, "EXT_DATABASE_URL: want"},
		{"database url no host", map[string]string{"EXT_DATABASE_URL": "postgres://"}, "EXT_DATABASE_URL: want"},
		{"api url", map[string]string{"EXT_MSTUDIO_API_URL": "ftp://x"}, "EXT_MSTUDIO_API_URL:"},
		{"public url", map[string]string{"EXT_PUBLIC_URL": "example.org"}, "EXT_PUBLIC_URL:"},
		{"proxies", map[string]string{"EXT_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, `EXT_TRUSTED_PROXIES: "nonsense"`},
		{"log level", map[string]string{"EXT_LOG_LEVEL": "loud"}, "EXT_LOG_LEVEL:"},
		{"public url http on a public host", map[string]string{"EXT_PUBLIC_URL": "http://ext.example.org"}, "EXT_PUBLIC_URL: http://ext.example.org is http on a public host"},
		{"session idle too short", map[string]string{"EXT_SESSION_IDLE": "30s"}, "EXT_SESSION_IDLE:"},
		{"session idle not a duration", map[string]string{"EXT_SESSION_IDLE": "forever"}, "EXT_SESSION_IDLE:"},
		{"session absolute below idle", map[string]string{"EXT_SESSION_IDLE": "3h", "EXT_SESSION_ABSOLUTE": "1h"}, "EXT_SESSION_ABSOLUTE: shorter"},
		{"default role owner", map[string]string{"EXT_DEFAULT_ROLE": "owner"}, "EXT_DEFAULT_ROLE:"},
		{"default role odd", map[string]string{"EXT_DEFAULT_ROLE": "Admin!"}, "EXT_DEFAULT_ROLE:"},
		{"secret and file", map[string]string{"EXT_EXTENSION_SECRET": "a", "EXT_EXTENSION_SECRET_FILE": "/x"}, "EXT_EXTENSION_SECRET and EXT_EXTENSION_SECRET_FILE are both set"},
		{"missing secret file", map[string]string{"EXT_ENCRYPTION_KEYS": "", "EXT_ENCRYPTION_KEYS_FILE": missingFile}, "EXT_ENCRYPTION_KEYS_FILE:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vars := good()
			for k, v := range tt.change {
				vars[k] = v
			}
			_, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error starting %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), key) {
				t.Error("the error text contains the key")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Error("the error is not one line")
			}
		})
	}
}

func TestLoadConfigDefaultsAndFiles(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys")
	k1 := base64.StdEncoding.EncodeToString(extensiontest.Key(t))
	k2 := base64.RawStdEncoding.EncodeToString(extensiontest.Key(t))
	if err := os.WriteFile(keyFile, []byte(k1+", "+k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dbFile := filepath.Join(dir, "db")
	if err := os.WriteFile(dbFile, []byte("postgres://app:hunter2@db:5432/ext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(env(map[string]string{
		"EXT_ENCRYPTION_KEYS_FILE": keyFile,
		"EXT_DATABASE_URL_FILE":    dbFile,
		"EXT_EXTENSION_ID":         strings.ToUpper(testExtensionID),
		"EXT_TRUSTED_PROXIES":      "10.0.0.0/8, 192.168.1.7",
	}), needs{keys: true, extensionID: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.EncryptionKeys) != 2 {
		t.Errorf("keys: got %d, want 2", len(cfg.EncryptionKeys))
	}
	if cfg.Addr != ":8080" || cfg.MStudioAPIURL != "https://api.mittwald.de" || cfg.PublicURL != "http://127.0.0.1:8080" || cfg.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: got addr %q api %q public %q level %v", cfg.Addr, cfg.MStudioAPIURL, cfg.PublicURL, cfg.LogLevel)
	}
	if cfg.ExtensionID != testExtensionID {
		t.Errorf("extension id: got %q, want it lower-cased", cfg.ExtensionID)
	}
	if got := len(cfg.TrustedProxies); got != 2 || cfg.TrustedProxies[1].String() != "192.168.1.7/32" {
		t.Errorf("trusted proxies: got %v", cfg.TrustedProxies)
	}

	// The configuration as logged masks every secret.
	var logged strings.Builder
	newLogger(&logged, slog.LevelInfo).Info("starting", "config", cfg)
	for _, secret := range []string{"hunter2", k1, k2} {
		if strings.Contains(logged.String(), secret) {
			t.Errorf("logged configuration contains %q: %s", secret, logged.String())
		}
	}
	if !strings.Contains(logged.String(), "postgres://app:xxxxx@db:5432/ext") {
		t.Errorf("logged database url not masked as expected: %s", logged.String())
	}

	// Without a database URL the embedded default is used.
	cfg, err = loadConfig(env(map[string]string{}), needs{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DatabaseURL.Reveal(); got != "sqlite:data/extension.db" {
		t.Errorf("default database url: got %q", got)
	}
}
