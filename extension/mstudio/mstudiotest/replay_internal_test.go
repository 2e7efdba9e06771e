package mstudiotest

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// A replay signed again carries a new request id, the time given and the target, and
// every other field as captured.
func TestFreshRequest(t *testing.T) {
	body := []byte(`{"apiVersion":"v1","id":"i-1","kind":"SecretRotated","request":{"id":"old","createdAt":"2026-01-01T00:00:00Z","target":{"method":"POST","url":"http://old"}},"secret":"s"}`)
	now := time.Date(2026, 12, 3, 8, 0, 0, 5, time.UTC)
	var got struct {
		ID      string `json:"id"`
		Secret  string `json:"secret"`
		Request struct {
			ID        string `json:"id"`
			CreatedAt string `json:"createdAt"`
			Target    struct{ Method, URL string }
		} `json:"request"`
	}
	if err := json.Unmarshal(freshRequest(body, "http://new/mstudio/webhooks", now), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "i-1" || got.Secret != "s" || got.Request.ID == "old" || got.Request.ID == "" ||
		got.Request.CreatedAt != "2026-12-03T08:00:00.000000005Z" || got.Request.Target.URL != "http://new/mstudio/webhooks" || got.Request.Target.Method != "POST" {
		t.Errorf("got %+v", got)
	}
	for _, b := range []string{`[]`, `null`, `{"request":5}`, `not json`, `{"request":{"target":"x"}}`} {
		if out := freshRequest([]byte(b), "http://new", now); !bytes.Equal(out, []byte(b)) {
			t.Errorf("%s: got %s, want it unchanged", b, out)
		}
	}
}

// Any body (a capture of dev may be anything): no panic, and the result is the body as it
// was or JSON.
func FuzzFreshRequest(f *testing.F) {
	for _, s := range []string{`{"request":{"id":"a","target":{"url":"u"}}}`, `{"request":{}}`, `{}`, `[1]`, "\xff", `{"request":null}`, `{"request":{"target":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out := freshRequest(body, "http://127.0.0.1/mstudio/webhooks", time.Unix(0, 0))
		if !bytes.Equal(out, body) && !json.Valid(out) {
			t.Fatalf("%q: got %q, neither the body nor JSON", body, out)
		}
	})
}
