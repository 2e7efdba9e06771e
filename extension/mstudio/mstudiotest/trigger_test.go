package mstudiotest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// senderPost posts a JSON body (nil: none) and decodes the answer into a map.
func senderPost(t *testing.T, u string, body any) (int, map[string]any) {
	t.Helper()
	var r *bytes.Reader
	switch b := body.(type) {
	case nil:
		r = bytes.NewReader(nil)
	case string:
		r = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	resp, err := http.Post(u, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("POST %s: answer is not JSON: %v", u, err)
		}
	}
	return resp.StatusCode, out
}

// senderMint asks the simulator for an instance token with the secret and returns the
// status.
func senderMint(t *testing.T, base, instanceID, secret string) int {
	t.Helper()
	status, _ := senderPost(t, base+"/v2/extension-instances/"+instanceID+"/tokens", map[string]string{"extensionInstanceSecret": secret})
	return status
}

func TestTriggerCalls(t *testing.T) {
	rcv := newSenderReceiver(t, nil)
	sim, srv := newSenderSim(t, rcv.URL)
	id, ctxID := uuid.NewString(), uuid.NewString()
	disabled, variant := true, "pro"
	type want struct {
		scopes  []string
		enabled bool
		variant string
		secret  bool // the payload carries the instance's (new) secret
		removed bool
	}
	steps := []struct {
		call string
		body any
		want want
	}{
		{CallExtensionAddedToContext, CallRequest{ExtensionInstanceID: id, Context: "customer", ContextAggregateID: ctxID, ConsentedScopes: []string{"customer:read"}, VariantKey: &variant},
			want{scopes: []string{"customer:read"}, enabled: true, variant: "pro", secret: true}},
		{CallInstanceUpdated, CallRequest{ExtensionInstanceID: id, ConsentedScopes: []string{"customer:read", "project:read"}, ExtensionInstanceDisabled: &disabled},
			want{scopes: []string{"customer:read", "project:read"}, enabled: false, variant: "pro"}},
		{CallSecretRotated, CallRequest{ExtensionInstanceID: id},
			want{secret: true}},
		{CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: id},
			want{scopes: []string{"customer:read", "project:read"}, enabled: false, variant: "pro", removed: true}},
	}
	for i, step := range steps {
		status, answer := senderPost(t, srv.URL+"/internal/calls/"+step.call, step.body)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d (%v)", step.call, status, answer)
		}
		wantAnswer := map[string]any{"statusCode": 204.0, "body": "", "successful": true, "extensionInstanceId": id, "executionId": answer["executionId"]}
		if diff := cmp.Diff(wantAnswer, answer); diff != "" {
			t.Errorf("%s: answer (-want +got):\n%s", step.call, diff)
		}
		got := rcv.deliveries()
		if len(got) != i+1 {
			t.Fatalf("%s: %d deliveries, want %d", step.call, len(got), i+1)
		}
		p := got[i].Payload
		kind, _ := PayloadKind(step.call)
		in, _ := sim.Instance(id)
		if p.Kind != kind || p.ID != id || p.Context.ID != ctxID || p.Context.Kind != "customer" {
			t.Errorf("%s: payload is %s of %s in %s %s", step.call, p.Kind, p.ID, p.Context.Kind, p.Context.ID)
		}
		var enabled *bool
		if p.State != nil {
			enabled = p.State.Enabled
		}
		if step.call != CallSecretRotated {
			if diff := cmp.Diff(step.want.scopes, p.ConsentedScopes); diff != "" {
				t.Errorf("%s: consentedScopes (-want +got):\n%s", step.call, diff)
			}
			if enabled == nil || *enabled != step.want.enabled {
				t.Errorf("%s: state.enabled = %v, want %v", step.call, enabled, step.want.enabled)
			}
			if p.VariantKey == nil || *p.VariantKey != step.want.variant {
				t.Errorf("%s: variantKey = %v, want %q", step.call, p.VariantKey, step.want.variant)
			}
			if diff := cmp.Diff(step.want.scopes, in.Scopes); diff != "" {
				t.Errorf("%s: instance scopes (-want +got):\n%s", step.call, diff)
			}
			if in.Disabled == step.want.enabled || in.VariantKey != step.want.variant {
				t.Errorf("%s: instance disabled %v variant %q", step.call, in.Disabled, in.VariantKey)
			}
		}
		if hasSecret := !p.Secret.IsZero(); hasSecret != step.want.secret || (hasSecret && p.Secret.Reveal() != in.Secret) {
			t.Errorf("%s: payload secret present %v, want %v and equal to the instance's delivered secret", step.call, hasSecret, step.want.secret)
		}
		if in.Removed != step.want.removed {
			t.Errorf("%s: instance removed %v, want %v", step.call, in.Removed, step.want.removed)
		}
	}
}

func TestTriggerWithoutBodyInstallsDefaults(t *testing.T) {
	rcv := newSenderReceiver(t, nil)
	sim, srv := newSenderSim(t, rcv.URL)
	for _, body := range []any{nil, "{}"} {
		status, answer := senderPost(t, srv.URL+"/internal/calls/extensionAddedToContext", body)
		if status != http.StatusOK || answer["successful"] != true {
			t.Fatalf("body %v: %d %v", body, status, answer)
		}
		in, ok := sim.Instance(answer["extensionInstanceId"].(string))
		if !ok || in.ContextKind != "project" || !isUUID(in.ContextID) || in.Disabled {
			t.Errorf("body %v: instance %+v", body, in)
		}
		if diff := cmp.Diff(DefaultScopes, in.Scopes); diff != "" {
			t.Errorf("body %v: scopes (-want +got):\n%s", body, diff)
		}
	}
}

func TestTriggerErrors(t *testing.T) {
	rcv := newSenderReceiver(t, nil)
	sim, srv := newSenderSim(t, rcv.URL)
	ctx := context.Background()
	live, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Trigger(ctx, CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: gone.InstanceID}); err != nil {
		t.Fatal(err)
	}
	before := len(rcv.deliveries())
	tests := []struct {
		name, call string
		body       any
		wantStatus int
		wantType   string
	}{
		{"unknown call", "extensionExploded", CallRequest{}, 404, "NotFound"},
		{"unknown instance", CallInstanceUpdated, CallRequest{ExtensionInstanceID: uuid.NewString()}, 404, "NotFound"},
		{"removed instance", CallSecretRotated, CallRequest{ExtensionInstanceID: gone.InstanceID}, 404, "NotFound"},
		{"removed twice", CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: gone.InstanceID}, 404, "NotFound"},
		{"no instance id", CallInstanceUpdated, CallRequest{}, 400, "ValidationError"},
		{"instance id not a UUID", CallInstanceUpdated, CallRequest{ExtensionInstanceID: "abc"}, 400, "ValidationError"},
		{"installed twice", CallExtensionAddedToContext, CallRequest{ExtensionInstanceID: live.InstanceID}, 409, "Conflict"},
		{"bad context", CallExtensionAddedToContext, CallRequest{Context: "organisation"}, 400, "ValidationError"},
		{"context id not a UUID", CallExtensionAddedToContext, CallRequest{ContextAggregateID: "p-123"}, 400, "ValidationError"},
		{"not JSON", CallInstanceUpdated, "{", 400, "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, answer := senderPost(t, srv.URL+"/internal/calls/"+tt.call, tt.body)
			if status != tt.wantStatus || answer["type"] != tt.wantType || answer["message"] == "" {
				t.Errorf("got %d %v, want %d with type %s and a message", status, answer, tt.wantStatus, tt.wantType)
			}
		})
	}
	if got := len(rcv.deliveries()); got != before {
		t.Errorf("refused calls sent %d webhooks", got-before)
	}
}

func TestTriggerAnswersFirstAttempt(t *testing.T) {
	rcv := newSenderReceiver(t, func(_ *http.Request, _ senderDelivery, nth int) (int, string) {
		if nth == 1 {
			return http.StatusInternalServerError, `{"error":"database down"}`
		}
		return http.StatusOK, "fine"
	})
	sim, srv := newSenderSim(t, rcv.URL)
	status, answer := senderPost(t, srv.URL+"/internal/calls/extensionAddedToContext", CallRequest{})
	want := map[string]any{
		"statusCode": 500.0, "body": `{"error":"database down"}`, "successful": false,
		"extensionInstanceId": answer["extensionInstanceId"], "executionId": answer["executionId"],
	}
	if diff := cmp.Diff(want, answer); status != http.StatusOK || diff != "" {
		t.Errorf("status %d, answer (-want +got):\n%s", status, diff)
	}
	id := answer["extensionInstanceId"].(string)
	senderWait(t, "the retry", func() bool { return senderState(sim, id, CallExtensionAddedToContext) == ExecutionSuccessful })
}

func TestTriggerForeignMeta(t *testing.T) {
	rcv := newSenderReceiver(t, nil)
	sim, _ := newSenderSim(t, rcv.URL)
	other := uuid.NewString()
	res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{ExtensionID: other})
	if err != nil {
		t.Fatal(err)
	}
	if got := rcv.deliveries()[0].Payload.Meta; got.ExtensionID != other || got.ContributorID != sim.ContributorID() {
		t.Errorf("meta %+v, want extensionId %s and the simulator's contributor", got, other)
	}
	if ex, _ := senderExecution(sim, res.InstanceID, CallExtensionAddedToContext); ex.ExtensionID != other {
		t.Errorf("execution's extensionId %s, want %s", ex.ExtensionID, other)
	}
}

func TestDryRun(t *testing.T) {
	// Real deliveries fail, so the instance's queue is stuck; dry runs pass it by.
	rcv := newSenderReceiver(t, func(r *http.Request, _ senderDelivery, _ int) (int, string) {
		if r.URL.Query().Get("dry-run") == "true" {
			return http.StatusOK, `{"outcome":"dry-run"}`
		}
		return http.StatusInternalServerError, ""
	})
	sim, srv := newSenderSim(t, rcv.URL+"/hooks", func(o *Options) { o.RetryBase, o.RetryCap = time.Minute, time.Minute })
	installed, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := installed.InstanceID
	user := sim.Users()[1].ID
	tests := []struct {
		name, kind, instanceID, userID string
		wantKind                       string
		wantUser                       string
	}{
		{"kebab kind", "extension-added-to-context", id, user, "ExtensionAddedToContext", user},
		{"trigger name", "instanceUpdated", id, user, "InstanceUpdated", user},
		{"payload kind", "SecretRotated", id, user, "SecretRotated", user},
		{"removal", "extension-instance-removed-from-context", id, user, "InstanceRemovedFromContext", user},
		{"made-up instance, default user", "extension-added-to-context", uuid.NewString(), "", "ExtensionAddedToContext", sim.Users()[0].ID},
		// The short names of `webhook send --kind`, and a long payload alias.
		{"short added", "added", uuid.NewString(), user, "ExtensionAddedToContext", user},
		{"short updated", "updated", id, user, "InstanceUpdated", user},
		{"short rotated", "rotated", id, user, "SecretRotated", user},
		{"short removed", "removed", id, user, "InstanceRemovedFromContext", user},
		{"long payload alias", "ExtensionInstanceUpdated", id, user, "InstanceUpdated", user},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := sim.Instance(id)
			execsBefore := sim.Executions("")
			n := len(rcv.deliveries())
			q := url.Values{"instanceId": {tt.instanceID}}
			if tt.userID != "" {
				q.Set("userId", tt.userID)
			}
			status, answer := senderPost(t, srv.URL+"/internal/dry-run/"+tt.kind+"?"+q.Encode(), nil)
			wantRoute := rcv.URL + "/hooks?dry-run=true&executing-user-id=" + tt.wantUser
			want := map[string]any{"successful": true, "routeCalled": wantRoute, "responseCode": 200.0, "responseBody": `{"outcome":"dry-run"}`}
			if diff := cmp.Diff(want, answer); status != http.StatusOK || diff != "" {
				t.Errorf("status %d, answer (-want +got):\n%s", status, diff)
			}
			got := rcv.deliveries()
			if len(got) != n+1 {
				t.Fatalf("got %d deliveries, want 1", len(got)-n)
			}
			d := got[n]
			if d.URL != "/hooks?dry-run=true&executing-user-id="+tt.wantUser {
				t.Errorf("called %s", d.URL)
			}
			if d.Payload.Kind != tt.wantKind || d.Payload.ID != tt.instanceID || d.Payload.Request.Target.URL != wantRoute {
				t.Errorf("payload %s of %s to %s", d.Payload.Kind, d.Payload.ID, d.Payload.Request.Target.URL)
			}
			if err := senderVerify(sim, d); err != nil {
				t.Errorf("signature: %v", err)
			}
			// Nothing changed, and the dry run's secret is good for nothing.
			after, _ := sim.Instance(id)
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("instance changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(execsBefore, sim.Executions("")); diff != "" {
				t.Errorf("execution log changed (-before +after):\n%s", diff)
			}
			if s := d.Payload.Secret.Reveal(); s != "" {
				if s == before.PendingSecret || s == before.Secret {
					t.Error("the dry run sent the instance's secret")
				}
				if status := senderMint(t, srv.URL, tt.instanceID, s); status == http.StatusCreated {
					t.Error("the dry run's secret mints a token")
				}
			}
		})
	}
	if status, answer := senderPost(t, srv.URL+"/internal/dry-run/extension-exploded", nil); status != http.StatusNotFound || answer["type"] != "NotFound" {
		t.Errorf("unknown kind: %d %v, want 404 NotFound", status, answer)
	}
}

func TestTriggerSecretActivation(t *testing.T) {
	// The install fails until the test lets it through.
	var answered atomic.Bool
	rcv := newSenderReceiver(t, func(_ *http.Request, _ senderDelivery, _ int) (int, string) {
		if !answered.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusNoContent, ""
	})
	clock := extensiontest.NewClock(time.Date(2025, 3, 14, 11, 0, 0, 0, time.UTC))
	const delay = 2 * time.Second
	sim, srv := newSenderSim(t, rcv.URL, func(o *Options) { o.Now, o.SecretActivationDelay = clock.Now, delay })
	res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{})
	if err != nil || res.Successful {
		t.Fatalf("%+v, %v; want a failed first attempt", res, err)
	}
	id := res.InstanceID
	secret := rcv.deliveries()[0].Payload.Secret.Reveal()
	if got := senderMint(t, srv.URL, id, secret); got != http.StatusForbidden {
		t.Errorf("before the 2xx: %d, want 403", got)
	}
	answered.Store(true)
	senderWait(t, "the retry", func() bool { return senderState(sim, id, CallExtensionAddedToContext) == ExecutionSuccessful })
	if got := senderMint(t, srv.URL, id, secret); got != http.StatusForbidden {
		t.Errorf("after the 2xx, before the delay: %d, want 403", got)
	}
	clock.Advance(delay)
	if got := senderMint(t, srv.URL, id, secret); got != http.StatusCreated {
		t.Errorf("after the 2xx and the delay: %d, want 201", got)
	}
}

func TestTriggerRotationInvalidatesOldSecret(t *testing.T) {
	// The rotation fails until the test lets it through.
	var answered atomic.Bool
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, _ int) (int, string) {
		if d.Payload.Kind == "SecretRotated" && !answered.Load() {
			return http.StatusServiceUnavailable, ""
		}
		return http.StatusNoContent, ""
	})
	clock := extensiontest.NewClock(time.Date(2025, 3, 14, 11, 0, 0, 0, time.UTC))
	const delay = 2 * time.Second
	sim, srv := newSenderSim(t, rcv.URL, func(o *Options) { o.Now, o.SecretActivationDelay = clock.Now, delay })
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil || !added.Successful {
		t.Fatalf("%+v, %v", added, err)
	}
	id := added.InstanceID
	old := rcv.deliveries()[0].Payload.Secret.Reveal()
	clock.Advance(delay)
	if got := senderMint(t, srv.URL, id, old); got != http.StatusCreated {
		t.Fatalf("installed secret: %d, want 201", got)
	}
	rotated, err := sim.Trigger(ctx, CallSecretRotated, CallRequest{ExtensionInstanceID: id})
	if err != nil || rotated.Successful {
		t.Fatalf("%+v, %v; want a failed first attempt", rotated, err)
	}
	fresh := rcv.deliveries()[1].Payload.Secret.Reveal()
	steps := []struct {
		name      string
		wait      func()
		old, want int
	}{
		{"rotation not answered yet", func() {}, 201, 403},
		{"rotation answered", func() {
			answered.Store(true)
			senderWait(t, "the rotation", func() bool { return senderState(sim, id, CallSecretRotated) == ExecutionSuccessful })
		}, 403, 403},
		{"activation delay passed", func() { clock.Advance(delay) }, 403, 201},
	}
	for _, step := range steps {
		step.wait()
		if got := senderMint(t, srv.URL, id, old); got != step.old {
			t.Errorf("%s: old secret %d, want %d", step.name, got, step.old)
		}
		if got := senderMint(t, srv.URL, id, fresh); got != step.want {
			t.Errorf("%s: new secret %d, want %d", step.name, got, step.want)
		}
	}
	if strings.Contains(rotated.Body+rotated.Error, fresh) {
		t.Error("the call result quotes the secret")
	}
}
