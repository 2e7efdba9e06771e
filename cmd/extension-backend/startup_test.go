package main

import (
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// serve, token and rekey refuse a database whose secrets their keys cannot open, and say
// which key ids are missing and what to do; with the key added they work.
func TestRefuseKeysThatCannotOpenStoredSecrets(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
			vars := testEnv(t, "http://127.0.0.1:1")
			vars["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			vars["EXT_ENCRYPTION_KEYS"] = base64.StdEncoding.EncodeToString(keyA)
			seedInstance(t, vars, testInstanceID, "secret-sealed-with-A")

			other := maps.Clone(vars)
			other["EXT_ENCRYPTION_KEYS"] = base64.StdEncoding.EncodeToString(keyB)
			for _, args := range [][]string{
				{"serve", "--addr", "127.0.0.1:0"},
				{"token", "--instance", testInstanceID},
				{"rekey"},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				var stdout, stderr strings.Builder
				err := run(ctx, args, env(other), &stdout, &stderr)
				cancel()
				if exitCode(err) != 1 {
					t.Fatalf("%s with another key: got %v, want a failure (exit 1)", args[0], err)
				}
				msg := err.Error()
				for _, want := range []string{"key id " + extension.KeyID(keyA), "its key ids: " + extension.KeyID(keyB),
					"add that key to EXT_ENCRYPTION_KEYS", "point EXT_DATABASE_URL at another database"} {
					if !strings.Contains(msg, want) {
						t.Errorf("%s: got %q, want it to say %q", args[0], msg, want)
					}
				}
				if strings.Contains(msg, "\n") || strings.Contains(msg, other["EXT_ENCRYPTION_KEYS"]) || strings.Contains(msg, vars["EXT_ENCRYPTION_KEYS"]) {
					t.Errorf("%s: got %q, want one line without a key", args[0], msg)
				}
				if strings.Contains(stdout.String(), `"msg":"listening"`) {
					t.Errorf("%s started listening before it refused", args[0])
				}
			}

			// With both keys, the new one first, rekey carries the secret over; then the
			// new key alone opens everything and serve starts.
			other["EXT_ENCRYPTION_KEYS"] += "," + vars["EXT_ENCRYPTION_KEYS"]
			if out, errOut, err := runCmd(other, "rekey"); err != nil {
				t.Fatalf("rekey with both keys: %v\n%s%s", err, out, errOut)
			}
			other["EXT_ENCRYPTION_KEYS"] = base64.StdEncoding.EncodeToString(keyB)
			_, _, stop := startServe(t, other)
			if err := stop(); err != nil {
				t.Errorf("serve with the new key after rekey: %v", err)
			}
		})
	}
}

// A database that dev filled never sends its instances' secrets anywhere but to an API on
// this machine: token and serve refuse another EXT_MSTUDIO_API_URL, naming the simulator.
func TestDevDatabaseStaysWithTheSimulator(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			vars := testEnv(t, "")
			delete(vars, "EXT_MSTUDIO_API_URL") // the default: the real platform
			vars["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			store := seedInstance(t, vars, testInstanceID, "simulator-secret")
			const sim = "http://127.0.0.1:8081"
			if err := store.MarkSimulated(context.Background(), sim); err != nil {
				t.Fatal(err)
			}
			for _, apiURL := range []string{"", "https://platform.invalid"} {
				vars := maps.Clone(vars)
				if apiURL != "" {
					vars["EXT_MSTUDIO_API_URL"] = apiURL
				}
				for _, args := range [][]string{{"token", "--instance", testInstanceID}, {"serve", "--addr", "127.0.0.1:0"}} {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := run(ctx, args, env(vars), &strings.Builder{}, &strings.Builder{})
					cancel()
					// The refusal comes before any call: a call to platform.invalid would
					// have failed on its name instead.
					if err == nil || !strings.Contains(err.Error(), "is dev's") || !strings.Contains(err.Error(), "set EXT_MSTUDIO_API_URL="+sim) {
						t.Errorf("%s with API %q: got %v, want a refusal naming the simulator", args[0], apiURL, err)
					}
					if err != nil && strings.Contains(err.Error(), "simulator-secret") {
						t.Errorf("%s: the error contains the secret", args[0])
					}
				}
			}
			// An API on this machine is let through (here nothing listens: the mint fails).
			vars["EXT_MSTUDIO_API_URL"] = "http://127.0.0.1:1"
			if _, _, err := runCmd(vars, "token", "--instance", testInstanceID); err == nil || strings.Contains(err.Error(), "is dev's") {
				t.Errorf("token with a loopback API: got %v, want the mint tried (and failed)", err)
			}
		})
	}
}

// dev marks its database, and prints a token command that works as printed: under go
// test, as after go run, it is "go run ./cmd/extension-backend token …" with the
// environment dev chose.
func TestDevMarksDatabaseAndPrintsWorkingTokenCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	out, stop := startDev(t, dir)
	defer stop()
	m := regexp.MustCompile(`(?m)^  ((?:EXT_[A-Z_]+=\S+ )+)go run \./cmd/extension-backend token --instance ([0-9a-f-]{36})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dev printed no go run token command:\n%s", out)
	}
	vars := map[string]string{}
	for _, kv := range strings.Fields(m[1]) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	if tok, errOut, err := runCmd(vars, "token", "--instance", m[2]); err != nil || len(strings.TrimSpace(tok)) < 20 {
		t.Fatalf("the printed token command: got %q, %v\n%s", tok, err, errOut)
	}
	delete(vars, "EXT_MSTUDIO_API_URL")
	if _, _, err := runCmd(vars, "token", "--instance", m[2]); err == nil || !strings.Contains(err.Error(), "is dev's") {
		t.Errorf("token for dev's instance without the simulator's URL: got %v, want a refusal", err)
	}
}

func TestSelfCommand(t *testing.T) {
	onPath := func(name string) (string, error) {
		if name == "extension-backend" {
			return "/usr/local/bin/extension-backend", nil
		}
		return "", errors.New("not found")
	}
	executable := func() (string, error) { return "/opt/ext/bin/ext backend", nil }
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ arg0, want string }{
		{"/tmp/go-build2918273/b001/exe/extension-backend", "go run ./cmd/extension-backend"},
		{"/home/u/.cache/tmp/go-build1/b001/exe/extension-backend", "go run ./cmd/extension-backend"},
		{"extension-backend", "extension-backend"},
		{"/usr/local/bin/extension-backend", "/usr/local/bin/extension-backend"},
		{"./bin/extension-backend", filepath.Join(cwd, "bin/extension-backend")},
		{"renamed", "'/opt/ext/bin/ext backend'"}, // not on PATH: the executable, quoted
		{"/srv/it's here/extension-backend", `'/srv/it'\''s here/extension-backend'`},
	} {
		if got := selfCommand(tt.arg0, onPath, executable); got != tt.want {
			t.Errorf("selfCommand(%q): got %q, want %q", tt.arg0, got, tt.want)
		}
	}
}

// A PostgreSQL server that does not answer is one clean line, and nothing else is
// printed (GORM used to log a garbled "%v … pgconn.DialFunc" line first).
func TestUnreachablePostgresIsOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	vars := map[string]string{"EXT_DATABASE_URL": "postgres://ext:pw-Qx7mT2vLp9@127.0.0.1:" + strconv.Itoa(port) + "/ext?connect_timeout=5"}
	for _, args := range [][]string{{"migrate", "status"}, {"instances"}} {
		out, errOut, err := runCmd(vars, args...)
		if err == nil || !strings.HasPrefix(err.Error(), "connect to postgres database: ") || strings.ContainsAny(err.Error(), "\n\t") {
			t.Errorf("%s: got %v, want one line saying the connection failed", args[0], err)
		}
		if out != "" || errOut != "" {
			t.Errorf("%s printed more than its error: stdout %q, stderr %q", args[0], out, errOut)
		}
		if err != nil && strings.Contains(err.Error(), "pw-Qx7mT2vLp9") {
			t.Errorf("%s: the error contains the password", args[0])
		}
	}
}
