package frontend

import (
	"context"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// Mailer sends the e-mails of invitations and password resets (EXT_SMTP_URL). A page
// hands the link over and goes on: the mail is sent later, from a job, so a slow or
// failing mail server never holds up a page. The link is a secret: an implementation must
// never store or log it in plain text.
type Mailer interface {
	SendInvitation(ctx context.Context, m InvitationMail) error
	SendPasswordReset(ctx context.Context, m ResetMail) error
}

// InvitationMail is an invitation's e-mail.
type InvitationMail struct {
	InstanceID  string
	To          string // the invited address, normalised
	InviterName string
	ContextName string // the project or organisation, "" while unknown
	Role        string
	Lang        string // LangEnglish or LangGerman: the inviter's language
	Link        extension.Secret
	Expires     time.Time
}

// ResetMail is a password reset's e-mail.
type ResetMail struct {
	InstanceID  string
	To          string
	Name        string
	ContextName string
	Lang        string
	Link        extension.Secret
	Expires     time.Time
}
