package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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

var prototypePIDRE = regexp.MustCompile(`prototype: a process of its own \(pid ([0-9]+)\)`)

var ratioRE = regexp.MustCompile(`backend/prototype throughput\s+([0-9.]+)x \(median of 2 rounds`)

// bench webhooks --baseline loads the prototype and the backend in turns and reports the
// backend's throughput as a ratio of the prototype's; the prototype's table is gone after.
func TestBenchBesideBaseline(t *testing.T) {
	pause := turnPause
	turnPause = 100 * time.Millisecond // nothing left to settle between runs this short
	t.Cleanup(func() { turnPause = pause })
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
			// The prototype ran in a process of its own, and is gone.
			m := prototypePIDRE.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("the output does not name the prototype's process:\n%s", out)
			}
			if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || pid <= 0 {
				t.Errorf("the prototype ran in pid %s, this process is %d: want a process of its own", m[1], os.Getpid())
			} else if processRunning(pid) {
				t.Errorf("the prototype's process %d still runs after the bench", pid)
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
			m = ratioRE.FindStringSubmatch(out)
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
	p, err := startPrototype(context.Background(), extensiontest.SQLiteURL(t), key.Public(), "127.0.0.1:0")
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
	// bench prototype needs its database, and names a wrong one.
	if _, _, err := runCmd(nil, "bench", "prototype", "--key-file", keyFile); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "--baseline") {
		t.Errorf("bench prototype without --baseline: got %v, want a usage error naming --baseline", err)
	}
	if out, _, err := runCmd(nil, "bench", "prototype", "--key-file", keyFile, "--baseline", "mysql://x"); err == nil || !strings.Contains(err.Error(), "--baseline") || out != "" {
		t.Errorf("bench prototype --baseline mysql://x: got %v (output %q), want an error naming --baseline", err, out)
	}
	// --baseline - reads the URL from standard input, and refuses an empty one.
	stdin := benchStdin
	t.Cleanup(func() { benchStdin = stdin })
	benchStdin = strings.NewReader("mysql://x\n")
	if _, _, err := runCmd(nil, "bench", "prototype", "--key-file", keyFile, "--baseline", "-"); err == nil || !strings.Contains(err.Error(), "--baseline") {
		t.Errorf("bench prototype --baseline - with mysql://x on stdin: got %v, want that URL refused as --baseline's", err)
	}
	benchStdin = strings.NewReader("")
	if _, _, err := runCmd(nil, "bench", "prototype", "--key-file", keyFile, "--baseline", "-"); err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Errorf("bench prototype --baseline - with nothing on stdin: got %v, want an error naming standard input", err)
	}
}

// bench prototype serves the prototype until interrupted, says where on its first line,
// verifies as the prototype does, and drops its table when it stops.
func TestBenchPrototypeServes(t *testing.T) {
	_, keyFile := newKeyFileSim(t)
	baseline := extensiontest.SQLiteURL(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bench", "prototype", "--baseline", baseline, "--key-file", keyFile}, env(nil), stdout, &syncBuffer{})
	}()
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if line, ok := strings.CutPrefix(stdout.String(), prototypeLinePrefix); ok {
			url = strings.TrimSpace(line)
		}
	}
	if url == "" {
		cancel()
		t.Fatalf("no line saying where the prototype listens: %q", stdout.String())
	}
	// An unsigned delivery is refused.
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unsigned delivery: %d, want 401", resp.StatusCode)
	}
	if tables := prototypeTables(t, baseline); len(tables) != 1 {
		t.Errorf("while it serves, prototype tables %v, want one", tables)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("bench prototype: %v", err)
	}
	if tables := prototypeTables(t, baseline); len(tables) > 0 {
		t.Errorf("the prototype left tables behind: %v", tables)
	}
}

// bench prototype --baseline - takes its database from standard input and stops, dropping
// its table, when standard input closes: how bench webhooks stops it, and how it ends
// when bench webhooks dies.
func TestBenchPrototypeStopsWhenStdinCloses(t *testing.T) {
	_, keyFile := newKeyFileSim(t)
	baseline := extensiontest.SQLiteURL(t)
	in, feed := io.Pipe()
	stdin := benchStdin
	benchStdin = in
	t.Cleanup(func() { benchStdin = stdin })
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"bench", "prototype", "--baseline", "-", "--key-file", keyFile}, env(nil), stdout, &syncBuffer{})
	}()
	if _, err := io.WriteString(feed, baseline+"\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.HasPrefix(stdout.String(), prototypeLinePrefix); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no line saying where the prototype listens: %q", stdout.String())
		}
	}
	if tables := prototypeTables(t, baseline); len(tables) != 1 {
		t.Errorf("while it serves, prototype tables %v, want one", tables)
	}
	feed.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("bench prototype: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bench prototype still runs 10 s after its standard input closed")
	}
	if tables := prototypeTables(t, baseline); len(tables) > 0 {
		t.Errorf("the prototype left tables behind: %v", tables)
	}
}

// A prototype whose process dies during the bench fails the bench with that said, not
// with a ratio.
func TestBenchFailsWhenPrototypeDies(t *testing.T) {
	pause := turnPause
	turnPause = 100 * time.Millisecond
	t.Cleanup(func() { turnPause = pause })
	apiURL, keyFile := newKeyFileSim(t)
	vars := testEnv(t, apiURL)
	base, _, _ := startServe(t, vars, "--workers", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bench", "webhooks", "--to", base + "/mstudio/webhooks", "--key-file", keyFile, "--duration", "1s",
			"--concurrency", "4", "--instances", "20", "--rounds", "3", "--baseline", extensiontest.SQLiteURL(t)},
			env(map[string]string{"EXT_EXTENSION_ID": testExtensionID}), stdout, &syncBuffer{})
	}()
	var pid int
	for deadline := time.Now().Add(20 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the bench never named the prototype's process: %q", stdout.String())
		}
		if m := prototypePIDRE.FindStringSubmatch(stdout.String()); m != nil {
			pid, _ = strconv.Atoi(m[1])
		}
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "prototype's process ended") {
			t.Fatalf("bench with its prototype killed: got %v, want an error saying the prototype's process ended\n%s", err, stdout.String())
		}
		if strings.Contains(stdout.String(), "backend/prototype throughput") {
			t.Errorf("a ratio was reported although the prototype died:\n%s", stdout.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the bench did not end within 60 s of its prototype's death")
	}
}
