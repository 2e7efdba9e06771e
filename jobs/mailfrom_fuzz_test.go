package jobs

import (
	"net/mail"
	"strings"
	"testing"
)

// FuzzParseMailFrom: a sender is refused with one fixed message (never quoting the value)
// or accepted as a header value of one line with an address, which reads back as itself
// and names the address the input named.
func FuzzParseMailFrom(f *testing.F) {
	for _, s := range []string{"extension@example.com", "Extension <extension@example.com>", `"Ada, the Bot" <ada@example.com>`,
		"Ümlaut Bot <bot@example.com>", "not an address", "", "a@b\r\nBcc: x@y", "=?utf-8?q?x?= <a@b>", "<@>"} {
		f.Add(s)
	}
	_, fixed := ParseMailFrom("")
	if fixed == nil {
		f.Fatal("an empty sender accepted")
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := ParseMailFrom(raw)
		if err != nil {
			if out != "" || err.Error() != fixed.Error() {
				t.Fatalf("refused with %q and output %q", err, out)
			}
			return
		}
		if out == "" || strings.ContainsAny(out, "\r\n") {
			t.Fatalf("header value %q", out)
		}
		in, _ := mail.ParseAddress(raw)
		back, err := mail.ParseAddress(out)
		if err != nil || back.Address != in.Address || !strings.Contains(back.Address, "@") {
			t.Fatalf("%q reads back as %v, %v; want address %q", out, back, err, in.Address)
		}
		if again, err := ParseMailFrom(out); err != nil || again != out {
			t.Fatalf("%q parses again as %q, %v", out, again, err)
		}
	})
}
