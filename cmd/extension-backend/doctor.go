package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/extension-backend/extension-backend/doctor"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/jobs"
)

// errDoctorFailed is doctor's error when a check failed: the findings already say what.
var errDoctorFailed = errors.New("doctor: a check failed")

func runDoctor(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	probe := fs.String("probe", "", "also check the running endpoint at this base URL (https://ext.example.com) from outside:\n"+
		"it sends dry-run deliveries (a tampered one, one for another extension, a genuine one) and opens a page")
	probeOnly := fs.Bool("probe-only", false, "with --probe: skip the offline checks (when probing from another machine)")
	keyFile := fs.String("key-file", "", "with --probe: the key file of the simulator the endpoint fetches its keys from, to sign deliveries it trusts\n"+
		"(default: "+defaultKeyFile+" when the endpoint is on this machine and the file exists)")
	extensionID := fs.String("extension-id", "", "with --probe: the extension id of genuine deliveries (default: EXT_EXTENSION_ID, else the dev setup's)")
	asJSON := fs.Bool("json", false, "print the findings as JSON: [{check, level, message, action}]")
	withReconcile := fs.Bool("reconcile", false, "also compare the platform's instances and webhook executions with ours\n"+
		"(needs EXT_CONTRIBUTOR_TOKEN; a finding is a failure; see the reconcile command)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("doctor takes no arguments, only flags (got %q)", fs.Arg(0))
	}
	if *probeOnly && *probe == "" {
		return usagef("--probe-only needs --probe URL")
	}
	var findings []doctor.Finding
	if !*probeOnly {
		findings = append(findings, offlineFindings(ctx, getenv, stderr)...)
	}
	if *withReconcile {
		findings = append(findings, reconcileDoctorFindings(ctx, getenv, stderr)...)
	}
	if *probe != "" {
		p, err := doctorProbe(getenv, *probe, *keyFile, *extensionID)
		if err != nil {
			return err
		}
		findings = append(findings, doctor.Run(ctx, p.Checks())...)
	}
	if *asJSON {
		if err := printJSON(stdout, findings); err != nil {
			return err
		}
	} else {
		printFindings(stdout, findings)
	}
	if doctor.Failed(findings) {
		return errDoctorFailed
	}
	return nil
}

func printFindings(w io.Writer, findings []doctor.Finding) {
	counts := map[doctor.Level]int{}
	for _, f := range findings {
		counts[f.Level]++
		fmt.Fprintln(w, printable(f.String()))
	}
	fmt.Fprintf(w, "\n%d ok, %d warnings, %d failures\n", counts[doctor.OK], counts[doctor.Warn], counts[doctor.Fail])
}

// offlineFindings runs the offline checks on the configuration as serve reads it. A
// configuration serve would refuse is one failure, and the checks that need it are left
// out until it is fixed.
func offlineFindings(ctx context.Context, getenv func(string) string, stderr io.Writer) []doctor.Finding {
	// Read leniently: a missing key, extension id or https public URL is a finding of its
	// own below, not the end of the examination.
	cfg, err := loadConfig(getenv, needs{})
	if err != nil {
		return []doctor.Finding{{Check: "configuration", Level: doctor.Fail, Message: err.Error(),
			Action: "fix the variable it names (serve reads the same), then run doctor again"}}
	}
	logger := newLogger(stderr, max(cfg.LogLevel, slog.LevelWarn))
	store, storeErr := openDoctorStore(ctx, cfg, logger)
	if store != nil {
		defer store.Close()
	}
	client, err := mstudio.New(cfg.MStudioAPIURL, mstudio.Options{Logger: logger, RetryMax: -1})
	if err != nil {
		return []doctor.Finding{{Check: "configuration", Level: doctor.Fail, Message: err.Error(), Action: "fix EXT_MSTUDIO_API_URL"}}
	}
	off := doctorOffline(cfg, store, client)
	off.StoreErr = storeErr
	return doctor.Run(ctx, off.Checks())
}

// doctorOffline is what the offline checks look at, from the configuration and an open
// store (nil when it could not be opened). The ops console calls it with serve's own
// store and client: doctor.Run(ctx, doctorOffline(cfg, store, client).Checks()).
func doctorOffline(cfg *Config, store *extension.Store, client *mstudio.Client) doctor.Offline {
	off := doctor.Offline{
		Database: maskDatabaseURL(cfg.DatabaseURL.Reveal()), ExtensionID: cfg.ExtensionID, ContributorID: cfg.ContributorID,
		PublicURL: cfg.PublicURL, APIURL: cfg.MStudioAPIURL, API: client,
		OIDCProvidersFile: cfg.OIDCProvidersFile, OIDCProviders: len(cfg.OperatorProviders),
	}
	if store != nil {
		off.Store = store
		off.QueueMigrated = func(ctx context.Context) error { return jobs.RequireMigrated(ctx, store, cfg.DatabaseURL.Reveal()) }
	}
	for _, k := range cfg.EncryptionKeys {
		off.EncryptionKeyIDs = append(off.EncryptionKeyIDs, extension.KeyID(k))
	}
	if cfg.SMTP != nil {
		off.SMTP = net.JoinHostPort(cfg.SMTP.Host, strconv.Itoa(cfg.SMTP.Port))
		off.SMTPImplicitTLS, off.SMTPRequireTLS = cfg.SMTP.ImplicitTLS, cfg.SMTP.RequireTLS
	}
	return off
}

// openDoctorStore opens the database as serve does, but does not create a SQLite file
// that is not there (opening would): doctor changes nothing.
func openDoctorStore(ctx context.Context, cfg *Config, logger *slog.Logger) (*extension.Store, error) {
	dialect, path, err := extension.ParseDatabaseURL(cfg.DatabaseURL.Reveal())
	if err != nil {
		return nil, err
	}
	if dialect == extension.SQLite {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, doctor.ErrNoDatabase
		}
	}
	return openStore(ctx, cfg, logger)
}

// doctorProbe assembles the probe of the endpoint at target: the simulator key it may
// sign with, the ids of genuine deliveries, the platform and the contributor token.
func doctorProbe(getenv func(string) string, target, keyFile, extensionIDFlag string) (doctor.Probe, error) {
	p := doctor.Probe{URL: target}
	u, err := url.Parse(p.Base())
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return p, usagef("--probe %q: want the endpoint's base URL, such as https://ext.example.com", target)
	}
	// The dev signer only for an endpoint on this machine: a production endpoint would
	// refuse it, and that refusal says nothing about the endpoint.
	if keyFile == "" && doctor.IsLoopback(u.Hostname()) {
		if _, err := os.Stat(defaultKeyFile); err == nil {
			keyFile = defaultKeyFile
		}
	}
	dataDir := "data"
	if keyFile != "" {
		key, err := mstudiotest.LoadKeyFile(keyFile, mstudiotest.PurposeWebhook)
		if err != nil {
			return p, err
		}
		p.Signer = &doctor.Signer{Serial: key.Serial, Key: key.Private, From: "the key file " + keyFile}
		dataDir = filepath.Dir(keyFile)
	}
	p.ExtensionID, p.ContributorID = devIDs(getenv, dataDir, extensionIDFlag)
	if p.ExtensionID != "" && !mstudio.IsUUID(p.ExtensionID) {
		return p, usagef("the extension id %q is not a UUID", p.ExtensionID)
	}
	r := &envReader{getenv: getenv}
	p.APIURL = r.httpURL("EXT_MSTUDIO_API_URL", mstudio.DefaultBaseURL)
	p.ContributorToken = r.secret("EXT_CONTRIBUTOR_TOKEN", "")
	if r.err != nil {
		return p, r.err
	}
	if p.API, err = mstudio.New(p.APIURL, mstudio.Options{RetryMax: -1}); err != nil {
		return p, err
	}
	return p, nil
}

// reconcileDoctorFindings runs reconcile with the platform for doctor --reconcile: each
// finding is a failure with what to do, a clean comparison one ok line, and a missing
// or refused contributor token a failure that names the variable. It stores the findings
// as the reconcile command does.
func reconcileDoctorFindings(ctx context.Context, getenv func(string) string, stderr io.Writer) []doctor.Finding {
	const check = "reconcile"
	fail := func(err error, action string) []doctor.Finding {
		return []doctor.Finding{{Check: check, Level: doctor.Fail, Message: err.Error(), Action: action}}
	}
	cfg, err := loadConfig(getenv, needs{})
	if err != nil {
		return fail(err, "fix the variable it names, then run doctor --reconcile again")
	}
	if cfg.ContributorToken.IsZero() {
		return fail(errors.New("EXT_CONTRIBUTOR_TOKEN is not set"),
			"set EXT_CONTRIBUTOR_TOKEN (an API token of a member of contributor EXT_CONTRIBUTOR_ID) to compare with the platform")
	}
	cfg, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return fail(err, "fix the database first (see the database check above)")
	}
	defer store.Close()
	logger := newLogger(stderr, max(cfg.LogLevel, slog.LevelWarn))
	client, err := mstudio.New(cfg.MStudioAPIURL, mstudio.Options{Logger: logger})
	if err != nil {
		return fail(err, "fix EXT_MSTUDIO_API_URL")
	}
	rec, err := newReconciler(cfg, store, client, logger, nil)
	if err != nil {
		return fail(err, "fix the variable it names")
	}
	rep, err := rec.Reconcile(ctx)
	if err != nil {
		return fail(reconcileError(err), "fix what it names, then run doctor --reconcile again")
	}
	if len(rep.Findings) == 0 {
		return []doctor.Finding{{Check: check, Level: doctor.OK,
			Message: fmt.Sprintf("the platform's %d instances and our %d agree; no halted or failed webhook execution", rep.PlatformInstances, rep.OurInstances)}}
	}
	out := make([]doctor.Finding, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		out = append(out, doctor.Finding{Check: check, Level: doctor.Fail,
			Message: fmt.Sprintf("%s: instance %s: %s", f.Kind, f.InstanceID, f.Detail),
			Action:  strings.ReplaceAll(f.Kind.Advice(), "ID", f.InstanceID)})
	}
	return out
}
