package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// newKeyFileSim is a simulator over HTTP whose keys are in a file, as bench signs with it.
func newKeyFileSim(t *testing.T) (url, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(t.TempDir(), "keys.json")
	sim, err := mstudiotest.New(mstudiotest.Options{ExtensionID: testExtensionID, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return srv.URL, keyFile
}

var ratioRE = regexp.MustCompile(`backend/prototype throughput\s+([0-9.]+)x \(median of 2 rounds`)

// bench webhooks --baseline loads the prototype and the backend in turns and reports the
// backend's throughput as a ratio of the prototype's; the prototype's table is gone after.
func TestBenchBesideBaseline(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			apiURL, keyFile := newKeyFileSim(t)
			vars := testEnv(t, apiURL)
			vars["EXT_DATABASE_URL"] = extensiontest.URL(t, d)
			vars["EXT_LOG_LEVEL"] = "info"
			base, _, _ := startServe(t, vars, "--workers", "0")
			baseline := extensiontest.URL(t, d)
			out, errOut, err := runCmd(map[string]string{"EXT_EXTENSION_ID": testExtensionID}, "bench", "webhooks",
				"--to", base+"/mstudio/webhooks", "--key-file", keyFile, "--duration", "400ms", "--concurrency", "4",
				"--instances", "20", "--rounds", "2", "--baseline", baseline)
			if err != nil {
				t.Fatalf("bench: %v\n%s\n%s", err, out, errOut)
			}
			for _, want := range []string{"round 1, prototype", "round 1, backend", "round 2, backend", "round 2, prototype"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for line := range strings.Lines(out) {
				if strings.HasPrefix(line, "status") && strings.Count(line, ":") != 1 {
					t.Errorf("a run had answers other than 204: %q\n%s", line, out)
				}
			}
			m := ratioRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no ratio in the output:\n%s", out)
			}
			if r, err := strconv.ParseFloat(m[1], 64); err != nil || r <= 0 {
				t.Errorf("ratio %q, want a positive number", m[1])
			}
			if tables := prototypeTables(t, baseline); len(tables) > 0 {
				t.Errorf("the prototype left tables behind: %v", tables)
			}
		})
	}
}

// prototypeTables lists the prototype's tables in the database at databaseURL.
func prototypeTables(t *testing.T, databaseURL string) []string {
	t.Helper()
	dialect, dsn, err := extension.ParseDatabaseURL(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	query := `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name LIKE 'bench_prototype_%'`
	driver := "pgx"
	if dialect == extension.SQLite {
		driver, dsn = "sqlite3", "file:"+dsn
		query = `SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'bench_prototype_%'`
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// The prototype is a fair yardstick only if it does the work it stands for: it refuses a
// body whose signature does not verify, and writes a verified one to its table.
func TestPrototypeVerifiesAndInserts(t *testing.T) {
	_, keyFile := newKeyFileSim(t)
	key, err := mstudiotest.LoadKeyFile(keyFile, mstudiotest.PurposeWebhook)
	if err != nil {
		t.Fatal(err)
	}
	p, err := startPrototype(context.Background(), extensiontest.SQLiteURL(t), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	id := uuid.NewString()
	body := addedBody(id, "s3cret", time.Now())
	post := func(sign func(http.Header)) int {
		req, err := http.NewRequest(http.MethodPost, p.URL(), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		sign(req.Header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(func(h http.Header) {
		mstudio.Sign(h, key.Serial, key.Private, []byte(`{"id":"another body"}`))
	}); got != http.StatusUnauthorized {
		t.Errorf("signature of another body: got %d, want 401", got)
	}
	if got := post(func(h http.Header) { h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString([]byte("x"))) }); got != http.StatusUnauthorized {
		t.Errorf("garbage signature: got %d, want 401", got)
	}
	var n int
	if err := p.db.QueryRow(`SELECT COUNT(*) FROM ` + p.table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after refused deliveries: %d rows (%v), want 0", n, err)
	}
	for range 2 { // the second is the upsert's update
		if got := post(func(h http.Header) { mstudio.Sign(h, key.Serial, key.Private, body) }); got != http.StatusNoContent {
			t.Errorf("signed delivery: got %d, want 204", got)
		}
	}
	if err := p.db.QueryRow(`SELECT COUNT(*) FROM `+p.table+` WHERE id = ?`, id).Scan(&n); err != nil || n != 1 {
		t.Errorf("after the signed deliveries: %d rows of the instance (%v), want 1", n, err)
	}
}

func TestBenchBaselineUsageErrors(t *testing.T) {
	_, keyFile := newKeyFileSim(t)
	for _, args := range [][]string{
		{"--rounds", "0", "--baseline", extensiontest.SQLiteURL(t)},
		{"--rounds", "21", "--baseline", extensiontest.SQLiteURL(t)},
	} {
		out, _, err := runCmd(map[string]string{"EXT_EXTENSION_ID": testExtensionID},
			append([]string{"bench", "webhooks", "--to", "http://127.0.0.1:1/", "--key-file", keyFile}, args...)...)
		if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--rounds") || out != "" {
			t.Errorf("%v: got %v (output %q), want a usage error naming --rounds", args, err, out)
		}
	}
	// A database URL the prototype cannot use is named as --baseline's, before any load.
	out, _, err := runCmd(map[string]string{"EXT_EXTENSION_ID": testExtensionID}, "bench", "webhooks",
		"--to", "http://127.0.0.1:1/", "--key-file", keyFile, "--baseline", "mysql://x")
	if err == nil || !strings.Contains(err.Error(), "--baseline") || out != "" {
		t.Errorf("--baseline mysql://x: got %v (output %q), want an error naming --baseline", err, out)
	}
}
