package webhooks_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
)

// capturedAll flushes the recorder and lists what it wrote, opened.
func capturedAll(t *testing.T, s *extension.Store, r *extension.CaptureRecorder) []*extension.CapturedDelivery {
	t.Helper()
	ctx := context.Background()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := s.SQLDB().Query(`SELECT id FROM webhook_captures ORDER BY received_at`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Closed before the next query: on SQLite the pool has one connection.
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	var out []*extension.CapturedDelivery
	for _, id := range ids {
		c, err := s.CapturedDelivery(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// With a recorder, every delivery whose body was read is captured exactly, with its
// headers, the URL and what became of it; one that does not verify only when asked for
// (dev), and one whose body is too large never.
func TestCaptureDeliveries(t *testing.T) {
	for _, unverified := range []bool{false, true} {
		name := "verified only"
		if unverified {
			name = "unverified too"
		}
		t.Run(name, func(t *testing.T) {
			var rec *extension.CaptureRecorder
			env := newTestEnv(t, extension.SQLite, func(o *handlerOptions) {
				rec = o.Store.NewCaptureRecorder(nil)
				o.Captures, o.CaptureUnverified = rec, unverified
			})
			t.Cleanup(rec.Close)
			install := newPayload(extension.EventAdded, "11111111-1111-4111-8111-111111111111", at(1))
			env.mustDeliver(t, install, http.StatusNoContent)
			dry := signedRequest(webhookPath+"?dry-run=true", env.Key, install.JSON())
			if got := env.serve(dry).Code; got != http.StatusOK {
				t.Fatalf("dry run: got %d", got)
			}
			forged := signedRequest(webhookPath, env.Key, install.JSON())
			forged.Header.Set("X-Marketplace-Signature", strings.Repeat("A", 86)+"==")
			if got := env.serve(forged).Code; got != http.StatusUnauthorized {
				t.Fatalf("forged: got %d", got)
			}
			huge := signedRequest(webhookPath, env.Key, bytes.Repeat([]byte("x"), 70<<10))
			if got := env.serve(huge).Code; got != http.StatusRequestEntityTooLarge {
				t.Fatalf("too large: got %d", got)
			}

			got := capturedAll(t, env.Store, rec)
			want := 2
			if unverified {
				want = 3
			}
			if len(got) != want {
				t.Fatalf("got %d captures, want %d", len(got), want)
			}
			c := got[0]
			if !bytes.Equal(c.Body, install.JSON()) || c.InstanceID != install.InstanceID || c.RequestID != install.RequestID ||
				c.Kind != install.Kind || !c.Verified || c.Status != http.StatusNoContent || c.Outcome != string(extension.OutcomeApplied) ||
				c.Header.Get("X-Marketplace-Signature") == "" || !strings.HasSuffix(c.URL, webhookPath) || c.Size != len(c.Body) {
				t.Errorf("the install's capture: got %+v", c)
			}
			if got[1].Outcome != string(extension.OutcomeDryRun) || !strings.HasSuffix(got[1].URL, "?dry-run=true") {
				t.Errorf("the dry run's capture: got outcome %q at %s", got[1].Outcome, got[1].URL)
			}
			if unverified {
				f := got[2]
				if f.Verified || f.InstanceID != "" || f.Outcome != extension.CaptureUnverified || f.Status != http.StatusUnauthorized {
					t.Errorf("the forgery's capture: got %+v; want unverified, no instance, 401", f)
				}
			}
		})
	}
}
