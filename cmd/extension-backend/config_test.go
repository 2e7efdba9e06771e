package main

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
		{"contributor token over http", map[string]string{"EXT_CONTRIBUTOR_TOKEN": "tok", "EXT_CONTRIBUTOR_ID": "2e8c13e8-db3c-4dfc-927e-9516941a7425",
			"EXT_MSTUDIO_API_URL": "http://api.example.com"}, "EXT_MSTUDIO_API_URL: http://api.example.com is plain http"},
		{"database url scheme", map[string]string{"EXT_DATABASE_URL": "mysql://db/x"}, "EXT_DATABASE_URL: want"},
		{"database url empty sqlite path", map[string]string{"EXT_DATABASE_URL": "sqlite:"}, "EXT_DATABASE_URL: want"},
		{"database url no host", map[string]string{"EXT_DATABASE_URL": "postgres://"}, "EXT_DATABASE_URL: want"},
		{"api url", map[string]string{"EXT_MSTUDIO_API_URL": "ftp://x"}, "EXT_MSTUDIO_API_URL:"},
		{"public url", map[string]string{"EXT_PUBLIC_URL": "example.org"}, "EXT_PUBLIC_URL:"},
		{"proxies", map[string]string{"EXT_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"}, `EXT_TRUSTED_PROXIES: "nonsense"`},
		{"log level", map[string]string{"EXT_LOG_LEVEL": "loud"}, "EXT_LOG_LEVEL:"},
		{"public url http on a public host", map[string]string{"EXT_PUBLIC_URL": "http://ext.example.org"}, "EXT_PUBLIC_URL: http://ext.example.org is http on a public host"},
		{"session idle too short", map[string]string{"EXT_SESSION_IDLE": "30s"}, "EXT_SESSION_IDLE:"},
		{"retention negative", map[string]string{"EXT_RETENTION_AFTER_REMOVAL": "-1h"}, "EXT_RETENTION_AFTER_REMOVAL: \"-1h\": want whole days"},
		{"retention not a duration", map[string]string{"EXT_RETENTION_AFTER_REMOVAL": "a month"}, "EXT_RETENTION_AFTER_REMOVAL:"},
		{"retention too long", map[string]string{"EXT_RETENTION_AFTER_REMOVAL": "3651d"}, "EXT_RETENTION_AFTER_REMOVAL:"},
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

// Each reader on its own: the value it returns, and the one-line error naming the
// variable when the value is wrong.
func TestEnvReaders(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		vars    map[string]string
		read    func(r *envReader) any
		want    any
		wantErr string // prefix; empty: no error
	}{
		{"str default", nil, func(r *envReader) any { return r.str("X", "d") }, "d", ""},
		{"str set", map[string]string{"X": "v"}, func(r *envReader) any { return r.str("X", "d") }, "v", ""},
		{"secret default", nil, func(r *envReader) any { return r.secret("X", "d").Reveal() }, "d", ""},
		{"secret from file, trimmed", map[string]string{"X_FILE": secretFile}, func(r *envReader) any { return r.secret("X", "d").Reveal() }, "from-file", ""},
		{"secret both", map[string]string{"X": "a", "X_FILE": secretFile}, func(r *envReader) any { return r.secret("X", "").Reveal() }, "", "X and X_FILE are both set"},
		{"database url from file", map[string]string{"X_FILE": secretFile}, func(r *envReader) any { return r.databaseURL("X", "sqlite:a").Reveal() }, "", "X: want"},
		{"http url trims the slash", map[string]string{"X": "https://h/"}, func(r *envReader) any { return r.httpURL("X", "") }, "https://h", ""},
		{"http url without host", map[string]string{"X": "https://"}, func(r *envReader) any { return r.httpURL("X", "") }, "https:/", "X: "},
		{"uuid lower-cased", map[string]string{"X": strings.ToUpper(testExtensionID)}, func(r *envReader) any { return r.uuid("X", true, "") }, testExtensionID, ""},
		{"uuid optional", nil, func(r *envReader) any { return r.uuid("X", false, "") }, "", ""},
		{"uuid required", nil, func(r *envReader) any { return r.uuid("X", true, "the id") }, "", "X: required: the id"},
		{"keys optional", nil, func(r *envReader) any { return len(r.keys("X", false)) }, 0, ""},
		{"duration default", nil, func(r *envReader) any { return r.duration("X", "3m", "2m") }, 3 * time.Minute, ""},
		{"duration at the minimum", map[string]string{"X": "2m"}, func(r *envReader) any { return r.duration("X", "3m", "2m") }, 2 * time.Minute, ""},
		{"duration below", map[string]string{"X": "119s"}, func(r *envReader) any { return r.duration("X", "3m", "2m") }, 119 * time.Second, `X: "119s": want a duration of at least 2m`},
		{"cidrs empty", nil, func(r *envReader) any { return len(r.cidrs("X")) }, 0, ""},
		{"cidrs masked, address as host prefix", map[string]string{"X": "10.1.2.3/8, ::1"}, func(r *envReader) any { return fmt.Sprint(r.cidrs("X")) }, "[10.0.0.0/8 ::1/128]", ""},
		{"log level", map[string]string{"X": "warn"}, func(r *envReader) any { return r.logLevel("X", "info") }, slog.LevelWarn, ""},
		{"role", map[string]string{"X": "viewer"}, func(r *envReader) any { return r.role("X", "member") }, "viewer", ""},
		{"role owner", map[string]string{"X": "owner"}, func(r *envReader) any { return r.role("X", "member") }, "owner", `X: "owner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &envReader{getenv: env(tt.vars)}
			got := tt.read(r)
			switch {
			case tt.wantErr == "" && r.err != nil:
				t.Fatalf("got error %v, want none", r.err)
			case tt.wantErr != "" && (r.err == nil || !strings.HasPrefix(r.err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one starting %q", r.err, tt.wantErr)
			case tt.wantErr == "" && got != tt.want:
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// The first problem sticks: a later wrong variable does not replace it, so the message
// names the first.
func TestEnvReaderFirstErrorSticks(t *testing.T) {
	r := &envReader{getenv: env(map[string]string{"A": "nonsense", "B": "loud"})}
	r.duration("A", "2h", "2m")
	r.logLevel("B", "info")
	r.check("C", false, "never reported")
	if r.err == nil || !strings.HasPrefix(r.err.Error(), `A: "nonsense"`) {
		t.Errorf("got %v, want the error about A", r.err)
	}
}
