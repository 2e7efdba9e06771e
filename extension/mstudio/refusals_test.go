package mstudio_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
)

// logLine is one JSON line of a RefusalLog.
type logLine struct {
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	Reason     string `json:"reason"`
	Client     string `json:"client"`
	LastClient string `json:"last_client"`
	Repeated   int    `json:"repeated"`
}

func logLines(t *testing.T, logs *extensiontest.LogBuffer) []logLine {
	t.Helper()
	var out []logLine
	for l := range strings.Lines(logs.String()) {
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, ll)
	}
	return out
}

// TestRefusalLogFirstOnly: many identical refusals within an interval write one line,
// the first; another reason writes its own; none is an error.
func TestRefusalLogFirstOnly(t *testing.T) {
	logs := new(extensiontest.LogBuffer)
	rl := mstudio.NewRefusalLog(slog.New(slog.NewJSONHandler(logs, nil)), "webhook refused", slog.LevelWarn, time.Hour)
	for i := range 10_000 {
		rl.Refused(t.Context(), "signature does not match the body", fmt.Sprintf("203.0.113.%d", i%200))
	}
	rl.Refused(t.Context(), "signature serial is unknown", "not an address\x1b[31m")
	rl.Refused(t.Context(), "signature serial is unknown", "192.0.2.1")
	want := []logLine{
		{Level: "WARN", Msg: "webhook refused", Reason: "signature does not match the body", Client: "203.0.113.0"},
		{Level: "WARN", Msg: "webhook refused", Reason: "signature serial is unknown", Client: "unparsed"},
	}
	got := logLines(t, logs)
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(got), len(want), logs)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestRefusalLogSummarizes: refusals that go on are counted, one line per interval, so
// every refusal is accounted for; then the window closes and the next one is logged at once.
func TestRefusalLogSummarizes(t *testing.T) {
	const (
		n        = 2_000
		interval = 20 * time.Millisecond
	)
	logs := new(extensiontest.LogBuffer)
	rl := mstudio.NewRefusalLog(slog.New(slog.NewJSONHandler(logs, nil)), "session token refused", slog.LevelInfo, interval)
	start := time.Now()
	for i := range n {
		rl.Refused(t.Context(), "expired", "192.0.2.1")
		if i%100 == 0 {
			time.Sleep(interval / 4) // the flood spans several intervals
		}
	}
	// Every refusal is in a line once the last interval is over.
	var lines []logLine
	counted := 0
	for deadline := time.Now().Add(10 * time.Second); counted != n; time.Sleep(interval) {
		if time.Now().After(deadline) {
			t.Fatalf("counted %d refusals of %d within 10 s:\n%s", counted, n, logs)
		}
		lines, counted = logLines(t, logs), 0
		for _, l := range lines {
			counted += max(l.Repeated, 1)
		}
	}
	elapsed := time.Since(start)
	if bound := 2 + int(elapsed/interval); len(lines) > bound {
		t.Errorf("%d lines for %d refusals in %s, want at most %d", len(lines), n, elapsed, bound)
	}
	if first := lines[0]; first.Repeated != 0 || first.Client != "192.0.2.1" || first.Level != "INFO" {
		t.Errorf("first line = %+v, want the refusal itself", first)
	}
	for _, l := range lines[1:] {
		if l.Repeated == 0 || l.LastClient != "192.0.2.1" {
			t.Errorf("line %+v, want a count of repeats", l)
		}
	}
	// Once an interval passed without one, a refusal is logged at once again. A try too
	// early counts as a repeat and keeps the window open: the waits grow.
	for wait, deadline := interval, time.Now().Add(10*time.Second); ; wait += interval {
		time.Sleep(wait)
		before := len(logLines(t, logs))
		rl.Refused(t.Context(), "expired", "192.0.2.2")
		if got := logLines(t, logs); len(got) > before && got[len(got)-1].Client == "192.0.2.2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the window never closed:\n%s", logs)
		}
	}
}

// TestRefusalLogBoundsReasons: a caller passing ever new reasons cannot make the log
// write a line per refusal.
func TestRefusalLogBoundsReasons(t *testing.T) {
	logs := new(extensiontest.LogBuffer)
	rl := mstudio.NewRefusalLog(slog.New(slog.NewJSONHandler(logs, nil)), "refused", slog.LevelWarn, time.Hour)
	for i := range 1_000 {
		rl.Refused(t.Context(), fmt.Sprintf("reason %d", i), "192.0.2.1")
	}
	lines := logLines(t, logs)
	if len(lines) > 65 {
		t.Errorf("%d lines for 1000 reasons, want at most 65", len(lines))
	}
	if last := lines[len(lines)-1]; last.Reason != "other" {
		t.Errorf("last line = %+v, want reason other", last)
	}
}
