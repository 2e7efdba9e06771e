package mstudiotest

// The backend's real webhook handler, on a real SQLite store, receiving the simulator's
// deliveries: the production verification path against the simulator's key server.

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// senderBackend is the backend side of an integration test.
type senderBackend struct {
	Sim    *Server
	SimURL string
	Store  *extension.Store
	Client *mstudio.Client
}

// newSenderBackend wires the webhook handler as cmd does, against a simulator that
// delivers to it.
func newSenderBackend(t *testing.T, activation time.Duration) *senderBackend {
	t.Helper()
	return newSenderBackendWith(t, Options{RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond, SecretActivationDelay: activation})
}

// newSenderBackendWith is newSenderBackend with a simulator built from opts.
func newSenderBackendWith(t *testing.T, opts Options) *senderBackend {
	t.Helper()
	store := extensiontest.NewStore(t, extension.SQLite)
	sim, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim)
	t.Cleanup(simSrv.Close)
	client, err := mstudio.New(simSrv.URL, mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The production front (apptest would import this package).
	front := httpfront.New(httpfront.Options{})
	front.POST("/mstudio/webhooks", webhooks.New(webhooks.Config{
		Store:         store,
		Keys:          mstudio.NewKeyCache(client, mstudio.PurposeWebhook, mstudio.KeyCacheOptions{}),
		ExtensionID:   sim.ExtensionID(),
		ContributorID: sim.ContributorID(),
		Registerer:    front.Registry,
	}).Receive)
	backend := httptest.NewServer(front)
	t.Cleanup(backend.Close)
	t.Cleanup(sim.Close) // first: no delivery outlives the backend
	sim.SetWebhookURL(backend.URL + "/mstudio/webhooks")
	return &senderBackend{Sim: sim, SimURL: simSrv.URL, Store: store, Client: client}
}

// senderStored is what the backend keeps of an instance, for comparison.
type senderStored struct {
	ContextKind, ContextID string
	Scopes                 []string
	Enabled, Removed       bool
	VariantKey             string
}

func TestIntegrationLifecycle(t *testing.T) {
	const activation = 30 * time.Millisecond
	b := newSenderBackend(t, activation)
	ctx := context.Background()
	id, ctxID := uuid.NewString(), uuid.NewString()
	variant, pro := "default", "pro"
	var secrets []string // as the simulator delivered them
	steps := []struct {
		call string
		req  CallRequest
		want senderStored
	}{
		{CallExtensionAddedToContext, CallRequest{ExtensionInstanceID: id, ContextAggregateID: ctxID, ConsentedScopes: []string{"project:read"}, VariantKey: &variant},
			senderStored{"project", ctxID, []string{"project:read"}, true, false, "default"}},
		{CallInstanceUpdated, CallRequest{ExtensionInstanceID: id, ConsentedScopes: []string{"project:read", "customer:read"}, VariantKey: &pro},
			senderStored{"project", ctxID, []string{"project:read", "customer:read"}, true, false, "pro"}},
		{CallSecretRotated, CallRequest{ExtensionInstanceID: id},
			senderStored{"project", ctxID, []string{"project:read", "customer:read"}, true, false, "pro"}},
	}
	for _, step := range steps {
		res, err := b.Sim.Trigger(ctx, step.call, step.req)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Successful || res.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: the backend answered %d %q", step.call, res.StatusCode, res.Body)
		}
		in, secret, err := b.Store.InstanceCredentials(ctx, id)
		if err != nil {
			t.Fatalf("%s: %v", step.call, err)
		}
		got := senderStored{in.ContextKind, in.ContextID, in.ConsentedScopes, in.Enabled, in.Removed(), in.VariantKey}
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("%s: stored instance (-want +got):\n%s", step.call, diff)
		}
		simIn, _ := b.Sim.Instance(id)
		if secret.Reveal() != simIn.Secret {
			t.Errorf("%s: the backend holds another secret than the simulator's current one", step.call)
		}
		if len(secrets) == 0 || secrets[len(secrets)-1] != simIn.Secret {
			secrets = append(secrets, simIn.Secret)
		}
	}
	if len(secrets) != 2 {
		t.Fatalf("got %d distinct secrets, want the installed and the rotated one", len(secrets))
	}

	// The backend mints a token with what it stored, once the secret is active.
	_, secret, err := b.Store.InstanceCredentials(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	simIn, _ := b.Sim.Instance(id)
	time.Sleep(time.Until(simIn.SecretUsableAt) + 5*time.Millisecond)
	tok, err := b.Client.InstanceToken(ctx, id, secret)
	if err != nil {
		t.Fatalf("mint with the rotated secret: %v", err)
	}
	if tok.Token.IsZero() || !tok.Expiry.After(time.Now()) {
		t.Errorf("token %v expires %v", tok.Token, tok.Expiry)
	}
	var apiErr *mstudio.Error
	if _, err := b.Client.InstanceToken(ctx, id, extension.Secret(secrets[0])); !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Errorf("mint with the installed secret after rotation: %v, want 403", err)
	}

	res, err := b.Sim.Trigger(ctx, CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: id})
	if err != nil || !res.Successful {
		t.Fatalf("removal: %+v, %v", res, err)
	}
	if _, _, err := b.Store.InstanceCredentials(ctx, id); !errors.Is(err, extension.ErrRemoved) {
		t.Errorf("credentials after removal: %v, want ErrRemoved", err)
	}
	if in, err := b.Store.InstanceByID(ctx, id); err != nil || !in.Removed() || in.HasSecret() {
		t.Errorf("after removal: %+v, %v; want a tombstone without secret", in, err)
	}
	if _, err := b.Client.InstanceToken(ctx, id, secret); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Errorf("mint after removal: %v, want 404", err)
	}

	rows, err := b.Store.Deliveries(ctx, id, 100)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(rows) // oldest first
	var got []string
	requestIDs := map[string]bool{}
	for _, r := range rows {
		got = append(got, r.Kind+" "+string(r.Outcome))
		requestIDs[r.RequestID] = true
	}
	want := []string{"ExtensionAddedToContext applied", "InstanceUpdated applied", "SecretRotated applied", "InstanceRemovedFromContext applied"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
	if len(requestIDs) != len(rows) {
		t.Errorf("journal has %d request ids for %d rows", len(requestIDs), len(rows))
	}
}

// TestIntegrationRetryUntilKeyServerRecovers: while the platform's key endpoint fails,
// the backend answers 503; the simulator retries, and the event is applied once.
func TestIntegrationRetryUntilKeyServerRecovers(t *testing.T) {
	b := newSenderBackend(t, -1)
	ctx := context.Background()
	// The backend's client tries twice per delivery: two deliveries meet the fault.
	b.Sim.InjectFault("GET /v2/public-keys/{serial}", Fault{Status: http.StatusServiceUnavailable, Times: 4})
	res, err := b.Sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusServiceUnavailable || res.Successful {
		t.Errorf("first attempt: %d, want 503", res.StatusCode)
	}
	senderWait(t, "the retries", func() bool {
		return senderState(b.Sim, res.InstanceID, CallExtensionAddedToContext) == ExecutionSuccessful
	})
	if ex, _ := senderExecution(b.Sim, res.InstanceID, CallExtensionAddedToContext); ex.Attempts != 3 {
		t.Errorf("got %d attempts, want 3", ex.Attempts)
	}
	if _, _, err := b.Store.InstanceCredentials(ctx, res.InstanceID); err != nil {
		t.Errorf("credentials: %v", err)
	}
	rows, err := b.Store.Deliveries(ctx, res.InstanceID, 100)
	if err != nil || len(rows) != 1 || rows[0].Outcome != extension.OutcomeApplied {
		t.Errorf("journal: %+v, %v; want one applied row", rows, err)
	}
}

// TestIntegrationDryRunChangesNothing: the handler recognises the simulator's dry run.
func TestIntegrationDryRunChangesNothing(t *testing.T) {
	b := newSenderBackend(t, -1)
	ctx := context.Background()
	id := uuid.NewString()
	res, err := b.Sim.DryRun(ctx, "extension-added-to-context", id, "")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Successful || res.ResponseCode != http.StatusOK {
		t.Errorf("dry run: %+v", res)
	}
	if _, err := b.Store.InstanceByID(ctx, id); !errors.Is(err, extension.ErrNotFound) {
		t.Errorf("instance after a dry run: %v, want ErrNotFound", err)
	}
	rows, err := b.Store.Deliveries(ctx, id, 100)
	if err != nil || len(rows) != 1 || rows[0].Outcome != extension.OutcomeDryRun {
		t.Errorf("journal: %+v, %v; want one dry-run row", rows, err)
	}
}
