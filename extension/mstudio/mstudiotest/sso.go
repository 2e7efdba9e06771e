package mstudiotest

// ssoState holds single sign-on keys, refresh tokens, OAuth2 codes and sessions.
type ssoState struct{}

func newSSOState() *ssoState { return &ssoState{} }

// ssoRoutes registers ATReK, refresh, session-token and OAuth2 routes.
func (s *Server) ssoRoutes() {}
