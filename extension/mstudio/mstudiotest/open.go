package mstudiotest

import (
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
// and again, unlike the key it leads to.
func (s *Server) openFrontend(w http.ResponseWriter, r *http.Request) {
	if s.opts.FrontendURL == "" {
		writeError(w, http.StatusNotFound, "NotFound", "no frontend URL is configured (Options.FrontendURL)")
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
		writeError(w, http.StatusForbidden, "PermissionDenied", "this user cannot open this instance: "+err.Error())
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
