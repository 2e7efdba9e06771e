package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// simFlags are the simulator's settings; `sim` offers them all, `dev` the timing ones.
type simFlags struct {
	addr, keyFile, stateFile, webhookURL, extensionID, contributorID string
	secretDelay, retryBase, retryCap, webhookTimeout, tokenTTL       time.Duration
}

// register adds the flags; dev keeps its files in its data folder and its ids in
// dev.json, so it offers only the address and the timings.
func (sf *simFlags) register(fs *flag.FlagSet, defAddr string, forDev bool) {
	fs.StringVar(&sf.addr, "sim-addr", defAddr, "simulator listen address")
	fs.DurationVar(&sf.secretDelay, "secret-delay", 2*time.Second, "how long after its webhook's 2xx a new instance secret starts to work")
	fs.DurationVar(&sf.retryBase, "retry-base", time.Second, "first wait before a failed webhook is sent again (doubling)")
	fs.DurationVar(&sf.retryCap, "retry-cap", 10*time.Minute, "longest wait between webhook attempts")
	fs.DurationVar(&sf.webhookTimeout, "webhook-timeout", 6*time.Second, "how long a webhook may take to be answered")
	fs.DurationVar(&sf.tokenTTL, "token-ttl", time.Hour, "lifetime of instance and user tokens")
	if forDev {
		return
	}
	fs.StringVar(&sf.keyFile, "key-file", "", "load the simulator's signing keys from this file, or create it (default: new keys each start)")
	fs.StringVar(&sf.stateFile, "state-file", "", "keep the simulator's instances in this JSON file (default: in memory)")
	fs.StringVar(&sf.webhookURL, "webhook-url", "http://127.0.0.1:8080/mstudio/webhooks", "where the simulator sends lifecycle webhooks")
	fs.StringVar(&sf.extensionID, "extension-id", "", "the extension id the simulator uses (default: EXT_EXTENSION_ID, else random)")
	fs.StringVar(&sf.contributorID, "contributor-id", "", "the contributor id the simulator uses (default: EXT_CONTRIBUTOR_ID, else random)")
}

func (sf *simFlags) options(getenv func(string) string, logger *slog.Logger) mstudiotest.Options {
	opts := mstudiotest.Options{
		ExtensionID: sf.extensionID, ContributorID: sf.contributorID,
		KeyFile: sf.keyFile, StateFile: sf.stateFile, WebhookURL: sf.webhookURL,
		SecretActivationDelay: sf.secretDelay, Logger: logger,
		RetryBase: sf.retryBase, RetryCap: sf.retryCap, WebhookTimeout: sf.webhookTimeout,
		InstanceTokenTTL: sf.tokenTTL, UserTokenTTL: sf.tokenTTL,
	}
	if opts.ExtensionID == "" {
		opts.ExtensionID = strings.ToLower(getenv("EXT_EXTENSION_ID"))
	}
	if opts.ContributorID == "" {
		opts.ContributorID = strings.ToLower(getenv("EXT_CONTRIBUTOR_ID"))
	}
	// The same variable reconcile reads: a developer sets it once for both.
	opts.ContributorToken = getenv("EXT_CONTRIBUTOR_TOKEN")
	if sf.secretDelay == 0 {
		opts.SecretActivationDelay = -1 // 0 means "default" to the simulator
	}
	return opts
}

func runSim(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf simFlags
	sf.register(fs, "127.0.0.1:8081", false)
	addr := fs.String("addr", "", "listen address (same as --sim-addr)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *addr != "" {
		sf.addr = *addr
	}
	logger := newLogger(stderr, slog.LevelInfo)
	sim, err := mstudiotest.New(sf.options(getenv, logger))
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", sf.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sf.addr, err)
	}
	printSimulator(stdout, sim, "http://"+ln.Addr().String())
	return serveHTTP(ctx, ln, sim, logger)
}

// printSimulator tells a developer what the simulator offers: its test users and the
// environment lines that point a backend at it. These are test credentials of a local
// simulator, printed on purpose.
func printSimulator(w io.Writer, sim *mstudiotest.Server, url string) {
	fmt.Fprintf(w, "mStudio simulator on %s\n\ntest users (their tokens authorise user-side calls):\n", url)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, u := range sim.Users() {
		access := "access to every project and organisation"
		if !u.Access {
			access = "no access"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\ttoken %s\n", u.Name, u.Email, u.ID, access, u.Token)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nwebhook key serial %s\n\npoint a backend at it:\n", sim.WebhookKey().Serial)
	fmt.Fprintf(w, "EXT_MSTUDIO_API_URL=%s\nEXT_EXTENSION_ID=%s\nEXT_CONTRIBUTOR_ID=%s\nEXT_EXTENSION_SECRET=%s\n\n",
		url, sim.ExtensionID(), sim.ContributorID(), sim.ExtensionSecret())
}
