package extension_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

func TestNormalizeEmail(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "ada@example.com", "ada@example.com"},
		{"trimmed", " \t ada@example.com\n", "ada@example.com"},
		{"lower-cased", "Ada.Lovelace@Example.COM", "ada.lovelace@example.com"},
		{"plus and dash kept", "ada+team-1@mail.example.org", "ada+team-1@mail.example.org"},
		{"IDN domain to ASCII", "ada@Bücher.example", "ada@xn--bcher-kva.example"},
		{"IDN domain already ASCII", "ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"},
		{"decomposed umlaut composed (NFC)", "ju\u0308rgen@example.com", "j\u00fcrgen@example.com"},
		{"Unicode local part lower-cased", "JÜRGEN@example.com", "jürgen@example.com"},
		{"fullwidth domain mapped", "ada@ｅｘａｍｐｌｅ.com", "ada@example.com"},
		{"local part of 64 bytes", strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
	} {
		got, err := extension.NormalizeEmail(tc.in)
		if err != nil {
			t.Errorf("%s: NormalizeEmail(%q): %v", tc.name, tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s: NormalizeEmail(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
}

func TestNormalizeEmailRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"spaces only", "   "},
		{"no @", "ada.example.com"},
		{"two @", "ada@bob@example.com"},
		{"nothing before @", "@example.com"},
		{"nothing after @", "ada@"},
		{"single-label domain", "ada@localhost"},
		{"trailing dot in domain", "ada@example.com."},
		{"empty domain label", "ada@example..com"},
		{"leading dot", ".ada@example.com"},
		{"trailing dot", "ada.@example.com"},
		{"double dot", "ada..l@example.com"},
		{"space inside", "ada l@example.com"},
		{"quoted local part", `"ada"@example.com`},
		{"angle brackets", "Ada <ada@example.com>"},
		{"control character", "ada\x00@example.com"},
		{"no-break space", "ada\u00a0@example.com"},
		{"underscore in domain", "ada@ex_ample.com"},
		{"invalid UTF-8", "ada\xff@example.com"},
		{"local part of 65 bytes", strings.Repeat("a", 65) + "@example.com"},
		{"longer than 254", "ada@" + strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + "." + strings.Repeat("d", 60) + "." + strings.Repeat("e", 60) + ".com"},
		{"domain label of 64 bytes", "ada@" + strings.Repeat("a", 64) + ".com"},
		{"huge input", strings.Repeat("a", 5000) + "@example.com"},
	} {
		got, err := extension.NormalizeEmail(tc.in)
		if !errors.Is(err, extension.ErrInvalidEmail) {
			t.Errorf("%s: NormalizeEmail(%q) = %q, %v; want ErrInvalidEmail", tc.name, tc.in, got, err)
			continue
		}
		if tc.in != "" && strings.TrimSpace(tc.in) != "" && strings.Contains(err.Error(), tc.in) {
			t.Errorf("%s: the error %q repeats the address", tc.name, err)
		}
	}
}

func TestEmailDomain(t *testing.T) {
	if got := extension.EmailDomain("ada@xn--bcher-kva.example"); got != "xn--bcher-kva.example" {
		t.Errorf("EmailDomain = %q", got)
	}
}

// FuzzNormalizeEmail checks that any input either is refused with ErrInvalidEmail or
// gives an address that is valid UTF-8, within the limits, with one @ and an ASCII
// lower-case domain, and that normalises to itself.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{"ada@example.com", " Ada@Bücher.example ", "ju\u0308rgen@example.com", "@", "a@b", "a@b.c.", "\"a\"@b.c", "ａ@ｅ.com", "a@xn--.com", "ǅ@example.com", "ΐ@example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := extension.NormalizeEmail(in)
		if err != nil {
			if !errors.Is(err, extension.ErrInvalidEmail) {
				t.Fatalf("NormalizeEmail(%q): error %v is not ErrInvalidEmail", in, err)
			}
			return
		}
		if !utf8.ValidString(out) || len(out) > 254 || strings.Count(out, "@") != 1 {
			t.Fatalf("NormalizeEmail(%q) = %q: not a bounded address with one @", in, out)
		}
		domain := extension.EmailDomain(out)
		for i := range len(domain) {
			if c := domain[i]; c >= 0x80 || (c >= 'A' && c <= 'Z') {
				t.Fatalf("NormalizeEmail(%q) = %q: domain not lower-case ASCII", in, out)
			}
		}
		again, err := extension.NormalizeEmail(out)
		if err != nil || again != out {
			t.Fatalf("NormalizeEmail(%q) = %q, but that normalises to %q, %v", in, out, again, err)
		}
	})
}
