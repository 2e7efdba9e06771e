package frontend

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/google/uuid"
)

// FuzzClipText: the clip keeps at most n bytes of text; of valid text it keeps a prefix,
// all of it when it fits, and loses no more than part of one character.
func FuzzClipText(f *testing.F) {
	f.Add("Lena Local", 4)
	f.Add("äöü", 3)
	f.Add("a\xffb", 10)
	f.Add("𝄞𝄞", 5)
	f.Add("", -1)
	f.Fuzz(func(t *testing.T, s string, n int) {
		out := clipText(s, n)
		if len(out) > max(n, 0) || !utf8.ValidString(out) {
			t.Fatalf("clipText(%q, %d) = %q", s, n, out)
		}
		if utf8.ValidString(s) {
			if !strings.HasPrefix(s, out) {
				t.Fatalf("clipText(%q, %d) = %q: not a prefix", s, n, out)
			}
			if len(s) <= n && out != s {
				t.Fatalf("clipText(%q, %d) = %q: cut what fits", s, n, out)
			}
			if len(s) > n && n > 0 && len(out) <= n-utf8.UTFMax {
				t.Fatalf("clipText(%q, %d) = %q: cut more than one character", s, n, out)
			}
		}
	})
}

// FuzzParseLoginForm: the sign-in form keeps the password byte for byte or not at all,
// shows at most maxLoginField bytes of text of the address, and marks as unusable exactly
// the fields no account can match.
func FuzzParseLoginForm(f *testing.F) {
	f.Add("lena@example.test", "correct horse battery", false)
	f.Add(" Lena@Example.TEST ", "", true)
	f.Add("a\xff@example.test", "pass\xffword", false)
	f.Add(strings.Repeat("ä", 600), strings.Repeat("x", 1025), true)
	f.Fuzz(func(t *testing.T, email, password string, twice bool) {
		form := url.Values{"email": {email}, "password": {password}}
		if twice {
			form.Add("email", "second@example.test")
		}
		lf := parseLoginForm(form)
		if len(lf.Email) > maxLoginField || !utf8.ValidString(lf.Email) {
			t.Fatalf("address kept as %d bytes, text %v", len(lf.Email), utf8.ValidString(lf.Email))
		}
		unusable := len(email) > maxLoginField || !utf8.ValidString(email) || len(password) > extension.MaxPasswordLength
		if lf.Unusable != unusable {
			t.Fatalf("unusable %v, want %v", lf.Unusable, unusable)
		}
		if unusable {
			if lf.password != "" {
				t.Fatal("a password kept with an unusable form")
			}
			return
		}
		if lf.Email != email || lf.password != password {
			t.Fatalf("the fields do not come back as sent: %q", lf.Email)
		}
	})
}

// FuzzParseForgotForm: "forgot password" accepts exactly what NormalizeEmail accepts,
// hands on its normal form (which normalises to itself), and shows at most maxEmailField
// bytes of text; a problem has copy.
func FuzzParseForgotForm(f *testing.F) {
	f.Add("lena@example.test")
	f.Add(" Lena@Bücher.Example ")
	f.Add("not an address")
	f.Add("a@b.example" + strings.Repeat(" ", 400) + "junk")
	f.Add("\xff@example.test")
	cat := mustCatalogs(f)[LangEnglish]
	f.Fuzz(func(t *testing.T, email string) {
		ff := parseForgotForm(url.Values{"email": {email}})
		if len(ff.Email) > maxEmailField || !utf8.ValidString(ff.Email) {
			t.Fatalf("address kept as %d bytes", len(ff.Email))
		}
		want, err := extension.NormalizeEmail(email)
		if (err == nil) != (ff.Problem == "") {
			t.Fatalf("problem %q, NormalizeEmail: %v", ff.Problem, err)
		}
		if ff.Problem != "" {
			if _, ok := cat[ff.Problem]; !ok || ff.normalized != "" {
				t.Fatalf("problem %q (copy %v) with address %q", ff.Problem, ok, ff.normalized)
			}
			return
		}
		if ff.normalized != want || ff.normalized == "" {
			t.Fatalf("normalised %q, want %q", ff.normalized, want)
		}
		if again, err := extension.NormalizeEmail(ff.normalized); err != nil || again != ff.normalized {
			t.Fatalf("%q normalises to %q, %v", ff.normalized, again, err)
		}
	})
}

// FuzzParseTransferForm: the transfer form's account field is accepted exactly when it
// is a UUID, and then as sent; a UUID the page writes always comes back.
func FuzzParseTransferForm(f *testing.F) {
	f.Add("6f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01")
	f.Add("6F1C2A8E-5D4B-4E3A-9C1F-0A1B2C3D4E01")
	f.Add("6f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01\n")
	f.Add("../../etc")
	f.Add("")
	f.Fuzz(func(t *testing.T, account string) {
		id, ok := parseTransferForm(url.Values{"account": {account}})
		if !ok {
			if id != "" {
				t.Fatalf("refused with id %q", id)
			}
			if _, err := uuid.Parse(account); err == nil && len(account) == 36 {
				t.Fatalf("UUID %q refused", account)
			}
			return
		}
		if id != account || len(id) != 36 || !uuidPattern.MatchString(id) {
			t.Fatalf("accepted %q as %q", account, id)
		}
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("accepted %q, not a UUID: %v", id, err)
		}
		fresh := uuid.NewString()
		if got, ok := parseTransferForm(url.Values{"account": {fresh}}); !ok || got != fresh {
			t.Fatalf("a fresh UUID %q came back as %q, %v", fresh, got, ok)
		}
	})
}
