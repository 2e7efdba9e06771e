package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// openTestStore opens the database of vars with its keys, as a second process would.
func openTestStore(t *testing.T, vars map[string]string) *extension.Store {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(vars["EXT_ENCRYPTION_KEYS"])
	if err != nil {
		t.Fatal(err)
	}
	kr, err := extension.NewKeyring([][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	return extensiontest.Open(t, vars["EXT_DATABASE_URL"], extension.Options{Keys: kr})
}

// waitCapture waits for the capture of the newest journaled delivery of the instance
// (the recorder writes in the background) and returns its id.
func waitCapture(t *testing.T, vars map[string]string, instanceID, requestID string) string {
	t.Helper()
	var id string
	waitFor(t, "the delivery's capture", 10*time.Second, func() bool {
		out, _, err := runCmd(vars, "deliveries", "--instance", instanceID, "--json")
		var list []deliveryJSON
		if err != nil || json.Unmarshal([]byte(out), &list) != nil {
			return false
		}
		for _, d := range list {
			if d.RequestID == requestID && d.CaptureID != "" {
				id = d.CaptureID
				return true
			}
		}
		return false
	})
	return id
}

// newestRequest is the request id of the instance's newest journaled delivery.
func newestRequest(t *testing.T, s *extension.Store, instanceID string) string {
	t.Helper()
	list, err := s.ListDeliveries(context.Background(), extension.DeliveryFilter{InstanceID: instanceID, Limit: 1})
	if err != nil || len(list) != 1 {
		t.Fatalf("newest delivery of %s: %v, %v", instanceID, list, err)
	}
	return list[0].RequestID
}

// A rotation captured by serve (EXT_CAPTURE_DELIVERIES) and replayed, as captured, onto
// the instance restored to how it was before, reaches the same state; --diff says that the
// secret changed without printing it; a replay signed again with the simulator's key is
// taken as a new delivery. The capture is nowhere readable in the database file.
func TestReplayCapturedRotation(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "simulator-keys.json")
	p := apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID, SecretActivationDelay: -1, KeyFile: keyFile})
	vars := testEnv(t, p.SimURL)
	vars["EXT_CAPTURE_DELIVERIES"] = "24h"
	vars["EXT_LOG_LEVEL"] = "info"
	base, logs, stop := startServe(t, vars)
	s0 := install(t, base, p, testInstanceID).Secret
	store := openTestStore(t, vars)
	ctx := context.Background()
	db, q := store.SQLDB(), store.Dialect().Rebind

	before, err := readInstanceState(ctx, store, testInstanceID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(q(`CREATE TABLE instance_before AS SELECT * FROM instances WHERE id = ?`), testInstanceID); err != nil {
		t.Fatal(err)
	}
	res, err := p.Sim.Trigger(ctx, mstudiotest.CallSecretRotated, mstudiotest.CallRequest{ExtensionInstanceID: testInstanceID})
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("rotate: %+v, %v", res, err)
	}
	in, _ := p.Sim.Instance(testInstanceID)
	s1 := in.Secret
	rotated, err := readInstanceState(ctx, store, testInstanceID)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.secret.Reveal() != s1 || before.secret.Reveal() != s0 {
		t.Fatal("the rotation did not store the new secret")
	}
	captureID := waitCapture(t, vars, testInstanceID, newestRequest(t, store, testInstanceID))

	// Back to before the rotation, then the replay.
	if _, err := db.Exec(q(`DELETE FROM instances WHERE id = ?`), testInstanceID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO instances SELECT * FROM instance_before`); err != nil {
		t.Fatal(err)
	}
	if restored, err := readInstanceState(ctx, store, testInstanceID); err != nil || !sameState(restored, before) {
		t.Fatalf("restore: %v", err)
	}
	out, errOut, err := runCmd(vars, "webhook", "replay", captureID, "--sign", "captured", "--diff", "--key-file", keyFile)
	if err != nil {
		t.Fatalf("replay: %v\n%s\n%s", err, out, errOut)
	}
	if !strings.Contains(out, "as captured") || !strings.Contains(out, "204") || !strings.Contains(out, "  secret changed") {
		t.Errorf("replay --diff output: want it sent as captured, 204 and 'secret changed':\n%s", out)
	}
	replayed, err := readInstanceState(ctx, store, testInstanceID)
	if err != nil {
		t.Fatal(err)
	}
	if !sameState(replayed, rotated) {
		t.Errorf("after the replay: got %v, want the state after the rotation %v (secrets equal: %v)",
			replayed.fields, rotated.fields, replayed.secret == rotated.secret)
	}

	// Sent again as captured: the same event once more, a duplicate that changes nothing.
	out2, _, err := runCmd(vars, "webhook", "replay", captureID, "--sign", "captured", "--diff")
	if err != nil || !strings.Contains(out2, "no change") {
		t.Errorf("second replay as captured: got %v\n%s\nwant no change", err, out2)
	}
	// Signed again by the simulator: a new request id and time, so a new delivery.
	out3, errOut, err := runCmd(vars, "webhook", "replay", captureID, "--to", base+"/mstudio/webhooks", "--key-file", keyFile, "--diff")
	if err != nil || !strings.Contains(out3, "signed again with the simulator key") || !strings.Contains(out3, "last event:") {
		t.Errorf("replay signed again: got %v\n%s\n%s\nwant a new delivery that moves the last event", err, out3, errOut)
	}
	list, _, err := runCmd(vars, "deliveries", "--instance", testInstanceID)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{s0, s1} {
		for name, text := range map[string]string{"replay": out, "replay 2": out2, "replay 3": out3, "deliveries": list} {
			if strings.Contains(text, secret) {
				t.Errorf("%s output holds an instance secret", name)
			}
		}
	}

	// The database file, log included, holds neither the secret nor the body in the clear.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	store.Close()
	path := strings.TrimPrefix(vars["EXT_DATABASE_URL"], "sqlite:")
	for _, f := range []string{path, path + "-wal"} {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, marker := range []string{s1, `"apiVersion"`, `consentedScopes`} {
			if bytes.Contains(data, []byte(marker)) {
				t.Errorf("%s holds %q in the clear", filepath.Base(f), marker[:min(len(marker), 12)])
			}
		}
	}
	if strings.Contains(logs.String(), s1) {
		t.Error("serve's log holds the secret")
	}
}

func sameState(a, b *instanceState) bool {
	if a.exists != b.exists || len(a.fields) != len(b.fields) || a.secret != b.secret {
		return false
	}
	for i := range a.fields {
		if a.fields[i] != b.fields[i] {
			return false
		}
	}
	return true
}

// serve captures nothing unless EXT_CAPTURE_DELIVERIES says so.
func TestServeCapturesNothingByDefault(t *testing.T) {
	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	base, _, stop := startServe(t, vars)
	install(t, base, p, testInstanceID)
	if err := stop(); err != nil { // a recorder would have written what it held by now
		t.Fatal(err)
	}
	store := openTestStore(t, vars)
	var n int
	if err := store.SQLDB().QueryRow(`SELECT COUNT(*) FROM webhook_captures`).Scan(&n); err != nil || n != 0 {
		t.Errorf("captures with EXT_CAPTURE_DELIVERIES unset: got %d, %v; want none", n, err)
	}
	out, _, err := runCmd(vars, "deliveries")
	if err != nil || !strings.Contains(out, testInstanceID) || !strings.Contains(out, "applied") {
		t.Errorf("deliveries: got %v\n%s\nwant the install, applied", err, out)
	}
}

// A retention that is no duration, or out of bounds, stops serve at start.
func TestCaptureRetentionRefused(t *testing.T) {
	for _, v := range []string{"yes", "0", "-1h", "30s", "31d", "24", "1e3h"} {
		vars := testEnv(t, "http://127.0.0.1:1")
		vars["EXT_CAPTURE_DELIVERIES"] = v
		_, _, err := runCmd(vars, "serve", "--addr", "127.0.0.1:0")
		if err == nil || !strings.HasPrefix(err.Error(), "EXT_CAPTURE_DELIVERIES: ") {
			t.Errorf("EXT_CAPTURE_DELIVERIES=%q: got %v, want a refusal naming it", v, err)
		}
	}
	for v, want := range map[string]time.Duration{"": 0, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute} {
		cfg, err := loadConfig(env(map[string]string{"EXT_CAPTURE_DELIVERIES": v}), needs{})
		if err != nil || cfg.CaptureDeliveries != want {
			t.Errorf("EXT_CAPTURE_DELIVERIES=%q: got %v, %v; want %s", v, cfg, err, want)
		}
	}
}

// prune drops captures past the retention, and every capture once capturing is off.
func TestPruneCapturesRetention(t *testing.T) {
	store := extensiontest.NewStore(t, extension.SQLite)
	ctx := context.Background()
	now := time.Now()
	batch := []extension.CapturedDelivery{
		{InstanceID: "i-1", ReceivedAt: now.Add(-25 * time.Hour), Body: []byte("old")},
		{InstanceID: "i-1", ReceivedAt: now.Add(-time.Hour), Body: []byte("new")},
	}
	if err := store.SaveCaptures(ctx, batch); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		var n int
		if err := store.SQLDB().QueryRow(`SELECT COUNT(*) FROM webhook_captures`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	pruneOnce(ctx, store, 24*time.Hour, now, slog.New(slog.DiscardHandler))
	if got := count(); got != 1 {
		t.Errorf("after pruning with 24h: got %d captures, want 1", got)
	}
	pruneOnce(ctx, store, 0, now, slog.New(slog.DiscardHandler))
	if got := count(); got != 0 {
		t.Errorf("after pruning with capture off: got %d captures, want 0", got)
	}
}

// The deliveries command on both dialects: newest first, filters, capture ids, text from
// outside escaped, --json exact, bad filters refused with the outcomes listed.
func TestDeliveriesCommand(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			vars := map[string]string{"EXT_DATABASE_URL": extensiontest.URL(t, d), "EXT_LOG_LEVEL": "error"}
			if _, errOut, err := runCmd(vars, "migrate", "up"); err != nil {
				t.Fatalf("migrate up: %v\n%s", err, errOut)
			}
			store := extensiontest.Open(t, vars["EXT_DATABASE_URL"], extension.Options{Keys: extensiontest.Keyring(t)})
			ctx := context.Background()
			evil := "i-\x1b[31mred\u202e"
			now := time.Now().UTC()
			for _, r := range []struct {
				instance, request string
				outcome           extension.Outcome
				reason            string
			}{
				{"i-1", "req-a", extension.OutcomeDryRun, ""},
				{evil, "req-b", extension.OutcomeRefused, "meta.extensionId is not this extension's id"},
				{"i-1", "req-c", extension.OutcomeStale, "newer events already set every field it carries"},
			} {
				ev := extension.LifecycleEvent{Kind: extension.EventUpdated, RequestID: r.request, InstanceID: r.instance, CreatedAt: now}
				if err := store.RecordDelivery(ctx, ev, extension.Result{Outcome: r.outcome, Reason: r.reason}); err != nil {
					t.Fatal(err)
				}
			}
			capture := []extension.CapturedDelivery{{InstanceID: "i-1", RequestID: "req-c", Verified: true, ReceivedAt: now, Body: []byte(`{"secret":"s3cr3t-value"}`)}}
			if err := store.SaveCaptures(ctx, capture); err != nil {
				t.Fatal(err)
			}

			out, errOut, err := runCmd(vars, "deliveries")
			if err != nil {
				t.Fatalf("deliveries: %v\n%s", err, errOut)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 4 {
				t.Fatalf("deliveries: want a header and 3 rows:\n%s", out)
			}
			if !strings.Contains(lines[1], "stale") || !strings.Contains(lines[1], capture[0].ID) || !strings.Contains(lines[3], "dry-run") {
				t.Errorf("deliveries: want the stale delivery with its capture first, the dry run last:\n%s", out)
			}
			if strings.Contains(out, "\x1b") || strings.Contains(out, "\u202e") || !strings.Contains(out, `i-\x1b[31mred\u202e`) {
				t.Errorf("deliveries: want the instance id escaped:\n%q", out)
			}
			if strings.Contains(out, "s3cr3t-value") {
				t.Error("deliveries prints a captured body")
			}

			out, _, err = runCmd(vars, "deliveries", "--instance", "i-1", "--outcome", "stale", "--since", "1h", "--json")
			var list []deliveryJSON
			if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].RequestID != "req-c" ||
				list[0].CaptureID != capture[0].ID || list[0].Reason != "newer events already set every field it carries" {
				t.Errorf("deliveries --instance i-1 --outcome stale --json: got %v\n%s", err, out)
			}
			out, _, err = runCmd(vars, "deliveries", "--outcome", "refused", "--json")
			if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].InstanceID != evil {
				t.Errorf("deliveries --json: want the instance id exact: got %v\n%s", err, out)
			}
			out, _, err = runCmd(vars, "deliveries", "--since", now.Add(time.Hour).Format(time.RFC3339))
			if err != nil || strings.TrimSpace(out) != "no deliveries" {
				t.Errorf("deliveries since an hour ahead: got %v\n%s", err, out)
			}
			for _, bad := range [][]string{{"--outcome", "Applied"}, {"--since", "yesterday"}, {"--since", "-1h"}, {"--limit", "0"}, {"extra"}} {
				_, _, err := runCmd(vars, append([]string{"deliveries"}, bad...)...)
				if exitCode(err) != 2 {
					t.Errorf("deliveries %v: got %v, want a usage error", bad, err)
				}
			}
			_, _, err = runCmd(vars, "deliveries", "--outcome", "\x1bbad")
			if err == nil || !strings.Contains(err.Error(), "partly-applied") || strings.Contains(err.Error(), "\x1b") {
				t.Errorf("unknown outcome: got %v, want the outcomes listed and the input escaped", err)
			}
		})
	}
}

func TestParseSinceAndRetention(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"2026-12-01T08:00:00Z":      time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		"2026-12-01T09:00:00+01:00": time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q): got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "0", "-1h", "+1d", "-1d", "0d", "9999d", "yesterday", "2026-12-01"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q): want an error", in)
		}
	}
}

func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"24h", "7d", "2026-12-01T08:00:00Z", "-1h", "1e9d", "0d", "\x1b[2J", "99999999999h"} {
		f.Add(s)
	}
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSince(s, now)
		if err != nil {
			if got != (time.Time{}) || strings.ContainsAny(err.Error(), "\x1b\n\r") {
				t.Fatalf("%q: error %q with a time %v", s, err, got)
			}
			return
		}
		if _, rfcErr := time.Parse(time.RFC3339Nano, s); rfcErr != nil && !got.Before(now) {
			t.Fatalf("%q: a duration back that is not in the past: %v", s, got)
		}
	})
}

func FuzzParseCaptureRetention(f *testing.F) {
	for _, s := range []string{"24h", "7d", "30d", "31d", "1m", "59s", "0", "-5m", "1d1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseCaptureRetention(s)
		if err == nil && (d < time.Minute || d > maxRetention) {
			t.Fatalf("%q: got %s, outside the bounds", s, d)
		}
		if err != nil && d != 0 {
			t.Fatalf("%q: got %s with error %v", s, d, err)
		}
	})
}

// webhook replay refuses what it cannot replay with a clear error, and sends nothing.
func TestReplayRefusals(t *testing.T) {
	vars := testEnv(t, "http://127.0.0.1:1")
	if _, errOut, err := runCmd(vars, "migrate", "up"); err != nil {
		t.Fatalf("migrate up: %v\n%s", err, errOut)
	}
	store := openTestStore(t, vars)
	unverified := []extension.CapturedDelivery{{Body: []byte("forged"), ReceivedAt: time.Now(), URL: "http://127.0.0.1:1/mstudio/webhooks"}}
	if err := store.SaveCaptures(context.Background(), unverified); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
		exit int
	}{
		{[]string{"not-an-id"}, "is no capture id", 2},
		{[]string{"\x1b[2J"}, `\x1b[2J`, 2},
		{[]string{unverified[0].ID, "--sign", "maybe"}, "--sign", 2},
		{[]string{unverified[0].ID, "--to", "ftp://x"}, "--to", 2},
		{[]string{unverified[0].ID, "extra"}, "one capture id", 2},
		{[]string{"0123456789abcdef01234567"}, "no captured delivery 0123456789abcdef01234567", 1},
		{[]string{unverified[0].ID, "--diff"}, "did not verify", 1},
	} {
		_, _, err := runCmd(vars, append([]string{"webhook", "replay"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != tt.exit || strings.Contains(err.Error(), "\x1b") {
			t.Errorf("webhook replay %q: got %v (exit %d), want %q (exit %d)", tt.args, err, exitCode(err), tt.want, tt.exit)
		}
	}
}
