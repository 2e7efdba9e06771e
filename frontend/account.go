package frontend

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The account page (GET /app/{instanceId}/account): the signed-in account's own name and
// page language, its password (local accounts only), and its live sessions, each with the
// browser it runs in, to sign out. Each part is its own form with its own POST route.
//
// A session is named on the page by its handle: a random value made with the session,
// unrelated to the session's id (the cookie) and to the id's hash (the store's key). It
// is no credential: the routes that take it act only on the signed-in account's own
// sessions, so a handle copied from a page, guessed or taken from another account is
// worth nothing.

const pageAccount = "account"

// AccountPath is the account page of an instance.
func AccountPath(instanceID string) string { return AppPath(instanceID) + "/account" }

// Confirmations the account page shows after a change (?done=…).
const (
	doneProfile  = "profile"
	donePassword = "password"
	doneSessions = "sessions"
	// doneConnected and doneDisconnected confirm a provider connected or disconnected.
	doneConnected    = "connected"
	doneDisconnected = "disconnected"
)

// accountView is what the account page shows.
type accountView struct {
	Tabs     tabsView
	Name     string
	Email    string
	Language string // "", "en" or "de"
	Local    bool   // a local account: signs in with a password or a provider here
	// NoPassword: a local account made through a provider, which has no password here.
	NoPassword bool
	Role       string
	Done       string // a confirmation: done* or ""
	// ProfileProblem and PasswordProblem are copy keys of what went wrong with a form.
	ProfileProblem  string
	PasswordProblem string
	SessionsProblem string
	Sessions        []sessionView
	Others          bool // there are sessions besides this browser's
	// Identities are the providers' identities linked to the account; Connect the
	// instance's enabled providers it may still connect.
	Identities      []extension.OIDCIdentity
	OnlyWayIn       bool // the one identity of an account without a password: not offered for disconnecting
	Connect         []providerLink
	IdentityProblem string
}

type sessionView struct {
	Handle   string
	Device   string
	Since    string
	LastUsed string
	Current  bool // this browser's
}

// Account serves GET /app/{instanceId}/account.
func (f *Frontend) Account(c echo.Context) error {
	s, _ := SignedInFrom(c.Request().Context())
	v := accountView{Name: s.Account.Name, Language: s.Account.Language}
	switch d := c.QueryParam("done"); d {
	case doneProfile, donePassword, doneSessions, doneConnected, doneDisconnected:
		v.Done = d
	}
	return f.renderAccount(c, http.StatusOK, v)
}

// renderAccount fills in what the page shows of the account and its sessions around v's
// form values and problems, and renders it with status.
func (f *Frontend) renderAccount(c echo.Context, status int, v accountView) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	v.Tabs = tabsFor(s, tabAccount)
	v.Email, v.Local, v.Role = s.Account.Email, s.Account.Local(), s.Account.Role
	if !v.Local {
		v.Name = s.Account.Name // the control panel's: not ours to change
	}
	sessions, err := f.store.AccountSessions(ctx, s.Instance.ID, s.Account.ID, f.Sessions.idle, f.Sessions.absolute)
	if err != nil {
		return f.internal(c, "list sessions", err)
	}
	if v.Identities, err = f.store.OIDCIdentities(ctx, s.Instance.ID, s.Account.ID); err != nil {
		return f.internal(c, "list identities", err)
	}
	var connectable []providerLink
	if v.Local { // control panel users sign in through the control panel
		connectable = f.providerLinks(c, s.Instance.ID, AccountPath(s.Instance.ID)+"/identities/connect/")
	}
	for _, l := range connectable {
		linked := false
		for _, id := range v.Identities {
			linked = linked || l.ID == id.ProviderID
		}
		if !linked {
			v.Connect = append(v.Connect, l)
		}
	}
	if v.Local {
		_, hash, err := f.store.LocalCredentials(ctx, s.Instance.ID, s.Account.Email)
		if err != nil && !errors.Is(err, extension.ErrNotFound) {
			return f.internal(c, "load credentials", err)
		}
		v.NoPassword = hash == ""
		// The store refuses to remove the last way in (UnlinkOIDCIdentity); the page does
		// not offer what it would refuse in the plain case.
		v.OnlyWayIn = v.NoPassword && len(v.Identities) == 1
	}
	cat := f.copyFor(c)
	for _, ss := range sessions {
		cur := ss.Handle == s.Session.Handle
		v.Others = v.Others || !cur
		v.Sessions = append(v.Sessions, sessionView{Handle: ss.Handle, Device: deviceText(cat, ss.UserAgent),
			Since: minuteUTC(ss.CreatedAt), LastUsed: minuteUTC(ss.LastSeenAt), Current: cur})
	}
	if status == http.StatusOK {
		return f.renderReloadable(c, status, pageAccount, v)
	}
	return f.Render(c, status, pageAccount, v)
}

// copyFor returns the copy of the request's language, for text a handler composes.
func (f *Frontend) copyFor(c echo.Context) catalog {
	lang, _ := requestLang(c.Request())
	return f.catalogs[lang]
}

// formValues returns the request's form fields (the body's only, not the query's) and
// false when a field named in single comes more than once: a form of ours sends each
// once.
func formValues(c echo.Context, single ...string) (url.Values, bool) {
	form, err := c.FormParams()
	if err != nil {
		return nil, false
	}
	if c.Request().PostForm != nil {
		form = c.Request().PostForm
	}
	for _, k := range single {
		if len(form[k]) > 1 {
			return nil, false
		}
	}
	return form, true
}

// profileForm is the profile form's input.
type profileForm struct {
	Name     string
	Language string // "", "en" or "de"
}

// maxNameRunes is the longest name an account may have (the store's limit).
const maxNameRunes = 200

// parseProfileForm reads the profile form: name (only when the account may change it)
// and language. problem is a copy key of what is wrong, or "".
func parseProfileForm(form url.Values, withName bool) (p profileForm, problem string) {
	p.Language = form.Get("language")
	if p.Language != "" && !isLang(p.Language) {
		return p, "account.profile.bad_language"
	}
	if !withName {
		return p, ""
	}
	name := strings.TrimSpace(form.Get("name"))
	p.Name = clipText(name, maxNameField) // shown again; the name as sent is what is checked
	switch {
	case name == "":
		return p, "account.profile.name_missing"
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > maxNameRunes ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }):
		return p, "account.profile.name_invalid"
	}
	return p, ""
}

// SaveProfile serves POST /app/{instanceId}/account with the fields name (local accounts;
// a platform user's name comes from the control panel) and language ("", "en", "de").
// The language chosen applies to the pages at once, in this browser by its cookie and in
// others from the next sign-in.
func (f *Frontend) SaveProfile(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	form, ok := formValues(c, "name", "language")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	p, problem := parseProfileForm(form, s.Account.Local())
	if problem != "" {
		return f.renderAccount(c, http.StatusBadRequest, accountView{Name: p.Name, Language: s.Account.Language, ProfileProblem: problem})
	}
	name := s.Account.Name
	if s.Account.Local() {
		name = p.Name
	}
	_, err := f.store.UpdateProfile(ctx, s.Instance.ID, s.Account.ID, name, p.Language)
	switch {
	case errors.Is(err, extension.ErrInvalidName):
		return f.renderAccount(c, http.StatusBadRequest, accountView{Name: p.Name, Language: s.Account.Language, ProfileProblem: "account.profile.name_invalid"})
	case errors.Is(err, extension.ErrNotFound):
		return f.Problem(c, http.StatusUnauthorized, "problem.session_ended", LoginPath(s.Instance.ID))
	case err != nil:
		return f.internal(c, "update profile", err)
	}
	if p.Language != "" {
		setLangCookie(c, p.Language, f.Sessions.secure)
	} else {
		clearLangCookie(c, f.Sessions.secure)
	}
	return c.Redirect(http.StatusSeeOther, AccountPath(s.Instance.ID)+"?done="+doneProfile)
}

// ownPasswordForm is the password form's input.
type ownPasswordForm struct {
	Current, New string
}

// parseOwnPasswordForm reads the password form: current_password, new_password and its
// repetition new_password_again. problem is a copy key of what is wrong, or "".
func parseOwnPasswordForm(form url.Values) (p ownPasswordForm, problem string) {
	p.Current, p.New = form.Get("current_password"), form.Get("new_password")
	again := form.Get("new_password_again")
	switch {
	case p.Current == "":
		return p, "account.password.current_missing"
	case len(p.Current) > maxLoginField:
		return p, "account.password.wrong_current"
	}
	switch err := extension.CheckPassword(p.New); {
	case errors.Is(err, extension.ErrPasswordTooShort):
		return p, "account.password.too_short"
	case err != nil:
		return p, "account.password.too_long"
	case p.New != again:
		return p, "account.password.mismatch"
	}
	return p, ""
}

// ChangeOwnPassword serves POST /app/{instanceId}/account/password: a local account sets a
// new password, proving the current one. A wrong current password counts as a failed
// sign-in (towards the lock-out, and in the audit log); hashing is bounded like sign-in,
// so a crowd gets 429 and "try again". Success ends the account's other sessions and
// keeps this browser's.
func (f *Frontend) ChangeOwnPassword(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	fail := func(status int, problem string) error {
		return f.renderAccount(c, status, accountView{Name: s.Account.Name, Language: s.Account.Language, PasswordProblem: problem})
	}
	if !s.Account.Local() {
		return fail(http.StatusForbidden, "account.password.platform")
	}
	form, ok := formValues(c, "current_password", "new_password", "new_password_again")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	p, problem := parseOwnPasswordForm(form)
	if problem != "" {
		return fail(http.StatusBadRequest, problem)
	}
	if !f.loginLimit.allow(c.RealIP()) {
		f.refusals.Refused(ctx, "password change rate limited", c.RealIP())
		return fail(http.StatusTooManyRequests, "account.password.busy")
	}
	acc, hash, err := f.store.LocalCredentials(ctx, s.Instance.ID, s.Account.Email)
	if errors.Is(err, extension.ErrNotFound) || (err == nil && acc.ID != s.Account.ID) {
		return f.Problem(c, http.StatusUnauthorized, "problem.session_ended", LoginPath(s.Instance.ID))
	}
	if err != nil {
		return f.internal(c, "load credentials", err)
	}
	if hash == "" {
		// Made through a provider: no password to change, and none to set without one.
		return fail(http.StatusConflict, "account.password.oidc_info")
	}
	match, err := f.hasher.Verify(ctx, p.Current, hash)
	switch {
	case errors.Is(err, extension.ErrBusy):
		return fail(http.StatusTooManyRequests, "account.password.busy")
	case err != nil:
		return f.internal(c, "verify password", err)
	}
	if acc.Locked(time.Now()) {
		// As at sign-in: while locked, even the right password waits.
		_ = f.store.Audit(ctx, extension.AuditEvent{InstanceID: acc.InstanceID, AccountID: acc.ID, Kind: extension.AuditSignInLocked,
			Detail: map[string]string{"where": "password_change"}})
		return fail(http.StatusTooManyRequests, "account.password.locked")
	}
	if !match {
		if _, _, err := f.store.RecordLoginFailure(ctx, acc.ID); err != nil {
			return f.internal(c, "record failure", err)
		}
		_ = f.store.Audit(ctx, extension.AuditEvent{InstanceID: acc.InstanceID, AccountID: acc.ID, Kind: extension.AuditSignInFailed,
			Detail: map[string]string{"where": "password_change"}})
		return fail(http.StatusForbidden, "account.password.wrong_current")
	}
	newHash, err := f.hasher.Hash(ctx, p.New)
	switch {
	case errors.Is(err, extension.ErrBusy):
		return fail(http.StatusTooManyRequests, "account.password.busy")
	case err != nil:
		return f.internal(c, "hash password", err)
	}
	keep, _ := f.Sessions.cookie(s.Instance.ID, c.Request())
	if err := f.store.ChangePassword(ctx, s.Instance.ID, acc.ID, newHash, keep); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusUnauthorized, "problem.session_ended", LoginPath(s.Instance.ID))
	} else if err != nil {
		return f.internal(c, "change password", err)
	}
	f.logger.InfoContext(ctx, "password changed", "instance_id", s.Instance.ID, "account_id", acc.ID)
	return c.Redirect(http.StatusSeeOther, AccountPath(s.Instance.ID)+"?done="+donePassword)
}

// EndOtherSessions serves POST /app/{instanceId}/account/sessions/end-others: every session
// of the account but this browser's ends.
func (f *Frontend) EndOtherSessions(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	keep, _ := f.Sessions.cookie(s.Instance.ID, c.Request())
	n, err := f.store.EndOtherSessions(ctx, s.Instance.ID, s.Account.ID, keep)
	if err != nil {
		return f.internal(c, "end other sessions", err)
	}
	f.logger.InfoContext(ctx, "other sessions ended", "instance_id", s.Instance.ID, "account_id", s.Account.ID, "count", n)
	return c.Redirect(http.StatusSeeOther, AccountPath(s.Instance.ID)+"?done="+doneSessions)
}

// EndSession serves POST /app/{instanceId}/account/sessions/end with the field session, a
// session's handle from the account page: that session of the account ends. Ending this
// browser's own session signs it out.
func (f *Frontend) EndSession(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	form, ok := formValues(c, "session")
	handle := ""
	if ok {
		handle = form.Get("session")
	}
	fail := func(status int, problem string) error {
		return f.renderAccount(c, status, accountView{Name: s.Account.Name, Language: s.Account.Language, SessionsProblem: problem})
	}
	if !extension.ValidSessionHandle(handle) {
		return fail(http.StatusBadRequest, "account.sessions.bad")
	}
	err := f.store.EndAccountSession(ctx, s.Instance.ID, s.Account.ID, handle)
	if errors.Is(err, extension.ErrNotFound) {
		// Ended meanwhile, or not one of this account's: either way there is nothing to end.
		return fail(http.StatusNotFound, "account.sessions.gone")
	}
	if err != nil {
		return f.internal(c, "end session", err)
	}
	if handle == s.Session.Handle {
		if err := f.Sessions.End(c, s.Instance.ID); err != nil {
			return f.internal(c, "end session", err)
		}
		return c.Redirect(http.StatusSeeOther, "/signed-out")
	}
	return c.Redirect(http.StatusSeeOther, AccountPath(s.Instance.ID)+"?done="+doneSessions)
}

// deviceText is a short, readable name of the browser a User-Agent describes, such as
// "Firefox on Linux", in the catalog's language.
func deviceText(cat catalog, ua string) string {
	browser, system := deviceOf(ua)
	switch {
	case browser != "" && system != "":
		return cat.text("device.browser_on", "browser", browser, "system", system)
	case browser != "":
		return browser
	case system != "":
		return cat.text("device.unknown_on", "system", system)
	}
	return cat.text("device.unknown")
}

// deviceOf names the browser and the operating system of a User-Agent, "" for what it
// does not recognise. The order of the checks matters: Edge and Opera say Chrome too,
// Chrome says Safari, Android says Linux, iOS says Mac OS X.
func deviceOf(ua string) (browser, system string) {
	has := func(s string) bool { return strings.Contains(ua, s) }
	switch {
	case has("Edg/") || has("EdgA/") || has("EdgiOS/"):
		browser = "Edge"
	case has("OPR/") || has("OPiOS/"):
		browser = "Opera"
	case has("SamsungBrowser/"):
		browser = "Samsung Internet"
	case has("Firefox/") || has("FxiOS/"):
		browser = "Firefox"
	case has("Chrome/") || has("CriOS/") || has("Chromium/"):
		browser = "Chrome"
	case has("Safari/") && has("Version/"):
		browser = "Safari"
	}
	switch {
	case has("Windows"):
		system = "Windows"
	case has("Android"):
		system = "Android"
	case has("iPhone") || has("iPod"):
		system = "iOS"
	case has("iPad"):
		system = "iPadOS"
	case has("CrOS"):
		system = "ChromeOS"
	case has("Mac OS X") || has("Macintosh"):
		system = "macOS"
	case has("Linux") || has("X11"):
		system = "Linux"
	}
	return browser, system
}
