package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/extension-backend/extension-backend/migrations"
)

// openMigratedStore is how the tool subcommands reach the database: logs go to stderr so
// stdout stays clean for scripts, and a schema behind the binary is reported, not guessed at.
func openMigratedStore(ctx context.Context, getenv func(string) string, n needs, stderr io.Writer) (*Config, *extension.Store, error) {
	cfg, err := loadConfig(getenv, n)
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(ctx, cfg, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return nil, nil, err
	}
	if err := requireMigrated(ctx, store, cfg.DatabaseURL.Reveal()); err != nil {
		store.Close()
		return nil, nil, err
	}
	if n.keys {
		if err := checkKeys(ctx, store, cfg); err != nil {
			store.Close()
			return nil, nil, err
		}
	}
	return cfg, store, nil
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 1 || (args[0] != "up" && args[0] != "status") {
		return usagef("usage: extension-backend migrate up|status")
	}
	cfg, err := loadConfig(getenv, needs{})
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	store, err := openStore(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	if args[0] == "up" {
		res, err := migrations.Up(ctx, store.SQLDB(), string(store.Dialect()))
		for _, r := range res {
			fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		river, err := jobs.Migrate(ctx, store, cfg.DatabaseURL.Reveal())
		for _, m := range river {
			fmt.Fprintf(stdout, "applied job queue migration %03d %s (%s)\n", m.Version, m.Name, m.Duration.Round(time.Millisecond))
		}
		if err != nil {
			return err
		}
		if len(res) == 0 && len(river) == 0 {
			fmt.Fprintln(stdout, "database is up to date")
		}
		return nil
	}
	st, err := migrations.List(ctx, store.SQLDB(), string(store.Dialect()))
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tAPPLIED AT\tFILE")
	for _, s := range st {
		at := "-"
		if !s.AppliedAt.IsZero() {
			at = s.AppliedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	queue := "up to date"
	if err := jobs.RequireMigrated(ctx, store, cfg.DatabaseURL.Reveal()); err != nil {
		queue = err.Error()
	}
	_, err = fmt.Fprintf(stdout, "job queue (River): %s\n", queue)
	return err
}

// instanceJSON is the stable shape of `instances --json`.
type instanceJSON struct {
	ID          string    `json:"id"`
	ContextKind string    `json:"contextKind"`
	ContextID   string    `json:"contextId"`
	Enabled     bool      `json:"enabled"`
	Removed     bool      `json:"removed"`
	Scopes      []string  `json:"consentedScopes"`
	VariantKey  string    `json:"variantKey"`
	ContextName string    `json:"contextName"`
	LastEventAt time.Time `json:"lastEventAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

func runInstances(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("instances", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "include removed instances (tombstones)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	_, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	list, err := store.Instances(ctx, *all)
	if err != nil {
		return err
	}
	out := make([]instanceJSON, len(list))
	for i, in := range list {
		out[i] = instanceJSON{
			ID: in.ID, ContextKind: in.ContextKind, ContextID: in.ContextID, Enabled: in.Enabled,
			Removed: in.Removed(), Scopes: in.ConsentedScopes, VariantKey: in.VariantKey, ContextName: in.ContextName,
			LastEventAt: in.LastEventAt(), UpdatedAt: in.UpdatedAt.UTC(),
		}
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONTEXT\tNAME\tSTATE\tSCOPES\tVARIANT\tLAST EVENT\tUPDATED")
	for _, in := range out {
		state := "enabled"
		switch {
		case in.Removed:
			state = "removed"
		case !in.Enabled:
			state = "disabled"
		}
		variant := in.VariantKey
		if variant == "" {
			variant = "-"
		}
		name := in.ContextName
		if name == "" {
			name = "-"
		}
		// Names and the rest come from the platform: no terminal control sequence gets through.
		fmt.Fprintf(tw, "%s\t%s:%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(in.ID), printable(in.ContextKind), printable(in.ContextID),
			printable(name), state, printable(strings.Join(in.Scopes, ",")), printable(variant),
			in.LastEventAt.Format(time.RFC3339Nano), in.UpdatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runToken(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	instanceID := fs.String("instance", "", "extension instance id")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	id := strings.ToLower(strings.TrimSpace(*instanceID))
	if id == "" {
		return usagef("usage: extension-backend token --instance ID")
	}
	if !mstudio.IsUUID(id) {
		return fmt.Errorf("instance id %q is not a UUID", *instanceID)
	}
	cfg, store, err := openMigratedStore(ctx, getenv, needs{keys: true}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	logger := newLogger(stderr, cfg.LogLevel)
	if err := checkPlatform(ctx, store, cfg, logger); err != nil {
		return err
	}
	client, err := mstudio.New(cfg.MStudioAPIURL, mstudio.Options{Logger: logger})
	if err != nil {
		return err
	}
	// Through the broker, as a job would: a token another replica stored is reused, and a
	// freshly rotated secret gets its grace.
	tok, err := mstudio.NewBroker(store, client, mstudio.BrokerOptions{Logger: logger}).Token(ctx, id)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return fmt.Errorf("instance %s is not known here: no ExtensionAddedToContext was received for it", id)
	case errors.Is(err, extension.ErrRemoved):
		return fmt.Errorf("instance %s was removed from its context", id)
	case errors.Is(err, extension.ErrDisabled):
		return fmt.Errorf("instance %s is disabled: the platform refuses tokens for it", id)
	case errors.Is(err, extension.ErrNoSecret):
		return fmt.Errorf("instance %s has no secret stored yet", id)
	case err != nil:
		return err
	}
	_, err = fmt.Fprintln(stdout, tok.Token.Reveal())
	return err
}

func runRekey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 0 {
		return usagef("usage: extension-backend rekey")
	}
	cfg, store, err := openMigratedStore(ctx, getenv, needs{keys: true}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	stats, err := store.Rekey(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "resealed %d secrets with key %s; %d were already sealed with it; %d changed while rekey ran and were looked at again\n",
		stats.Resealed, extension.KeyID(cfg.EncryptionKeys[0]), stats.Current, stats.Changed)
	return nil
}

func runJobs(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	all := fs.Bool("all", false, "include completed jobs (kept by River for a day)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cfg, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	// An insert-only queue: it lists, and works nothing.
	jb, err := jobs.New(ctx, jobs.Config{Store: store, DatabaseURL: cfg.DatabaseURL.Reveal(), Logger: newLogger(stderr, cfg.LogLevel)})
	if err != nil {
		return err
	}
	defer jb.Stop(context.Background())
	list, err := jb.List(ctx, 0)
	if err != nil {
		return err
	}
	if !*all {
		// A day of completed refreshes would bury the jobs worth looking at.
		list = slices.DeleteFunc(list, func(j jobs.JobInfo) bool { return j.State == "completed" })
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tINSTANCE\tSTATE\tATTEMPTS\tSCHEDULED\tLAST ERROR")
	for _, j := range list {
		instance, lastErr := j.InstanceID, "-"
		if instance == "" {
			instance = "-"
		}
		if n := len(j.Errors); n > 0 {
			if r := []rune(j.Errors[n-1]); len(r) > 80 {
				lastErr = string(r[:80]) + "…"
			} else {
				lastErr = string(r)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, printable(j.Kind), printable(instance), j.State, j.Attempts, j.MaxAttempts,
			j.ScheduledAt.UTC().Format(time.RFC3339), printable(lastErr))
	}
	return tw.Flush()
}
