package mstudiotest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// senderDelivery is one request a senderReceiver got.
type senderDelivery struct {
	Header  http.Header
	Body    []byte
	URL     string // path and query as received
	Payload *webhooks.Payload
}

// senderAnswer decides a receiver's answer; nth counts the deliveries of the same
// instance and kind so far, this one included.
type senderAnswer func(r *http.Request, d senderDelivery, nth int) (status int, body string)

// senderReceiver is a backend whose answers the test scripts. It records every request.
type senderReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []senderDelivery
	counts map[string]int
}

func newSenderReceiver(t *testing.T, answer senderAnswer) *senderReceiver {
	t.Helper()
	rcv := &senderReceiver{counts: map[string]int{}}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d := senderDelivery{Header: r.Header.Clone(), Body: body, URL: r.URL.RequestURI()}
		d.Payload, _ = webhooks.Decode(body)
		key := ""
		if d.Payload != nil {
			key = d.Payload.ID + " " + d.Payload.Kind
		}
		rcv.mu.Lock()
		rcv.got = append(rcv.got, d)
		rcv.counts[key]++
		nth := rcv.counts[key]
		rcv.mu.Unlock()
		status, text := http.StatusNoContent, ""
		if answer != nil {
			status, text = answer(r, d, nth)
		}
		if status == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(status)
		io.WriteString(w, text)
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

func (rcv *senderReceiver) deliveries() []senderDelivery {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]senderDelivery(nil), rcv.got...)
}

// kinds lists the payload kinds received, in order of arrival.
func (rcv *senderReceiver) kinds() []string {
	var out []string
	for _, d := range rcv.deliveries() {
		if d.Payload != nil {
			out = append(out, d.Payload.Kind)
		}
	}
	return out
}

// newSenderSim starts a simulator that delivers to webhookURL with short retries and
// secrets that work at once; change adjusts the options first. The simulator is closed
// before the receivers created earlier, so no attempt outlives them.
func newSenderSim(t *testing.T, webhookURL string, change ...func(*Options)) (*Server, *httptest.Server) {
	t.Helper()
	o := Options{
		WebhookURL: webhookURL, RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond,
		SecretActivationDelay: -1,
	}
	for _, f := range change {
		f(&o)
	}
	sim, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	t.Cleanup(sim.Close)
	return sim, srv
}

// senderKeys gives mstudio.Verify the simulator's webhook keys.
type senderKeys struct{ sim *Server }

func (k senderKeys) Key(_ context.Context, serial string) (ed25519.PublicKey, error) {
	if key := k.sim.WebhookKey(); strings.EqualFold(serial, key.Serial) {
		return key.Public(), nil
	}
	return nil, mstudio.ErrUnknownKey
}

// senderVerify checks a delivery's signature with the production verifier.
func senderVerify(sim *Server, d senderDelivery) error {
	return mstudio.Verify(context.Background(), senderKeys{sim}, d.Header, d.Body)
}

// senderWait polls cond until it holds, and fails the test after a few seconds.
func senderWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// senderExecution returns the instance's executions of the kind (trigger name).
func senderExecution(sim *Server, instanceID, kind string) (Execution, bool) {
	for _, ex := range sim.Executions(instanceID) {
		if ex.Kind == kind {
			return ex, true
		}
	}
	return Execution{}, false
}

func senderState(sim *Server, instanceID, kind string) ExecutionState {
	ex, _ := senderExecution(sim, instanceID, kind)
	return ex.State
}

// senderQueues is how many instances have a queue (and so maybe a worker).
func senderQueues(sim *Server) int {
	sim.sender.mu.Lock()
	defer sim.sender.mu.Unlock()
	return len(sim.sender.queues)
}

// senderLogBuffer collects log output from several goroutines.
type senderLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *senderLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *senderLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSenderRetriesRebuildAndResign(t *testing.T) {
	rcv := newSenderReceiver(t, func(_ *http.Request, _ senderDelivery, nth int) (int, string) {
		if nth <= 3 {
			return http.StatusServiceUnavailable, "not yet"
		}
		return http.StatusNoContent, ""
	})
	sim, _ := newSenderSim(t, rcv.URL)
	res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := CallResult{StatusCode: 503, Body: "not yet", InstanceID: res.InstanceID, ExecutionID: res.ExecutionID}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("first attempt (-want +got):\n%s", diff)
	}
	senderWait(t, "a successful execution", func() bool {
		return senderState(sim, res.InstanceID, CallExtensionAddedToContext) == ExecutionSuccessful
	})
	got := rcv.deliveries()
	if len(got) != 4 {
		t.Fatalf("got %d deliveries, want 4", len(got))
	}
	requestIDs, signatures := map[string]bool{}, map[string]bool{}
	var last time.Time
	for i, d := range got {
		if err := senderVerify(sim, d); err != nil {
			t.Errorf("attempt %d: signature: %v", i+1, err)
		}
		if d.Payload == nil {
			t.Fatalf("attempt %d: body does not decode", i+1)
		}
		requestIDs[d.Payload.Request.ID] = true
		signatures[d.Header.Get(mstudio.HeaderSignature)] = true
		if ct := d.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("attempt %d: Content-Type %q, want application/json", i+1, ct)
		}
		if ua := d.Header.Get("User-Agent"); !strings.HasPrefix(ua, "mstudio-simulator") {
			t.Errorf("attempt %d: User-Agent %q", i+1, ua)
		}
		if d.Payload.Secret != got[0].Payload.Secret || d.Payload.Kind != "ExtensionAddedToContext" {
			t.Errorf("attempt %d: kind %s or secret differs from the first attempt's", i+1, d.Payload.Kind)
		}
		created, _ := d.Payload.CreatedAt()
		if created.Before(last) {
			t.Errorf("attempt %d: createdAt %v before the previous attempt's %v", i+1, created, last)
		}
		last = created
	}
	if len(requestIDs) != 4 || len(signatures) != 4 {
		t.Errorf("got %d request ids and %d signatures over 4 attempts, want 4 each", len(requestIDs), len(signatures))
	}
	ex, _ := senderExecution(sim, res.InstanceID, CallExtensionAddedToContext)
	wantEx := Execution{
		ID: res.ExecutionID, ExtensionInstanceID: res.InstanceID, ExtensionID: sim.ExtensionID(), ContributorID: sim.ContributorID(),
		Kind: CallExtensionAddedToContext, State: ExecutionSuccessful, Attempts: 4, LastStatusCode: 204, CreatedAt: ex.CreatedAt,
	}
	if diff := cmp.Diff(wantEx, ex); diff != "" {
		t.Errorf("execution (-want +got):\n%s", diff)
	}
	senderWait(t, "the worker to exit", func() bool { return senderQueues(sim) == 0 })
}

func TestSenderBackoff(t *testing.T) {
	sim, _ := newSenderSim(t, "", func(o *Options) { o.RetryBase, o.RetryCap = time.Second, 10*time.Second })
	tests := []struct {
		failures int
		want     time.Duration // before jitter, which takes at most a tenth
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 8 * time.Second},
		{5, 10 * time.Second}, {HaltAfterAttempts, 10 * time.Second}, {1000, 10 * time.Second},
	}
	for _, tt := range tests {
		for range 20 {
			if got := sim.sender.backoff(tt.failures); got > tt.want || got < tt.want-tt.want/10 {
				t.Errorf("backoff(%d) = %v, want %v less at most a tenth", tt.failures, got, tt.want)
			}
		}
	}
}

func TestSenderStatusDecidesSuccess(t *testing.T) {
	tests := []struct {
		status int
		want   bool
	}{
		{200, true}, {201, true}, {202, true}, {204, true}, {299, true},
		{300, false}, {302, false}, {400, false}, {401, false}, {404, false}, {410, false}, {500, false}, {503, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			rcv := newSenderReceiver(t, func(_ *http.Request, _ senderDelivery, nth int) (int, string) {
				if nth == 1 {
					return tt.status, ""
				}
				return http.StatusNoContent, ""
			})
			// Retries wait long: the request count below sees the first attempt alone.
			sim, _ := newSenderSim(t, rcv.URL, func(o *Options) { o.RetryBase, o.RetryCap = time.Minute, time.Minute })
			res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || res.Successful != tt.want {
				t.Errorf("got status %d successful %v, want %d %v", res.StatusCode, res.Successful, tt.status, tt.want)
			}
			// A redirect is an answer, not a detour: nothing else was requested yet.
			if n := len(rcv.deliveries()); n != 1 {
				t.Errorf("got %d requests after the first attempt, want 1", n)
			}
		})
	}
}

func TestSenderPerInstanceOrder(t *testing.T) {
	// The install fails three times, and until both later events are queued.
	var released atomic.Bool
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, nth int) (int, string) {
		if d.Payload.Kind == "ExtensionAddedToContext" && (nth <= 3 || !released.Load()) {
			return http.StatusInternalServerError, ""
		}
		return http.StatusNoContent, ""
	})
	sim, _ := newSenderSim(t, rcv.URL)
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil || added.Successful {
		t.Fatalf("added: %+v, %v; want a failed first attempt", added, err)
	}
	id := added.InstanceID
	for _, call := range []string{CallInstanceUpdated, CallSecretRotated} {
		res, err := sim.Trigger(ctx, call, CallRequest{ExtensionInstanceID: id})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Queued || res.StatusCode != 0 || res.Successful {
			t.Errorf("%s: got %+v, want queued behind the failing install", call, res)
		}
		if got := senderState(sim, id, call); got != ExecutionQueued {
			t.Errorf("%s: state %s, want queued", call, got)
		}
	}
	released.Store(true)
	senderWait(t, "the rotation", func() bool { return senderState(sim, id, CallSecretRotated) == ExecutionSuccessful })
	kinds := rcv.kinds()
	if len(kinds) < 6 {
		t.Fatalf("got %d deliveries, want at least 6: %v", len(kinds), kinds)
	}
	want := []string{"ExtensionAddedToContext", "InstanceUpdated", "SecretRotated"}
	if diff := cmp.Diff(want, slices.Compact(kinds)); diff != "" {
		t.Errorf("arrival order (-want +got):\n%s", diff)
	}
}

func TestSenderInstancesAreIndependent(t *testing.T) {
	stuck := uuid.NewString()
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, _ int) (int, string) {
		if d.Payload.ID == stuck {
			return http.StatusInternalServerError, ""
		}
		return http.StatusNoContent, ""
	})
	sim, _ := newSenderSim(t, rcv.URL)
	ctx := context.Background()
	if _, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{ExtensionInstanceID: stuck}); err != nil {
		t.Fatal(err)
	}
	other, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	updated, err := sim.Trigger(ctx, CallInstanceUpdated, CallRequest{ExtensionInstanceID: other.InstanceID})
	if err != nil {
		t.Fatal(err)
	}
	if !other.Successful || !updated.Successful || updated.Queued {
		t.Errorf("other instance: added %+v, updated %+v; want both delivered at once", other, updated)
	}
	senderWait(t, "retries of the stuck instance", func() bool {
		ex, _ := senderExecution(sim, stuck, CallExtensionAddedToContext)
		return ex.Attempts >= 3
	})
	if got := senderState(sim, stuck, CallExtensionAddedToContext); got != ExecutionFailed && got != ExecutionRunning {
		t.Errorf("stuck instance: state %s, want failed (or running)", got)
	}
	// The other instance's worker is gone; the stuck one's keeps going.
	senderWait(t, "one queue left", func() bool { return senderQueues(sim) == 1 })
}

func TestSenderRemovalPurgesPending(t *testing.T) {
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, _ int) (int, string) {
		if d.Payload.Kind == "InstanceRemovedFromContext" {
			return http.StatusNoContent, ""
		}
		return http.StatusInternalServerError, ""
	})
	sim, _ := newSenderSim(t, rcv.URL)
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := added.InstanceID
	for _, call := range []string{CallInstanceUpdated, CallSecretRotated} {
		if res, err := sim.Trigger(ctx, call, CallRequest{ExtensionInstanceID: id}); err != nil || !res.Queued {
			t.Fatalf("%s: %+v, %v; want queued", call, res, err)
		}
	}
	removed, err := sim.Trigger(ctx, CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: id})
	if err != nil {
		t.Fatal(err)
	}
	if !removed.Successful || removed.Queued {
		t.Errorf("removal: got %+v, want delivered at once", removed)
	}
	if in, _ := sim.Instance(id); !in.Removed {
		t.Error("instance not marked removed")
	}
	// Several retry periods: nothing that was pending may arrive any more.
	time.Sleep(200 * time.Millisecond)
	kinds := rcv.kinds()
	if kinds[len(kinds)-1] != "InstanceRemovedFromContext" {
		t.Errorf("deliveries after the removal: %v", kinds)
	}
	for _, k := range kinds {
		if k == "InstanceUpdated" || k == "SecretRotated" {
			t.Errorf("a purged %s was delivered: %v", k, kinds)
		}
	}
	var got []string
	for _, ex := range sim.Executions(id) {
		got = append(got, ex.Kind+" "+string(ex.State))
	}
	if diff := cmp.Diff([]string{"instanceRemovedFromContext successful"}, got); diff != "" {
		t.Errorf("executions (-want +got):\n%s", diff)
	}
	senderWait(t, "the worker to exit", func() bool { return senderQueues(sim) == 0 })
}

func TestSenderTimeoutIsFailure(t *testing.T) {
	rcv := newSenderReceiver(t, func(r *http.Request, _ senderDelivery, nth int) (int, string) {
		if nth == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		return http.StatusNoContent, ""
	})
	sim, _ := newSenderSim(t, rcv.URL, func(o *Options) { o.WebhookTimeout = 200 * time.Millisecond })
	res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Successful || res.StatusCode != 0 || !strings.Contains(res.Error, "no answer within 200ms") {
		t.Errorf("first attempt: got %+v, want a timeout", res)
	}
	senderWait(t, "the retry", func() bool {
		return senderState(sim, res.InstanceID, CallExtensionAddedToContext) == ExecutionSuccessful
	})
	if ex, _ := senderExecution(sim, res.InstanceID, CallExtensionAddedToContext); ex.Attempts != 2 {
		t.Errorf("got %d attempts, want 2", ex.Attempts)
	}
}

func TestSenderHaltsAndResumes(t *testing.T) {
	var healthy atomic.Bool
	rcv := newSenderReceiver(t, func(_ *http.Request, _ senderDelivery, _ int) (int, string) {
		if healthy.Load() {
			return http.StatusNoContent, ""
		}
		return http.StatusBadGateway, ""
	})
	sim, srv := newSenderSim(t, rcv.URL, func(o *Options) { o.RetryBase, o.RetryCap = time.Millisecond, 2*time.Millisecond })
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	id := added.InstanceID
	if _, err := sim.Trigger(ctx, CallInstanceUpdated, CallRequest{ExtensionInstanceID: id}); err != nil {
		t.Fatal(err)
	}
	senderWait(t, "the halt", func() bool { return senderState(sim, id, CallExtensionAddedToContext) == ExecutionHalted })
	ex, _ := senderExecution(sim, id, CallExtensionAddedToContext)
	if ex.Attempts != HaltAfterAttempts || !ex.NextScheduledExecution.IsZero() || ex.LastError != "answered 502" {
		t.Errorf("halted execution: %+v; want %d attempts, none scheduled, last error \"answered 502\"", ex, HaltAfterAttempts)
	}
	if halted, _ := sim.WebhookStatus(id); !halted {
		t.Error("WebhookStatus: not halted")
	}
	n := len(rcv.deliveries())
	time.Sleep(30 * time.Millisecond)
	if got := len(rcv.deliveries()); got != n {
		t.Errorf("%d more deliveries while halted", got-n)
	}
	if got := senderState(sim, id, CallInstanceUpdated); got != ExecutionQueued {
		t.Errorf("update behind the halted install: %s, want queued", got)
	}

	resume := func(execID string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+"/internal/executions/"+execID+"/resume", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	healthy.Store(true)
	if got := resume(ex.ID); got != http.StatusNoContent {
		t.Fatalf("resume: %d, want 204", got)
	}
	senderWait(t, "the update", func() bool { return senderState(sim, id, CallInstanceUpdated) == ExecutionSuccessful })
	if ex, _ := senderExecution(sim, id, CallExtensionAddedToContext); ex.State != ExecutionSuccessful || ex.Attempts != HaltAfterAttempts+1 {
		t.Errorf("resumed install: %s after %d attempts, want successful after %d", ex.State, ex.Attempts, HaltAfterAttempts+1)
	}
	if halted, _ := sim.WebhookStatus(id); halted {
		t.Error("WebhookStatus: still halted")
	}
	for _, tt := range []struct {
		id   string
		want int
	}{{ex.ID, http.StatusConflict}, {uuid.NewString(), http.StatusNotFound}} {
		if got := resume(tt.id); got != tt.want {
			t.Errorf("resume %s: %d, want %d", tt.id, got, tt.want)
		}
	}

	resp, err := http.Get(srv.URL + "/internal/executions?instanceId=" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []Execution
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sim.Executions(id), list); diff != "" {
		t.Errorf("GET /internal/executions (-Executions +GET):\n%s", diff)
	}
}

func TestSenderRemovalUnblocksHaltedQueue(t *testing.T) {
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, _ int) (int, string) {
		if d.Payload.Kind == "InstanceRemovedFromContext" {
			return http.StatusNoContent, ""
		}
		return http.StatusInternalServerError, ""
	})
	sim, _ := newSenderSim(t, rcv.URL, func(o *Options) { o.RetryBase, o.RetryCap = time.Millisecond, 2*time.Millisecond })
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	senderWait(t, "the halt", func() bool {
		return senderState(sim, added.InstanceID, CallExtensionAddedToContext) == ExecutionHalted
	})
	res, err := sim.Trigger(ctx, CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: added.InstanceID})
	if err != nil || !res.Successful || res.Queued {
		t.Errorf("removal of a halted instance: %+v, %v; want delivered at once", res, err)
	}
	if halted, _ := sim.WebhookStatus(added.InstanceID); halted {
		t.Error("still halted after the removal")
	}
}

func TestSenderCloseStopsWorkers(t *testing.T) {
	hanging := uuid.NewString()
	rcv := newSenderReceiver(t, func(r *http.Request, d senderDelivery, _ int) (int, string) {
		if d.Payload.ID == hanging {
			<-r.Context().Done()
		}
		return http.StatusInternalServerError, ""
	})
	sim, _ := newSenderSim(t, rcv.URL, func(o *Options) {
		o.RetryBase, o.RetryCap, o.WebhookTimeout = time.Minute, time.Minute, time.Minute
	})
	ctx := context.Background()
	// One worker waits a minute to retry, the other waits for an answer.
	if res, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{}); err != nil || res.Successful {
		t.Fatalf("%+v, %v; want a failed first attempt", res, err)
	}
	triggered := make(chan error, 1)
	go func() {
		_, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{ExtensionInstanceID: hanging})
		triggered <- err
	}()
	senderWait(t, "the hanging delivery", func() bool { return len(rcv.deliveries()) == 2 })

	closed := make(chan struct{})
	go func() { sim.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-triggered:
		if !errors.Is(err, ErrClosed) && err != nil {
			t.Errorf("trigger in flight: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Trigger did not return after Close")
	}
	if _, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Trigger after Close: %v, want ErrClosed", err)
	}
}

func TestSenderKeepsSecretsOutOfLogs(t *testing.T) {
	// The receiver quotes the secret back in its failure answers.
	rcv := newSenderReceiver(t, func(_ *http.Request, d senderDelivery, nth int) (int, string) {
		if nth == 1 {
			return http.StatusInternalServerError, "bad secret " + d.Payload.Secret.Reveal()
		}
		return http.StatusNoContent, ""
	})
	logs := new(senderLogBuffer)
	sim, srv := newSenderSim(t, rcv.URL, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Trigger(ctx, CallSecretRotated, CallRequest{ExtensionInstanceID: added.InstanceID}); err != nil {
		t.Fatal(err)
	}
	senderWait(t, "the rotation", func() bool {
		return senderState(sim, added.InstanceID, CallSecretRotated) == ExecutionSuccessful
	})
	resp, err := http.Get(srv.URL + "/internal/executions")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var secrets []string
	for _, d := range rcv.deliveries() {
		if s := d.Payload.Secret.Reveal(); s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) != 4 {
		t.Fatalf("got %d deliveries with a secret, want 4", len(secrets))
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Error("a secret is in the log")
		}
		if bytes.Contains(list, []byte(s)) {
			t.Error("a secret is in the execution log")
		}
	}
	if !strings.Contains(logs.String(), "answered 500") {
		t.Errorf("the log does not say why an attempt failed:\n%s", logs)
	}
}

func TestSenderFillsURLPlaceholders(t *testing.T) {
	rcv := newSenderReceiver(t, nil)
	sim, _ := newSenderSim(t, "")
	sim.SetWebhookURL(rcv.URL + "/hooks/:context/:contextId/:extensionInstanceId/:apiVersion?ext=:extensionId&c=:contributorId")
	ctxID := uuid.NewString()
	res, err := sim.Trigger(context.Background(), CallExtensionAddedToContext, CallRequest{Context: "customer", ContextAggregateID: ctxID})
	if err != nil || !res.Successful {
		t.Fatalf("%+v, %v", res, err)
	}
	d := rcv.deliveries()[0]
	want := "/hooks/customer/" + ctxID + "/" + res.InstanceID + "/v1?ext=" + sim.ExtensionID() + "&c=" + sim.ContributorID()
	if d.URL != want {
		t.Errorf("got URL %s, want %s", d.URL, want)
	}
	if got := d.Payload.Request.Target.URL; got != rcv.URL+want {
		t.Errorf("request.target.url = %s, want %s", got, rcv.URL+want)
	}
}
