package mstudio_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// The contributor's dry run against the simulator: a member's token has the platform call
// the webhook URL at once, signed, with the dry-run parameters; the answer comes back. An
// outsider, another extension, a kind in another spelling and a missing token are refused.
func TestDryRunWebhook(t *testing.T) {
	var mu sync.Mutex
	var got *http.Request
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) //nolint:errcheck // only the request line and headers count
		mu.Lock()
		got = r
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"outcome":"dry-run"}`) //nolint:errcheck // the test reads what arrives
	}))
	defer endpoint.Close()
	p := apptest.NewPlatform(t, mstudiotest.Options{WebhookURL: endpoint.URL + "/mstudio/webhooks"})
	c := newTestClient(t, p.SimURL)
	users := p.Sim.Users()
	member, outsider := extension.Secret(users[0].Token), extension.Secret(users[2].Token)
	cid, eid, instance := p.Sim.ContributorID(), p.Sim.ExtensionID(), uuid.NewString()

	res, err := c.DryRunWebhook(t.Context(), member, cid, eid, instance, "extension-added-to-context")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Successful || res.ResponseCode != http.StatusOK || !strings.Contains(res.ResponseBody, "dry-run") ||
		!strings.HasPrefix(res.RouteCalled, endpoint.URL+"/mstudio/webhooks?") || !strings.Contains(res.RouteCalled, "dry-run=true") {
		t.Errorf("got %+v", res)
	}
	mu.Lock()
	if got == nil || got.URL.Query().Get("dry-run") != "true" || got.URL.Query().Get("executing-user-id") != users[0].ID ||
		got.Header.Get(mstudio.HeaderSignature) == "" {
		t.Errorf("the endpoint got %+v, want a signed dry run for the member", got)
	}
	mu.Unlock()

	// The contributor's own API token (the one reconcile uses) may dry-run too.
	if res, err := c.DryRunWebhook(t.Context(), extension.Secret(p.Sim.ContributorToken()), cid, eid, instance, "extension-instance-updated"); err != nil || !res.Successful {
		t.Errorf("with the contributor token: got %+v, %v", res, err)
	}

	var apiErr *mstudio.Error
	for _, tt := range []struct {
		name        string
		token       extension.Secret
		cid, eid    string
		kind        string
		wantStatus  int
		wantInvalid bool
	}{
		{"outsider", outsider, cid, eid, "extension-added-to-context", http.StatusForbidden, false},
		{"another contributor's token", extension.Secret(p.Sim.IssueContributorToken(uuid.NewString())), cid, eid, "extension-added-to-context", http.StatusForbidden, false},
		{"another extension", member, cid, uuid.NewString(), "extension-added-to-context", http.StatusNotFound, false},
		{"another contributor", member, uuid.NewString(), eid, "extension-added-to-context", http.StatusNotFound, false},
		{"payload spelling", member, cid, eid, "ExtensionAddedToContext", http.StatusBadRequest, false},
		{"no token", "", cid, eid, "extension-added-to-context", 0, true},
		{"not a uuid", member, "x", eid, "extension-added-to-context", 0, true},
	} {
		_, err := c.DryRunWebhook(t.Context(), tt.token, tt.cid, tt.eid, instance, tt.kind)
		switch {
		case tt.wantInvalid && !errors.Is(err, mstudio.ErrInvalidArgument):
			t.Errorf("%s: got %v, want ErrInvalidArgument", tt.name, err)
		case !tt.wantInvalid && (!errors.As(err, &apiErr) || apiErr.Status != tt.wantStatus):
			t.Errorf("%s: got %v, want the platform's %d", tt.name, err, tt.wantStatus)
		}
		if err != nil && strings.Contains(err.Error(), users[0].Token) {
			t.Errorf("%s: the token is in the error: %v", tt.name, err)
		}
	}
	if n := p.SimHits("POST /v2/contributors/{c}/extensions/{e}/extension-instances/{i}/actions/dry-run/{k}"); n != 7 {
		t.Errorf("the simulator got %d dry-run calls, want 7 (the refused ones included, none of the invalid ones)", n)
	}
}
