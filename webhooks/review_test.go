package webhooks_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/uuid"
)

// rewrite changes a payload's JSON through a map, for fields testPayload does not model.
func rewrite(t *testing.T, body []byte, change func(map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestHostileButSignedPayloads(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			env := newTestEnv(t, d)
			id := uuid.NewString()

			// A captured dry run posted again without its query is still only a dry run:
			// the signed target URL says so.
			dry := newPayload(extension.EventAdded, id, time.Now())
			body := rewrite(t, dry.JSON(), func(m map[string]any) {
				m["request"].(map[string]any)["target"] = map[string]any{"method": "POST", "url": "https://ext.example/mstudio/webhooks?dry-run=true&executing-user-id=" + uuid.NewString()}
			})
			if rec := env.serve(signedRequest(webhookPath, env.Key, body)); rec.Code != http.StatusOK {
				t.Errorf("replayed dry run: got %d, want 200", rec.Code)
			}
			if got := len(instances(t, env.Store)); got != 0 {
				t.Errorf("replayed dry run stored %d instances, want none", got)
			}

			// An event dated far ahead would make every later one stale: refused.
			future := newPayload(extension.EventAdded, id, time.Now().Add(24*time.Hour))
			if rec := env.deliver(t, future); rec.Code != http.StatusBadRequest {
				t.Errorf("event dated tomorrow: got %d, want 400", rec.Code)
			}

			// A NUL character, which PostgreSQL cannot store, is a clear 400, not a 500
			// the platform would retry forever.
			nul := newPayload(extension.EventAdded, id, time.Now())
			nul.ContextID = "p\x00-1"
			if rec := env.deliver(t, nul); rec.Code != http.StatusBadRequest {
				t.Errorf("NUL in context.id: got %d, want 400", rec.Code)
			}

			// A refused delivery whose request id has a multi-byte character where the
			// journal clips it still journals (no invalid UTF-8 for PostgreSQL).
			foreign := newPayload(extension.EventAdded, id, time.Now())
			foreign.ExtensionID = uuid.NewString()
			foreign.RequestID = strings.Repeat("r", 39) + "é"
			if rec := env.deliver(t, foreign); rec.Code != http.StatusForbidden {
				t.Errorf("foreign extension with a multi-byte request id: got %d, want 403", rec.Code)
			}
			if got := lastDelivery(t, env.Store); got.Outcome != extension.OutcomeRefused {
				t.Errorf("journal: got %+v, want a refused row", got)
			}

			if got := len(instances(t, env.Store)); got != 0 {
				t.Errorf("hostile payloads stored %d instances, want none", got)
			}
		})
	}
}
