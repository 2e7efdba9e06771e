package frontend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/extension-backend/extension-backend/extension"
)

// The operator's OpenID Connect providers (EXT_OIDC_PROVIDERS_FILE): a JSON array of
// objects with the provider form's fields, plus "id" (a stable key: the provider's id in
// each instance derives from it, so renaming keeps the linked identities) and either
// "client_secret" or "client_secret_env" (the name of a variable holding it), e.g.
//
//	[{"id": "vendor-staff", "template": "keycloak", "name": "Vendor support",
//	  "issuer": "https://sso.vendor.example/realms/staff", "client_id": "extension",
//	  "client_secret_env": "VENDOR_OIDC_SECRET", "allowed_domains": "vendor.example"}]
//
// auto_provision is false unless the file says true, and true needs allowed_domains:
// staff join an instance through one of these only when it invited them, unless the
// operator decides otherwise for named domains. role_map is refused: the roles of the
// vendor's staff in a customer's instance are its owners' to give. The other checks are
// the form's.

// operatorFields are the fields of an operator provider, each a string but
// auto_provision (a boolean).
var operatorFields = append([]string{"id", "client_secret_env"}, providerFields...)

// fileCopy is the pages' copy, for the file's problems in the form's English words.
var fileCopy = sync.OnceValues(loadCatalogs)

var operatorKeyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ParseOperatorProviders reads an operator providers file; getenv looks up a
// client_secret_env. An error names the line of the provider and the field, never a
// secret's value.
func ParseOperatorProviders(data []byte, getenv func(string) string) ([]extension.OperatorProvider, error) {
	en, err := fileCopy()
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	at := func(offset int64) string {
		return fmt.Sprintf("line %d", 1+bytes.Count(data[:min(int(offset), len(data))], []byte("\n")))
	}
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%s: not JSON: %v", at(se.Offset), se)
		}
		return fmt.Errorf("%s: want a JSON array of providers: %v", at(dec.InputOffset()), err)
	}
	if tok, err := dec.Token(); err != nil {
		return nil, syntax(err)
	} else if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, fmt.Errorf("line 1: want a JSON array of providers, [ {…}, … ]")
	}
	var out []extension.OperatorProvider
	seen := map[string]bool{}
	for dec.More() {
		start := dec.InputOffset()
		// The offset is where the previous value ended; the object starts after the
		// comma and spaces.
		for int(start) < len(data) && strings.ContainsRune(" \t\r\n,", rune(data[start])) {
			start++
		}
		where := at(start)
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, fmt.Errorf("%s: a provider must be a JSON object", where)
			}
			return nil, syntax(err)
		}
		form := url.Values{}
		for k, v := range raw {
			if !slices.Contains(operatorFields, k) {
				return nil, fmt.Errorf("%s: unknown field %q (known: %s)", where, clip(k, 40), strings.Join(operatorFields, ", "))
			}
			if k == "auto_provision" {
				var b bool
				if err := json.Unmarshal(v, &b); err != nil {
					return nil, fmt.Errorf("%s: field auto_provision: want true or false", where)
				}
				if b {
					form.Set(k, "on")
				}
				continue
			}
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("%s: field %s: want a string", where, k)
			}
			form.Set(k, s)
		}
		key := form.Get("id")
		if !operatorKeyPattern.MatchString(key) {
			return nil, fmt.Errorf("%s: field id: want 1 to 63 lower-case letters, digits and dashes", where)
		}
		if seen[key] {
			return nil, fmt.Errorf("%s: field id: %q is given twice", where, key)
		}
		seen[key] = true
		where += fmt.Sprintf(": provider %q", key)
		if env := form.Get("client_secret_env"); env != "" {
			if form.Get("client_secret") != "" {
				return nil, fmt.Errorf("%s: fields client_secret and client_secret_env are both set: set one", where)
			}
			secret := getenv(env)
			if secret == "" {
				return nil, fmt.Errorf("%s: field client_secret_env: the variable %s is not set", where, clip(env, 100))
			}
			form.Set("client_secret", secret)
		}
		form.Del("id")
		form.Del("client_secret_env")
		p, _, field, problem := parseProviderForm(form, false)
		if problem != "" {
			return nil, fmt.Errorf("%s: field %s: %s", where, field, en[LangEnglish].text(problem, "min", "", "max", ""))
		}
		if len(p.RoleMap) > 0 {
			// Groups at the vendor must not raise its staff's roles in a customer's
			// instance at every sign-in: those roles are the instance owners' to give.
			return nil, fmt.Errorf("%s: field role_map: not for the operator's providers: roles in an instance are its owners' to give", where)
		}
		if len(p.AllowedDomains) == 0 {
			// The vendor's provider says which addresses are verified: without a domain
			// rule it could accept any customer's pending invitation (found by review).
			return nil, fmt.Errorf("%s: field allowed_domains: required for the operator's providers (the vendor's own domains), so they accept only invitations to those addresses", where)
		}
		if p.DefaultRole != extension.RoleMember {
			// Roles in an instance are its owners' to give, as with role_map.
			return nil, fmt.Errorf("%s: field default_role: must be member for the operator's providers: roles in an instance are its owners' to give", where)
		}
		if err := extension.CheckOperatorProvider(p.OIDCProvider); err != nil {
			return nil, fmt.Errorf("%s: %v", where, err)
		}
		out = append(out, extension.OperatorProvider{Key: key, Provider: p.OIDCProvider, ClientSecret: p.Secret})
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: text after the array", at(dec.InputOffset()))
	}
	return out, nil
}
