package frontend

import (
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

// Every audit kind the store defines (extension/audit.go) is one the audit page
// describes, with a label and a sentence in both languages.
func TestEveryAuditKindHasCopy(t *testing.T) {
	src, err := os.ReadFile("../extension/audit.go")
	if err != nil {
		t.Fatal(err)
	}
	defined := regexp.MustCompile(`(?m)^\s+Audit\w+\s+= "([^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(defined) < 15 {
		t.Fatalf("found %d kinds in extension/audit.go; the pattern no longer matches", len(defined))
	}
	for _, m := range defined {
		if !slices.Contains(auditKinds, m[1]) {
			t.Errorf("audit kind %q is not on the audit page", m[1])
		}
	}
	cs, err := loadCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	for _, lang := range languages {
		for _, k := range auditKinds {
			if _, ok := cs[lang]["audit.kind."+k]; !ok {
				t.Errorf("%s: no label audit.kind.%s", lang, k)
			}
			line := describeAudit(cs[lang], extension.AuditEvent{Kind: k, AccountID: "a", ActorName: "Ada",
				Detail: map[string]string{"name": "Lena", "email": "l@example.com", "role": "admin", "from": "member", "to": "admin",
					"count": "3", "state": "done", "outcome": "ok", "action": "rename_project",
					"default_role": "member → admin", "allowed_domains": " → example.com", "password_login": "true → false"}})
			if line.What == "" || strings.Contains(line.What, "audit.") || strings.Contains(line.What, "{") {
				t.Errorf("%s: kind %s reads %q", lang, k, line.What)
			}
			for _, f := range line.Facts {
				if strings.Contains(f.Label+f.Value, "audit.") {
					t.Errorf("%s: kind %s has the fact %+v", lang, k, f)
				}
			}
		}
	}
}

func TestDescribeAudit(t *testing.T) {
	cs, err := loadCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	en, de := cs[LangEnglish], cs[LangGerman]
	at := time.Date(2026, 3, 14, 11, 36, 24, 0, time.UTC)
	for _, c := range []struct {
		cat       catalog
		ev        extension.AuditEvent
		who, what string
		facts     []auditFact
	}{
		{en, extension.AuditEvent{AccountID: "a", ActorName: "Ada", Kind: extension.AuditRoleChanged,
			Detail: map[string]string{"account": "acc-id", "name": "Lena", "from": "member", "to": "admin"}},
			"Ada", "Changed the role of Lena from Member to Administrator.", nil},
		{de, extension.AuditEvent{AccountID: "a", ActorName: "Ada", Kind: extension.AuditRoleChanged,
			Detail: map[string]string{"name": "Lena", "from": "member", "to": "owner"}},
			"Ada", "Hat die Rolle von Lena von Mitglied auf Inhaber geändert.", nil},
		{en, extension.AuditEvent{ActorName: extension.ActorOperator, Kind: extension.AuditPasswordResetIssued,
			Detail: map[string]string{"account": "x", "name": "", "email": "l@example.com"}},
			"The extension's operator", "Created a password reset link for an account without a name.",
			[]auditFact{{"E-mail address", "l@example.com"}}},
		{de, extension.AuditEvent{ActorName: extension.ActorForgotPassword, Kind: extension.AuditPasswordResetIssued,
			Detail: map[string]string{"name": "Lena"}},
			"Jemand über „Passwort vergessen?“", "Hat einen Link zum Zurücksetzen des Passworts für Lena erstellt.", nil},
		{en, extension.AuditEvent{ActorName: "forgot password", Kind: extension.AuditPasswordResetIssued,
			Detail: map[string]string{"name": "Lena"}},
			"Someone, with “Forgot your password?”", "Created a password reset link for Lena.", nil},
		{en, extension.AuditEvent{AccountID: "a", ActorName: "Lena", Kind: extension.AuditSignInFailed},
			"Lena", "Someone tried to sign in to this account with a wrong password.", nil},
		{de, extension.AuditEvent{AccountID: "a", ActorName: "Lena", Kind: extension.AuditSignInLocked},
			"Lena", "Jemand hat versucht, sich bei diesem Konto anzumelden, während die Anmeldung nach zu vielen falschen Passwörtern pausierte.", nil},
		{en, extension.AuditEvent{ActorName: extension.ActorPlatform, Kind: extension.AuditOwnershipReclaimed, Detail: map[string]string{"name": "Bob"}},
			"The control panel", "Made Bob an owner, because they own the project or organisation in the control panel.", nil},
		{en, extension.AuditEvent{AccountID: "a", Kind: extension.AuditSessionsEnded,
			Detail: map[string]string{"count": "1", "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}},
			"An account without a name", "Signed out another browser: Firefox on Linux.", nil},
		{de, extension.AuditEvent{AccountID: "a", ActorName: "Ada", Kind: extension.AuditSettingsChanged,
			Detail: map[string]string{"default_role": "member → member", "allowed_domains": " → example.com,example.org", "password_login": "true → false"}},
			"Ada", "Hat die Einstellungen der Anmeldung geändert.",
			[]auditFact{{"Erlaubte E-Mail-Domains", "alle → example.com, example.org"}, {"Anmeldung mit Passwort", "an → aus"}}},
		{en, extension.AuditEvent{AccountID: "a", ActorName: "Ada", Kind: auditActionEnded,
			Detail: map[string]string{"action": "rename_project", "action_id": "id", "state": "failed", "outcome": "missing_scope"}},
			"Ada", "Renaming the project finished: Not done.",
			[]auditFact{{"Result", en.text("action.outcome.missing_scope")}}},
		{en, extension.AuditEvent{AccountID: "a", ActorName: "Ada", Kind: "something.new"},
			"Ada", "Something this page cannot describe yet (something.new).", nil},
	} {
		c.ev.CreatedAt = at
		got := describeAudit(c.cat, c.ev)
		if got.Who != c.who || got.What != c.what || !slices.Equal(got.Facts, c.facts) || got.Time != "2026-03-14 11:36:24 UTC" {
			t.Errorf("%s: got %+v, want %q, %q, %v", c.ev.Kind, got, c.who, c.what, c.facts)
		}
	}
}

func TestDeviceOf(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0":                                                                  "Firefox on Linux",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36":                         "Chrome on Windows",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0":             "Edge on Windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15":                   "Safari on macOS",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1": "Safari on iOS",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36":                   "Chrome on Android",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36":                           "Chrome on Linux",
		"Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36":                          "Chrome on ChromeOS",
		"curl/8.5.0":                          "An unknown browser",
		"":                                    "An unknown browser",
		"Something (Windows NT 10.0)":         "A browser on Windows",
		"Firefox/1 <script>alert(1)</script>": "Firefox",
	} {
		if got := deviceText(mustCatalogs(t)[LangEnglish], ua); got != want {
			t.Errorf("deviceText(%q) = %q, want %q", ua, got, want)
		}
	}
}

func mustCatalogs(t testing.TB) catalogs {
	t.Helper()
	cs, err := loadCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestParseAuditQuery(t *testing.T) {
	acc := "0b7e3c1a-7f55-4d0e-9b0a-2f4e4b8f6c11"
	for raw, ok := range map[string]bool{
		"":                                true,
		"account=&kind=":                  true,
		"account=" + acc:                  true,
		"kind=role.changed":               true,
		"kind=action.ended":               true,
		"before=1773488184123456000-42":   true,
		"lang=de&kind=sign_in":            true,
		"account=" + strings.ToUpper(acc): false,
		"account=nobody":                  false,
		"kind=role.changed&kind=sign_in":  false,
		"kind=drop table":                 false,
		"before=abc":                      false,
		"before=1-0":                      false,
		"before=-5-3":                     false,
		"before=1-2&before=3-4":           false,
	} {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, got := parseAuditQuery(q); got != ok {
			t.Errorf("parseAuditQuery(%q): ok %v, want %v", raw, got, ok)
		}
	}
}

func FuzzParseAuditQuery(f *testing.F) {
	for _, s := range []string{"", "account=0b7e3c1a-7f55-4d0e-9b0a-2f4e4b8f6c11&kind=sign_in", "before=1773488184123456000-42",
		"kind=a&kind=b", "before=9223372036854775807-9223372036854775807", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		aq, ok := parseAuditQuery(q)
		if !ok {
			return
		}
		if aq.Kind != "" && !slices.Contains(auditKinds, aq.Kind) {
			t.Fatalf("kind %q accepted", aq.Kind)
		}
		if aq.Account != "" && !uuidPattern.MatchString(aq.Account) {
			t.Fatalf("account %q accepted", aq.Account)
		}
		// What the page writes back into its links reads the same.
		back := aq.values()
		if aq.Before != nil {
			back.Set("before", aq.Before.String())
		}
		again, ok := parseAuditQuery(back)
		if !ok || again.Account != aq.Account || again.Kind != aq.Kind || (aq.Before != nil) != (again.Before != nil) ||
			(aq.Before != nil && (*aq.Before != *again.Before)) {
			t.Fatalf("round trip of %q: %+v, then %+v (%v)", raw, aq, again, ok)
		}
	})
}

func TestParseSettingsForm(t *testing.T) {
	for _, c := range []struct {
		raw, current, field string
		want                settingsForm
	}{
		{"default_role=member&allowed_domains=&password_login=on", "member", "", settingsForm{DefaultRole: "member", PasswordLogin: true}},
		{"default_role=admin&allowed_domains=Example.COM,+@b%C3%BCcher.example", "member", "",
			settingsForm{DefaultRole: "admin", AllowedDomains: []string{"example.com", "xn--bcher-kva.example"}, DomainsText: "Example.COM, @bücher.example"}},
		{"default_role=owner", "owner", "", settingsForm{DefaultRole: "owner"}},
		{"default_role=owner", "member", "default_role", settingsForm{DefaultRole: "owner"}},
		{"default_role=root", "member", "default_role", settingsForm{DefaultRole: "root"}},
		{"default_role=member&allowed_domains=not+a+domain!", "member", "allowed_domains", settingsForm{DefaultRole: "member", DomainsText: "not a domain!"}},
		{"default_role=member&password_login=yes", "member", "password_login", settingsForm{DefaultRole: "member"}},
		{"default_role=member&default_role=admin", "member", "default_role", settingsForm{}},
	} {
		form, err := url.ParseQuery(c.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, field, problem := parseSettingsForm(form, c.current)
		if field != c.field || (problem == "") != (c.field == "") {
			t.Errorf("%q: field %q (%q), want %q", c.raw, field, problem, c.field)
		}
		if c.field == "" && (got.DefaultRole != c.want.DefaultRole || !slices.Equal(got.AllowedDomains, c.want.AllowedDomains) ||
			got.PasswordLogin != c.want.PasswordLogin) {
			t.Errorf("%q: %+v, want %+v", c.raw, got, c.want)
		}
		if c.want.DomainsText != "" && got.DomainsText != c.want.DomainsText {
			t.Errorf("%q: typed domains %q not kept", c.raw, got.DomainsText)
		}
	}
}

func FuzzParseSettingsForm(f *testing.F) {
	for _, s := range []string{"default_role=admin&allowed_domains=example.com&password_login=on", "allowed_domains=a..b",
		"default_role=owner", "password_login=on&password_login=on", "allowed_domains=" + strings.Repeat("a.example,", 200)} {
		f.Add(s, "member")
		f.Add(s, "owner")
	}
	cat := mustCatalogs(f)[LangEnglish]
	f.Fuzz(func(t *testing.T, raw, current string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, field, problem := parseSettingsForm(form, current)
		if (field == "") != (problem == "") {
			t.Fatalf("field %q, problem %q", field, problem)
		}
		if problem != "" {
			if _, ok := cat[problem]; !ok {
				t.Fatalf("problem %q has no copy", problem)
			}
			return
		}
		if p.DefaultRole != extension.RoleMember && p.DefaultRole != extension.RoleAdmin && p.DefaultRole != current {
			t.Fatalf("role %q accepted with %q now", p.DefaultRole, current)
		}
		// The store takes what the form accepts.
		again, err := extension.ParseAllowedDomains(strings.Join(p.AllowedDomains, ","))
		if err != nil || !slices.Equal(again, p.AllowedDomains) {
			t.Fatalf("domains %q do not read back: %v, %v", p.AllowedDomains, again, err)
		}
	})
}

func FuzzParseAccountForms(f *testing.F) {
	for _, s := range []string{"name=Lena&language=de", "name=&language=", "name=%0A&language=fr", "language=en&language=de",
		"current_password=x&new_password=correct+horse+battery&new_password_again=correct+horse+battery",
		"current_password=x&new_password=short&new_password_again=short"} {
		f.Add(s)
	}
	cat := mustCatalogs(f)[LangEnglish]
	f.Fuzz(func(t *testing.T, raw string) {
		form, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		for _, withName := range []bool{false, true} {
			p, problem := parseProfileForm(form, withName)
			if problem != "" {
				if _, ok := cat[problem]; !ok {
					t.Fatalf("profile problem %q has no copy", problem)
				}
				continue
			}
			if p.Language != "" && !isLang(p.Language) {
				t.Fatalf("language %q accepted", p.Language)
			}
			if withName && (p.Name == "" || !utf8.ValidString(p.Name) || strings.ContainsAny(p.Name, "\r\n\x00") || utf8.RuneCountInString(p.Name) > maxNameRunes) {
				t.Fatalf("name %q accepted", p.Name)
			}
		}
		p, problem := parseOwnPasswordForm(form)
		if problem != "" {
			if _, ok := cat[problem]; !ok {
				t.Fatalf("password problem %q has no copy", problem)
			}
			return
		}
		if p.Current == "" || extension.CheckPassword(p.New) != nil || p.New != form.Get("new_password_again") {
			t.Fatalf("password form %q accepted", raw)
		}
	})
}
