package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

const benchUsage = "usage: extension-backend bench webhooks --to URL [--key-file F] [--duration 10s] [--concurrency 32] [--instances 1000]"

func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprintln(stdout, benchUsage+"\n\nThe extension and contributor ids come from --extension-id, EXT_EXTENSION_ID and\nEXT_CONTRIBUTOR_ID, or the dev setup beside the key file. `bench webhooks -h` lists the flags.")
		return flag.ErrHelp
	}
	if len(args) == 0 || args[0] != "webhooks" {
		return usagef(benchUsage)
	}
	fs := flag.NewFlagSet("bench webhooks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the backend's webhook URL (required: the load goes nowhere by default)")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	concurrency := fs.Int("concurrency", 32, "deliveries in flight at once")
	instances := fs.Int("instances", 1000, "distinct extension instances to spread deliveries over")
	keyFile := fs.String("key-file", defaultKeyFile, "the key file of the simulator the backend fetches its keys from")
	extensionID := fs.String("extension-id", "", "meta.extensionId (default: EXT_EXTENSION_ID, else the dev setup's)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if *to == "" {
		// No default: a default would load whatever runs there, a developer's dev backend
		// on 8080 most likely.
		return usagef("--to is required: the webhook URL of the backend to load, e.g. --to http://127.0.0.1:18080/mstudio/webhooks\n%s", benchUsage)
	}
	if *concurrency < 1 || *instances < *concurrency || *duration <= 0 || *duration > time.Hour {
		return usagef("need --concurrency ≥ 1, --instances ≥ --concurrency and 0 < --duration ≤ 1h")
	}
	opts := mstudiotest.BenchOptions{
		To: *to, KeyFile: *keyFile, Duration: *duration, Concurrency: *concurrency, Instances: *instances,
	}
	opts.ExtensionID, opts.ContributorID = devIDs(getenv, filepath.Dir(*keyFile), *extensionID)
	if opts.ExtensionID == "" {
		return errNoExtensionID
	}
	return mstudiotest.Bench(ctx, opts, stdout, stderr)
}
