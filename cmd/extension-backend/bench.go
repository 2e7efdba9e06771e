package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

const benchUsage = "usage: extension-backend bench webhooks --to URL [--key-file F] [--duration 10s] [--concurrency 32] [--instances 1000]\n" +
	"                                        [--sim URL] [--baseline DATABASE_URL [--rounds 3]]"

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
	duration := fs.Duration("duration", 10*time.Second, "how long to send (with --baseline: to each, each round)")
	concurrency := fs.Int("concurrency", 32, "deliveries in flight at once")
	instances := fs.Int("instances", 1000, "distinct extension instances to spread deliveries over")
	keyFile := fs.String("key-file", defaultKeyFile, "the key file of the simulator the backend fetches its keys from")
	extensionID := fs.String("extension-id", "", "meta.extensionId (default: EXT_EXTENSION_ID, else the dev setup's)")
	baseline := fs.String("baseline", "", "also load a bare prototype receiver (verify, parse, one INSERT), started here on this\n"+
		"database (sqlite:PATH or postgres://…; a table of its own, dropped after), and report the backend's ratio to it")
	sim := fs.String("sim", "", "the URL of the simulator the backend calls: register the instances there first, so that\n"+
		"their post-install jobs succeed (without it they fail and retry)")
	rounds := fs.Int("rounds", 3, "with --baseline: how often to load each, in turns")
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
	if *rounds < 1 || *rounds > 20 {
		return usagef("need 1 ≤ --rounds ≤ 20")
	}
	opts := mstudiotest.BenchOptions{
		To: *to, KeyFile: *keyFile, Duration: *duration, Concurrency: *concurrency, Instances: *instances, Sim: *sim,
	}
	opts.ExtensionID, opts.ContributorID = devIDs(getenv, filepath.Dir(*keyFile), *extensionID)
	if opts.ExtensionID == "" {
		return errNoExtensionID
	}
	if *baseline == "" {
		return mstudiotest.Bench(ctx, opts, stdout, stderr)
	}
	return benchBesideBaseline(ctx, opts, *baseline, *rounds, stdout, stderr)
}

// benchBesideBaseline loads the prototype and the backend in turns, rounds times each,
// alternating which goes first so that a drift in the machine's load (or the backend's
// jobs catching up) falls on both, and reports each run and the backend's throughput
// as a ratio of the prototype's: the median of the rounds' ratios.
func benchBesideBaseline(ctx context.Context, opts mstudiotest.BenchOptions, databaseURL string, rounds int, stdout, stderr io.Writer) error {
	key, err := mstudiotest.LoadKeyFile(opts.KeyFile, mstudiotest.PurposeWebhook)
	if err != nil {
		return err
	}
	proto, err := startPrototype(ctx, databaseURL, key.Public())
	if err != nil {
		return err
	}
	defer proto.close()
	target := opts.To
	var ratios []float64
	var protoP99, backendP99 []time.Duration
	for round := range rounds {
		runs := []string{"prototype", "backend"}
		if round%2 == 1 {
			slices.Reverse(runs)
		}
		res := map[string]*mstudiotest.BenchResult{}
		for _, which := range runs {
			opts.To = target
			if which == "prototype" {
				opts.To = proto.URL()
			}
			r, err := mstudiotest.RunBench(ctx, opts, stderr)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "round %d, %s (%s)\n", round+1, which, opts.To)
			r.WriteSummary(stdout)
			fmt.Fprintln(stdout)
			if err := r.Err(opts.KeyFile); err != nil {
				return fmt.Errorf("%s: %w", which, err)
			}
			res[which] = r
		}
		ratios = append(ratios, res["backend"].Throughput()/res["prototype"].Throughput())
		protoP99 = append(protoP99, res["prototype"].Latency(0.99))
		backendP99 = append(backendP99, res["backend"].Latency(0.99))
	}
	fmt.Fprintf(stdout, "backend/prototype throughput  %.2fx (median of %d rounds: %s)\n", median(ratios), rounds, formatRatios(ratios))
	fmt.Fprintf(stdout, "p99 latency                   backend %s, prototype %s (medians)\n", median(backendP99), median(protoP99))
	return nil
}

func median[T float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func formatRatios(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.2fx", r)
	}
	return strings.Join(out, " ")
}
