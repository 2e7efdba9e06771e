package mstudiotest

// The developer's webhook tools (`extension-backend webhook send|sign`): one lifecycle
// webhook, signed with a simulator's key as the simulator itself signs, sent to a backend
// or printed as headers for curl.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// SendOptions configures SendWebhook.
type SendOptions struct {
	To      string // the backend's webhook URL; required
	KeyFile string // the simulator key file (Options.KeyFile) to sign with; required

	// Body, when not nil, is sent as it is; the fields below build one otherwise.
	Body []byte

	Kind          string // added, updated, rotated, removed, or any of the platform's names; required without Body
	InstanceID    string // default: a new one
	ContextID     string // the project; default: a new one
	ExtensionID   string // meta.extensionId; required without Body
	ContributorID string // meta.contributorId; default: a new one
	// StateFile is the state file (Options.StateFile) of the simulator whose key signs. An
	// instance it holds is sent as it holds it (context, scopes, state, variant and
	// current secret), so the backend's record stays in step with the simulator's.
	StateFile string
	DryRun    bool // append ?dry-run=true&executing-user-id=… as the platform's dry runs do

	HTTPClient *http.Client // default: one with the platform's 6 s timeout
}

// SendWebhook signs one lifecycle webhook with the key file's webhook key, posts it and
// writes what it sent (kind and instance of a body it built) and the backend's answer to
// w. It fails when the backend answers anything but 2xx.
func SendWebhook(ctx context.Context, opts SendOptions, w io.Writer) error {
	if opts.To == "" || opts.KeyFile == "" {
		return errorf("send: the webhook URL and the key file are required")
	}
	key, err := loadSigningKey(opts.KeyFile)
	if err != nil {
		return err
	}
	target := opts.To
	if opts.DryRun {
		u, err := url.Parse(opts.To)
		if err != nil {
			return errorf("send: webhook URL %q: %v", opts.To, err)
		}
		q := u.Query()
		q.Set("dry-run", "true")
		q.Set("executing-user-id", uuid.NewString())
		u.RawQuery = q.Encode()
		target = u.String()
	}
	body := opts.Body
	if body == nil {
		spec, err := sendSpec(opts, target)
		if err != nil {
			return err
		}
		if body, err = BuildPayload(spec); err != nil {
			return err
		}
		which := "instance"
		if opts.InstanceID == "" {
			which = "new instance" // the id to pass with --instance for its next events
		}
		fmt.Fprintf(w, "sending %s for %s %s\n", spec.Kind, which, spec.InstanceID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errorf("send: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	mstudio.Sign(req.Header, key.Serial, key.Private, body)
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 6 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return errorf("send: %v", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	fmt.Fprintf(w, "%s %s\n", resp.Proto, resp.Status)
	if len(answer) > 0 {
		fmt.Fprintf(w, "%s\n", bytes.TrimSpace(answer))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return refusedSignature(opts.KeyFile, "")
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("the backend answered %d", resp.StatusCode)
	}
	return nil
}

// sendSpec is the payload SendWebhook builds.
func sendSpec(opts SendOptions, target string) (PayloadSpec, error) {
	kind, ok := PayloadKind(opts.Kind)
	if !ok {
		return PayloadSpec{}, errorf("send: kind %q: want added, updated, rotated or removed", opts.Kind)
	}
	if opts.ExtensionID == "" {
		return PayloadSpec{}, errorf("send: the extension id is required to build a payload")
	}
	spec := PayloadSpec{
		Kind: kind, InstanceID: opts.InstanceID, ExtensionID: opts.ExtensionID, ContributorID: opts.ContributorID,
		ContextKind: "project", ContextID: opts.ContextID, Scopes: DefaultScopes, Enabled: true, TargetURL: target,
	}
	if spec.InstanceID == "" {
		spec.InstanceID = uuid.NewString()
	}
	if spec.ContextID == "" {
		spec.ContextID = uuid.NewString()
	}
	if spec.ContributorID == "" {
		spec.ContributorID = uuid.NewString() // nobody checks it unless told to
	}
	if k, _ := lookupKind(kind); k.secret {
		spec.Secret = "dev-secret-" + uuid.NewString()
	}
	if known, ok := stateInstance(opts.StateFile, spec.InstanceID); ok {
		spec.ContextKind, spec.ContextID, spec.Scopes = known.ContextKind, known.ContextID, known.Scopes
		spec.Enabled, spec.VariantKey = !known.Disabled, known.VariantKey
		if spec.Secret != "" && known.Secret != "" {
			spec.Secret = known.Secret
		}
	}
	return spec, nil
}

// stateInstance looks an instance up in a simulator's state file, without starting that
// simulator; a missing or unreadable file knows no instance.
func stateInstance(file, id string) (Instance, bool) {
	if file == "" {
		return Instance{}, false
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return Instance{}, false
	}
	var st stateFile
	if json.Unmarshal(data, &st) != nil {
		return Instance{}, false
	}
	for _, in := range st.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return Instance{}, false
}

// loadSigningKey reads the webhook key of a key file, saying how to get one.
func loadSigningKey(file string) (KeyPair, error) {
	key, err := LoadKeyFile(file, PurposeWebhook)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w (start `extension-backend dev`, or `extension-backend sim --key-file %s`, first)", err, file)
	}
	return key, nil
}

// refusedSignature explains a 401: the backend checked the signature against the keys of
// another platform or simulator than the one whose key file signed.
func refusedSignature(keyFile, counts string) error {
	return fmt.Errorf("the backend refused the signature (401%s): the key file %s is likely not the one of the simulator "+
		"the backend fetches its keys from (EXT_MSTUDIO_API_URL); pass that simulator's key file with --key-file", counts, keyFile)
}

// SignOptions configures SignWebhook.
type SignOptions struct {
	File    string // the body to sign; required
	KeyFile string // the simulator key file to sign with; required
	To      string // the webhook URL in the printed curl example; default the dev backend's
}

// SignWebhook writes the three signature headers for the body in File to stdout, one
// "Name: value" line each, and a curl command that sends it to stderr.
func SignWebhook(opts SignOptions, stdout, stderr io.Writer) error {
	if opts.File == "" || opts.KeyFile == "" {
		return errorf("sign: the body file and the key file are required")
	}
	body, err := os.ReadFile(opts.File)
	if err != nil {
		return errorf("sign: %v", err)
	}
	key, err := loadSigningKey(opts.KeyFile)
	if err != nil {
		return err
	}
	to := opts.To
	if to == "" {
		to = "http://127.0.0.1:8080/mstudio/webhooks"
	}
	h := http.Header{}
	mstudio.Sign(h, key.Serial, key.Private, body)
	names := []string{mstudio.HeaderSerial, mstudio.HeaderAlgorithm, mstudio.HeaderSignature}
	for _, name := range names {
		fmt.Fprintf(stdout, "%s: %s\n", name, h.Get(name))
	}
	fmt.Fprint(stderr, "\nfor example:\n  curl -i -H 'Content-Type: application/json'")
	for _, name := range names {
		fmt.Fprintf(stderr, " -H '%s: %s'", name, h.Get(name))
	}
	fmt.Fprintf(stderr, " --data-binary @%s %s\n", opts.File, to)
	return nil
}

// ReplayOptions configures ReplayWebhook.
type ReplayOptions struct {
	To     string      // the webhook URL; required
	Body   []byte      // the captured body
	Header http.Header // the captured headers, signature included
	// KeyFile, when set, signs again with the key file's webhook key, as the simulator
	// sends: the body gets a new request id, the time of now and To as its target, so a
	// backend takes the replay for a new delivery of the same event. Empty: the body and
	// headers go as captured, with their own signature.
	KeyFile    string
	HTTPClient *http.Client // default: one with the platform's 6 s timeout
}

// Replayed is the backend's answer to a replayed delivery.
type Replayed struct {
	Proto, Status string
	StatusCode    int
	Answer        []byte // up to a few KiB of the answer's body
}

// replayHeaderSkip are headers a replay does not copy: the client sets them for its own
// connection and body.
var replayHeaderSkip = map[string]bool{
	"Host": true, "Content-Length": true, "Connection": true, "Transfer-Encoding": true, "Accept-Encoding": true,
	"Keep-Alive": true, "Te": true, "Trailer": true, "Upgrade": true, "Proxy-Connection": true,
}

// ReplayWebhook posts a captured delivery again, signed again or as captured (KeyFile).
func ReplayWebhook(ctx context.Context, opts ReplayOptions) (Replayed, error) {
	if opts.To == "" {
		return Replayed{}, errorf("replay: the webhook URL is required")
	}
	body := opts.Body
	var key KeyPair
	if opts.KeyFile != "" {
		var err error
		if key, err = loadSigningKey(opts.KeyFile); err != nil {
			return Replayed{}, err
		}
		body = freshRequest(body, opts.To, time.Now())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, opts.To, bytes.NewReader(body))
	if err != nil {
		return Replayed{}, errorf("replay: webhook URL %q: %v", opts.To, err)
	}
	for name, values := range opts.Header {
		if !replayHeaderSkip[http.CanonicalHeaderKey(name)] {
			req.Header[http.CanonicalHeaderKey(name)] = append([]string(nil), values...)
		}
	}
	if opts.KeyFile != "" {
		mstudio.Sign(req.Header, key.Serial, key.Private, body)
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 6 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Replayed{}, errorf("replay: %v", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return Replayed{Proto: resp.Proto, Status: resp.Status, StatusCode: resp.StatusCode, Answer: bytes.TrimSpace(answer)}, nil
}

// freshRequest gives a lifecycle body a new request id (a UUIDv7, as the platform's), the
// time now as its createdAt and to as its target URL, keeping every other field as it
// is. A body that is no JSON object, or whose request is none, is returned as it is.
func freshRequest(body []byte, to string, now time.Time) []byte {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || top == nil {
		return body
	}
	var request map[string]json.RawMessage
	if json.Unmarshal(top["request"], &request) != nil || request == nil {
		return body
	}
	var target map[string]json.RawMessage
	if raw, ok := request["target"]; ok && json.Unmarshal(raw, &target) != nil {
		return body
	}
	if target == nil {
		target = map[string]json.RawMessage{}
	}
	str := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	target["url"] = str(to)
	if _, ok := target["method"]; !ok {
		target["method"] = str(http.MethodPost)
	}
	request["id"] = str(uuid.Must(uuid.NewV7()).String())
	request["createdAt"] = str(now.UTC().Format(time.RFC3339Nano))
	var err error
	if request["target"], err = json.Marshal(target); err != nil {
		return body
	}
	if top["request"], err = json.Marshal(request); err != nil {
		return body
	}
	out, err := json.Marshal(top)
	if err != nil {
		return body
	}
	return out
}
