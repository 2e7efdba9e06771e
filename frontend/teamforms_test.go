package frontend

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

func TestParseInviteForm(t *testing.T) {
	for _, tc := range []struct {
		email, role, wantEmail, wantRole, problem string
	}{
		{" Lena@Example.test ", "admin", "Lena@Example.test", "admin", ""},
		{"lena@example.test", "owner", "lena@example.test", "owner", ""},
		{"not an address", "member", "not an address", "member", "team.invite.bad_email"},
		{"lena@example.test", "Admin", "lena@example.test", "", "team.invite.bad_role"},
		{"lena@example.test", "", "lena@example.test", "", "team.invite.bad_role"},
		{strings.Repeat("a", 400) + "@example.test", "member", strings.Repeat("a", 320), "member", "team.invite.bad_email"},
	} {
		f := parseInviteForm(tc.email, tc.role)
		if f.Email != tc.wantEmail || f.Role != tc.wantRole || f.Problem != tc.problem {
			t.Errorf("parseInviteForm(%.30q, %q) = %q %q %q, want %q %q %q", tc.email, tc.role, f.Email, f.Role, f.Problem, tc.wantEmail, tc.wantRole, tc.problem)
		}
	}
}

func TestParsePasswordForm(t *testing.T) {
	const pw = "correct horse battery"
	for _, tc := range []struct {
		name               string
		wantName           bool
		inName, pw, repeat string
		repeatSent         bool
		outName, problem   string
	}{
		{"ok", true, "  Lena Local ", pw, pw, true, "Lena Local", ""},
		{"no repeat sent", true, "Lena", pw, "", false, "Lena", ""},
		{"repeat differs", true, "Lena", pw, pw + " ", true, "Lena", "team.password.mismatch"},
		{"empty repeat sent", true, "Lena", pw, "", true, "Lena", "team.password.mismatch"},
		{"no name", true, " \t", pw, pw, true, "", "team.password.bad_name"},
		{"control character", true, "Le\x00na", pw, pw, true, "Le\x00na", "team.password.bad_name"},
		{"long name", true, strings.Repeat("ä", 201), pw, pw, true, strings.Repeat("ä", 201), "team.password.bad_name"},
		{"short", true, "Lena", "elevenchars", "elevenchars", true, "Lena", "team.password.too_short"},
		{"twelve characters of umlauts", true, "Lena", strings.Repeat("ü", 12), strings.Repeat("ü", 12), true, "Lena", ""},
		{"long", true, "Lena", strings.Repeat("x", 1025), "", false, "Lena", "team.password.too_long"},
		{"reset: no name wanted", false, "ignored", pw, pw, true, "", ""},
	} {
		f := parsePasswordForm(tc.wantName, tc.inName, tc.pw, tc.repeat, tc.repeatSent)
		if f.Name != tc.outName || f.Problem != tc.problem {
			t.Errorf("%s: name %q problem %q, want %q %q", tc.name, f.Name, f.Problem, tc.outName, tc.problem)
		}
		if (f.Problem == "") != (f.password == tc.pw) {
			t.Errorf("%s: password kept %v with problem %q", tc.name, f.password != "", f.Problem)
		}
	}
}

func TestParseDone(t *testing.T) {
	for in, want := range map[string]string{"role_changed": "role_changed", "removed": "removed", "": "", "Removed": "",
		"<script>": "", "lena@example.test": ""} {
		if got := parseDone(in); got != want {
			t.Errorf("parseDone(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzTeamForms: the team's form parsers never panic, keep at most their bounds, keep
// only text, accept only what the store would, and never let a password through with a
// problem.
func FuzzTeamForms(f *testing.F) {
	f.Add("lena@example.test", "admin", "Lena Local", "correct horse battery", "correct horse battery", true, "role_changed")
	f.Add(" LENA@exämple.test ", "owner", "  ", "short", "", false, "removed")
	f.Add("\xff\xfe@x", "member\x00", "Le\x00na", strings.Repeat("ü", 12), strings.Repeat("ü", 11), true, "x")
	f.Add(strings.Repeat("a", 500)+"@b.c", "", strings.Repeat("ä", 500), strings.Repeat("x", 1025), "", false, "")
	f.Fuzz(func(t *testing.T, email, role, name, password, repeat string, repeatSent bool, done string) {
		inv := parseInviteForm(email, role)
		if len(inv.Email) > maxEmailField || !utf8.ValidString(inv.Email) {
			t.Errorf("email kept as %d bytes, valid UTF-8 %v", len(inv.Email), utf8.ValidString(inv.Email))
		}
		if inv.Problem == "" {
			if !extension.ValidRole(inv.Role) {
				t.Errorf("role %q accepted", inv.Role)
			}
			if _, err := extension.NormalizeEmail(inv.Email); err != nil {
				t.Errorf("address %q accepted: %v", inv.Email, err)
			}
		} else if inv.Field != "email" && inv.Field != "role" {
			t.Errorf("problem %q with field %q", inv.Problem, inv.Field)
		}
		if r, ok := parseRole(role); ok != extension.ValidRole(role) || (ok && r != role) {
			t.Errorf("parseRole(%q) = %q, %v", role, r, ok)
		}
		for _, wantName := range []bool{true, false} {
			pf := parsePasswordForm(wantName, name, password, repeat, repeatSent)
			if len(pf.Name) > maxNameField || !utf8.ValidString(pf.Name) {
				t.Errorf("name kept as %d bytes", len(pf.Name))
			}
			if pf.Problem != "" && pf.password != "" {
				t.Error("a password passed with a problem")
			}
			if pf.Problem == "" {
				if extension.CheckPassword(pf.password) != nil || pf.password != password {
					t.Error("a password the store refuses passed")
				}
				if repeatSent && repeat != password {
					t.Error("a different repeat passed")
				}
				if wantName && !validName(pf.Name) {
					t.Errorf("name %q passed", pf.Name)
				}
			}
		}
		if d := parseDone(done); d != "" && !teamDone[d] {
			t.Errorf("parseDone(%q) = %q", done, d)
		}
		if linkTokenPattern.MatchString(email) && len(email) != 43 {
			t.Errorf("token shape matched %d bytes", len(email))
		}
	})
}
