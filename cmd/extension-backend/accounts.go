package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
)

// The accounts subcommand: break-glass administration of an instance's accounts by the
// operator, for when nobody who could do it in the pages can sign in. Every change is in
// the instance's audit log as the operator's, and the last-owner rule holds here too.

const accountsUsage = `usage: extension-backend accounts list|set-role|reset-link [flags]

  list --instance ID [--json]
  set-role --instance ID (--account ID | --email ADDRESS) --role owner|admin|member
  reset-link --instance ID (--account ID | --email ADDRESS)

Break-glass administration of an instance's accounts: list them, set a role, print a
one-time password-reset link for a local account. Each takes -h.`

// accountJSON is the stable shape of `accounts list --json`.
type accountJSON struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Email          string     `json:"email"`
	Role           string     `json:"role"`
	SignIn         string     `json:"signIn"` // "password" (a local account) or "platform"
	PlatformUserID string     `json:"platformUserId,omitempty"`
	LockedUntil    *time.Time `json:"lockedUntil,omitempty"`
	CreatedAt      time.Time  `json:"createdAt"`
}

func runAccounts(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && isHelpArg(args[0]) {
		fmt.Fprintln(stdout, accountsUsage)
		return flag.ErrHelp
	}
	if len(args) == 0 {
		return usagef("%s", accountsUsage)
	}
	switch args[0] {
	case "list":
		return runAccountsList(ctx, args[1:], getenv, stdout, stderr)
	case "set-role":
		return runAccountsSetRole(ctx, args[1:], getenv, stdout, stderr)
	case "reset-link":
		return runAccountsResetLink(ctx, args[1:], getenv, stdout, stderr)
	}
	return usagef("unknown accounts command %q\n%s", args[0], accountsUsage)
}

// accountFlags are the flags every accounts command shares.
type accountFlags struct {
	fs       *flag.FlagSet
	instance *string
	account  *string // set-role and reset-link
	email    *string
}

func newAccountFlags(name string, stderr io.Writer, target bool) accountFlags {
	fs := flag.NewFlagSet("accounts "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := accountFlags{fs: fs, instance: fs.String("instance", "", "extension instance id (required; see: extension-backend instances)")}
	if target {
		f.account = fs.String("account", "", "the account's id (see: extension-backend accounts list)")
		f.email = fs.String("email", "", "the account's e-mail address, instead of --account")
	}
	return f
}

// parse reads the flags and the instance id.
func (f accountFlags) parse(args []string) (string, error) {
	if err := f.fs.Parse(args); err != nil {
		return "", usageError{err}
	}
	if f.fs.NArg() > 0 {
		return "", usagef("accounts %s: unexpected argument %q", strings.TrimPrefix(f.fs.Name(), "accounts "), f.fs.Arg(0))
	}
	id := strings.ToLower(strings.TrimSpace(*f.instance))
	switch {
	case id == "":
		return "", usagef("accounts %s: --instance is required", strings.TrimPrefix(f.fs.Name(), "accounts "))
	case !mstudio.IsUUID(id):
		return "", usagef("--instance %q is not a UUID", printable(*f.instance))
	}
	if f.account != nil && (*f.account == "") == (*f.email == "") {
		return "", usagef("accounts %s: give --account ID or --email ADDRESS (one of them)", strings.TrimPrefix(f.fs.Name(), "accounts "))
	}
	return id, nil
}

// openInstance opens the store and loads the instance, which must be installed here.
func openInstance(ctx context.Context, id string, getenv func(string) string, stderr io.Writer) (*Config, *extension.Store, *extension.Instance, error) {
	cfg, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	in, err := store.InstanceByID(ctx, id)
	if err != nil {
		store.Close()
		if errors.Is(err, extension.ErrNotFound) {
			return nil, nil, nil, fmt.Errorf("instance %s is not known here (extension-backend instances lists those that are)", id)
		}
		return nil, nil, nil, err
	}
	return cfg, store, in, nil
}

// liveInstance refuses a change in a removed instance: its accounts go with it.
func liveInstance(in *extension.Instance) error {
	if in.Removed() {
		return fmt.Errorf("instance %s was removed from its context: its accounts are no longer used", in.ID)
	}
	return nil
}

// findAccount resolves --account or --email to one account of the instance.
func findAccount(ctx context.Context, store *extension.Store, instanceID string, f accountFlags) (extension.Account, error) {
	if id := strings.TrimSpace(*f.account); id != "" {
		acc, err := store.AccountByID(ctx, id)
		if errors.Is(err, extension.ErrNotFound) || (err == nil && acc.InstanceID != instanceID) {
			return extension.Account{}, fmt.Errorf("instance %s has no account %s (see: extension-backend accounts list --instance %s)",
				instanceID, printable(id), instanceID)
		}
		return acc, err
	}
	want, err := extension.NormalizeEmail(*f.email)
	if err != nil {
		return extension.Account{}, usagef("--email %q is not an e-mail address", printable(*f.email))
	}
	all, err := store.Accounts(ctx, instanceID)
	if err != nil {
		return extension.Account{}, err
	}
	var found []extension.Account
	for _, a := range all {
		if n, err := extension.NormalizeEmail(a.Email); err == nil && n == want {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return extension.Account{}, fmt.Errorf("instance %s has no account with the address %s", instanceID, printable(want))
	case 1:
		return found[0], nil
	}
	return extension.Account{}, fmt.Errorf("%d accounts of instance %s have the address %s: name one with --account ID (see: extension-backend accounts list --instance %s)",
		len(found), instanceID, printable(want), instanceID)
}

// describe names an account on one line, safe for a terminal.
func describe(a extension.Account) string {
	name := a.Name
	if name == "" {
		name = "(no name)"
	}
	return fmt.Sprintf("%s <%s> (%s)", printable(name), printable(a.Email), printable(a.ID))
}

func runAccountsList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newAccountFlags("list", stderr, false)
	asJSON := f.fs.Bool("json", false, "print JSON")
	id, err := f.parse(args)
	if err != nil {
		return err
	}
	_, store, _, err := openInstance(ctx, id, getenv, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	list, err := store.Accounts(ctx, id)
	if err != nil {
		return err
	}
	now := time.Now()
	out := make([]accountJSON, len(list))
	for i, a := range list {
		out[i] = accountJSON{ID: a.ID, Name: a.Name, Email: a.Email, Role: a.Role, SignIn: a.SignInMethod(),
			PlatformUserID: a.PlatformUserID, CreatedAt: a.CreatedAt.UTC()}
		if a.Locked(now) {
			until := a.LockedUntil.UTC()
			out[i].LockedUntil = &until
		}
	}
	if *asJSON {
		return printJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tEMAIL\tROLE\tSIGN-IN\tLOCKED UNTIL\tCREATED")
	for _, a := range out {
		name, locked := a.Name, "-"
		if name == "" {
			name = "-"
		}
		if a.LockedUntil != nil {
			locked = a.LockedUntil.Format(time.RFC3339)
		}
		// Names and addresses are what users typed or the platform sent: no terminal
		// control sequence gets through.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(a.ID), printable(name), printable(a.Email), printable(a.Role),
			a.SignIn, locked, a.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runAccountsSetRole(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newAccountFlags("set-role", stderr, true)
	role := f.fs.String("role", "", "the new role: owner, admin or member (required)")
	id, err := f.parse(args)
	if err != nil {
		return err
	}
	if !extension.ValidRole(*role) {
		return usagef("--role %q: want owner, admin or member", printable(*role))
	}
	_, store, in, err := openInstance(ctx, id, getenv, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := liveInstance(in); err != nil {
		return err
	}
	acc, err := findAccount(ctx, store, id, f)
	if err != nil {
		return err
	}
	from := acc.Role
	updated, err := store.SetRoleAsOperator(ctx, id, acc.ID, *role)
	switch {
	case errors.Is(err, extension.ErrLastOwner):
		return fmt.Errorf("%s is the last owner of instance %s: make another account an owner first", describe(acc), id)
	case err != nil:
		return err
	}
	if from == updated.Role {
		_, err = fmt.Fprintf(stdout, "%s is %s already: nothing changed\n", describe(updated), updated.Role)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s: role %s → %s (recorded in the instance's audit log as the operator's)\n", describe(updated), from, updated.Role)
	return err
}

func runAccountsResetLink(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newAccountFlags("reset-link", stderr, true)
	id, err := f.parse(args)
	if err != nil {
		return err
	}
	cfg, store, in, err := openInstance(ctx, id, getenv, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := liveInstance(in); err != nil {
		return err
	}
	acc, err := findAccount(ctx, store, id, f)
	if err != nil {
		return err
	}
	token, pr, err := store.IssuePasswordResetAsOperator(ctx, id, acc.ID)
	switch {
	case errors.Is(err, extension.ErrNotLocalAccount):
		return fmt.Errorf("%s signs in through the control panel: it has no password here to reset", describe(acc))
	case err != nil:
		return err
	}
	if getenv("EXT_PUBLIC_URL") == "" {
		fmt.Fprintf(stderr, "note: EXT_PUBLIC_URL is not set, so the link starts with the default %s\n", cfg.PublicURL)
	}
	fmt.Fprintf(stderr, "password-reset link for %s: it works once, until %s; an earlier unused link of the account no longer works.\n"+
		"Whoever has it can set the account's password: hand it over privately.\n", describe(acc), pr.ExpiresAt.Format(time.RFC3339))
	// The link alone on stdout, for a script to pick up.
	_, err = fmt.Fprintln(stdout, strings.TrimSuffix(cfg.PublicURL, "/")+"/reset/"+token.Reveal())
	return err
}
