package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"
)

// Download clicks the link that matches the CSS selector as a person would, lets the
// browser save what it downloads into a folder of the test's, and returns the file's name
// (the one the browser chose, from Content-Disposition) and its content. The test fails
// when no file arrives within the action timeout.
func (p *Page) Download(css string) (name string, content []byte) {
	p.t.Helper()
	dir := p.t.TempDir()
	c := chromedp.FromContext(p.ctx)
	allow := func(ctx context.Context, _ *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, c.Browser, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, BrowserContextID: c.BrowserContextID, DownloadPath: dir})
		return chromedp.Void{}, err
	}
	p.do("allow downloads", allow)
	p.do("click "+css, chromedp.Click(chromedp.CSS(css)))
	deadline := time.Now().Add(actionTimeout)
	for time.Now().Before(deadline) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			p.t.Fatalf("download folder: %v", err)
		}
		// Chromium writes into NAME.crdownload (or a temporary name) and renames the
		// file when it is complete.
		for _, e := range entries {
			if n := e.Name(); !strings.HasSuffix(n, ".crdownload") && !strings.HasPrefix(n, ".") {
				b, err := os.ReadFile(filepath.Join(dir, n))
				if err != nil {
					p.t.Fatalf("read the download: %v", err)
				}
				return n, b
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("click %s: no download within %s", css, actionTimeout)
	return "", nil
}
