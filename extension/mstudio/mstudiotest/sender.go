package mstudiotest

// sender delivers lifecycle webhooks with the platform's semantics.
type sender struct{}

func newSender(s *Server) *sender { return &sender{} }

func (sd *sender) close() {}

// senderRoutes registers the trigger API and the execution log.
func (s *Server) senderRoutes() {}
