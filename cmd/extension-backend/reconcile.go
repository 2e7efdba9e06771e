package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/prometheus/client_golang/prometheus"
)

// newReconciler builds the reconciliation with the platform from the configuration:
// nil, nil without EXT_CONTRIBUTOR_TOKEN. serve, reconcile and doctor --reconcile share it.
func newReconciler(cfg *Config, store *extension.Store, client *mstudio.Client, logger *slog.Logger, reg prometheus.Registerer) (*mstudio.Reconciler, error) {
	if cfg.ContributorToken.IsZero() {
		return nil, nil
	}
	if cfg.ExtensionID == "" {
		return nil, errors.New("EXT_EXTENSION_ID: required with EXT_CONTRIBUTOR_TOKEN: the extension whose instances are compared")
	}
	rec, err := mstudio.NewReconciler(mstudio.ReconcilerConfig{
		Client: client, Store: store, Token: cfg.ContributorToken,
		ContributorID: cfg.ContributorID, ExtensionID: cfg.ExtensionID, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("EXT_CONTRIBUTOR_TOKEN: %w", err)
	}
	return rec, nil
}

// reconcileError turns a refused token into advice that names the variable.
func reconcileError(err error) error {
	if errors.Is(err, mstudio.ErrContributorToken) {
		return fmt.Errorf("%w: check EXT_CONTRIBUTOR_TOKEN (an API token of a member of contributor EXT_CONTRIBUTOR_ID, not expired) and EXT_EXTENSION_ID; nothing was changed", err)
	}
	return err
}

// writeReconcileReport prints a report (and the resumes, if any) for a terminal: one
// line per finding with what to do. doctor --reconcile prints its findings with it.
func writeReconcileReport(w io.Writer, rep mstudio.Report, resumed []mstudio.ResumeOutcome) error {
	for _, l := range rep.Lines() {
		if _, err := fmt.Fprintln(w, printable(l)); err != nil {
			return err
		}
	}
	for _, o := range resumed {
		line := "resumed: instance " + o.InstanceID + ": the platform sends its halted webhook again"
		if o.Error != "" {
			line = "resume failed: instance " + o.InstanceID + ": " + o.Error + "; look again with reconcile before trying once more"
		}
		if _, err := fmt.Fprintln(w, printable(line)); err != nil {
			return err
		}
	}
	if rep.Resolved > 0 {
		_, err := fmt.Fprintf(w, "resolved: %d findings of earlier runs no longer stand\n", rep.Resolved)
		return err
	}
	return nil
}

// reconcileJSON is the stable shape of `reconcile --json`.
type reconcileJSON struct {
	Report  mstudio.Report          `json:"report"`
	Resumed []mstudio.ResumeOutcome `json:"resumed"`
}

// errFindings is reconcile's exit status for a run that found something: 1, as for a
// failure, so that a cron job or a check notices.
var errFindings = errors.New("the platform and we disagree; see the findings above")

func runReconcile(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resume := fs.Bool("resume", false, "resume, once each, the webhook executions found halted")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("usage: extension-backend reconcile [--resume] [--json]")
	}
	cfg, err := loadConfig(getenv, needs{})
	if err != nil {
		return err
	}
	switch {
	case cfg.ContributorToken.IsZero():
		return errors.New("EXT_CONTRIBUTOR_TOKEN: not set: reconcile needs an API token of a member of the contributor (EXT_CONTRIBUTOR_ID)")
	case cfg.ExtensionID == "":
		return errors.New("EXT_EXTENSION_ID: required: the extension whose instances are compared")
	}
	cfg, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	logger := newLogger(stderr, cfg.LogLevel)
	client, err := mstudio.New(cfg.MStudioAPIURL, mstudio.Options{Logger: logger})
	if err != nil {
		return err
	}
	rec, err := newReconciler(cfg, store, client, logger, nil)
	if err != nil {
		return err
	}
	rep, err := rec.Reconcile(ctx)
	if err != nil {
		return reconcileError(err)
	}
	var resumed []mstudio.ResumeOutcome
	if *resume {
		resumed = rec.ResumeHalted(ctx, rep)
	}
	if *asJSON {
		if resumed == nil {
			resumed = []mstudio.ResumeOutcome{}
		}
		if rep.Findings == nil {
			rep.Findings = []extension.ReconcileFinding{}
		}
		if rep.New == nil {
			rep.New = []extension.ReconcileFinding{}
		}
		if err := printJSON(stdout, reconcileJSON{Report: rep, Resumed: resumed}); err != nil {
			return err
		}
	} else if err := writeReconcileReport(stdout, rep, resumed); err != nil {
		return err
	}
	if len(rep.Findings) > 0 {
		return errFindings
	}
	return nil
}
