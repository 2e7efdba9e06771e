package mstudiotest

// The developer tools (webhook send and sign, bench) against the backend's real webhook
// handler, which fetches its keys from the simulator whose key file the tools sign with.

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
)

// The ids in the sample payloads of testdata/payloads.
const (
	sampleExtensionID   = "3f1e6c2a-8b4d-4e59-9a7c-2d5b8e1f4a60"
	sampleContributorID = "7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17"
	sampleInstanceID    = "b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d"
)

// toolBackend is a backend that fetches its keys from a simulator with a key file and a
// state file in a temp dir, as `dev` keeps them, and expects the sample payloads' ids.
type toolBackend struct {
	*senderBackend
	KeyFile, StateFile, URL string
}

func newToolBackend(t *testing.T) toolBackend {
	t.Helper()
	dir := t.TempDir()
	b := toolBackend{KeyFile: filepath.Join(dir, "simulator-keys.json"), StateFile: filepath.Join(dir, "simulator-state.json")}
	b.senderBackend = newSenderBackendWith(t, Options{
		KeyFile: b.KeyFile, StateFile: b.StateFile, ExtensionID: sampleExtensionID, ContributorID: sampleContributorID,
		RetryBase: 5 * time.Millisecond, RetryCap: 50 * time.Millisecond, SecretActivationDelay: -1,
	})
	b.URL = b.Sim.webhookURL()
	return b
}

// otherKeyFile is the key file of another simulator than the one the backend trusts.
func otherKeyFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "other-keys.json")
	sim, err := New(Options{KeyFile: file})
	if err != nil {
		t.Fatal(err)
	}
	sim.Close()
	return file
}

// TestSamplePayloads: each sample payload of the README is a valid body of its kind with
// exactly the fields the platform sends (spec 3.4), and `webhook send --file` of the four
// in order takes an instance through its whole life at the real handler.
func TestSamplePayloads(t *testing.T) {
	b := newToolBackend(t)
	ctx := context.Background()
	envelope := []string{"apiVersion", "context", "id", "kind", "meta", "request"}
	steps := []struct {
		file     string
		wantKeys []string
		check    func(in *extension.Instance, secret string) bool
	}{
		{"added.json", append(envelope, "consentedScopes", "secret", "state", "variantKey"), func(in *extension.Instance, secret string) bool {
			return in.Enabled && in.VariantKey == "default" && len(in.ConsentedScopes) == 2 && secret == "Qx7mT2vLp9RkW4sNz8bYc3HfJ6dGa1EoUiVtX5yKqZr"
		}},
		{"updated.json", append(envelope, "consentedScopes", "state", "variantKey"), func(in *extension.Instance, _ string) bool {
			return in.VariantKey == "pro" && len(in.ConsentedScopes) == 3
		}},
		{"rotated.json", append(envelope, "secret"), func(in *extension.Instance, secret string) bool {
			return !in.Removed() && secret == "Lm4nB8vC2xZ6qW9eR3tY7uI1oP5aS0dFgHjKlQwEr7t"
		}},
		{"removed.json", append(envelope, "consentedScopes", "state"), func(in *extension.Instance, _ string) bool { return in.Removed() }},
	}
	files, err := filepath.Glob(filepath.Join("testdata", "payloads", "*.json"))
	if err != nil || len(files) != len(steps) {
		t.Fatalf("testdata/payloads holds %d files (%v), want one per kind", len(files), err)
	}
	for _, step := range steps {
		body, err := os.ReadFile(filepath.Join("testdata", "payloads", step.file))
		if err != nil {
			t.Fatal(err)
		}
		p, err := webhooks.Decode(body)
		if err != nil {
			t.Fatalf("%s: %v", step.file, err)
		}
		wantKind, _ := PayloadKind(strings.TrimSuffix(step.file, ".json"))
		if ev, err := p.Event(); err != nil || string(ev.Kind) != wantKind || p.ID != sampleInstanceID {
			t.Errorf("%s: event %+v, %v; want a %s of %s", step.file, ev, err, wantKind, sampleInstanceID)
		}
		keys := senderTopKeys(t, body)
		slices.Sort(keys)
		slices.Sort(step.wantKeys)
		if diff := cmp.Diff(step.wantKeys, keys); diff != "" {
			t.Errorf("%s: top-level fields (-want +got):\n%s", step.file, diff)
		}

		var out bytes.Buffer
		if err := SendWebhook(ctx, SendOptions{To: b.URL, KeyFile: b.KeyFile, Body: body}, &out); err != nil || !strings.Contains(out.String(), " 204 ") {
			t.Fatalf("send %s: %v\n%s", step.file, err, out.String())
		}
		in, err := b.Store.InstanceByID(ctx, sampleInstanceID)
		if err != nil {
			t.Fatalf("after %s: %v", step.file, err)
		}
		var secret string
		if !in.Removed() {
			_, s, err := b.Store.InstanceCredentials(ctx, sampleInstanceID)
			if err != nil {
				t.Fatalf("after %s: %v", step.file, err)
			}
			secret = s.Reveal()
		}
		if !step.check(in, secret) {
			t.Errorf("after %s the backend holds %+v", step.file, in)
		}
	}
}

func TestSendWebhookBuildsPayloads(t *testing.T) {
	b := newToolBackend(t)
	ctx := context.Background()
	send := func(opts SendOptions) (string, error) {
		opts.To, opts.KeyFile, opts.StateFile = b.URL, b.KeyFile, b.StateFile
		opts.ExtensionID, opts.ContributorID = sampleExtensionID, sampleContributorID
		var out bytes.Buffer
		err := SendWebhook(ctx, opts, &out)
		return out.String(), err
	}

	// Without an instance it makes one up, and says which, so the next event can name it.
	out, err := send(SendOptions{Kind: "added"})
	m := regexp.MustCompile(`(?m)^sending ExtensionAddedToContext for new instance ([0-9a-f-]{36})$`).FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "HTTP/1.1 204 No Content") {
		t.Fatalf("send --kind added: %v\n%s\nwant the kind, the new instance id and a 204", err, out)
	}
	if _, err := b.Store.InstanceByID(ctx, m[1]); err != nil {
		t.Errorf("the instance %s the tool printed is not stored: %v", m[1], err)
	}
	out, err = send(SendOptions{Kind: "removed", InstanceID: m[1]})
	if err != nil || !strings.Contains(out, "sending InstanceRemovedFromContext for instance "+m[1]+"\n") {
		t.Errorf("send --kind removed --instance: %v\n%s", err, out)
	}

	// An instance the simulator knows is sent as the simulator knows it: the backend ends
	// up with its context, scopes, variant and current secret.
	variant := "pro"
	res, err := b.Sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{ConsentedScopes: []string{"project:read"}, VariantKey: &variant})
	if err != nil || !res.Successful {
		t.Fatalf("install: %+v, %v", res, err)
	}
	for _, kind := range []string{"updated", "rotate", "SecretRotated"} {
		if out, err := send(SendOptions{Kind: kind, InstanceID: res.InstanceID}); err != nil {
			t.Fatalf("send --kind %s: %v\n%s", kind, err, out)
		}
	}
	simIn, _ := b.Sim.Instance(res.InstanceID)
	in, secret, err := b.Store.InstanceCredentials(ctx, res.InstanceID)
	if err != nil {
		t.Fatal(err)
	}
	got := senderStored{in.ContextKind, in.ContextID, in.ConsentedScopes, in.Enabled, in.Removed(), in.VariantKey}
	want := senderStored{simIn.ContextKind, simIn.ContextID, simIn.Scopes, true, false, "pro"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored instance (-simulator +backend):\n%s", diff)
	}
	if secret.Reveal() != simIn.Secret {
		t.Error("the backend holds another secret than the simulator's")
	}

	// A dry run is answered and applies nothing.
	before, _ := b.Store.Instances(ctx, true)
	out, err = send(SendOptions{Kind: "added", DryRun: true})
	if err != nil || !strings.Contains(out, `"outcome":"dry-run"`) {
		t.Errorf("send --dry-run: %v\n%s", err, out)
	}
	if after, _ := b.Store.Instances(ctx, true); len(after) != len(before) {
		t.Errorf("the dry run stored an instance: %d before, %d after", len(before), len(after))
	}

	// What cmd checks before it calls: the kind and the ids.
	if _, err := send(SendOptions{Kind: "exploded"}); err == nil || !strings.Contains(err.Error(), `"exploded"`) {
		t.Errorf("unknown kind: %v", err)
	}
	if err := SendWebhook(ctx, SendOptions{To: b.URL, KeyFile: b.KeyFile, Kind: "added"}, &bytes.Buffer{}); err == nil {
		t.Error("built a payload without an extension id")
	}
}

// TestToolsExplainARefusedSignature: signed with another simulator's key, send and bench
// say what is wrong and which flag fixes it, instead of a bare 401.
func TestToolsExplainARefusedSignature(t *testing.T) {
	b := newToolBackend(t)
	wrong := otherKeyFile(t)
	var out bytes.Buffer
	err := SendWebhook(context.Background(), SendOptions{To: b.URL, KeyFile: wrong, Kind: "added", ExtensionID: sampleExtensionID}, &out)
	checkRefusedSignature(t, "send", err, wrong)
	if !strings.Contains(out.String(), "401") {
		t.Errorf("send printed no 401:\n%s", out.String())
	}

	out.Reset()
	err = Bench(context.Background(), BenchOptions{To: b.URL, KeyFile: wrong, ExtensionID: sampleExtensionID,
		Duration: 300 * time.Millisecond, Concurrency: 2, Instances: 4}, &out, &bytes.Buffer{})
	checkRefusedSignature(t, "bench", err, wrong)
	if !strings.Contains(out.String(), "401:") {
		t.Errorf("bench summary lacks the 401 count:\n%s", out.String())
	}
}

func checkRefusedSignature(t *testing.T, tool string, err error, keyFile string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s with a foreign key: no error", tool)
	}
	for _, want := range []string{"refused the signature", keyFile, "--key-file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s with a foreign key: %q lacks %q", tool, err, want)
		}
	}
}

func TestSignWebhook(t *testing.T) {
	dir := t.TempDir()
	keyFile, file := filepath.Join(dir, "keys.json"), filepath.Join(dir, "body.json")
	sim, err := New(Options{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	sim.Close()
	body := []byte(`{"hello":"world"}`)
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := SignWebhook(SignOptions{File: file, KeyFile: keyFile}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	for line := range strings.Lines(out.String()) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			t.Fatalf("line %q is not a header", line)
		}
		h.Set(name, value)
	}
	sig, err := mstudio.ParseSignature(h)
	if err != nil || sig.Serial != sim.WebhookKey().Serial {
		t.Fatalf("printed headers %v: %+v, %v", h, sig, err)
	}
	if err := sig.Check(sim.WebhookKey().Public(), body); err != nil {
		t.Errorf("the printed signature does not verify: %v", err)
	}
	if !strings.Contains(errOut.String(), "curl -i") || !strings.Contains(errOut.String(), "--data-binary @"+file) {
		t.Errorf("no curl example on stderr:\n%s", errOut.String())
	}
	if err := SignWebhook(SignOptions{File: filepath.Join(dir, "missing.json"), KeyFile: keyFile}, &out, &errOut); err == nil {
		t.Error("signed a file that does not exist")
	}
	if err := SignWebhook(SignOptions{File: file, KeyFile: filepath.Join(dir, "missing-keys.json")}, &out, &errOut); err == nil ||
		!strings.Contains(err.Error(), "extension-backend dev") {
		t.Errorf("missing key file: %v, want a hint to start dev or sim", err)
	}
}

func TestBench(t *testing.T) {
	b := newToolBackend(t)
	var out bytes.Buffer
	err := Bench(context.Background(), BenchOptions{To: b.URL, KeyFile: b.KeyFile, ExtensionID: sampleExtensionID, ContributorID: sampleContributorID,
		Duration: 500 * time.Millisecond, Concurrency: 4, Instances: 20}, &out, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	for _, want := range []string{"throughput", "p99", "204:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench summary lacks %q:\n%s", want, out.String())
		}
	}
	// Only the status line counts: the delivery count or a latency may
	// contain "401" or "403" by chance.
	for line := range strings.Lines(out.String()) {
		if fields := strings.Fields(line); len(fields) > 0 && fields[0] == "status" &&
			(strings.Contains(line, "401:") || strings.Contains(line, "403:")) {
			t.Errorf("bench deliveries were refused:\n%s", out.String())
		}
	}
	if all, err := b.Store.Instances(context.Background(), true); err != nil || len(all) == 0 || len(all) > 20 {
		t.Errorf("bench installed %d instances (%v), want 1 to 20", len(all), err)
	}
}

func TestBenchAgainstNothing(t *testing.T) {
	keyFile := otherKeyFile(t)
	var out bytes.Buffer
	err := Bench(context.Background(), BenchOptions{To: "http://127.0.0.1:1/mstudio/webhooks", KeyFile: keyFile, ExtensionID: sampleExtensionID,
		Duration: 300 * time.Millisecond, Concurrency: 2, Instances: 4}, &out, &bytes.Buffer{})
	if err == nil || !strings.Contains(out.String(), "transport error") || strings.Contains(out.String(), "throughput") {
		t.Errorf("bench against a closed port: got %v and\n%s\nwant an error, transport errors counted, no throughput", err, out.String())
	}
}

func TestBenchRefusesBadOptions(t *testing.T) {
	keyFile := otherKeyFile(t)
	good := BenchOptions{To: "http://127.0.0.1:1/", KeyFile: keyFile, ExtensionID: sampleExtensionID, Duration: time.Second, Concurrency: 2, Instances: 2}
	for name, change := range map[string]func(*BenchOptions){
		"no URL":            func(o *BenchOptions) { o.To = "" },
		"no key file":       func(o *BenchOptions) { o.KeyFile = "" },
		"no extension id":   func(o *BenchOptions) { o.ExtensionID = "" },
		"no concurrency":    func(o *BenchOptions) { o.Concurrency = 0 },
		"too few instances": func(o *BenchOptions) { o.Instances = 1 },
		"no duration":       func(o *BenchOptions) { o.Duration = 0 },
		"over an hour":      func(o *BenchOptions) { o.Duration = 2 * time.Hour },
	} {
		opts := good
		change(&opts)
		var out bytes.Buffer
		if err := Bench(context.Background(), opts, &out, &out); err == nil || out.Len() > 0 {
			t.Errorf("%s: got %v and output %q, want an error before any delivery", name, err, out.String())
		}
	}
	var missing bytes.Buffer
	err := Bench(context.Background(), BenchOptions{To: "http://127.0.0.1:1/", KeyFile: filepath.Join(t.TempDir(), "none.json"),
		ExtensionID: sampleExtensionID, Duration: time.Second, Concurrency: 1, Instances: 1}, &missing, &missing)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "none.json") {
		t.Errorf("missing key file: %v", err)
	}
}
