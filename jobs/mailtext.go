package jobs

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/extension-backend/extension-backend/extension"
	gomail "github.com/wneessen/go-mail"
)

// The words of the e-mails, in English and German (the language the mail names; English
// when it names another). Plain text: a link, when it expires, and what to do when the
// mail was not expected.

// mailText is one language's copy.
type mailText struct {
	lang string
	// invitation
	inviteSubject, inviteSubjectNoContext string // %s: the project or organisation
	inviteLead, inviteLeadNoContext       string // %[1]s: inviter, %[2]s: role, %[3]s: context
	inviteAction, inviteIgnore            string
	someone                               string // the inviter when their name is not known
	roles                                 map[string]string
	// reset
	resetSubject                  string
	resetGreeting, resetGreeting0 string // %s: the account's name
	resetLead, resetLeadNoContext string // %s: context
	resetAction, resetIgnore      string
	// both
	greeting, expires, signature string // expires: %s is the time
	months                       [12]string
}

var mailEnglish = mailText{
	lang:                   "en",
	inviteSubject:          "Invitation to %s",
	inviteSubjectNoContext: "Invitation to a team",
	inviteLead:             "%[1]s has invited you to work in “%[3]s” as %[2]s.",
	inviteLeadNoContext:    "%[1]s has invited you to their team as %[2]s.",
	inviteAction:           "To accept, open this link and choose your name and a password:",
	inviteIgnore:           "If you did not expect this invitation, you can ignore this e-mail: nothing happens unless the link is opened.",
	someone:                "Someone from your team",
	roles:                  map[string]string{extension.RoleOwner: "an owner", extension.RoleAdmin: "an administrator", extension.RoleMember: "a member"},
	resetSubject:           "Reset your password",
	resetGreeting:          "Hello %s,",
	resetGreeting0:         "Hello,",
	resetLead:              "someone asked for a new password for your account in “%s” with this e-mail address.",
	resetLeadNoContext:     "someone asked for a new password for your account with this e-mail address.",
	resetAction:            "To choose a new password, open this link:",
	resetIgnore:            "If you did not ask for this, you can ignore this e-mail: your password stays as it is.",
	greeting:               "Hello,",
	expires:                "The link works once, until %s.",
	signature:              "This e-mail was sent automatically; replies are not read.",
	months: [12]string{"January", "February", "March", "April", "May", "June", "July", "August", "September",
		"October", "November", "December"},
}

var mailGerman = mailText{
	lang:                   "de",
	inviteSubject:          "Einladung zu „%s“",
	inviteSubjectNoContext: "Einladung in ein Team",
	inviteLead:             "%[1]s hat dich eingeladen, in „%[3]s“ als %[2]s mitzuarbeiten.",
	inviteLeadNoContext:    "%[1]s hat dich in das eigene Team eingeladen, als %[2]s.",
	inviteAction:           "Um die Einladung anzunehmen, öffne diesen Link und wähle deinen Namen und ein Passwort:",
	inviteIgnore:           "Wenn du diese Einladung nicht erwartet hast, kannst du diese E-Mail ignorieren: Solange niemand den Link öffnet, passiert nichts.",
	someone:                "Jemand aus deinem Team",
	roles:                  map[string]string{extension.RoleOwner: "Inhaber", extension.RoleAdmin: "Administrator", extension.RoleMember: "Mitglied"},
	resetSubject:           "Passwort zurücksetzen",
	resetGreeting:          "Hallo %s,",
	resetGreeting0:         "Hallo,",
	resetLead:              "jemand hat mit dieser E-Mail-Adresse ein neues Passwort für dein Konto in „%s“ angefordert.",
	resetLeadNoContext:     "jemand hat mit dieser E-Mail-Adresse ein neues Passwort für dein Konto angefordert.",
	resetAction:            "Um ein neues Passwort zu wählen, öffne diesen Link:",
	resetIgnore:            "Wenn du das nicht angefordert hast, kannst du diese E-Mail ignorieren: Dein Passwort bleibt, wie es ist.",
	greeting:               "Hallo,",
	expires:                "Der Link funktioniert einmal, bis %s.",
	signature:              "Diese E-Mail wurde automatisch verschickt; Antworten liest niemand.",
	months: [12]string{"Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
		"Oktober", "November", "Dezember"},
}

func mailTextFor(lang string) mailText {
	if lang == "de" {
		return mailGerman
	}
	return mailEnglish
}

// when writes a time in the language, in UTC (the mail cannot know the reader's zone).
func (t mailText) when(at time.Time) string {
	at = at.UTC()
	if t.lang == "de" {
		return fmt.Sprintf("%d. %s %d, %s Uhr (UTC)", at.Day(), t.months[at.Month()-1], at.Year(), at.Format("15:04"))
	}
	return fmt.Sprintf("%d %s %d, %s UTC", at.Day(), t.months[at.Month()-1], at.Year(), at.Format("15:04"))
}

// oneLine makes a name from outside (a project's name, a user's) safe for a subject and a
// line of text: control and format characters become spaces, and it is bounded.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 120 {
		s = string(r[:120]) + "…"
	}
	return s
}

// mailContent is a mail's subject and plain-text body.
func mailContent(args sendMailArgs, link extension.Secret) (subject, body string) {
	t := mailTextFor(args.Lang)
	ctxName, name := oneLine(args.ContextName), oneLine(args.Name)
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	switch args.Mail {
	case mailInvitation:
		subject = t.inviteSubjectNoContext
		if ctxName != "" {
			subject = fmt.Sprintf(t.inviteSubject, ctxName)
		}
		if name == "" {
			name = t.someone
		}
		role := t.roles[args.Role]
		if role == "" {
			role = t.roles[extension.RoleMember]
		}
		line(t.greeting)
		line("")
		if ctxName != "" {
			line(fmt.Sprintf(t.inviteLead, name, role, ctxName))
		} else {
			line(fmt.Sprintf(t.inviteLeadNoContext, name, role))
		}
		line("")
		line(t.inviteAction)
		line(link.Reveal())
		line("")
		line(fmt.Sprintf(t.expires, t.when(args.Expires)))
		line("")
		line(t.inviteIgnore)
	default:
		subject = t.resetSubject
		if name != "" {
			line(fmt.Sprintf(t.resetGreeting, name))
		} else {
			line(t.resetGreeting0)
		}
		line("")
		if ctxName != "" {
			line(fmt.Sprintf(t.resetLead, ctxName))
		} else {
			line(t.resetLeadNoContext)
		}
		line("")
		line(t.resetAction)
		line(link.Reveal())
		line("")
		line(fmt.Sprintf(t.expires, t.when(args.Expires)))
		line("")
		line(t.resetIgnore)
	}
	line("")
	line("-- ")
	line(t.signature)
	return subject, b.String()
}

// composeMail builds the message.
func composeMail(from string, args sendMailArgs, link extension.Secret) (*gomail.Msg, error) {
	subject, body := mailContent(args, link)
	m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	if err := m.From(from); err != nil {
		return nil, fmt.Errorf("sender address: %w", err)
	}
	if err := m.To(args.To); err != nil {
		return nil, fmt.Errorf("recipient address: %w", err)
	}
	m.Subject(subject)
	m.SetDate()
	m.SetMessageID()
	m.SetGenHeader(gomail.HeaderContentLang, mailTextFor(args.Lang).lang)
	// An automatic mail: no vacation replies to it (RFC 3834, and Exchange's own header).
	m.SetGenHeader("Auto-Submitted", "auto-generated")
	m.SetGenHeader(gomail.HeaderXAutoResponseSuppress, "All")
	m.SetBodyString(gomail.TypeTextPlain, body)
	return m, nil
}
