// Package frontend owns everything a browser sees: the page engine (one layout, one
// stylesheet, the same security headers on every page, German and English), the browser
// session (cookie, start, end, require), cross-site request refusal, error pages, and the
// pages under /app/{instanceId}.
//
// Other edge packages (atrek's single sign-on) start sessions and render pages through
// interfaces they declare; cmd hands them this package's Sessions and Pages. The package
// uses the domain (extension) and nothing of the other edge packages.
package frontend
