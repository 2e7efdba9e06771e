package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// devSettings are the ids a dev setup keeps across runs, so the backend's records and the
// simulator's instances keep matching.
type devSettings struct {
	ExtensionID   string `json:"extensionId"`
	ContributorID string `json:"contributorId"`
}

func runDev(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf simFlags
	sf.register(fs, "127.0.0.1:8081", true)
	addr := fs.String("addr", "127.0.0.1:8080", "backend listen address (loopback: dev is for this machine)")
	dataDir := fs.String("data", "data", "folder for the database, keys and simulator state")
	opsAddr := fs.String("ops-addr", "", "listen address of the ops console, on loopback (e.g. 127.0.0.1:8082); empty: off")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *opsAddr != "" {
		if host, _, err := net.SplitHostPort(*opsAddr); err != nil || !isLoopback(host) {
			return usagef("--ops-addr must be a loopback HOST:PORT, such as 127.0.0.1:8082: dev is for this machine")
		}
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	settings, err := loadDevSettings(filepath.Join(*dataDir, "dev.json"), getenv)
	if err != nil {
		return err
	}
	keyFile := filepath.Join(*dataDir, "encryption.key")
	ownKeyFile := getenv("EXT_ENCRYPTION_KEYS") == "" && getenv("EXT_ENCRYPTION_KEYS_FILE") == ""
	if ownKeyFile {
		if err := ensureKeyFile(keyFile); err != nil {
			return err
		}
	}

	// Both listeners first: each side's configuration names the other's address.
	backendLn, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	defer backendLn.Close()
	simLn, err := net.Listen("tcp", sf.addr)
	if err != nil {
		return fmt.Errorf("simulator: listen on %s: %w", sf.addr, err)
	}
	defer simLn.Close()
	backendURL, simURL := "http://"+backendLn.Addr().String(), "http://"+simLn.Addr().String()

	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	sf.extensionID, sf.contributorID = settings.ExtensionID, settings.ContributorID
	sf.webhookURL = backendURL + "/mstudio/webhooks"
	frontendURL := backendURL + ssoURLTemplate
	sf.keyFile = filepath.Join(*dataDir, "simulator-keys.json")
	sf.stateFile = filepath.Join(*dataDir, "simulator-state.json")
	simOpts := sf.options(getenv, logger.With("component", "simulator"))
	simOpts.FrontendURL = frontendURL
	sim, err := mstudiotest.New(simOpts)
	if err != nil {
		return err
	}
	defer sim.Close()

	vars := map[string]string{
		"EXT_DATABASE_URL":         "sqlite:" + filepath.Join(*dataDir, "extension.db"),
		"EXT_ENCRYPTION_KEYS_FILE": keyFile,
	}
	env := func(name string) string {
		switch name {
		case "EXT_MSTUDIO_API_URL":
			return simURL
		case "EXT_EXTENSION_ID":
			return sim.ExtensionID()
		case "EXT_CONTRIBUTOR_ID":
			return sim.ContributorID()
		case "EXT_EXTENSION_SECRET":
			return sim.ExtensionSecret()
		case "EXT_CONTRIBUTOR_TOKEN":
			return sim.ContributorToken() // dev reconciles with its simulator
		case "EXT_PUBLIC_URL":
			if v := getenv(name); v != "" {
				return v
			}
			return backendURL
		case "EXT_ENCRYPTION_KEYS_FILE":
			if !ownKeyFile {
				return getenv(name)
			}
		}
		if v := getenv(name); v != "" {
			return v
		}
		return vars[name]
	}
	cfg, err := loadConfig(env, needs{keys: true, extensionID: true})
	if err != nil {
		return err
	}
	cfg.Addr = backendLn.Addr().String()
	cfg.OpsAddr = *opsAddr // the flag only: EXT_OPS_ADDR could name a public address
	cfg.devSimulator = true
	cfg.devOwnDatabase = getenv("EXT_DATABASE_URL") == "" && getenv("EXT_DATABASE_URL_FILE") == ""
	if cfg.CaptureDeliveries == 0 {
		cfg.CaptureDeliveries = devCaptureRetention // dev always captures, for `webhook replay`
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- serveHTTP(ctx, simLn, sim, logger.With("component", "simulator")) }()
	applyMemoryLimit()
	go func() {
		errs <- serveBackend(ctx, cfg, logger.With("component", "backend"), true, defaultWorkers, backendLn)
	}()
	// stop ends both servers and returns the first real failure; Ctrl-C is none.
	stop := func(err error) error {
		cancel()
		for range 2 {
			if e := <-errs; err == nil {
				err = e
			}
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}

	ready := make(chan error, 1)
	go func() { ready <- waitReady(ctx, backendURL+"/readyz") }()
	select {
	case err := <-errs:
		errs <- err // stop drains both
		return stop(nil)
	case err := <-ready:
		if err != nil {
			return stop(err)
		}
	}
	printSimulator(stdout, sim, simURL)
	instance, err := demoInstance(ctx, sim, stdout)
	if err != nil {
		return stop(err)
	}
	// The printed command must work when it is printed: wait for the secret to activate.
	select {
	case <-time.After(time.Until(instance.SecretUsableAt)):
	case <-ctx.Done():
		return stop(nil)
	}
	fmt.Fprintf(stdout, "backend on %s, simulator on %s (Ctrl-C stops both)\n\n", backendURL, simURL)
	fmt.Fprintf(stdout, "open the demo instance as a hosting customer would from the control panel (signs you in):\n  %s\n\n",
		sim.OpenURL(simURL, instance.ID, ""))
	fmt.Fprintf(stdout, "or open its team page: a browser without a session lands on the sign-in page, whose control-panel\n"+
		"button signs you in through the simulator (as %s); then follow Team:\n  %s\n\n", firstUserWithAccess(sim), backendURL+"/app/"+instance.ID+"/team")
	if cfg.SMTP != nil {
		fmt.Fprintf(stdout, "e-mail: invitation and reset links are sent through %s from %s\n\n", cfg.SMTP, cfg.MailFrom)
	} else {
		fmt.Fprintf(stdout, "e-mail is off (EXT_SMTP_URL and EXT_MAIL_FROM are not set): invitation links are shown to copy\n\n")
	}
	fmt.Fprintf(stdout, "every delivery is captured for %s (EXT_CAPTURE_DELIVERIES): list them with\n  %s%s deliveries\nand send one again with `webhook replay CAPTURE-ID --diff`\n\n",
		cfg.CaptureDeliveries, tokenEnv(getenv, vars["EXT_DATABASE_URL"], keyFile, ownKeyFile, simURL), selfCommand(os.Args[0], exec.LookPath, os.Executable))
	fmt.Fprintf(stdout, "next: mint an instance token for the demo instance:\n  %s%s token --instance %s\n\n",
		tokenEnv(getenv, vars["EXT_DATABASE_URL"], keyFile, ownKeyFile, simURL), selfCommand(os.Args[0], exec.LookPath, os.Executable), instance.ID)

	// Run until Ctrl-C or until one side fails, which stops the other too.
	select {
	case <-ctx.Done():
		return stop(nil)
	case err := <-errs:
		errs <- err
		return stop(nil)
	}
}

// firstUserWithAccess names the simulator's user that its sign-in picks when none is named.
func firstUserWithAccess(sim *mstudiotest.Server) string {
	for _, u := range sim.Users() {
		if u.Access {
			return u.Name
		}
	}
	return "nobody"
}

// ssoURLTemplate is the external frontend URL to register at the platform, after the
// backend's base URL.
const ssoURLTemplate = "/mstudio/sso?atrek=:accessTokenRetrievalKey&userId=:userId&instanceId=:extensionInstanceId"

// tokenEnv is the environment the printed token command needs beyond the caller's own:
// only what dev chose itself.
func tokenEnv(getenv func(string) string, databaseURL, keyFile string, ownKeyFile bool, simURL string) string {
	var b strings.Builder
	if getenv("EXT_DATABASE_URL") == "" && getenv("EXT_DATABASE_URL_FILE") == "" {
		fmt.Fprintf(&b, "EXT_DATABASE_URL=%s ", databaseURL)
	}
	if ownKeyFile {
		fmt.Fprintf(&b, "EXT_ENCRYPTION_KEYS_FILE=%s ", keyFile)
	}
	fmt.Fprintf(&b, "EXT_MSTUDIO_API_URL=%s ", simURL)
	return b.String()
}

// selfCommand is how to run this program again from the shell that started it: after
// go run, whose binary lies in a temporary go-build folder and is deleted when it exits,
// "go run ./cmd/extension-backend" (from the repository's root, where the quick start
// runs it); the name as typed when the shell found it on PATH; otherwise the absolute path
// of the executable.
func selfCommand(arg0 string, lookPath func(string) (string, error), executable func() (string, error)) string {
	for _, dir := range strings.Split(filepath.ToSlash(filepath.Dir(arg0)), "/") {
		if strings.HasPrefix(dir, "go-build") {
			return "go run ./cmd/extension-backend"
		}
	}
	if !strings.ContainsRune(arg0, filepath.Separator) && !strings.ContainsRune(arg0, '/') {
		if _, err := lookPath(arg0); err == nil {
			return shellQuote(arg0)
		}
		path, err := executable()
		if err != nil {
			return "extension-backend"
		}
		return shellQuote(path)
	}
	path, err := filepath.Abs(arg0)
	if err != nil {
		return shellQuote(arg0)
	}
	return shellQuote(path)
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain path characters.
func shellQuote(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@%+=,", r))
	}) < 0
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoInstance installs a demo instance through the real webhook path on the first run,
// and finds it again on later runs: one whose install reached the backend.
func demoInstance(ctx context.Context, sim *mstudiotest.Server, stdout io.Writer) (mstudiotest.Instance, error) {
	for _, in := range sim.Instances() {
		if !in.Removed && !in.Disabled && in.Secret != "" {
			fmt.Fprintf(stdout, "demo instance %s (%s %s) from an earlier run\n", in.ID, in.ContextKind, in.ContextID)
			return in, nil
		}
	}
	// project:write lets the demo run the worked domain action (renaming the project).
	res, err := sim.Trigger(ctx, "extensionAddedToContext", mstudiotest.CallRequest{
		ConsentedScopes: append(slices.Clone(mstudiotest.DefaultScopes), "project:write")})
	if err != nil {
		return mstudiotest.Instance{}, fmt.Errorf("install the demo instance: %w", err)
	}
	if !res.Successful {
		return mstudiotest.Instance{}, fmt.Errorf("install the demo instance: the backend answered %d: %s", res.StatusCode, res.Body)
	}
	in, _ := sim.Instance(res.InstanceID)
	fmt.Fprintf(stdout, "demo instance %s (%s %s) installed through the webhook: %d\n", in.ID, in.ContextKind, in.ContextID, res.StatusCode)
	return in, nil
}

func loadDevSettings(file string, getenv func(string) string) (devSettings, error) {
	var st devSettings
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return st, fmt.Errorf("%s: %w", file, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return st, err
	}
	if v := strings.ToLower(getenv("EXT_EXTENSION_ID")); v != "" {
		st.ExtensionID = v
	}
	if v := strings.ToLower(getenv("EXT_CONTRIBUTOR_ID")); v != "" {
		st.ContributorID = v
	}
	if st.ExtensionID == "" {
		st.ExtensionID = uuid.NewString()
	}
	if st.ContributorID == "" {
		st.ContributorID = uuid.NewString()
	}
	data, err = json.MarshalIndent(st, "", "  ")
	if err != nil {
		return st, err
	}
	return st, os.WriteFile(file, data, 0o600)
}

// ensureKeyFile creates a random encryption key on the first run; later runs reuse it,
// so the secrets sealed in the database keep opening.
func ensureKeyFile(file string) error {
	if _, err := os.Stat(file); err == nil {
		return nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write encryption key: %w", err)
	}
	return nil
}

// waitReady polls a readiness URL until it answers 200.
func waitReady(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not become ready in 30 s", url)
}

// devCaptureRetention is how long dev keeps captured deliveries unless
// EXT_CAPTURE_DELIVERIES says otherwise.
const devCaptureRetention = 24 * time.Hour
