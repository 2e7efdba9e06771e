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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // the flag package printed the help asked for
		}
		fmt.Fprintln(os.Stderr, "extension-backend:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `usage: extension-backend COMMAND [flags]

commands:
  serve [--addr ADDR] [--no-migrate] [--workers N]
                                       run the server (applies pending migrations first)
  migrate up|status                    apply or list database migrations
  instances [--json] [--all]           list installed extension instances
  token --instance ID                  print an instance access token (a valid stored one, or minted)
  jobs [--json] [--all]                background jobs by kind, instance and state
  rekey                                seal every stored secret again with the first key
  dev [--addr A] [--sim-addr A] [--data DIR] [--secret-delay D] [--retry-base D] [--retry-cap D]
      [--webhook-timeout D] [--token-ttl D]
                                       backend plus the platform simulator on loopback
  sim [--addr A] [--webhook-url URL] [--key-file F] [--state-file F] [--extension-id ID]
      [--contributor-id ID] [timing flags as for dev]
                                       the platform simulator alone
  webhook send --kind KIND [--instance ID] [--file BODY.json] [--to URL] [--key-file F] [--dry-run]
                                       sign a lifecycle webhook with the simulator key and send it
  webhook sign --file BODY.json [--key-file F]
                                       print the signature headers for curl
  bench webhooks --to URL [--duration 10s] [--concurrency 32] [--instances 1000]
                                       load-test a backend with signed deliveries

Each command takes -h. Configuration comes from EXT_* environment variables; see the README.`

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct{ error }

// Unwrap lets errors.Is find flag.ErrHelp: -h is not a mistake.
func (u usageError) Unwrap() error { return u.error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// run is the whole program; main only supplies the process's environment, so tests can
// start it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout, stderr)
	case "instances":
		return runInstances(ctx, rest, getenv, stdout, stderr)
	case "token":
		return runToken(ctx, rest, getenv, stdout, stderr)
	case "rekey":
		return runRekey(ctx, rest, getenv, stdout, stderr)
	case "jobs":
		return runJobs(ctx, rest, getenv, stdout, stderr)
	case "dev":
		return runDev(ctx, rest, getenv, stdout, stderr)
	case "sim":
		return runSim(ctx, rest, getenv, stdout, stderr)
	case "webhook":
		return runWebhook(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return usagef("unknown command %q", cmd)
}
