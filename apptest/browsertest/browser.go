// Package browsertest drives the pages in a real headless Chromium (Debian's chromium,
// through the DevTools protocol with chromedp) for every package's page tests: one
// browser per test, isolated browser contexts for people who must not share cookies,
// navigation, reading and filling the page, the keyboard, screenshots of the pages in a
// folder for people to look at, and axe-core's WCAG checks run inside the page.
//
// Without Chromium (or without axe-core's npm package, for the accessibility check) a test
// skips with what to install, so `go test` works on a bare machine; under CI=true it fails
// instead, so CI never passes without running them.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// MissingChromium is the message a test skips (or, under CI, fails) with when no
// Chromium is installed.
const MissingChromium = "headless Chromium not found: install Debian's chromium (apt-get install chromium) to run the page tests"

// ScreenshotDirEnv names the folder screenshots go to; unset, they go to the folder
// "screenshots" at the module's root (git ignores it).
const ScreenshotDirEnv = "EXT_SCREENSHOT_DIR"

// actionTimeout bounds one step in the page. Generous: CI runs the whole suite with the
// race detector on two cores, and a step that hangs should fail, not stall the suite.
const actionTimeout = 60 * time.Second

// Chromium returns the path of the installed Chromium, or "" when there is none.
func Chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Unavailable skips the test with msg (what to install), or fails it under CI=true, where
// every page test must run.
func Unavailable(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: the page tests must run, not skip)")
	}
	t.Skip(msg)
}

// Browser is one headless Chromium, ended with the test.
type Browser struct {
	ctx context.Context // the browser's: a child context is a new tab
}

// New starts a headless Chromium for the test, or skips it (fails under CI=true) when none
// is installed.
func New(t testing.TB) *Browser {
	t.Helper()
	path := Chromium()
	if path == "" {
		Unavailable(t, MissingChromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// The pages' own language comes from ?lang= and its cookie; the browser asks for
		// English, as most browsers out there do.
		chromedp.Flag("lang", "en-US"),
		chromedp.Flag("accept-lang", "en-US,en"),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to start its sandbox as root (containers, CI).
		opts = append(opts, chromedp.NoSandbox)
	}
	// Not t.Context(): that ends before the cleanups, and cancelling here waits for the
	// browser to exit, so it must run as a cleanup, after the test's pages are done.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first run starts the browser and binds its life to ctx, so it has no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", path, err)
	}
	return &Browser{ctx: ctx}
}

// NewContext opens a tab in a new browser context: its own cookies and storage, as
// another person's browser (or a private window) would have. t is the (sub)test that uses
// the page: its failures go there, and the context closes when it ends.
func (b *Browser) NewContext(t testing.TB) *Page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // opens the tab; no deadline, as above
		t.Fatalf("open a browser context: %v", err)
	}
	return &Page{t: t, ctx: ctx}
}

// Page is one tab in its own browser context. Its methods fail the test on an error.
type Page struct {
	t   testing.TB
	ctx context.Context
}

// do runs steps with the action timeout, failing the test with what on an error.
func (p *Page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// run runs one action with the action timeout and returns its value.
func run[T any](p *Page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// Open loads url and returns the HTTP status of the page it ends on (after redirects).
func (p *Page) Open(url string) int {
	p.t.Helper()
	res := run(p, "open "+url, chromedp.NavigateResponse(url))
	if res == nil {
		p.t.Fatalf("open %s: no response", url)
	}
	return int(res.Status)
}

// Location returns the address of the page.
func (p *Page) Location() string {
	p.t.Helper()
	return run(p, "location", chromedp.Location())
}

// Path returns the path and query of the page's address.
func (p *Page) Path() string {
	p.t.Helper()
	return run(p, "path", chromedp.Evaluate[string](`location.pathname + location.search`))
}

// Lang returns the lang attribute of the page's html element.
func (p *Page) Lang() string {
	p.t.Helper()
	return run(p, "html lang", chromedp.Evaluate[string](`document.documentElement.lang`))
}

// Text returns the visible text of the first element that matches the CSS selector,
// waiting for it to appear.
func (p *Page) Text(css string) string {
	p.t.Helper()
	return run(p, "text of "+css, chromedp.Text(chromedp.CSS(css)))
}

// Exists reports whether an element matches the CSS selector now (without waiting).
func (p *Page) Exists(css string) bool {
	p.t.Helper()
	return run(p, "exists "+css, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, css)))
}

// Fill types value into the field that matches the CSS selector, after what it holds.
func (p *Page) Fill(css, value string) {
	p.t.Helper()
	p.do("fill "+css, chromedp.SendKeys(chromedp.CSS(css), value))
}

// Click clicks the element that matches the CSS selector, for an element that changes
// the page in place; use Follow for one that loads another page.
func (p *Page) Click(css string) {
	p.t.Helper()
	p.do("click "+css, chromedp.Click(chromedp.CSS(css)))
}

// Follow clicks the link or button that matches the CSS selector and waits until the
// page it leads to has loaded.
func (p *Page) Follow(css string) {
	p.t.Helper()
	run(p, "follow "+css, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(css))))
}

// Keys that Press takes, besides text.
const (
	Tab   = kb.Tab
	Enter = kb.Enter
)

// Press sends keys to the focused element, as a keyboard would: text, Tab, Enter.
func (p *Page) Press(keys string) {
	p.t.Helper()
	p.do(fmt.Sprintf("press %q", keys), chromedp.KeyEvent(keys))
}

// PressAndWait presses keys that load another page (Enter on a link or a submit button)
// and waits until it has loaded.
func (p *Page) PressAndWait(keys string) {
	p.t.Helper()
	run(p, fmt.Sprintf("press %q and wait", keys), chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.KeyEvent(keys)))
}

// Focused describes the element that has the keyboard focus: its tag, in lower case, and
// its text or value, such as "button: Sign out" ("body: " when nothing has the focus).
func (p *Page) Focused() string {
	p.t.Helper()
	return run(p, "focused element", chromedp.Evaluate[string](
		`(e => e.tagName.toLowerCase() + ": " + (e === document.body ? "" : (e.innerText || e.value || "").trim()))(document.activeElement || document.body)`))
}

// TabTo presses Tab until the focused element is want (as Focused describes it), at most
// max times, and fails the test with the path of the focus if it never gets there.
func (p *Page) TabTo(want string, max int) {
	p.t.Helper()
	var seen []string
	for range max {
		p.Press(Tab)
		got := p.Focused()
		if got == want {
			return
		}
		seen = append(seen, got)
	}
	p.t.Fatalf("%d presses of Tab never focused %q; the focus went %q", max, want, seen)
}

// Screenshot writes a full-page PNG of the page as name.png into the screenshot folder
// (ScreenshotDir) and returns its path.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	png := run(p, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := ScreenshotDir(p.t)
	path := filepath.Join(dir, fileName.ReplaceAllString(name, "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	return path
}

var fileName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// ScreenshotDir returns (and creates) the folder screenshots go to: $EXT_SCREENSHOT_DIR,
// or "screenshots" at the module's root.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(ScreenshotDirEnv)
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("screenshot folder: %v (set %s)", err, ScreenshotDirEnv)
		}
		dir = filepath.Join(root, "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot folder: %v", err)
	}
	return dir
}

// moduleRoot is the folder of the go.mod above the working directory: a test runs in
// its package's folder inside the module.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// describe shortens a text for a failure message.
func describe(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
