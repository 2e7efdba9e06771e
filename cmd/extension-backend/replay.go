package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

var captureIDRE = regexp.MustCompile(`^[0-9a-f]{24}$`)

// Sign modes of webhook replay.
const (
	signAuto      = "auto"      // simulator for a backend on this machine with the key file at hand, else captured
	signSimulator = "simulator" // signed again with the simulator's key, with a new request id and time
	signCaptured  = "captured"  // the body and signature headers as captured
)

func runWebhookReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhook replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the webhook URL to send it to (default: the URL it was captured at)")
	diff := fs.Bool("diff", false, "show how the instance changed in the database (EXT_DATABASE_URL): fields before and after; of the secret only whether it changed")
	sign := fs.String("sign", signAuto, "simulator: sign again with the simulator key (new request id and time), as dev's backend expects; "+
		"captured: send the captured signature; auto: simulator when the target is on this machine and the key file exists")
	keyFile := fs.String("key-file", defaultKeyFile, "the simulator key file to sign with")
	// The capture id may come before the flags, as the usage shows it.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usagef("webhook replay takes one capture id, got also %q", printable(fs.Arg(0)))
	}
	if !captureIDRE.MatchString(id) {
		return usagef("usage: extension-backend webhook replay CAPTURE-ID [flags]: %q is no capture id (24 hex digits; `extension-backend deliveries` lists them)", printable(id))
	}
	if !slices.Contains([]string{signAuto, signSimulator, signCaptured}, *sign) {
		return usagef("--sign %q: want auto, simulator or captured", printable(*sign))
	}
	if *to != "" {
		if u, err := url.Parse(*to); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("--to %q: want an http or https URL", printable(*to))
		}
	}
	_, store, err := openMigratedStore(ctx, devStoreEnv(getenv, filepath.Dir(*keyFile)), needs{keys: true}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	c, err := store.CapturedDelivery(ctx, id)
	if errors.Is(err, extension.ErrNotFound) {
		return fmt.Errorf("no captured delivery %s (pruned, or captured in another database?): `extension-backend deliveries` lists the captures", id)
	}
	if err != nil {
		return err
	}
	target := *to
	if target == "" {
		target = c.URL
	}
	resign := *sign == signSimulator
	if *sign == signAuto {
		u, err := url.Parse(target)
		resign = err == nil && isLoopback(u.Hostname()) && fileExists(*keyFile)
	}
	keyPath := ""
	how := "as captured, with its own signature"
	if resign {
		keyPath, how = *keyFile, "signed again with the simulator key "+*keyFile+", with a new request id and time"
	}
	var before *instanceState
	if *diff {
		if c.InstanceID == "" {
			return fmt.Errorf("--diff: capture %s did not verify when it arrived, so it names no instance to compare", id)
		}
		if before, err = readInstanceState(ctx, store, c.InstanceID); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "replaying %s (%s for instance %s, captured %s) to %s, %s\n", id, orDash(printable(c.Kind)), orDash(printable(c.InstanceID)),
		c.ReceivedAt.Format("2006-01-02T15:04:05Z07:00"), printable(target), printable(how))
	res, err := mstudiotest.ReplayWebhook(ctx, mstudiotest.ReplayOptions{To: target, Body: c.Body, Header: c.Header, KeyFile: keyPath})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s\n", res.Proto, printable(res.Status))
	if len(res.Answer) > 0 {
		fmt.Fprintf(stdout, "%s\n", printable(string(res.Answer)))
	}
	if *diff {
		after, err := readInstanceState(ctx, store, c.InstanceID)
		if err != nil {
			return err
		}
		writeInstanceDiff(stdout, c.InstanceID, before, after)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("the backend answered %d", res.StatusCode)
	}
	return nil
}

// devStoreEnv is the environment with dev's database key beside the key file as the
// default: a developer replays against dev's database without naming its key.
func devStoreEnv(getenv func(string) string, dataDir string) func(string) string {
	return func(name string) string {
		if name == "EXT_ENCRYPTION_KEYS_FILE" && getenv("EXT_ENCRYPTION_KEYS") == "" && getenv(name) == "" {
			if f := filepath.Join(dataDir, "encryption.key"); fileExists(f) {
				return f
			}
		}
		if name == "EXT_DATABASE_URL" && getenv(name) == "" && getenv(name+"_FILE") == "" {
			if f := filepath.Join(dataDir, "extension.db"); fileExists(f) {
				return "sqlite:" + f
			}
		}
		return getenv(name)
	}
}

func fileExists(name string) bool {
	_, err := os.Stat(name)
	return err == nil
}

// instanceState is what --diff compares of an instance. The secret is held opened only to
// compare it; it is never printed.
type instanceState struct {
	fields [][2]string // name, value, in a fixed order
	secret extension.Secret
	exists bool
}

func readInstanceState(ctx context.Context, store *extension.Store, id string) (*instanceState, error) {
	in, err := store.InstanceByID(ctx, id)
	if errors.Is(err, extension.ErrNotFound) {
		return &instanceState{}, nil
	}
	if err != nil {
		return nil, err
	}
	st := &instanceState{exists: true}
	removed := "no"
	if in.RemovedAt != nil {
		removed = in.RemovedAt.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	st.fields = [][2]string{
		{"context", in.ContextKind + " " + in.ContextID},
		{"enabled", fmt.Sprint(in.Enabled)},
		{"scopes", strings.Join(in.ConsentedScopes, ",")},
		{"variant", in.VariantKey},
		{"removed", removed},
		{"last event", in.LastEventAt().Format("2006-01-02T15:04:05.999999999Z07:00")},
	}
	// "" when it has none.
	if st.secret, err = store.OpenInstanceSecret(in); err != nil {
		return nil, err
	}
	return st, nil
}

// writeInstanceDiff prints the fields that changed, and whether the secret did.
func writeInstanceDiff(w io.Writer, id string, before, after *instanceState) {
	fmt.Fprintf(w, "instance %s:\n", printable(id))
	switch {
	case !before.exists && !after.exists:
		fmt.Fprintln(w, "  not stored, before or after")
		return
	case !before.exists:
		fmt.Fprintln(w, "  new")
	case !after.exists:
		fmt.Fprintln(w, "  gone")
		return
	}
	changed := false
	for i, f := range after.fields {
		old := ""
		if before.exists {
			old = before.fields[i][1]
		}
		if before.exists && old == f[1] {
			continue
		}
		changed = true
		fmt.Fprintf(w, "  %s: %s → %s\n", f[0], orDash(printable(old)), orDash(printable(f[1])))
	}
	switch {
	case before.secret.IsZero() && after.secret.IsZero():
	case subtle.ConstantTimeCompare([]byte(before.secret.Reveal()), []byte(after.secret.Reveal())) == 1:
	case after.secret.IsZero():
		changed = true
		fmt.Fprintln(w, "  secret removed")
	default:
		changed = true
		fmt.Fprintln(w, "  secret changed")
	}
	if !changed && before.exists {
		fmt.Fprintln(w, "  no change")
	}
}
