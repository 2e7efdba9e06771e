package frontend

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/text/language"
)

// Languages of the pages; the first is the fallback for a browser that names neither.
const (
	LangEnglish = "en"
	LangGerman  = "de"
)

var languages = []string{LangEnglish, LangGerman}

// langCookie keeps an explicit choice (?lang=de|en): it wins over Accept-Language.
const langCookie = "ext_lang"

// langMatcher picks our language from Accept-Language, English first as the fallback.
var langMatcher = language.NewMatcher([]language.Tag{language.English, language.German})

//go:embed locales/*.json
var localeFS embed.FS

// catalog is one language's copy: a flat map from key to text.
type catalog map[string]string

// catalogs holds every language's copy, read once.
type catalogs map[string]catalog

func loadCatalogs() (catalogs, error) {
	cs := catalogs{}
	for _, lang := range languages {
		cs[lang] = catalog{}
	}
	// A language's copy is locales/<lang>.json plus any locales/<area>.<lang>.json, so each
	// group of pages keeps its copy in its own file. A key defined twice is an error: one
	// file would silently win.
	files, err := fs.Glob(localeFS, "locales/*.json")
	if err != nil {
		return nil, fmt.Errorf("frontend: catalogs: %w", err)
	}
	for _, name := range files {
		base := strings.TrimSuffix(path.Base(name), ".json")
		lang := base[strings.LastIndex(base, ".")+1:]
		into, ok := cs[lang]
		if !ok {
			return nil, fmt.Errorf("frontend: catalog %s: not a language of the pages (%v)", name, languages)
		}
		b, err := localeFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("frontend: catalog %s: %w", name, err)
		}
		c := catalog{}
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("frontend: catalog %s: %w", name, err)
		}
		for k, v := range c {
			if _, dup := into[k]; dup {
				return nil, fmt.Errorf("frontend: catalog %s: key %q is defined in another file too", name, k)
			}
			into[k] = v
		}
	}
	return cs, nil
}

// keys returns the catalog's keys, sorted.
func (c catalog) keys() []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// text returns the copy of key with each {name} replaced by the value after it in args
// (name, value, name, value …). A missing key shows as itself, so a gap is seen, never
// a blank; the catalog test keeps gaps out of a release.
func (c catalog) text(key string, args ...string) string {
	s, ok := c[key]
	if !ok {
		return key
	}
	for i := 0; i+1 < len(args); i += 2 {
		s = strings.ReplaceAll(s, "{"+args[i]+"}", args[i+1])
	}
	return s
}

// requestLang decides a request's language: a valid ?lang= first, then the cookie of an
// earlier choice, then the signed-in account's choice, then Accept-Language. chosen
// reports a ?lang= to remember.
func requestLang(r *http.Request) (lang string, chosen bool) {
	if q := r.URL.Query().Get("lang"); isLang(q) {
		return q, true
	}
	if ck, err := r.Cookie(langCookie); err == nil && isLang(ck.Value) {
		return ck.Value, false
	}
	if s, ok := SignedInFrom(r.Context()); ok && isLang(s.Account.Language) {
		return s.Account.Language, false
	}
	if al := r.Header.Get("Accept-Language"); al != "" {
		tags, _, err := language.ParseAcceptLanguage(al)
		if err == nil && len(tags) > 0 {
			_, idx, conf := langMatcher.Match(tags...)
			if conf != language.No {
				return languages[idx], false
			}
		}
	}
	return LangEnglish, false
}

func isLang(s string) bool { return s == LangEnglish || s == LangGerman }

// setLangCookie remembers an explicit choice of language in the browser for a year.
func setLangCookie(c echo.Context, lang string, secure bool) {
	c.SetCookie(&http.Cookie{Name: langCookie, Value: lang, Path: "/", MaxAge: int(365 * 24 * time.Hour / time.Second),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
}

// clearLangCookie forgets the choice: Accept-Language decides again.
func clearLangCookie(c echo.Context, secure bool) {
	c.SetCookie(&http.Cookie{Name: langCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
}
