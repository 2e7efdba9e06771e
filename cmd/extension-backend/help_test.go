package main

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// Every subcommand answers -h and --help with its help on stdout and exit status 0: its
// usage, the EXT_* variables it reads and, where it has flags, their list. Nothing else
// runs: the environment is empty, which would fail any command that went on.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, h := range []string{"-h", "--help"} {
			t.Run(c.name+" "+h, func(t *testing.T) {
				out, errOut, err := runCmd(map[string]string{}, c.name, h)
				if got := exitCode(err); got != 0 || !errors.Is(err, flag.ErrHelp) {
					t.Fatalf("got %v (exit %d), want flag.ErrHelp and exit 0\n%s", err, got, errOut)
				}
				if errOut != "" {
					t.Errorf("stderr: got %q, want nothing", errOut)
				}
				for _, want := range []string{"usage: extension-backend " + c.name, "environment: EXT_"} {
					if !strings.Contains(out, want) {
						t.Errorf("help lacks %q:\n%s", want, out)
					}
				}
				if c.flags && !strings.Contains(out, "\n  -") && !strings.Contains(out, " -h") {
					t.Errorf("help lists no flags:\n%s", out)
				}
			})
		}
	}
	// After a subcommand word too, with that word's own flags.
	for args, flag := range map[string]string{"webhook send -h": "-kind", "webhook sign --help": "-file", "webhook replay -h": "-diff", "bench webhooks -h": "-concurrency", "migrate up -h": ""} {
		out, _, err := runCmd(map[string]string{}, strings.Fields(args)...)
		if exitCode(err) != 0 || !strings.Contains(out, "environment: EXT_") || !strings.Contains(out, flag) {
			t.Errorf("%s: got %v and\n%s\nwant help naming %q", args, err, out, flag)
		}
	}
}

// serve's help names every variable the configuration reads, so it cannot fall behind. A
// secret's NAME_FILE counts as named with NAME; a variable that is a file itself
// (EXT_OIDC_PROVIDERS_FILE) is named as it is.
func TestServeHelpNamesEveryVariable(t *testing.T) {
	read := map[string]bool{}
	getenv := func(name string) string {
		read[name] = true
		return ""
	}
	if _, err := loadConfig(getenv, needs{}); err != nil {
		t.Fatal(err)
	}
	out, _, _ := runCmd(map[string]string{}, "serve", "-h")
	named := map[string]bool{}
	for _, v := range regexp.MustCompile(`EXT_[A-Z_]+`).FindAllString(out, -1) {
		named[v] = true
	}
	for v := range read {
		if !named[v] && !named[strings.TrimSuffix(v, "_FILE")] {
			t.Errorf("serve -h does not name %s", v)
		}
	}
}

// doctor's help names every variable the configuration reads, as serve's does, and the
// contributor token of its probe.
func TestDoctorHelpNamesEveryVariable(t *testing.T) {
	read := map[string]bool{"EXT_CONTRIBUTOR_TOKEN": true}
	getenv := func(name string) string {
		read[name] = true
		return ""
	}
	if _, err := loadConfig(getenv, needs{}); err != nil {
		t.Fatal(err)
	}
	out, _, _ := runCmd(map[string]string{}, "doctor", "-h")
	named := map[string]bool{}
	for _, v := range regexp.MustCompile(`EXT_[A-Z_]+`).FindAllString(out, -1) {
		named[v] = true
	}
	for v := range read {
		if !named[v] && !named[strings.TrimSuffix(v, "_FILE")] {
			t.Errorf("doctor -h does not name %s", v)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{usageError{flag.ErrHelp}, 0},
		{usagef("unknown command"), 2},
		{fmt.Errorf("wrapped: %w", usagef("x")), 2},
		{errors.New("EXT_ENCRYPTION_KEYS: required"), 1},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v): got %d, want %d", tt.err, got, tt.want)
		}
	}
}
