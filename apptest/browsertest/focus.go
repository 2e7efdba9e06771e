package browsertest

import "github.com/chromedp/chromedp"

// FocusedID returns the id of the element that has the keyboard focus ("" for none or
// one without an id): for keyboard tests that tab to a form field.
func (p *Page) FocusedID() string {
	p.t.Helper()
	return run(p, "focused element's id", chromedp.Evaluate[string](`(document.activeElement || {}).id || ""`))
}

// TabToID presses Tab until the element with the id has the focus, at most max times.
func (p *Page) TabToID(id string, max int) {
	p.t.Helper()
	var seen []string
	for range max {
		p.Press(Tab)
		got := p.FocusedID()
		if got == id {
			return
		}
		seen = append(seen, got)
	}
	p.t.Fatalf("%d presses of Tab never focused #%s; the focus went %q", max, id, seen)
}
