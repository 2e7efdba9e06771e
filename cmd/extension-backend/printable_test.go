package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Mein Projekt", "Mein Projekt"},
		{"Grüße, 日本", "Grüße, 日本"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"title\x1b]0;pwned\x07", `title\x1b]0;pwned\x07`},
		{"c1 csi \u009b2J", `c1 csi \u009b2J`},
		{"tab\tnew\nline\r", `tab\x09new\x0aline\x0d`},
		{"del\x7f nul\x00", `del\x7f nul\x00`},
		{"bidi \u202eevil", `bidi \u202eevil`},
		{"bad utf-8 \xff\xc3", `bad utf-8 \xff\xc3`},
		{"", ""},
	} {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzPrintable: whatever comes in, what goes out is valid UTF-8 with no rune a terminal
// would act on, and printable text passes unchanged.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"Projekt", "\x1b[2J\x1b[H", "\u009b31m", "\xff", "\u202e", "a\tb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := printable(s)
		if !utf8.ValidString(out) {
			t.Fatalf("printable(%q) = %q: not UTF-8", s, out)
		}
		for _, r := range out {
			if r != ' ' && !unicode.IsPrint(r) {
				t.Fatalf("printable(%q) = %q: contains %U", s, out, r)
			}
		}
		if isPrintable(s) && out != s {
			t.Fatalf("printable(%q) = %q: changed printable text", s, out)
		}
		if isPrintable(s) != (out == s) {
			t.Fatalf("printable(%q) = %q: isPrintable disagrees", s, out)
		}
	})
}

// A project name with terminal control sequences prints escaped in the table and exact
// in JSON.
func TestInstancesEscapesNames(t *testing.T) {
	vars := testEnv(t, "http://127.0.0.1:1")
	store := seedInstance(t, vars, testInstanceID, "s")
	const name = "Shop\x1b]0;owned\x07\x1b[2J\u009b31m\u202e"
	if err := store.SetContextName(context.Background(), testInstanceID, name, time.Now()); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runCmd(vars, "instances")
	if err != nil {
		t.Fatalf("instances: %v\n%s", err, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b\u202e") {
		t.Errorf("instances prints control characters: %q", out)
	}
	if want := `Shop\x1b]0;owned\x07\x1b[2J\u009b31m\u202e`; !strings.Contains(out, want) {
		t.Errorf("instances: got %q, want the name escaped as %s", out, want)
	}
	out, _, err = runCmd(vars, "instances", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []instanceJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].ContextName != name {
		t.Errorf("instances --json: got %+v, %v; want the name exact", list, err)
	}
}
