package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// EXT_OIDC_PROVIDERS_FILE: optional; a file with a mistake stops serve before it listens,
// with one line naming the variable, the file, the line and the field; a good one gives
// the store the operator's providers, its client secret from the variable the file
// names, which the configuration's summary never shows.
func TestOIDCProvidersFile(t *testing.T) {
	const secret = "vendor-client-secret-Qw81"
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad.json", "[\n  {\"id\": \"staff\", \"template\": \"custom\", \"issuer\": \"http://sso.vendor.example\", \"client_id\": \"c\"}\n]")
	good := write("good.json", `[{"id": "staff", "template": "custom", "name": "Vendor support", "issuer": "https://sso.vendor.example",
		"client_id": "c", "client_secret_env": "VENDOR_OIDC_SECRET", "allowed_domains": "vendor.example"}]`)

	for _, c := range []struct{ name, file, want string }{
		{"missing file", filepath.Join(dir, "nope.json"), "EXT_OIDC_PROVIDERS_FILE: open " + filepath.Join(dir, "nope.json")},
		{"bad issuer", bad, fmt.Sprintf("EXT_OIDC_PROVIDERS_FILE: %s: line 2: provider %q: field issuer:", bad, "staff")},
		{"secret variable unset", good, "the variable VENDOR_OIDC_SECRET is not set"},
	} {
		vars := testEnv(t, "http://127.0.0.1:1")
		vars["EXT_OIDC_PROVIDERS_FILE"] = c.file
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, env(vars), &strings.Builder{}, &strings.Builder{})
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: serve returned %v, want %q", c.name, err, c.want)
		}
	}

	vars := testEnv(t, "http://127.0.0.1:1")
	vars["EXT_OIDC_PROVIDERS_FILE"], vars["VENDOR_OIDC_SECRET"] = good, secret
	cfg, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.OperatorProviders) != 1 || cfg.OperatorProviders[0].ClientSecret != secret {
		t.Fatalf("operator providers: %+v", cfg.OperatorProviders)
	}
	var summary strings.Builder
	slog.New(slog.NewJSONHandler(&summary, nil)).Info("config", "config", cfg)
	if strings.Contains(summary.String(), secret) || !strings.Contains(summary.String(), `"oidc_operator_providers":1`) {
		t.Errorf("config summary: %s", summary.String())
	}
	store, err := openStore(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ps := store.OperatorOIDCProviders("instance-1")
	if len(ps) != 1 || ps[0].Name != "Vendor support" || ps[0].ID == "" || !ps[0].Operator || ps[0].AutoProvision {
		t.Errorf("store's operator providers: %+v", ps)
	}
}
