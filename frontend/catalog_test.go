package frontend

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// Both languages have the same keys, and no text is empty.
func TestCatalogsHaveTheSameKeys(t *testing.T) {
	cs, err := loadCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	en, de := cs[LangEnglish], cs[LangGerman]
	for _, k := range en.keys() {
		if _, ok := de[k]; !ok {
			t.Errorf("German lacks %q", k)
		}
	}
	for _, k := range de.keys() {
		if _, ok := en[k]; !ok {
			t.Errorf("English lacks %q", k)
		}
	}
	for lang, c := range cs {
		for k, v := range c {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: %q is empty", lang, k)
			}
		}
	}
}

// Every key a template names is in the catalogs; keys built at run time (problem pages,
// roles) are checked where they are named.
func TestTemplatesUseKnownKeys(t *testing.T) {
	cs, err := loadCatalogs()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	key := regexp.MustCompile(`\{\{t "([^"]+)"`)
	for _, en := range entries {
		b, err := templateFS.ReadFile("templates/" + en.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range key.FindAllStringSubmatch(string(b), -1) {
			if _, ok := cs[LangEnglish][m[1]]; !ok {
				t.Errorf("%s names %q, which the catalog lacks", en.Name(), m[1])
			}
		}
	}
	for _, role := range []string{"owner", "admin", "member"} {
		if _, ok := cs[LangEnglish]["role."+role]; !ok {
			t.Errorf("no copy for role %s", role)
		}
	}
}

func TestRequestLang(t *testing.T) {
	for _, c := range []struct {
		query, cookie, accept, want string
	}{
		{"", "", "", "en"},
		{"", "", "de", "de"},
		{"", "", "de-AT;q=0.9, en;q=0.8", "de"},
		{"", "", "fr-FR, de;q=0.5", "de"},
		{"", "", "fr-FR", "en"},
		{"", "de", "en", "de"},
		{"en", "de", "de", "en"},
		{"xx", "", "de", "de"},
		{"", "xx", "", "en"},
		{"", "", "**garbage;;q=", "en"},
	} {
		r := httptest.NewRequest("GET", "/?lang="+c.query, nil)
		if c.cookie != "" {
			r.Header.Set("Cookie", langCookie+"="+c.cookie)
		}
		if c.accept != "" {
			r.Header.Set("Accept-Language", c.accept)
		}
		if got, _ := requestLang(r); got != c.want {
			t.Errorf("query %q cookie %q accept %q: %s, want %s", c.query, c.cookie, c.accept, got, c.want)
		}
	}
}

// FuzzRequestLang: whatever a browser sends, the answer is one of our languages and
// nothing panics.
func FuzzRequestLang(f *testing.F) {
	for _, s := range []string{"de", "en-US,en;q=0.9", "*", "de-CH-1901;q=0.1", strings.Repeat("a-", 200), "q=;q=;"} {
		f.Add(s, "de")
	}
	f.Fuzz(func(t *testing.T, accept, query string) {
		r := httptest.NewRequest("GET", "/", nil)
		q := r.URL.Query()
		q.Set("lang", query)
		r.URL.RawQuery = q.Encode()
		r.Header.Set("Accept-Language", accept)
		if got, _ := requestLang(r); !isLang(got) {
			t.Fatalf("language %q", got)
		}
	})
}

// FuzzSameOrigin: whatever headers a request carries, only evidence of our own origin
// admits it.
func FuzzSameOrigin(f *testing.F) {
	f.Add("same-origin", "", "")
	f.Add("", "http://127.0.0.1:8080", "")
	f.Add("", "null", "http://127.0.0.1:8080/app")
	f.Add("", "", "http://127.0.0.1:8080@evil.example/")
	fr := &Frontend{origin: "http://127.0.0.1:8080"}
	f.Fuzz(func(t *testing.T, site, origin, referer string) {
		r := httptest.NewRequest("POST", "/logout", nil)
		r.Header.Set("Sec-Fetch-Site", site)
		r.Header.Set("Origin", origin)
		r.Header.Set("Referer", referer)
		ok := fr.sameOrigin(r)
		if !ok {
			return
		}
		switch {
		case site == "same-origin" || site == "none":
		case site != "":
			t.Fatalf("admitted with Sec-Fetch-Site %q", site)
		case origin != "" && origin != "null":
			if !strings.EqualFold(origin, fr.origin) {
				t.Fatalf("admitted from origin %q", origin)
			}
		default:
			if !strings.HasPrefix(strings.ToLower(referer), fr.origin) {
				t.Fatalf("admitted with referer %q", referer)
			}
		}
	})
}
