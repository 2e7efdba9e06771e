package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

const benchUsage = "usage: extension-backend bench webhooks --to URL [--key-file F] [--duration 10s] [--concurrency 32] [--instances 1000]\n" +
	"                                        [--sim URL] [--baseline DATABASE_URL [--rounds 3]]\n" +
	"       extension-backend bench prototype --baseline DATABASE_URL [--key-file F] [--addr 127.0.0.1:0]"

func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprintln(stdout, benchUsage+"\n\nThe extension and contributor ids come from --extension-id, EXT_EXTENSION_ID and\nEXT_CONTRIBUTOR_ID, or the dev setup beside the key file. `bench webhooks -h` lists the flags.")
		return flag.ErrHelp
	}
	if len(args) > 0 && args[0] == "prototype" {
		return runBenchPrototype(ctx, args[1:], stdout, stderr)
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
// alternating which goes first so that a drift in the machine's load falls on both, and
// reports each run and the backend's throughput as a ratio of the prototype's: the
// median of the rounds' ratios. The prototype runs in a process of its own (this binary's
// `bench prototype`), as the backend does: served from the load's own process it shared
// one Go runtime with the senders and ran 4–30 % faster than it does alone (7.8–8.0k/s
// inside against 6.0–7.7k/s alone, on SQLite on a 2-core machine, runs within half an
// hour of each other). Each run starts after
// turnPause, so work a run leaves behind (the backend's post-install jobs) is done before
// the next run, not during it.
func benchBesideBaseline(ctx context.Context, opts mstudiotest.BenchOptions, databaseURL string, rounds int, stdout, stderr io.Writer) error {
	// The database URL is checked here, so that a mistake is named before a process starts.
	if _, _, err := extension.ParseDatabaseURL(databaseURL); err != nil {
		return fmt.Errorf("--baseline: %w", err)
	}
	if _, err := mstudiotest.LoadKeyFile(opts.KeyFile, mstudiotest.PurposeWebhook); err != nil {
		return err
	}
	proto, err := startPrototypeProcess(ctx, databaseURL, opts.KeyFile, stderr)
	if err != nil {
		return err
	}
	defer proto.stop()
	fmt.Fprintf(stdout, "prototype: a process of its own (pid %d) on %s\n\n", proto.pid, proto.url)
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
				opts.To = proto.url
			}
			if err := sleepCtx(ctx, turnPause); err != nil {
				return err
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

// turnPause is the rest before each run of bench webhooks --baseline: long enough for
// the post-install jobs of a 10 s run to finish (they take ~3 s after it).
var turnPause = 4 * time.Second

// runBenchPrototype serves the bare prototype receiver until ctx ends (SIGINT or
// SIGTERM), then drops its table. Its first line on stdout says where it listens: bench
// webhooks --baseline starts it so, in a process of its own.
func runBenchPrototype(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench prototype", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baseline := fs.String("baseline", "", "the database to serve from (sqlite:PATH or postgres://…; a table of its own, dropped at the end)")
	keyFile := fs.String("key-file", defaultKeyFile, "the key file of the simulator whose webhook key the deliveries are signed with")
	addr := fs.String("addr", "127.0.0.1:0", "the address to listen on")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *baseline == "" {
		return usagef("--baseline is required: the database the prototype writes to\n%s", benchUsage)
	}
	key, err := mstudiotest.LoadKeyFile(*keyFile, mstudiotest.PurposeWebhook)
	if err != nil {
		return err
	}
	proto, err := startPrototype(ctx, *baseline, key.Public(), *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s%s\n", prototypeLinePrefix, proto.URL())
	<-ctx.Done()
	return proto.close()
}

// prototypeLinePrefix begins the line on which bench prototype says where it listens.
const prototypeLinePrefix = "prototype listening on "

// prototypeProcess is a bench prototype started by bench webhooks --baseline.
type prototypeProcess struct {
	cmd    *exec.Cmd
	pid    int
	url    string
	exited chan error
}

// startPrototypeProcess starts this binary's bench prototype and waits for the line
// that says where it listens (30 s at most).
func startPrototypeProcess(ctx context.Context, databaseURL, keyFile string, stderr io.Writer) (*prototypeProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--baseline: find this binary to start the prototype: %w", err)
	}
	cmd := exec.Command(self, "bench", "prototype", "--baseline", databaseURL, "--key-file", keyFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("--baseline: start the prototype: %w", err)
	}
	p := &prototypeProcess{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), prototypeLinePrefix); ok {
				lines <- url
			}
		}
		p.exited <- cmd.Wait()
	}()
	select {
	case p.url = <-lines:
		return p, nil
	case err := <-p.exited:
		return nil, fmt.Errorf("--baseline: the prototype did not start (%v): %s", err, strings.TrimSpace(errOut.String()))
	case <-time.After(30 * time.Second):
		p.stop()
		return nil, errors.New("--baseline: the prototype did not start within 30 s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop interrupts the prototype, which drops its table and exits; it is killed after 10 s.
func (p *prototypeProcess) stop() {
	p.cmd.Process.Signal(os.Interrupt) //nolint:errcheck // an exited process: nothing to stop
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck // as above
		<-p.exited
	}
}

// sleepCtx waits for d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
