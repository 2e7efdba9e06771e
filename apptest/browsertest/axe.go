package browsertest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/chromedp/chromedp"
)

// axePackage is the folder whose package.json pins axe-core; `npm ci` there installs it.
const axePackage = "apptest/browsertest/testdata/axe"

// MissingAxe is the message a test skips (or, under CI, fails) with when axe-core is not
// installed.
const MissingAxe = "axe-core is not installed: run npm ci --prefix " + axePackage + " to run the accessibility checks"

// WCAGTags are the axe-core rule tags checked: WCAG 2.0, 2.1 and 2.2 at levels A and AA.
var WCAGTags = []string{"wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"}

// axeSource reads axe.min.js once per test binary.
var axeSource = sync.OnceValues(func() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, axePackage, "node_modules", "axe-core", "axe.min.js"))
	return string(b), err
})

// HasAxe reports whether axe-core is installed. A test that does more than check
// accessibility on a page may go on without it, and call Unavailable(t, MissingAxe) at its
// end.
func HasAxe() bool {
	_, err := axeSource()
	return err == nil
}

// Violation is one axe-core rule the page breaks, with the elements that break it.
type Violation struct {
	ID      string `json:"id"`
	Impact  string `json:"impact"`
	Help    string `json:"help"`
	HelpURL string `json:"helpUrl"`
	Nodes   []struct {
		Target         json.RawMessage `json:"target"` // CSS selectors (nested for shadow DOM)
		FailureSummary string          `json:"failureSummary"`
	} `json:"nodes"`
}

func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s <%s>", v.ID, v.Impact, v.Help, v.HelpURL)
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "\n\t\t%s: %s", n.Target, describe(n.FailureSummary))
	}
	return b.String()
}

// Axe runs axe-core's WCAG 2.0/2.1/2.2 A and AA rules on the page and returns what it
// breaks. It injects axe.min.js through the DevTools protocol (Runtime.evaluate), which
// a page's Content-Security-Policy does not govern, so the pages keep a CSP that allows
// no script at all. Without axe-core installed it skips the test (fails under CI=true).
func (p *Page) Axe() []Violation {
	p.t.Helper()
	src, err := axeSource()
	if err != nil {
		Unavailable(p.t, MissingAxe)
	}
	p.do("inject axe-core", chromedp.Evaluate[chromedp.Void](src))
	tags, _ := json.Marshal(WCAGTags)
	script := fmt.Sprintf(`axe.run(document, {runOnly: {type: "tag", values: %s}, resultTypes: ["violations"]})
		.then(r => JSON.stringify(r.violations))`, tags)
	out := run(p, "run axe-core", chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	var vs []Violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		p.t.Fatalf("axe-core's result: %v", err)
	}
	return vs
}

// CheckAccessible fails the test (without stopping it) for every axe-core violation on
// the page, naming the page, the rule, its impact and the elements.
func (p *Page) CheckAccessible(name string) {
	p.t.Helper()
	for _, v := range p.Axe() {
		p.t.Errorf("%s: accessibility: %s", name, v)
	}
}
