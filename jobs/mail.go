package jobs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/riverqueue/river"
	gomail "github.com/wneessen/go-mail"
)

// E-mail: the invitation and password-reset mails, sent by a job so that a slow or
// failing mail server never holds up a page. The link in a mail is a secret: the job's
// stored arguments hold it sealed (extension.Store.SealMailLink), bound to the instance
// and the recipient, and it is opened only to write the mail. A link that expired before
// the mail could go out is not sent. A temporary failure of the mail server (4xx, a lost
// connection) is retried with the queue's backoff; a permanent one (5xx) ends the job and
// is logged, without the link.

// MailConfig is the e-mail setup (EXT_SMTP_URL, EXT_MAIL_FROM).
type MailConfig struct {
	SMTP SMTPConfig
	From string // the sender: an address, or "Name <address>"
	// RootCAs are the authorities a server's certificate must chain to; nil: the
	// system's. Tests give their server's.
	RootCAs *x509.CertPool
	Timeout time.Duration // of one delivery, connection included; 0: 30 s
}

// ParseMailFrom checks a sender address (EXT_MAIL_FROM) and returns it as a mail header
// writes it. Its errors do not quote the value.
func ParseMailFrom(raw string) (string, error) {
	a, err := mail.ParseAddress(raw)
	if err != nil || strings.ContainsAny(a.Address, "\r\n") || !strings.Contains(a.Address, "@") {
		return "", errors.New(`not an e-mail address: want "extension@example.com" or "Extension <extension@example.com>"`)
	}
	return a.String(), nil
}

// InvitationMail is an invitation's e-mail; it has frontend.InvitationMail's fields, so
// cmd converts one into the other.
type InvitationMail struct {
	InstanceID  string
	To          string
	InviterName string
	ContextName string
	Role        string
	Lang        string
	Link        extension.Secret
	Expires     time.Time
}

// ResetMail is a password reset's e-mail, as frontend.ResetMail.
type ResetMail struct {
	InstanceID  string
	To          string
	Name        string
	ContextName string
	Lang        string
	Link        extension.Secret
	Expires     time.Time
}

// KindSendMail is the job kind of an e-mail.
const KindSendMail = "send_mail"

// What a mail job sends.
const (
	mailInvitation = "invitation"
	mailReset      = "password_reset"
)

// mailAttempts is how often a mail is tried: with the queue's backoff (5 s doubling, at
// most an hour apart) the last try is some four hours after the first.
const mailAttempts = 12

// ErrMailOff is returned by the Send methods of a queue built without MailConfig.
var ErrMailOff = errors.New("jobs: e-mail is not configured (EXT_SMTP_URL)")

// sendMailArgs are a mail job's stored arguments: everything to write the mail, the link
// sealed.
type sendMailArgs struct {
	For
	Mail        string    `json:"mail"` // mailInvitation or mailReset
	To          string    `json:"to"`
	Lang        string    `json:"lang"`
	Name        string    `json:"name,omitempty"` // the inviter (invitation) or the account's name (reset)
	ContextName string    `json:"context_name,omitempty"`
	Role        string    `json:"role,omitempty"`
	SealedLink  string    `json:"sealed_link"`
	Expires     time.Time `json:"expires"`
}

func (sendMailArgs) Kind() string { return KindSendMail }

func (sendMailArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: mailAttempts}
}

// SendInvitation enqueues an invitation's e-mail.
func (j *Jobs) SendInvitation(ctx context.Context, m InvitationMail) error {
	return j.enqueueMail(ctx, sendMailArgs{For: For{m.InstanceID}, Mail: mailInvitation, To: m.To, Lang: m.Lang,
		Name: m.InviterName, ContextName: m.ContextName, Role: m.Role, Expires: m.Expires}, m.Link)
}

// SendPasswordReset enqueues a password reset's e-mail.
func (j *Jobs) SendPasswordReset(ctx context.Context, m ResetMail) error {
	return j.enqueueMail(ctx, sendMailArgs{For: For{m.InstanceID}, Mail: mailReset, To: m.To, Lang: m.Lang,
		Name: m.Name, ContextName: m.ContextName, Expires: m.Expires}, m.Link)
}

func (j *Jobs) enqueueMail(ctx context.Context, args sendMailArgs, link extension.Secret) error {
	if j.cfg.Mail == nil {
		return ErrMailOff
	}
	if _, err := mail.ParseAddress(args.To); err != nil || link.IsZero() {
		return fmt.Errorf("enqueue %s mail: %w: no valid recipient or no link", args.Mail, ErrBadMail)
	}
	sealed, err := j.store.SealMailLink(link, args.InstanceID, args.To)
	if err != nil {
		return fmt.Errorf("enqueue %s mail: %w", args.Mail, err)
	}
	args.SealedLink = sealed
	return j.Enqueue(ctx, args)
}

// ErrBadMail is a mail that cannot be written: no valid recipient, no link.
var ErrBadMail = errors.New("jobs: bad mail")

func (j *Jobs) registerMail() {
	river.AddWorker(j.workers, &mailWorker{j: j})
}

type mailWorker struct {
	river.WorkerDefaults[sendMailArgs]
	j *Jobs
}

func (w *mailWorker) Work(ctx context.Context, job *river.Job[sendMailArgs]) error {
	return w.j.forInstance(ctx, job.Args.InstanceID, func(in *extension.Instance, _ InstanceAPI) error {
		return w.j.sendMail(ctx, job.ID, job.Args, in)
	})
}

// errLinkExpired ends the job of a mail whose link expired before it could be sent.
var errLinkExpired = errors.New("the link expired before the mail could be sent")

func (j *Jobs) sendMail(ctx context.Context, jobID int64, args sendMailArgs, in *extension.Instance) error {
	log := j.logger.With("instance_id", args.InstanceID, "job_id", jobID, "mail", args.Mail)
	cfg := j.cfg.Mail
	if cfg == nil {
		// This process was started without EXT_SMTP_URL: another one with it may work
		// the job, or this one after a restart with it.
		return ErrMailOff
	}
	if !time.Now().Before(args.Expires) {
		log.InfoContext(ctx, "e-mail not sent: its link expired first")
		return Cancel(errLinkExpired)
	}
	link, err := j.store.OpenMailLink(args.SealedLink, args.InstanceID, args.To)
	if err != nil {
		log.ErrorContext(ctx, "e-mail not sent: its link does not open (was the key that sealed it dropped?)", "error", err.Error())
		return Cancel(errors.New("the sealed link does not open"))
	}
	if args.ContextName == "" {
		args.ContextName = in.ContextName
	}
	msg, err := composeMail(cfg.From, args, link)
	if err != nil {
		log.ErrorContext(ctx, "e-mail not sent: it cannot be written", "error", err.Error())
		return Cancel(err)
	}
	err = deliver(ctx, cfg, msg)
	if err == nil {
		log.InfoContext(ctx, "e-mail sent")
		return nil
	}
	f := classifySMTP(err, link)
	if f.permanent {
		log.ErrorContext(ctx, "e-mail could not be sent: the mail server refused it for good", "smtp_code", f.code, "error", f.Error())
		return Cancel(f)
	}
	return f // logged by the queue's failure log, retried
}

// deliver sends one message through the configured server.
func deliver(ctx context.Context, cfg *MailConfig, msg *gomail.Msg) error {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	s := cfg.SMTP
	opts := []gomail.Option{
		gomail.WithPort(s.Port),
		gomail.WithTimeout(timeout),
		gomail.WithTLSConfig(&tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs}),
	}
	switch {
	case s.ImplicitTLS:
		opts = append(opts, gomail.WithSSL())
	case s.RequireTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if s.Username != "" {
		opts = append(opts, gomail.WithOpportunisticSMTPAuth(gomail.SMTPAuthPlain, gomail.SMTPAuthLogin),
			gomail.WithUsername(s.Username), gomail.WithPassword(s.Password.Reveal()))
	}
	client, err := gomail.NewClient(s.Host, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return client.DialAndSendWithContext(ctx, msg)
}

// smtpFailure is a failed delivery as the job records it: the server's code and words
// (with the link masked, as a spam filter may quote it), never the message.
type smtpFailure struct {
	permanent bool
	code      int
	text      string
}

func (f *smtpFailure) Error() string { return f.text }

// errNoStartTLS is go-mail's refusal to go on with a server that does not offer STARTTLS
// when TLS is required (its text, at the pinned version: no error value to match).
const errNoStartTLS = "does not support STARTTLS"

// classifySMTP tells a permanent failure (a 5xx answer; a server that will not speak TLS
// when it must) from a temporary one (a 4xx answer, a lost connection, a timeout).
func classifySMTP(err error, link extension.Secret) *smtpFailure {
	text := maskLink(err.Error(), link)
	var se *gomail.SendError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		code := se.ErrorCode()
		return &smtpFailure{permanent: !se.IsTemp() && code >= 500, code: code, text: "mail server: " + text}
	case errors.As(err, &te):
		return &smtpFailure{permanent: te.Code >= 500, code: te.Code, text: "mail server: " + text}
	case strings.Contains(err.Error(), errNoStartTLS):
		return &smtpFailure{permanent: true, text: "the mail server does not offer STARTTLS, so the mail would travel unencrypted: not sent"}
	}
	return &smtpFailure{text: "mail server: " + text}
}

// maskLink hides the link, and its last part (the token), in a text.
func maskLink(text string, link extension.Secret) string {
	l := link.Reveal()
	if l == "" {
		return text
	}
	text = strings.ReplaceAll(text, l, "[link]")
	if i := strings.LastIndexByte(l, '/'); i >= 0 && len(l)-i > 8 {
		text = strings.ReplaceAll(text, l[i+1:], "[token]")
	}
	return text
}
