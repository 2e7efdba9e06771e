package extension_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

func sampleCapture(instanceID, requestID, marker string) extension.CapturedDelivery {
	return extension.CapturedDelivery{
		InstanceID: instanceID, RequestID: requestID, Kind: string(extension.EventSecretRotated), Verified: true,
		Status: http.StatusNoContent, Outcome: string(extension.OutcomeApplied),
		URL:    "http://127.0.0.1:8080/mstudio/webhooks",
		Header: http.Header{"Content-Type": {"application/json"}, "X-Marketplace-Signature": {"sig-" + marker}},
		Body:   []byte(`{"kind":"SecretRotated","secret":"` + marker + `"}`),
	}
}

// A capture comes back as it was saved, and its body, headers and URL are nowhere in the
// table in the clear; the plain columns are only what says which delivery it was.
func TestCaptureSealedRoundTrip(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		s := extensiontest.Open(t, url, extension.Options{Keys: extensiontest.Keyring(t)})
		const marker = "capture-body-marker-7f3a"
		c := sampleCapture("i-1", "req-1", marker)
		c.ReceivedAt = time.Date(2026, 12, 3, 8, 0, 0, 0, cest)
		c.Size = len(c.Body)
		batch := []extension.CapturedDelivery{c}
		if err := s.SaveCaptures(ctx, batch); err != nil {
			t.Fatal(err)
		}
		id := batch[0].ID
		if len(id) != 24 {
			t.Fatalf("capture id %q: want 24 hex digits", id)
		}
		got, err := s.CapturedDelivery(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c.ID, c.ReceivedAt = id, c.ReceivedAt.UTC()
		if diff := cmp.Diff(&c, got, microsecondTimes); diff != "" {
			t.Errorf("capture (-saved +opened):\n%s", diff)
		}
		for _, cell := range rawCells(t, s, "webhook_captures") {
			for _, secret := range []string{marker, "sig-" + marker, "127.0.0.1:8080"} {
				if strings.Contains(cell, secret) {
					t.Errorf("column %s holds %q in the clear", cell[:strings.Index(cell, "=")], secret)
				}
			}
		}
		if d == extension.SQLite {
			// The file itself, write-ahead log included: no page holds the body or the
			// signature in the clear.
			s.Close()
			path := strings.TrimPrefix(url, "sqlite:")
			for _, f := range []string{path, path + "-wal"} {
				data, err := os.ReadFile(f)
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(data, []byte(marker)) {
					t.Errorf("%s holds the body marker in the clear", filepath.Base(f))
				}
			}
		}
	})
}

// A sealed capture copied onto another row, or moved to another instance, does not open.
func TestCaptureBoundToRow(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		batch := []extension.CapturedDelivery{sampleCapture("i-1", "req-1", "m1"), sampleCapture("i-2", "req-2", "m2")}
		if err := s.SaveCaptures(ctx, batch); err != nil {
			t.Fatal(err)
		}
		db := s.SQLDB()
		q := s.Dialect().Rebind
		if _, err := db.Exec(q(`UPDATE webhook_captures SET sealed = (SELECT sealed FROM webhook_captures WHERE id = ?) WHERE id = ?`), batch[0].ID, batch[1].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CapturedDelivery(ctx, batch[1].ID); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("a capture copied onto another row: got %v, want ErrUnsealable", err)
		}
		if _, err := db.Exec(q(`UPDATE webhook_captures SET instance_id = 'i-9' WHERE id = ?`), batch[0].ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CapturedDelivery(ctx, batch[0].ID); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("a capture moved to another instance: got %v, want ErrUnsealable", err)
		}
		if _, err := s.CapturedDelivery(ctx, "0123456789abcdef01234567"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("an unknown capture: got %v, want ErrNotFound", err)
		}
	})
}

// Captures older than the cutoff go; an instance's captures go with a plain DELETE by
// instance_id (what the erasure of a removed instance runs).
func TestPruneAndEraseCaptures(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		now := time.Now().UTC()
		old, recent, other := sampleCapture("i-1", "r-old", "a"), sampleCapture("i-1", "r-new", "b"), sampleCapture("i-2", "r-other", "c")
		old.ReceivedAt, recent.ReceivedAt, other.ReceivedAt = now.Add(-25*time.Hour), now.Add(-time.Hour), now.Add(-time.Hour)
		batch := []extension.CapturedDelivery{old, recent, other}
		if err := s.SaveCaptures(ctx, batch); err != nil {
			t.Fatal(err)
		}
		n, err := s.PruneCaptures(ctx, now.Add(-24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("prune: got %d, %v; want 1", n, err)
		}
		if _, err := s.CapturedDelivery(ctx, batch[0].ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("the old capture: got %v, want it pruned", err)
		}
		if _, err := s.CapturedDelivery(ctx, batch[1].ID); err != nil {
			t.Errorf("the recent capture: %v", err)
		}
		if _, err := s.SQLDB().Exec(s.Dialect().Rebind(`DELETE FROM webhook_captures WHERE instance_id = ?`), "i-1"); err != nil {
			t.Fatal(err)
		}
		refs, err := s.CapturesOf(ctx, []string{"r-old", "r-new", "r-other"})
		if err != nil || len(refs) != 1 || refs[0].ID != batch[2].ID || refs[0].InstanceID != "i-2" {
			t.Errorf("after erasing i-1: got %+v, %v; want only i-2's capture", refs, err)
		}
	})
}

// The recorder writes in the background; Flush waits for what was queued; a full queue
// drops instead of waiting.
func TestCaptureRecorder(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		r := s.NewCaptureRecorder(nil)
		var ids []string
		for i := range 100 {
			c := sampleCapture("i-1", "req", "m")
			c.ID = extension.NewCaptureID()
			c.RequestID = c.ID
			ids = append(ids, c.ID)
			if !r.Record(c) {
				t.Fatalf("capture %d dropped with room in the queue", i)
			}
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		refs, err := s.CapturesOf(ctx, ids)
		if err != nil || len(refs) != len(ids) {
			t.Fatalf("after Flush: got %d captures, %v; want %d", len(refs), err, len(ids))
		}
		r.Close()
	})
}

// Captures take part in the check of the keys in use and in rekey.
func TestCapturesSealingKeysAndRekey(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		batch := []extension.CapturedDelivery{sampleCapture("i-1", "r1", "m1"), sampleCapture("", "", "m2")}
		if err := withA.SaveCaptures(ctx, batch); err != nil {
			t.Fatal(err)
		}
		u, err := withA.SealingKeys(ctx)
		if err != nil || !cmp.Equal(u.Captures, []string{extension.KeyID(keyA)}) {
			t.Fatalf("SealingKeys: got %+v, %v; want captures sealed with A", u, err)
		}
		if got := u.Missing(newKeyring(t, keyB)); !cmp.Equal(got, []string{extension.KeyID(keyA)}) {
			t.Errorf("Missing without A: got %v, want A", got)
		}
		withBA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		stats, err := withBA.Rekey(ctx)
		if err != nil || stats.Resealed != 2 {
			t.Fatalf("rekey: got %+v, %v; want 2 resealed", stats, err)
		}
		withB := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB)})
		for _, c := range batch {
			got, err := withB.CapturedDelivery(ctx, c.ID)
			if err != nil || !bytes.Equal(got.Body, c.Body) {
				t.Errorf("capture %s after rekey, with B alone: %v", c.ID, err)
			}
		}
		if u, err := withB.SealingKeys(ctx); err != nil || !cmp.Equal(u.Captures, []string{extension.KeyID(keyB)}) {
			t.Errorf("SealingKeys after rekey: got %+v, %v; want B", u, err)
		}
	})
}

// Headers beyond the bound are dropped, and the capture says so.
func TestCaptureHeaderBound(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}, "X-Big": {strings.Repeat("a", extension.CaptureMaxHeaderBytes)}}
	got, truncated := extension.CaptureHeader(h)
	if !truncated || got.Get("Content-Type") != "application/json" || got.Get("X-Big") != "" {
		t.Errorf("got %v, truncated %v; want Content-Type kept, X-Big dropped", got, truncated)
	}
	got, truncated = extension.CaptureHeader(http.Header{"A": {"1"}})
	if truncated || got.Get("A") != "1" {
		t.Errorf("small headers: got %v, %v", got, truncated)
	}
}

// The journal's filters: instance, outcome, since; newest first.
func TestListDeliveriesFilters(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clock := extensiontest.NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clock.Now})
		for i, r := range []struct {
			instance string
			outcome  extension.Outcome
		}{{"i-1", extension.OutcomeDryRun}, {"i-2", extension.OutcomeRefused}, {"i-1", extension.OutcomeRefused}, {"i-1", extension.OutcomeIgnored}} {
			clock.Set(time.Date(2026, 12, 1, 8, i, 0, 0, time.UTC))
			ev := extension.LifecycleEvent{Kind: extension.EventUpdated, RequestID: "r" + string(rune('0'+i)), InstanceID: r.instance}
			if err := s.RecordDelivery(ctx, ev, extension.Result{Outcome: r.outcome}); err != nil {
				t.Fatal(err)
			}
		}
		requests := func(f extension.DeliveryFilter) string {
			list, err := s.ListDeliveries(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, d := range list {
				out = append(out, d.RequestID)
			}
			return strings.Join(out, ",")
		}
		for _, tt := range []struct {
			f    extension.DeliveryFilter
			want string
		}{
			{extension.DeliveryFilter{}, "r3,r2,r1,r0"},
			{extension.DeliveryFilter{InstanceID: "i-1"}, "r3,r2,r0"},
			{extension.DeliveryFilter{Outcome: extension.OutcomeRefused}, "r2,r1"},
			{extension.DeliveryFilter{InstanceID: "i-1", Outcome: extension.OutcomeRefused}, "r2"},
			{extension.DeliveryFilter{Since: time.Date(2026, 12, 1, 9, 2, 0, 0, time.FixedZone("CET", 3600))}, "r3,r2"},
			{extension.DeliveryFilter{Limit: 1}, "r3"},
		} {
			if got := requests(tt.f); got != tt.want {
				t.Errorf("%+v: got %s, want %s", tt.f, got, tt.want)
			}
		}
	})
}

func TestParseOutcome(t *testing.T) {
	for _, o := range extension.Outcomes() {
		if got, err := extension.ParseOutcome(string(o)); err != nil || got != o {
			t.Errorf("%s: got %q, %v", o, got, err)
		}
	}
	_, err := extension.ParseOutcome("Applied")
	if err == nil || !strings.Contains(err.Error(), "partly-applied") {
		t.Errorf("an unknown outcome: got %v, want an error listing the outcomes", err)
	}
}

func FuzzParseOutcome(f *testing.F) {
	for _, s := range []string{"applied", "partly-applied", "", "APPLIED", "stale\x00", "\u202edry-run"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := extension.ParseOutcome(s)
		if (err == nil) != (string(o) == s && o != "") {
			t.Fatalf("%q: got %q, %v", s, o, err)
		}
	})
}
