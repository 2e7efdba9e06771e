package browsertest

import (
	"encoding/json"
	"fmt"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Value returns the value of the form field that matches the CSS selector: what an input
// holds, the chosen option of a select.
func (p *Page) Value(css string) string {
	p.t.Helper()
	return run(p, "value of "+css, chromedp.Value(chromedp.CSS(css)))
}

// Select chooses the option with the value in the select that matches the CSS selector.
func (p *Page) Select(css, value string) {
	p.t.Helper()
	p.do("select "+value+" in "+css, chromedp.SetValue(chromedp.CSS(css), value))
}

// Status returns the HTTP status of the page as the browser loaded it, after a link, a
// redirect or a form's submission alike (the navigation's response); 0 when the browser
// does not tell.
func (p *Page) Status() int {
	p.t.Helper()
	return run(p, "status", chromedp.Evaluate[int](`(performance.getEntriesByType("navigation")[0] || {}).responseStatus || 0`))
}

// PostForm builds a form in the page that posts fields to action, submits it as a form
// made by hand on the page's own origin would be, waits for the answer and returns its
// status: for tests that the server refuses what its pages never offer.
func (p *Page) PostForm(action string, fields map[string]string) int {
	p.t.Helper()
	if fields == nil {
		fields = map[string]string{}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		p.t.Fatalf("post a form to %s: %v", action, err)
	}
	script := fmt.Sprintf(`(() => {
	const f = document.createElement("form");
	f.method = "post";
	f.action = %q;
	for (const [k, v] of Object.entries(%s)) {
		const i = document.createElement("input");
		i.type = "hidden"; i.name = k; i.value = v;
		f.appendChild(i);
	}
	document.body.appendChild(f);
	f.submit();
})()`, action, b)
	run(p, "post a form to "+action, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Evaluate[chromedp.Void](script)))
	return p.Status()
}
