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
					if err == nil || !strings.Contains(err.Error(), "belongs to the platform simulator at "+sim) || !strings.Contains(err.Error(), "set EXT_MSTUDIO_API_URL="+sim) {
						t.Errorf("%s with API %q: got %v, want a refusal naming the simulator", args[0], apiURL, err)
					}
					if err != nil && strings.Contains(err.Error(), "simulator-secret") {
						t.Errorf("%s: the error contains the secret", args[0])
					}
				}
			}
			// An API on this machine is let through (here nothing listens: the mint fails).
			vars["EXT_MSTUDIO_API_URL"] = "http://127.0.0.1:1"
			if _, _, err := runCmd(vars, "token", "--instance", testInstanceID); err == nil || strings.Contains(err.Error(), "belongs to the platform simulator") {
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
	if _, _, err := runCmd(vars, "token", "--instance", m[2]); err == nil || !strings.Contains(err.Error(), "belongs to the platform simulator") {
		t.Errorf("token for dev's instance without the simulator's URL: got %v, want a refusal", err)
	}
}

// serve and token with an API on this machine mark a database that holds no instance yet
// as the simulator's, so that a later start without EXT_MSTUDIO_API_URL refuses it; a
// database that already holds instances is left unmarked, with one warning saying why.
func TestLoopbackAPIMarksAnEmptyDatabase(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			const sim = "http://127.0.0.1:1" // nothing listens: serve starts all the same
			byServe := testEnv(t, sim)
			byServe["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			_, log, stop := startServe(t, byServe)
			if err := stop(); err != nil {
				t.Fatalf("serve: %v", err)
			}
			if !strings.Contains(log.String(), "database marked as the platform simulator's") {
				t.Errorf("serve logged no mark:\n%s", log)
			}
			byToken := testEnv(t, sim)
			byToken["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			if _, errOut, err := runCmd(byToken, "migrate", "up"); err != nil {
				t.Fatalf("migrate up: %v\n%s", err, errOut)
			}
			// The mark comes before the instance is looked up, which fails here.
			if _, _, err := runCmd(byToken, "token", "--instance", testInstanceID); err == nil || !strings.Contains(err.Error(), "is not known here") {
				t.Fatalf("token for an unknown instance: got %v", err)
			}
			for name, vars := range map[string]map[string]string{"marked by serve": byServe, "marked by token": byToken} {
				// Without EXT_MSTUDIO_API_URL (the real platform) only token runs: had the
				// mark been missing, it would fail on the unknown instance before any call,
				// whereas serve would start fetching the platform's keys.
				for _, tt := range []struct{ apiURL, cmd string }{{"", "token"}, {"https://platform.invalid", "token"}, {"https://platform.invalid", "serve"}} {
					vars := maps.Clone(vars)
					delete(vars, "EXT_MSTUDIO_API_URL")
					if tt.apiURL != "" {
						vars["EXT_MSTUDIO_API_URL"] = tt.apiURL
					}
					args := []string{"token", "--instance", testInstanceID}
					if tt.cmd == "serve" {
						args = []string{"serve", "--addr", "127.0.0.1:0"}
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := run(ctx, args, env(vars), &strings.Builder{}, &strings.Builder{})
					cancel()
					if err == nil || !strings.Contains(err.Error(), "belongs to the platform simulator at "+sim) {
						t.Errorf("%s, then %s with API %q: got %v, want a refusal naming the simulator", name, tt.cmd, tt.apiURL, err)
					}
				}
			}

			// Instances that were there before: perhaps the real platform's, so no mark.
			used := testEnv(t, sim)
			used["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			store := seedInstance(t, used, testInstanceID, "secret-of-unknown-origin")
			const warning = "database not marked as the platform simulator's: it already holds instances"
			_, errOut, err := runCmd(used, "token", "--instance", unknownAtPlatform)
			if err == nil || !strings.Contains(err.Error(), "is not known here") || strings.Count(errOut, warning) != 1 {
				t.Errorf("token on a database with instances: got %v, want the lookup tried after one warning; stderr:\n%s", err, errOut)
			}
			_, log, stop = startServe(t, used)
			if err := stop(); err != nil || strings.Count(log.String(), warning) != 1 {
				t.Errorf("serve on a database with instances: got %v, want one warning; log:\n%s", err, log)
			}
			if mark, err := store.SimulatorURL(context.Background()); err != nil || mark != "" {
				t.Errorf("a database with instances: got mark %q, %v; want none", mark, err)
			}
		})
	}
}

// dev refuses a database given through EXT_DATABASE_URL that holds instances without the
// simulator's mark (marking it would keep them from the real platform), and leaves it as it
// was.
func TestDevRefusesUnmarkedDatabaseWithInstances(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			vars := testEnv(t, "")
			vars["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			store := seedInstance(t, vars, testInstanceID, "a-real-platform-secret")
			devVars := map[string]string{"EXT_DATABASE_URL": vars["EXT_DATABASE_URL"], "EXT_ENCRYPTION_KEYS": vars["EXT_ENCRYPTION_KEYS"]}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := run(ctx, []string{"dev", "--addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data")},
				env(devVars), &syncBuffer{}, &syncBuffer{})
			if exitCode(err) != 1 {
				t.Fatalf("dev on a database with instances of its own: got %v, want a failure (exit 1)", err)
			}
			for _, want := range []string{"holds instances that did not come from the platform simulator", "point dev at another database with --data"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("got %q, want it to say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("got %q, want one line", err)
			}
			if mark, err := store.SimulatorURL(ctx); err != nil || mark != "" {
				t.Errorf("after dev refused: got mark %q, %v; want none", mark, err)
			}
		})
	}
}

// dev's own database under --data, filled before the mark existed, is dev's: dev marks it
// and runs.
func TestDevMarksItsOwnDatabaseFromBeforeTheMark(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	key := extensiontest.Key(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "encryption.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := seedInstance(t, map[string]string{
		"EXT_DATABASE_URL":    "sqlite:" + filepath.Join(dir, "extension.db"),
		"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(key),
	}, testInstanceID, "an-old-dev-secret")
	_, stop := startDev(t, dir)
	if err := stop(); err != nil {
		t.Fatalf("dev: %v", err)
	}
	if mark, err := store.SimulatorURL(context.Background()); err != nil || !strings.HasPrefix(mark, "http://127.0.0.1:") {
		t.Errorf("dev's own database: got mark %q, %v; want dev's simulator", mark, err)
	}
}

// Where the schema lets it, serve checks the database before migrating it: a start it
// refuses (another key; the simulator's database with another API) leaves the schema as
// it found it, here without the job queue's tables. Accepted, it migrates and starts.
func TestRefusedServeMigratesNothing(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			vars := testEnv(t, "http://127.0.0.1:1")
			vars["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			store := installInstance(t, vars, testInstanceID, "secret-sealed-with-A") // our schema only
			status := func() string {
				t.Helper()
				out, errOut, err := runCmd(vars, "migrate", "status")
				if err != nil {
					t.Fatalf("migrate status: %v\n%s", err, errOut)
				}
				return out
			}
			serve := func(vars map[string]string, flags ...string) error { // one that is refused, or stops after a minute
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				return run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...), env(vars), &strings.Builder{}, &strings.Builder{})
			}
			before := status()
			if strings.Contains(before, "job queue (River): up to date") {
				t.Fatalf("the job queue is migrated before serve ran:\n%s", before)
			}
			if err := serve(vars, "--no-migrate"); err == nil || !strings.Contains(err.Error(), "run extension-backend migrate up") {
				t.Errorf("serve --no-migrate on a schema behind: got %v, want advice to migrate", err)
			}

			otherKey := maps.Clone(vars)
			otherKey["EXT_ENCRYPTION_KEYS"] = base64.StdEncoding.EncodeToString(extensiontest.Key(t))
			if err := store.MarkSimulated(context.Background(), "http://127.0.0.1:8081"); err != nil {
				t.Fatal(err)
			}
			elsewhere := maps.Clone(vars)
			elsewhere["EXT_MSTUDIO_API_URL"] = "https://platform.invalid"
			for _, tt := range []struct {
				name string
				vars map[string]string
				want string
			}{
				{"another key", otherKey, "which EXT_ENCRYPTION_KEYS does not have"},
				{"another API", elsewhere, "belongs to the platform simulator"},
			} {
				if err := serve(tt.vars); exitCode(err) != 1 || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("serve with %s: got %v, want a refusal saying %q", tt.name, err, tt.want)
				}
				if after := status(); after != before {
					t.Errorf("serve with %s changed the schema:\nbefore:\n%s\nafter:\n%s", tt.name, before, after)
				}
			}

			_, _, stop := startServe(t, vars)
			if err := stop(); err != nil {
				t.Fatalf("serve: %v", err)
			}
			if after := status(); !strings.Contains(after, "job queue (River): up to date") {
				t.Errorf("after serve started: got\n%s\nwant the job queue migrated", after)
			}
			// On a schema that is up to date, --no-migrate checks as well, and starts.
			if err := serve(otherKey, "--no-migrate"); err == nil || !strings.Contains(err.Error(), "which EXT_ENCRYPTION_KEYS does not have") {
				t.Errorf("serve --no-migrate with another key: got %v, want a refusal", err)
			}
			_, _, stop = startServe(t, vars, "--no-migrate")
			if err := stop(); err != nil {
				t.Errorf("serve --no-migrate: %v", err)
			}
		})
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
