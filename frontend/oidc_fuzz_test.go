package frontend

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// The flow cookie comes back from the browser: whatever it holds, parseFlow never panics,
// and it accepts only what the keyring sealed as a flow, unchanged and unexpired.
func FuzzParseFlow(f *testing.F) {
	kr := extensiontest.Keyring(f)
	now := time.Unix(1_800_000_000, 0)
	good := oidcFlow{Instance: "0b7e4c1a-2f3d-4e5f-8a9b-0c1d2e3f4a5b", Provider: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
		State: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", Nonce: "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
		Verifier: "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC", Expires: now.Add(time.Minute).Unix(), Intent: intentLogin}
	plain, _ := json.Marshal(good)
	sealed, err := kr.Seal(extension.Secret(plain), flowAAD)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := parseFlow(kr, sealed, now); err != nil {
		f.Fatalf("a sealed flow does not parse: %v", err)
	}
	other, _ := kr.Seal(extension.Secret(plain), "another use")
	f.Add(sealed)
	f.Add(other)
	f.Add(sealed[:len(sealed)-2])
	f.Add("v1.abcd.AAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, value string) {
		fl, err := parseFlow(kr, value, now)
		if err != nil {
			return
		}
		// Only the keyring seals flows: an accepted value is one we made, or opens as one.
		if value != sealed {
			opened, oerr := kr.Open(value, flowAAD)
			if oerr != nil {
				t.Fatalf("accepted a value that does not open: %q", value)
			}
			var again oidcFlow
			if json.Unmarshal([]byte(opened.Reveal()), &again) != nil || again != fl {
				t.Fatalf("accepted %q as %+v", value, fl)
			}
		}
		if !now.Before(time.Unix(fl.Expires, 0)) {
			t.Fatalf("accepted an expired flow: %+v", fl)
		}
	})
}

// The callback's query comes from anyone: parseCallbackQuery never panics, and what it
// accepts has a state and exactly one of code and error, each once and bounded.
func FuzzCallbackQuery(f *testing.F) {
	f.Add("code=abc&state=def")
	f.Add("error=access_denied&state=def")
	f.Add("code=a&code=b&state=s")
	f.Add("code=a&error=b&state=s")
	f.Add("state=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		cq, ok := parseCallbackQuery(q)
		if !ok {
			return
		}
		if cq.State == "" || (cq.Code == "") == (cq.Error == "") || len(q["state"]) != 1 || len(cq.Code) > maxCallbackParam ||
			len(cq.Error) > maxCallbackParam || len(cq.State) > maxCallbackParam {
			t.Fatalf("accepted %q as %+v", raw, cq)
		}
	})
}

// A provider's claims are JSON of any shape: reading them never panics, and an address
// counts as verified only when the template's verified claim says so.
func FuzzIdentityClaims(f *testing.F) {
	f.Add(`{"email":"a@example.com","email_verified":true,"groups":["staff"]}`)
	f.Add(`{"email":["a"],"email_verified":"true","name":{"x":1},"groups":"staff"}`)
	f.Add(`{"email":"a@example.com","xms_edov":"1"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var claims map[string]any
		if json.Unmarshal([]byte(raw), &claims) != nil {
			return
		}
		for _, tmpl := range extension.OIDCTemplates() {
			id := identityOf(tmpl, "sub", claims)
			_ = id.claimValues("groups")
			if n := id.normalized(); n != "" && !id.Verified {
				t.Fatalf("%s: unverified address %q normalised as verified", tmpl.Key, n)
			}
			switch v := claims[tmpl.VerifiedClaim].(type) {
			case bool:
				if id.Verified != v {
					t.Fatalf("%s: verified %v from %v", tmpl.Key, id.Verified, v)
				}
			case string:
			default:
				if id.Verified {
					t.Fatalf("%s: verified from %T", tmpl.Key, v)
				}
			}
		}
	})
}

// The role_map field: whatever is typed, parseRoleMap never panics, and what it accepts
// is a map the store accepts too (roles member or admin, groups once), which reads back
// from its text as the same rules.
func FuzzParseRoleMap(f *testing.F) {
	for _, s := range []string{"staff=member", "it-admins=admin, staff=member", "cn=staff,ou=groups=member\r\nadmins=ADMIN",
		"founders=owner", "=admin", "a=admin\na=member", "\x00=admin", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		rules, ok := parseRoleMap(text)
		if !ok {
			return
		}
		p := extension.OIDCProvider{Template: "custom", Name: "n", Issuer: "https://idp.example", ClientID: "c",
			Scopes: []string{"openid"}, DefaultRole: extension.RoleMember, RoleMap: rules}
		seen := map[string]bool{}
		for _, r := range rules {
			if r.Role != extension.RoleMember && r.Role != extension.RoleAdmin || seen[r.Group] {
				t.Fatalf("accepted %q as %+v", text, rules)
			}
			seen[r.Group] = true
			if role, _, ok := p.DerivedRole([]string{r.Group}); !ok || (role != r.Role && role != extension.RoleAdmin) {
				t.Fatalf("DerivedRole of group %q = %q, %v", r.Group, role, ok)
			}
		}
		again, ok := parseRoleMap(roleMapText(rules))
		if !ok || len(again) != len(rules) {
			t.Fatalf("the form's text of %+v reads back as %+v, %v", rules, again, ok)
		}
		for i := range rules {
			if again[i] != rules[i] {
				t.Fatalf("the form's text of %+v reads back as %+v", rules, again)
			}
		}
	})
}

// The operator providers file is the operator's, but a typo must stop startup with a
// line and a field, never a panic: whatever the file holds, ParseOperatorProviders
// returns providers the store accepts, or an error without the client secret.
func FuzzParseOperatorProviders(f *testing.F) {
	const secret = "file-secret-7Hq2xVn9"
	for _, s := range []string{
		`[{"id":"staff","template":"custom","issuer":"https://sso.vendor.example","client_id":"c","client_secret":"` + secret + `"}]`,
		`[{"id":"staff","template":"keycloak","issuer":"https://sso.vendor.example/realms/x","client_id":"c","client_secret_env":"SECRET","auto_provision":true,"allowed_domains":"vendor.example","role_map":"ops=admin"}]`,
		`[{"id":"a","template":"custom"}, {"id":"a"}]`, `{"id":"x"}`, `[1]`, `[{"id":"x","auto_provision":"yes"}]`, `[] x`, "[\n{\"nope\":1}]", ``,
	} {
		f.Add([]byte(s))
	}
	getenv := func(name string) string {
		if name == "SECRET" {
			return secret
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParseOperatorProviders(data, getenv)
		if err != nil {
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error holds the client secret: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error names no line: %v", err)
			}
			return
		}
		keys := map[string]bool{}
		for _, p := range ps {
			if keys[p.Key] || p.Key == "" {
				t.Fatalf("key %q twice or empty", p.Key)
			}
			keys[p.Key] = true
			if err := extension.CheckOperatorProvider(p.Provider); err != nil {
				t.Fatalf("accepted a provider the store refuses: %v", err)
			}
			if p.Provider.AutoProvision && len(p.Provider.AllowedDomains) == 0 {
				t.Fatalf("accepted auto_provision without domains")
			}
			if len(p.Provider.RoleMap) > 0 {
				t.Fatalf("accepted a role map for an operator provider")
			}
		}
	})
}
