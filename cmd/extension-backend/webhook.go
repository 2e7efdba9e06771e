package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

const defaultKeyFile = "data/simulator-keys.json"

const webhookUsage = `usage: extension-backend webhook send|sign|replay [flags]

  send --kind KIND [--instance ID] [--file BODY.json] [--to URL] [--key-file F] [--dry-run]
  sign --file BODY.json [--key-file F]
  replay CAPTURE-ID [--to URL] [--diff] [--sign auto|simulator|captured] [--key-file F]

The extension and contributor ids come from --extension-id, EXT_EXTENSION_ID and
EXT_CONTRIBUTOR_ID, or the dev setup beside the key file. Each takes -h.`

func runWebhook(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprintln(stdout, webhookUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 || (args[0] != "send" && args[0] != "sign" && args[0] != "replay") {
		return usagef("%s", webhookUsage)
	}
	switch args[0] {
	case "sign":
		return runWebhookSign(args[1:], stdout, stderr)
	case "replay":
		return runWebhookReplay(ctx, args[1:], getenv, stdout, stderr)
	}
	return runWebhookSend(ctx, args[1:], getenv, stdout, stderr)
}

func runWebhookSend(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook send", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "", "added, updated, rotated, removed (or any platform spelling); not needed with --file")
	instanceID := fs.String("instance", "", "extension instance id (default: a new one, printed)")
	file := fs.String("file", "", "send this body as it is instead of building one (samples: extension/mstudio/mstudiotest/testdata/payloads)")
	to := fs.String("to", "http://127.0.0.1:8080/mstudio/webhooks", "the backend's webhook URL")
	keyFile := fs.String("key-file", defaultKeyFile, "the simulator key file to sign with")
	extensionID := fs.String("extension-id", "", "meta.extensionId (default: EXT_EXTENSION_ID, else the dev setup's)")
	contextID := fs.String("context", "", "context (project) id (default: a new one)")
	dryRun := fs.Bool("dry-run", false, "append ?dry-run=true&executing-user-id=… as the platform's dry runs do")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	opts := mstudiotest.SendOptions{
		To: *to, KeyFile: *keyFile, Kind: *kind, InstanceID: *instanceID, ContextID: *contextID, DryRun: *dryRun,
		// dev keeps the simulator's state beside its key file.
		StateFile: filepath.Join(filepath.Dir(*keyFile), "simulator-state.json"),
	}
	opts.ExtensionID, opts.ContributorID = devIDs(getenv, filepath.Dir(*keyFile), *extensionID)
	if *file != "" {
		body, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		opts.Body = body
	} else {
		if _, ok := mstudiotest.PayloadKind(*kind); !ok {
			return usagef("--kind %q: want added, updated, rotated or removed (or --file)", *kind)
		}
		if opts.ExtensionID == "" {
			return errNoExtensionID
		}
	}
	return mstudiotest.SendWebhook(ctx, opts, stdout)
}

var errNoExtensionID = usagef("--extension-id is needed: EXT_EXTENSION_ID is not set and there is no dev setup")

// devIDs finds the extension and contributor ids a backend expects: the --extension-id
// flag, else EXT_EXTENSION_ID and EXT_CONTRIBUTOR_ID, else the ones `dev` keeps beside its
// key file.
func devIDs(getenv func(string) string, dataDir, extensionIDFlag string) (extensionID, contributorID string) {
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
	if extensionIDFlag != "" {
		st.ExtensionID = extensionIDFlag
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
	return mstudiotest.SignWebhook(mstudiotest.SignOptions{File: *file, KeyFile: *keyFile}, stdout, stderr)
}

// isHelpArg reports whether a command's first argument asks for its help rather than naming
// a subcommand: help is no usage error.
func isHelpArg(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}
