// Command extension-backend is the backend of a marketplace extension for mittwald's
// mStudio: it serves the lifecycle webhooks and ships the tools around them. This package
// holds configuration, wiring and subcommands only; the behaviour lives in the packages
// it wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if code := exitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "extension-backend:", err)
		os.Exit(code)
	}
}

// exitCode is the process's exit status after run: 0 for success and for help asked for
// (already printed), 2 for a mistake in the command line, 1 for any other failure.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct{ error }

// Unwrap lets errors.Is find flag.ErrHelp: -h is not a mistake.
func (u usageError) Unwrap() error { return u.error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// runFunc is a subcommand: its arguments after the command's name, and the process's
// environment and output.
type runFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// command is one subcommand and its help.
type command struct {
	name  string
	forms []string // each way to call it: the words and flags after "extension-backend NAME"
	about string   // one line: what it does
	env   string   // the EXT_* variables it reads
	run   runFunc
	// flags says that run parses its flags with the flag package before it does anything
	// else, so running it with -h lists them and does nothing more.
	flags bool
	// subs are the words that come before the flags (webhook send|sign, bench webhooks);
	// help without one uses the only one there is.
	subs []string
}

// commands in the order the usage lists them.
var commands = []command{
	{name: "serve", forms: []string{"[--addr ADDR] [--no-migrate] [--workers N]"},
		about: "run the server (applies pending migrations first) and the background job workers",
		env: `EXT_ENCRYPTION_KEYS (required), EXT_EXTENSION_ID (required), EXT_DATABASE_URL, EXT_ADDR,
EXT_PUBLIC_URL, EXT_MSTUDIO_API_URL, EXT_CONTRIBUTOR_ID, EXT_EXTENSION_SECRET,
EXT_CONTRIBUTOR_TOKEN (a contributor's API token: reconcile with the platform every 15 min),
EXT_OAUTH_CLIENT_SECRET, EXT_TRUSTED_PROXIES, EXT_SESSION_IDLE, EXT_SESSION_ABSOLUTE,
EXT_DEFAULT_ROLE, EXT_LOG_LEVEL, EXT_SMTP_URL and EXT_MAIL_FROM (e-mail),
EXT_CAPTURE_DELIVERIES (keep each delivery's body and headers, sealed, this long, e.g. 24h,
for webhook replay; empty: off),
EXT_OIDC_PROVIDERS_FILE (a JSON file of the operator's OpenID Connect providers for its
own staff, offered on every instance's login page; they let in only invited people unless
the file says auto_provision for named domains), EXT_OPS_ADDR (the ops console and a
second /metrics on their own address; off when unset; put it behind your own access
control), EXT_OPS_HOSTS (host names the console answers to besides IP addresses, localhost
and EXT_OPS_ADDR's host), EXT_RETENTION_AFTER_REMOVAL (how long a
removed instance's data is kept for a re-install before it is erased: 30d, 720h, or 0);
every secret (database URL, keys,
extension and OAuth secrets, SMTP URL, contributor token) may come from a file named by NAME_FILE instead`,
		run: runServe, flags: true},
	{name: "migrate", forms: []string{"up|status"}, about: "apply or list database migrations",
		env: "EXT_DATABASE_URL, EXT_LOG_LEVEL", run: runMigrate},
	{name: "instances", forms: []string{"[--json] [--all]"}, about: "list installed extension instances",
		env: "EXT_DATABASE_URL, EXT_LOG_LEVEL", run: runInstances, flags: true},
	{name: "token", forms: []string{"--instance ID"}, about: "print an instance access token (a valid stored one, or minted)",
		env: "EXT_ENCRYPTION_KEYS (required), EXT_DATABASE_URL, EXT_MSTUDIO_API_URL, EXT_LOG_LEVEL",
		run: runToken, flags: true},
	{name: "jobs", forms: []string{"[--json] [--all]"}, about: "background jobs by kind, instance and state",
		env: "EXT_DATABASE_URL, EXT_LOG_LEVEL", run: runJobs, flags: true},
	{name: "reconcile", forms: []string{"[--resume] [--json]"},
		about: "compare the platform's instances and webhook execution log with ours: lost installs, missed removals, halted or failed webhooks; --resume resumes the halted ones",
		env:   "EXT_CONTRIBUTOR_TOKEN (required; secret, or EXT_CONTRIBUTOR_TOKEN_FILE), EXT_CONTRIBUTOR_ID (required), EXT_EXTENSION_ID (required), EXT_MSTUDIO_API_URL, EXT_DATABASE_URL, EXT_LOG_LEVEL",
		run:   runReconcile, flags: true},
	{name: "accounts", forms: []string{"list --instance ID [--json]",
		"set-role --instance ID (--account ID | --email ADDRESS) --role owner|admin|member",
		"reset-link --instance ID (--account ID | --email ADDRESS)"},
		about: "break-glass administration of an instance's accounts: list, set a role, print a one-time password-reset link",
		env:   "EXT_DATABASE_URL, EXT_LOG_LEVEL; reset-link also EXT_PUBLIC_URL (where the link points)",
		run:   runAccounts, flags: true, subs: []string{"list", "set-role", "reset-link"}},
	{name: "rekey", forms: []string{""}, about: "seal every stored secret again with the first key",
		env: "EXT_ENCRYPTION_KEYS (required: the new key first, then every key in use), EXT_DATABASE_URL, EXT_LOG_LEVEL",
		run: runRekey},
	{name: "dev", forms: []string{`[--addr A] [--sim-addr A] [--data DIR] [--secret-delay D] [--retry-base D] [--retry-cap D]
      [--webhook-timeout D] [--token-ttl D] [--ops-addr A]`},
		about: "backend plus the platform simulator on loopback",
		env: `EXT_DATABASE_URL (default: in the data folder), EXT_ENCRYPTION_KEYS (default: generated into
the data folder), EXT_PUBLIC_URL, EXT_EXTENSION_ID and EXT_CONTRIBUTOR_ID (first run; then kept
in dev.json), EXT_CAPTURE_DELIVERIES (default here: 24h), and serve's others except EXT_ADDR, EXT_MSTUDIO_API_URL, EXT_EXTENSION_SECRET and
EXT_CONTRIBUTOR_TOKEN, which are dev's own (a set EXT_CONTRIBUTOR_TOKEN becomes the simulator's)`,
		run: runDev, flags: true},
	{name: "sim", forms: []string{`[--addr A] [--webhook-url URL] [--key-file F] [--state-file F] [--extension-id ID]
      [--contributor-id ID] [timing flags as for dev]`},
		about: "the platform simulator alone",
		env:   "EXT_EXTENSION_ID, EXT_CONTRIBUTOR_ID (the simulated extension's ids, when no flag gives them), EXT_CONTRIBUTOR_TOKEN (its contributor's API token; default: random)",
		run:   runSim, flags: true},
	{name: "webhook", forms: []string{
		"send --kind KIND [--instance ID] [--file BODY.json] [--to URL] [--key-file F] [--dry-run]",
		"sign --file BODY.json [--key-file F]",
		"replay CAPTURE-ID [--to URL] [--diff] [--sign auto|simulator|captured] [--key-file F]"},
		about: "sign a lifecycle webhook with the simulator key and send it, print its signature headers for curl, or send a captured delivery again",
		env: `EXT_EXTENSION_ID, EXT_CONTRIBUTOR_ID (meta of the payload; default: the dev setup's);
replay reads the capture with EXT_DATABASE_URL and EXT_ENCRYPTION_KEYS (default: dev's database
and key beside the key file), and EXT_LOG_LEVEL`,
		run: runWebhook, flags: true, subs: []string{"send", "sign", "replay"}},
	{name: "deliveries", forms: []string{"[--instance ID] [--outcome O] [--since D] [--limit N] [--json]"},
		about: "the delivery journal, newest first: what each lifecycle delivery did, and its capture id for webhook replay",
		env:   "EXT_DATABASE_URL, EXT_LOG_LEVEL",
		run:   runDeliveries, flags: true},
	{name: "doctor", forms: []string{"[--probe URL [--probe-only] [--key-file F] [--extension-id ID]] [--reconcile] [--json]"},
		about: "check the configuration, database and platform offline and, with --probe, a running endpoint from outside; exit 1 on a failure",
		env: `EXT_DATABASE_URL, EXT_ENCRYPTION_KEYS, EXT_EXTENSION_ID, EXT_CONTRIBUTOR_ID,
EXT_PUBLIC_URL, EXT_MSTUDIO_API_URL, EXT_SMTP_URL and EXT_MAIL_FROM, EXT_OIDC_PROVIDERS_FILE:
the configuration as serve reads it, with serve's others (EXT_ADDR, EXT_EXTENSION_SECRET,
EXT_OAUTH_CLIENT_SECRET, EXT_TRUSTED_PROXIES, EXT_SESSION_IDLE, EXT_SESSION_ABSOLUTE,
EXT_DEFAULT_ROLE, EXT_LOG_LEVEL, EXT_OPS_ADDR, EXT_OPS_HOSTS, EXT_CAPTURE_DELIVERIES, EXT_RETENTION_AFTER_REMOVAL); with --probe, EXT_MSTUDIO_API_URL, EXT_EXTENSION_ID and
EXT_CONTRIBUTOR_ID name the platform and extension the endpoint should serve, and
EXT_CONTRIBUTOR_TOKEN (secret, or EXT_CONTRIBUTOR_TOKEN_FILE: a contributor member's API
token) has the platform run a dry run; --reconcile needs EXT_CONTRIBUTOR_TOKEN too`,
		run: runDoctor, flags: true},
	{name: "bench", forms: []string{"webhooks --to URL [--key-file F] [--duration 10s] [--concurrency 32] [--instances 1000] [--sim URL]\n" +
		"          [--baseline DATABASE_URL [--rounds 3]]",
		"prototype --baseline DATABASE_URL [--key-file F] [--addr 127.0.0.1:0]"},
		about: "load-test a backend with signed deliveries; serve the bare prototype receiver that --baseline compares with",
		env:   "EXT_EXTENSION_ID (default: the dev setup's)",
		run:   runBench, flags: true, subs: []string{"webhooks", "prototype"}},
}

// usage is the overview printed by help and after an unknown command.
func usage() string {
	var b strings.Builder
	b.WriteString("usage: extension-backend COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands {
		for _, f := range c.forms {
			fmt.Fprintf(&b, "  %s\n", strings.TrimSpace(c.name+" "+f))
		}
		fmt.Fprintf(&b, "      %s\n", c.about)
	}
	b.WriteString("\nEach command takes -h, which also names the EXT_* environment variables it reads;\nthe README describes them.")
	return b.String()
}

// run is the whole program; main only supplies the process's environment, so tests can
// start it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage())
		return usagef("no command given")
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(stdout, usage())
		return nil
	}
	for _, c := range commands {
		if c.name == name {
			if helpAsked(rest) {
				return c.help(ctx, rest, getenv, stdout)
			}
			return c.run(ctx, rest, getenv, stdout, stderr)
		}
	}
	fmt.Fprintln(stderr, usage())
	return usagef("unknown command %q", name)
}

// helpAsked reports whether the arguments ask for help: -h, -help or --help anywhere
// before a "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// help prints the command's help to stdout: usage, what it does, the variables it reads,
// and its flags. It returns flag.ErrHelp, on which main exits 0.
func (c command) help(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	for i, f := range c.forms {
		lead := "usage:"
		if i > 0 {
			lead = "      "
		}
		fmt.Fprintf(stdout, "%s %s\n", lead, strings.TrimSpace("extension-backend "+c.name+" "+f))
	}
	fmt.Fprintf(stdout, "\n%s\n\nenvironment: %s\n", c.about, strings.ReplaceAll(c.env, "\n", "\n  "))
	if !c.flags {
		return flag.ErrHelp
	}
	var sub []string
	switch {
	case len(args) > 0 && slices.Contains(c.subs, args[0]):
		sub = args[:1]
	case len(c.subs) == 1:
		sub = c.subs
	case len(c.subs) > 1:
		for _, s := range c.subs {
			fmt.Fprintf(stdout, "\nflags of %[1]s %[2]s: extension-backend %[1]s %[2]s -h", c.name, s)
		}
		fmt.Fprintln(stdout)
		return flag.ErrHelp
	}
	// The flag list comes from the command's own flag set: run with only its subcommand
	// word and -h, it stops at the flags.
	fmt.Fprintln(stdout)
	if err := c.run(ctx, append(slices.Clone(sub), "-h"), getenv, stdout, stdout); !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return flag.ErrHelp
}
