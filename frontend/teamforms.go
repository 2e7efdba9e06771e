package frontend

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

// The forms of the team page and of the invitation and password-reset links, read into
// what the handlers act on. Each parser bounds what it keeps, so a huge field costs no
// more than a short one, and names what is wrong as a copy key; the store checks again.

// Bounds of the fields, in bytes.
const (
	maxEmailField = 320 // an address has at most 254; room for spaces around it
	maxNameField  = 800 // 200 characters of up to 4 bytes
)

// linkTokenPattern is the shape of an invitation's or reset's link token: 32 random bytes
// in unpadded base64url.
var linkTokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// clipText cuts s to at most n bytes at a character boundary and drops invalid UTF-8, so
// what is shown again is text. It is for showing a field again: a parser validates what
// was sent, not what clipText leaves of it.
func clipText(s string, n int) string {
	if len(s) > n {
		n = max(n, 0)
		// Back to the start of the character at n (at most utf8.UTFMax-1 steps in text).
		for i := 0; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
			n--
		}
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// inviteForm is the invite form as entered, with what is wrong with it.
type inviteForm struct {
	Email, Role string
	// Problem is the copy key of what is wrong, Field the field it concerns ("email" or
	// "role"), so the page puts the message next to it.
	Problem, Field string
	// Domains lists the allowed domains when the address is outside them.
	Domains string
}

// parseInviteForm reads the invite form's fields email and role.
func parseInviteForm(email, role string) inviteForm {
	email = strings.TrimSpace(email)
	f := inviteForm{Email: clipText(email, maxEmailField)}
	if r, ok := parseRole(role); ok {
		f.Role = r
	} else {
		f.Problem, f.Field = "team.invite.bad_role", "role"
		return f
	}
	// The address as sent, not as clipped: a cut could make a wrong one look right.
	if _, err := extension.NormalizeEmail(email); err != nil || f.Email != email {
		f.Problem, f.Field = "team.invite.bad_email", "email"
	}
	return f
}

// parseRole reads a role field: one of the roles, exactly as the form sends it.
func parseRole(v string) (string, bool) {
	if extension.ValidRole(v) {
		return v, true
	}
	return "", false
}

// parseTransferForm reads the transfer form's field account: the id of the account that
// is to become an owner, a UUID as the team page writes it; ok is false for anything else.
func parseTransferForm(form url.Values) (id string, ok bool) {
	id = form.Get("account")
	if !uuidPattern.MatchString(id) {
		return "", false
	}
	return id, true
}

// passwordForm is the form that sets a password: accepting an invitation (with a name)
// or using a reset link (without).
type passwordForm struct {
	Name    string // shown again after a mistake; never the password
	Problem string // copy key of what is wrong
	// password is the new password; unexported, so no template can show it.
	password string
}

// parsePasswordForm reads the fields name (when wantName), password and password_repeat.
// The repeat is checked only when the form sent it (repeatSent): the contract's fields
// are name and password.
func parsePasswordForm(wantName bool, name, password, repeat string, repeatSent bool) passwordForm {
	var f passwordForm
	if wantName {
		name = strings.TrimSpace(name)
		f.Name = clipText(name, maxNameField)
		if !validName(name) {
			f.Problem = "team.password.bad_name"
			return f
		}
	}
	switch err := extension.CheckPassword(password); {
	case errors.Is(err, extension.ErrPasswordTooLong):
		f.Problem = "team.password.too_long"
		return f
	case err != nil:
		f.Problem = "team.password.too_short"
		return f
	}
	if repeatSent && repeat != password {
		f.Problem = "team.password.mismatch"
		return f
	}
	f.password = password
	return f
}

// validName reports whether an account name is what the store takes: 1 to 200
// characters of text, no control characters.
func validName(name string) bool {
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 200 {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) })
}

// teamDone are the confirmations the team page shows after a change (?done=KEY): fixed
// keys, so no user data ever travels in the address.
var teamDone = map[string]bool{"role_changed": true, "removed": true, "revoked": true, "transferred": true}

// parseDone reads the team page's ?done= parameter: a known key or "".
func parseDone(v string) string {
	if teamDone[v] {
		return v
	}
	return ""
}
