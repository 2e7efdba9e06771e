package atrek

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/labstack/echo/v4"
)

//go:embed templates/*.html
var templateFS embed.FS

// Pages rendered by the package; each is the layout plus templates/NAME.html.
const (
	pageError     = "error"
	pageApp       = "app"
	pageSignedOut = "signedout"
)

var pageNames = []string{pageError, pageApp, pageSignedOut}

// pages holds one template set per page, parsed once at New: a missing or broken page
// fails the start, not the first customer who needs it.
type pages map[string]*template.Template

func parsePages(fsys fs.FS) (pages, error) {
	p := pages{}
	for _, name := range pageNames {
		t, err := template.New(name).Option("missingkey=error").ParseFS(fsys, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("atrek: page %s: %w", name, err)
		}
		p[name] = t
	}
	return p, nil
}

// render writes a page into a buffer first, so a template failure becomes a clean 500
// instead of half a page with a 200 status.
func (p pages) render(w http.ResponseWriter, status int, name string, data any) error {
	var buf bytes.Buffer
	if err := p[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("render page %s: %w", name, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	// Our pages are never meant to be framed by anybody else: the click-through opens
	// them at the top level.
	h.Set("X-Frame-Options", "DENY")
	// The pages load nothing and run nothing; their forms post to us only.
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// problem is a failure as the customer sees it: a status and plain words. The texts are
// fixed: no key, token, id or platform answer ever goes into one.
type problem struct {
	Status  int
	Title   string
	Message string
	Hint    string
}

const openAgain = "Please open the extension again from the control panel."

var (
	problemBadLink = problem{http.StatusBadRequest, "This link is not complete",
		"The link you followed is missing something or was changed on its way here.", openAgain}
	problemNotInstalled = problem{http.StatusNotFound, "The extension is not installed yet",
		"This extension is not (yet) installed here. Installing can take a moment to finish.",
		"Wait a minute, then open the extension again from the control panel."}
	problemDisabled = problem{http.StatusForbidden, "The extension is disabled",
		"The extension is currently disabled in this project or organisation.",
		"Enable it in the control panel, then open it again from there."}
	problemRemoved = problem{http.StatusGone, "The extension was removed",
		"The extension has been removed from this project or organisation.",
		"Add it again in the control panel's marketplace if you want to use it."}
	problemUsed = problem{http.StatusBadRequest, "This link was already used",
		"Each sign-in link from the control panel works only once, and this one has been used.", openAgain}
	problemExpired = problem{http.StatusBadRequest, "This link has expired",
		"The link has expired or was already used: sign-in links from the control panel work only once and only for a short time.", openAgain}
	problemNoAccessProject = problem{http.StatusForbidden, "No access to this project",
		"You are signed in to the control panel as a user without access to this project.",
		"Sign in to the control panel as a user who may work in this project, or ask its owner for access."}
	problemNoAccessCustomer = problem{http.StatusForbidden, "No access to this organisation",
		"You are signed in to the control panel as a user without access to this organisation.",
		"Sign in to the control panel as a user who may work in this organisation, or ask its owner for access."}
	problemPlatform = problem{http.StatusBadGateway, "The control panel did not answer",
		"We could not confirm your sign-in with the control panel just now.",
		"Wait a moment, then open the extension again from the control panel."}
	problemTooMany = problem{http.StatusTooManyRequests, "Too many attempts",
		"There were too many sign-in attempts from your network in a short time.",
		"Wait a minute, then open the extension again from the control panel."}
	problemSessionEnded = problem{http.StatusUnauthorized, "Your session has ended",
		"You are not signed in, or your session has ended.", openAgain}
	problemCrossOrigin = problem{http.StatusForbidden, "Request refused",
		"This action was sent from another site and was refused for your protection.", openAgain}
	problemInternal = problem{http.StatusInternalServerError, "Something went wrong on our side",
		"The extension could not complete your request. This is our fault, not yours.",
		"Please try again in a few minutes."}
)

// fail answers with the problem's page. A problem is an answer, not an error, so the
// server's error handler (which writes JSON) does not see it.
func (h *Handler) fail(c echo.Context, p problem) error {
	return h.pages.render(c.Response(), p.Status, pageError, p)
}
