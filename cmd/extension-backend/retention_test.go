package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

func TestParseRetention(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		raw  string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true},
		{"0", 0, true},
		{"0d", 0, true},
		{"720h", 30 * day, true},
		{" 90m ", 90 * time.Minute, true},
		{"3650d", 3650 * day, true},
		{"3651d", 0, false},
		{"87601h", 0, false},
		{"-1d", 0, false},
		{"-5m", 0, false},
		{"+3d", 0, false},
		{"03d", 0, false},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"", 0, false},
		{"30", 0, false},
		{"thirty days", 0, false},
	} {
		got, err := parseRetention(tt.raw)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v, ok %v", tt.raw, got, err, tt.want, tt.ok)
		}
	}
}

func TestRetentionConfig(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  time.Duration
	}{{"", extension.DefaultRetentionAfterRemoval}, {"0", 0}, {"7d", 7 * 24 * time.Hour}} {
		cfg, err := loadConfig(func(name string) string {
			if name == "EXT_RETENTION_AFTER_REMOVAL" {
				return tt.value
			}
			return ""
		}, needs{})
		if err != nil || cfg.RetentionAfterRemoval != tt.want {
			t.Errorf("EXT_RETENTION_AFTER_REMOVAL=%q: %v, %v; want %v", tt.value, cfg.RetentionAfterRemoval, err, tt.want)
		}
	}
}

func FuzzParseRetention(f *testing.F) {
	for _, s := range []string{"30d", "0", "720h", "1h30m", "-1d", "3651d", "9999999999999999999d", "1e3h", "d", " 5d", "５d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := parseRetention(raw)
		if err != nil {
			if d != 0 || !strings.Contains(err.Error(), "want whole days") {
				t.Errorf("parseRetention(%q) = %v, %v: a refusal is 0 with advice", raw, d, err)
			}
			return
		}
		if d < 0 || d > maxRetentionDays*24*time.Hour {
			t.Errorf("parseRetention(%q) = %v: outside 0..%dd", raw, d, maxRetentionDays)
		}
	})
}

// serve's erasure loop erases a removal past its grace at once and logs the instance and
// the rows deleted per table, and no value of them.
func TestEraseRemovedLogsCounts(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := extensiontest.NewClock(time.Now().Add(-31 * 24 * time.Hour))
	store := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
	id := uuid.NewString()
	variant := ""
	for _, ev := range []extension.LifecycleEvent{
		{Kind: extension.EventAdded, RequestID: uuid.NewString(), CreatedAt: clk.Now(), InstanceID: id, ContextKind: "project",
			ContextID: uuid.NewString(), Scopes: []string{}, Enabled: new(true), VariantKey: &variant, Secret: "s3cr3t-s3cr3t-s3cr3t"},
		{Kind: extension.EventRemoved, RequestID: uuid.NewString(), CreatedAt: clk.Now().Add(time.Second), InstanceID: id},
	} {
		if ev.Kind == extension.EventAdded {
			if _, err := store.ApplyLifecycle(ctx, ev); err != nil {
				t.Fatal(err)
			}
			if _, _, err := store.EnsurePlatformAccount(ctx, id, uuid.NewString(), "secret-person@example.com", "Secret Person", extension.RoleMember); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := store.ApplyLifecycle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	var logs extensiontest.LogBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		eraseRemoved(ctx, store, newLogger(&logs, 0), extension.DefaultRetentionAfterRemoval)
	}()
	// The first run is at once; wait for its line, however slow the machine.
	for !strings.Contains(logs.String(), "erased removed instance") {
		select {
		case <-done:
			t.Fatalf("the loop ended without erasing: %s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	<-done
	line := logs.String()
	for _, want := range []string{`"instance_id":"` + id + `"`, `"rows":1`, `"accounts":1`} {
		if !strings.Contains(line, want) {
			t.Errorf("log %s lacks %s", line, want)
		}
	}
	for _, never := range []string{"secret-person", "Secret Person", "s3cr3t"} {
		if strings.Contains(line, never) {
			t.Errorf("log %s shows %q", line, never)
		}
	}
}
