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
	baseline := fs.String("baseline", "", "also load a bare prototype receiver (verify, parse, one INSERT), started in a process of its own on this\n"+
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
// one Go runtime with the senders and ran faster than alone (7.8–8.0k/s inside against
// 6.0–7.7k/s alone, on SQLite on a 2-core machine, runs within half an hour of each
// other). A run that follows the backend's starts after turnPause, so that the work the
// backend's run leaves behind (its post-install jobs) is done before it, not during it.
func benchBesideBaseline(ctx context.Context, opts mstudiotest.BenchOptions, databaseURL string, rounds int, stdout, stderr io.Writer) (err error) {
	// The database URL is checked here, so that a mistake is named before a process starts.
	if _, _, err := extension.ParseDatabaseURL(databaseURL); err != nil {
		return fmt.Errorf("--baseline: %w", err)
	}
	if _, err := mstudiotest.LoadKeyFile(opts.KeyFile, mstudiotest.PurposeWebhook); err != nil {
		return err
	}
	proto, err := startPrototypeProcess(ctx, databaseURL, opts.KeyFile)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := proto.stop(); err == nil {
			err = stopErr
		}
	}()
	fmt.Fprintf(stdout, "prototype: a process of its own (pid %d) on %s\n\n", proto.pid, proto.url)
	target := opts.To
	var ratios []float64
	var protoP99, backendP99 []time.Duration
	previous := ""
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
			if previous == "backend" {
				select {
				case <-time.After(turnPause):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			previous = which
			r, err := mstudiotest.RunBench(ctx, opts, stderr)
			if err != nil {
				return err
			}
			// A prototype that died during the run leaves a run of errors that may still
			// hold some answers: say so, not a ratio.
			if err := proto.failed(); err != nil {
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

// turnPause is the rest before a run of bench webhooks --baseline that follows the
// backend's: long enough for the post-install jobs of 1,000 instances to finish after
// the backend's run (they took ~3 s in BenchmarkServeDeliveries).
var turnPause = 4 * time.Second

// runBenchPrototype serves the bare prototype receiver until ctx ends (SIGINT or
// SIGTERM), then drops its table. Its first line on stdout says where it listens. With
// --baseline - it reads the database URL from the first line of standard input and also
// stops when standard input closes: bench webhooks --baseline starts it so, in a process
// of its own, and closing the pipe stops it on every system, also when the parent dies.
func runBenchPrototype(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench prototype", flag.ContinueOnError)
	fs.SetOutput(stderr)
	baseline := fs.String("baseline", "", "the database to serve from (sqlite:PATH or postgres://…; a table of its own, dropped at the end),\n"+
		"or - to read it from the first line of standard input, which keeps a password out of the process list")
	keyFile := fs.String("key-file", defaultKeyFile, "the key file of the simulator whose webhook key the deliveries are signed with")
	addr := fs.String("addr", "127.0.0.1:0", "the address to listen on")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *baseline == "" {
		return usagef("--baseline is required: the database the prototype writes to\n%s", benchUsage)
	}
	var stdinClosed chan struct{}
	if *baseline == "-" {
		in := bufio.NewReader(benchStdin)
		line, err := in.ReadString('\n')
		if *baseline = strings.TrimSpace(line); *baseline == "" {
			return fmt.Errorf("--baseline -: no database URL on standard input (%v)", err)
		}
		stdinClosed = make(chan struct{})
		go func() {
			io.Copy(io.Discard, in) //nolint:errcheck // any end of the input means stop
			close(stdinClosed)
		}()
	}
	if _, _, err := extension.ParseDatabaseURL(*baseline); err != nil {
		return fmt.Errorf("--baseline: %w", err)
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
	select {
	case <-ctx.Done():
	case <-stdinClosed: // nil without --baseline -: never
	}
	return proto.close()
}

// benchStdin is where bench prototype --baseline - reads the database URL.
var benchStdin io.Reader = os.Stdin

// prototypeLinePrefix begins the line on which bench prototype says where it listens.
const prototypeLinePrefix = "prototype listening on "

// prototypeProcess is a bench prototype started by bench webhooks --baseline.
type prototypeProcess struct {
	cmd    *exec.Cmd
	pid    int
	url    string
	stdin  io.WriteCloser // closed by stop: the prototype then drops its table and exits
	errOut bytes.Buffer   // the child's stderr; read only once exited is closed (Wait has copied all)
	exited chan struct{}  // closed once the process has exited and err is set
	err    error
}

// startPrototypeProcess starts this binary's bench prototype, hands it the database URL
// on its standard input (in the arguments a password would show in the process list)
// and waits for the line that says where it listens (30 s at most).
func startPrototypeProcess(ctx context.Context, databaseURL, keyFile string) (*prototypeProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("--baseline: find this binary to start the prototype: %w", err)
	}
	cmd := exec.Command(self, "bench", "prototype", "--baseline", "-", "--key-file", keyFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &prototypeProcess{cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	cmd.Stderr = &p.errOut
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("--baseline: start the prototype: %w", err)
	}
	p.pid = cmd.Process.Pid
	if _, err := io.WriteString(stdin, databaseURL+"\n"); err != nil {
		p.stop() //nolint:errcheck // the write's error says more
		return nil, fmt.Errorf("--baseline: hand the prototype its database: %w", err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if url, ok := strings.CutPrefix(sc.Text(), prototypeLinePrefix); ok {
				lines <- url
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case p.url = <-lines:
		return p, nil
	case <-p.exited:
		return nil, p.failed()
	case <-time.After(30 * time.Second):
		p.stop() //nolint:errcheck // the timeout is the error to report
		return nil, errors.New("--baseline: the prototype did not start within 30 s")
	case <-ctx.Done():
		p.stop() //nolint:errcheck // as above, for the cancellation
		return nil, ctx.Err()
	}
}

// failed returns an error naming the prototype's exit and what it wrote to stderr if it
// has exited; nil while it runs.
func (p *prototypeProcess) failed() error {
	select {
	case <-p.exited:
		return p.ended()
	default:
		return nil
	}
}

// ended says how the prototype's process ended, with the last line it wrote to stderr
// (without the program's name in front); only once exited is closed.
func (p *prototypeProcess) ended() error {
	lines := strings.Split(strings.TrimSpace(p.errOut.String()), "\n")
	return fmt.Errorf("the prototype's process ended (%v): %s", p.err, strings.TrimPrefix(lines[len(lines)-1], "extension-backend: "))
}

// stop closes the prototype's standard input, on which it drops its table and exits, and
// kills it after 10 s; the error says if its exit was not clean.
func (p *prototypeProcess) stop() error {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill() //nolint:errcheck // it may have exited in between
		<-p.exited
		return errors.New("the prototype did not stop within 10 s and was killed: its table may be left over")
	}
	if p.err != nil {
		return p.ended()
	}
	return nil
}
