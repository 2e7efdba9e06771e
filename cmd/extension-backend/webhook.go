package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
)

const defaultKeyFile = "data/simulator-keys.json"

func runWebhook(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "send" && args[0] != "sign") {
		return usagef("usage: extension-backend webhook send|sign [flags]")
	}
	if args[0] == "sign" {
		return runWebhookSign(args[1:], stdout, stderr)
	}
	return runWebhookSend(ctx, args[1:], getenv, stdout, stderr)
}

// payloadKindOf lets a developer name a kind the short way, or in any of the platform's
// vocabularies.
func payloadKindOf(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "added", "add", "install":
		return "ExtensionAddedToContext", true
	case "updated", "update":
		return "InstanceUpdated", true
	case "rotated", "rotate", "secretrotated":
		return "SecretRotated", true
	case "removed", "remove", "uninstall":
		return "InstanceRemovedFromContext", true
	}
	if k, ok := mstudiotest.PayloadKind(name); ok {
		return k, true
	}
	if k, ok := webhooks.ParseKind(name); ok {
		return string(k), true
	}
	return "", false
}

func runWebhookSend(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "added, updated, rotated, removed (or any platform spelling); not needed with --file")
	instanceID := fs.String("instance", "", "extension instance id (default: a new one)")
	file := fs.String("file", "", "send this body as it is instead of building one")
	to := fs.String("to", "http://127.0.0.1:8080/mstudio/webhooks", "the backend's webhook URL")
	keyFile := fs.String("key-file", defaultKeyFile, "the simulator key file to sign with")
	extensionID := fs.String("extension-id", "", "meta.extensionId (default: EXT_EXTENSION_ID, else the dev setup's)")
	contextID := fs.String("context", "", "context (project) id (default: a new one)")
	dryRun := fs.Bool("dry-run", false, "append ?dry-run=true&executing-user-id=… as the platform's dry runs do")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	sg, err := loadDevSigner(getenv, *keyFile, *extensionID)
	if err != nil {
		return err
	}
	target := *to
	if *dryRun {
		u, err := url.Parse(*to)
		if err != nil {
			return usagef("--to %q: %v", *to, err)
		}
		q := u.Query()
		q.Set("dry-run", "true")
		q.Set("executing-user-id", uuid.NewString())
		u.RawQuery = q.Encode()
		target = u.String()
	}
	var body []byte
	if *file != "" {
		if body, err = os.ReadFile(*file); err != nil {
			return err
		}
	} else {
		k, ok := payloadKindOf(*kind)
		if !ok {
			return usagef("--kind %q: want added, updated, rotated or removed (or --file)", *kind)
		}
		if err := sg.requireExtensionID(); err != nil {
			return err
		}
		spec := mstudiotest.PayloadSpec{
			Kind: k, InstanceID: *instanceID, ExtensionID: sg.extensionID, ContributorID: sg.contributorID,
			ContextKind: "project", ContextID: *contextID, Scopes: mstudiotest.DefaultScopes, Enabled: true,
			TargetURL: target,
		}
		if spec.InstanceID == "" {
			spec.InstanceID = uuid.NewString()
		}
		if spec.ContextID == "" {
			spec.ContextID = uuid.NewString()
		}
		if k == "ExtensionAddedToContext" || k == "SecretRotated" {
			spec.Secret = "dev-secret-" + uuid.NewString()
		}
		// An instance the dev simulator knows is sent as the simulator knows it, so the
		// backend's record and secret keep matching the simulator's: its context, scopes,
		// state and current secret.
		if known, ok := simInstance(filepath.Join(filepath.Dir(*keyFile), "simulator-state.json"), spec.InstanceID); ok {
			spec.ContextKind, spec.ContextID, spec.Scopes = known.ContextKind, known.ContextID, known.Scopes
			spec.Enabled, spec.VariantKey = !known.Disabled, known.VariantKey
			if spec.Secret != "" && known.Secret != "" {
				spec.Secret = known.Secret
			}
		}
		if body, err = mstudiotest.BuildPayload(spec); err != nil {
			return err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	mstudio.Sign(req.Header, sg.key.Serial, sg.key.Private, body)
	resp, err := (&http.Client{Timeout: 6 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s %s\n", resp.Proto, resp.Status)
	if len(answer) > 0 {
		fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(answer))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("the backend answered %d", resp.StatusCode)
	}
	return nil
}

// simInstance looks an instance up in a simulator state file.
func simInstance(stateFile, id string) (mstudiotest.Instance, bool) {
	data, err := os.ReadFile(stateFile)
	if err != nil {
		return mstudiotest.Instance{}, false
	}
	var st struct {
		Instances []mstudiotest.Instance `json:"instances"`
	}
	if json.Unmarshal(data, &st) != nil {
		return mstudiotest.Instance{}, false
	}
	for _, in := range st.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return mstudiotest.Instance{}, false
}

// devSigner is what the tools that sign as the dev simulator need: its webhook key, and
// the ids a backend pointed at it expects.
type devSigner struct {
	key                        mstudiotest.KeyPair
	extensionID, contributorID string
}

// loadDevSigner reads the simulator's key file and finds the ids: the --extension-id flag,
// else EXT_*, else the dev setup beside the key file; a contributor id nobody checks is
// made up.
func loadDevSigner(getenv func(string) string, keyFile, extensionIDFlag string) (devSigner, error) {
	key, err := mstudiotest.LoadKeyFile(keyFile, mstudiotest.PurposeWebhook)
	if err != nil {
		return devSigner{}, fmt.Errorf("%w (start `extension-backend dev`, or `sim --key-file %s`, first)", err, keyFile)
	}
	sg := devSigner{key: key}
	sg.extensionID, sg.contributorID = devIDs(getenv, filepath.Dir(keyFile))
	if extensionIDFlag != "" {
		sg.extensionID = extensionIDFlag
	}
	if sg.contributorID == "" {
		sg.contributorID = uuid.NewString()
	}
	return sg, nil
}

func (sg devSigner) requireExtensionID() error {
	if sg.extensionID == "" {
		return usagef("--extension-id is needed: EXT_EXTENSION_ID is not set and there is no dev setup")
	}
	return nil
}

// devIDs finds the extension and contributor ids a backend expects: EXT_EXTENSION_ID and
// EXT_CONTRIBUTOR_ID, else the ones `dev` keeps beside its key file.
func devIDs(getenv func(string) string, dataDir string) (extensionID, contributorID string) {
	var st devSettings
	if data, err := os.ReadFile(filepath.Join(dataDir, "dev.json")); err == nil {
		_ = json.Unmarshal(data, &st) // a damaged file just means no defaults
	}
	if v := getenv("EXT_EXTENSION_ID"); v != "" {
		st.ExtensionID = strings.ToLower(v)
	}
	if v := getenv("EXT_CONTRIBUTOR_ID"); v != "" {
		st.ContributorID = strings.ToLower(v)
	}
	return st.ExtensionID, st.ContributorID
}

func runWebhookSign(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "the body to sign (required)")
	keyFile := fs.String("key-file", defaultKeyFile, "the simulator key file to sign with")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *file == "" {
		return usagef("usage: extension-backend webhook sign --file BODY.json [--key-file F]")
	}
	body, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	key, err := mstudiotest.LoadKeyFile(*keyFile, mstudiotest.PurposeWebhook)
	if err != nil {
		return err
	}
	h := http.Header{}
	mstudio.Sign(h, key.Serial, key.Private, body)
	for _, name := range []string{mstudio.HeaderSerial, mstudio.HeaderAlgorithm, mstudio.HeaderSignature} {
		fmt.Fprintf(stdout, "%s: %s\n", name, h.Get(name))
	}
	fmt.Fprintf(stderr, "\nfor example:\n  curl -i -H 'Content-Type: application/json' -H '%s: %s' -H '%s: %s' -H '%s: %s' --data-binary @%s http://127.0.0.1:8080/mstudio/webhooks\n",
		mstudio.HeaderSerial, h.Get(mstudio.HeaderSerial), mstudio.HeaderAlgorithm, h.Get(mstudio.HeaderAlgorithm),
		mstudio.HeaderSignature, h.Get(mstudio.HeaderSignature), *file)
	return nil
}
