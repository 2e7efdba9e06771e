package mstudiotest

import (
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// OpenURL is the link that opens an instance's frontend as a user would from the control
// panel: the simulator mints a single sign-on key for the user and redirects to the
// extension's frontend URL. userID may be empty: the first user with access.
func (s *Server) OpenURL(base, instanceID, userID string) string {
	u := base + "/internal/open/" + url.PathEscape(instanceID)
	if userID != "" {
		u += "?userId=" + url.QueryEscape(userID)
	}
	return u
}

// openFrontend serves GET /internal/open/{id}?userId=: what a click on the extension in
// the control panel does. The key is minted at the click, so the link can be used again
// and again, unlike the key it leads to. It is a browser's route, so a click the control
// panel would not offer (a user without access, a removed or disabled instance) gets a
// page, not an API error body.
func (s *Server) openFrontend(w http.ResponseWriter, r *http.Request) {
	if s.opts.FrontendURL == "" {
		writeClickRefusal(w, http.StatusNotFound, "No frontend", "No frontend URL is configured (Options.FrontendURL), so there is nothing to open.")
		return
	}
	userID := r.URL.Query().Get("userId")
	if userID == "" {
		for _, u := range s.Users() {
			if u.Access {
				userID = u.ID
				break
			}
		}
	}
	id := r.PathValue("id")
	key, err := s.NewRetrievalKey(id, userID)
	if err != nil {
		s.refuseClick(w, id, userID, err)
		return
	}
	in, _ := s.Instance(id)
	target := strings.NewReplacer(
		":accessTokenRetrievalKey", url.QueryEscape(key),
		":userId", url.QueryEscape(userID),
		":extensionInstanceId", url.QueryEscape(in.ID),
		":contextId", url.QueryEscape(in.ContextID),
		":context", url.QueryEscape(in.ContextKind),
		":extensionId", url.QueryEscape(s.opts.ExtensionID),
	).Replace(s.opts.FrontendURL)
	http.Redirect(w, r, target, http.StatusFound)
}

// refuseClick explains why the control panel would not let this user open the instance.
func (s *Server) refuseClick(w http.ResponseWriter, instanceID, userID string, err error) {
	in, known := s.Instance(instanceID)
	var ae *refusal
	switch {
	case !errors.As(err, &ae):
		writeClickRefusal(w, http.StatusInternalServerError, "Error", "The simulator could not open the extension.")
	case !known || in.Removed:
		writeClickRefusal(w, http.StatusNotFound, "Extension not found",
			"This extension instance is not installed (or was removed), so the control panel shows no link to it.")
	case in.Disabled:
		writeClickRefusal(w, http.StatusForbidden, "Extension disabled",
			"This extension instance is disabled, so the control panel does not open it.")
	default:
		who := "This user"
		for _, u := range s.Users() {
			if u.ID == userID {
				who = u.Name
			}
		}
		writeClickRefusal(w, http.StatusForbidden, "No access",
			who+" has no access to the "+in.ContextKind+" this extension is installed in, so the control panel "+
				"would not show it to them. Open it as a user with access (GET /internal/users lists them).")
	}
}

var clickRefusalPage = template.Must(template.New("refusal").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · mStudio simulator</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p><p><small>mStudio simulator</small></p></body></html>
`))

// writeClickRefusal answers a browser with a small plain page, as the control panel would.
func writeClickRefusal(w http.ResponseWriter, status int, title, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = clickRefusalPage.Execute(w, struct{ Title, Message string }{title, message})
}
