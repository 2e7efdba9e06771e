package frontend

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Password sign-in of the extension's own (local) users. The answer to a wrong password,
// an unknown address and a locked account is one and the same page, and an unknown
// address costs a dummy verification, so the page tells nobody which addresses exist.
// Hashing is bounded by the PasswordHasher: beyond its queue the page says "try again"
// with 429, so a flood of sign-ins cannot starve the webhook path or exhaust memory.

// Limits of the sign-in form, per client address: generous enough for an office behind
// one address, tight enough to make guessing slow (the per-account lock-out does the rest).
const (
	loginRate       = rate.Limit(2) // sign-ins per second per address
	loginBurst      = 30
	loginAddrs      = 10_000 // addresses remembered; past it the table starts afresh
	maxLoginField   = 1024   // bytes of e-mail or password looked at
	loginFailedCopy = "login.failed"
)

// loginLimiter is a token bucket per client address (or other key).
type loginLimiter struct {
	mu    sync.Mutex
	addrs map[string]*rate.Limiter
	limit rate.Limit // 0: loginRate
	burst int        // 0: loginBurst
}

func (l *loginLimiter) allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.addrs[addr]
	if !ok {
		if len(l.addrs) >= loginAddrs {
			l.addrs = map[string]*rate.Limiter{}
		}
		limit, burst := l.limit, l.burst
		if limit == 0 {
			limit, burst = loginRate, loginBurst
		}
		lim = rate.NewLimiter(limit, burst)
		l.addrs[addr] = lim
	}
	return lim.Allow()
}

// loginView is what the sign-in page shows.
type loginView struct {
	InstanceID    string
	PlatformLogin string
	PasswordLogin bool   // the instance allows password sign-in
	Forgot        bool   // "forgot password" is offered: e-mail is set up
	Email         string // shown again after a failure; never the password
	Problem       string // copy key of what went wrong
	Providers     []providerLink
}

// loginForm is the sign-in form's input.
type loginForm struct {
	// Email is the address as entered, cut to maxLoginField bytes of text: shown again
	// after a failure, and looked up unless Unusable.
	Email string
	// Unusable says no account can match: a field was longer than any address or
	// password can be, or the address is not text. The sign-in fails as a wrong password
	// does.
	Unusable bool
	// password is the password byte for byte (never cut or cleaned, so only the very
	// password matches); unexported, so no template can show it.
	password string
}

// parseLoginForm reads the sign-in form's fields email and password.
func parseLoginForm(form url.Values) loginForm {
	email, password := form.Get("email"), form.Get("password")
	f := loginForm{Email: clipText(email, maxLoginField)}
	if len(email) > maxLoginField || !utf8.ValidString(email) || len(password) > extension.MaxPasswordLength {
		f.Unusable = true
		return f
	}
	f.password = password
	return f
}

// SubmitLogin serves POST /app/{instanceId}/login with the fields email and password.
// Success starts the account's session and answers 303 to the dashboard; a failure is
// the sign-in page again with a 4xx status and no session.
func (f *Frontend) SubmitLogin(c echo.Context) error {
	ctx := c.Request().Context()
	c.Response().Header().Set("Cache-Control", "no-store")
	id := c.Param(InstanceParam)
	if !uuidPattern.MatchString(id) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	settings, ok, err := f.signInSettings(c, id)
	if !ok {
		return err
	}
	values, ok := formValues(c, "email", "password")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	form := parseLoginForm(values)
	providers := f.providerLinks(c, id, LoginPath(id)+"/oidc/")
	view := loginView{InstanceID: id, PlatformLogin: "/login/mstudio", PasswordLogin: settings.PasswordLogin, Email: form.Email,
		Forgot: f.mailer != nil, Providers: providers}
	fail := func(status int, problem string) error {
		view.Problem = problem
		if status == http.StatusTooManyRequests {
			// Hashing is saturated or the address is over its rate for a moment: a second
			// is enough for a client that waits as told.
			c.Response().Header().Set("Retry-After", "1")
		}
		return f.Render(c, status, pageLogin, view)
	}
	if !settings.PasswordLogin {
		return fail(http.StatusForbidden, "login.password_off")
	}
	if !f.loginLimit.allow(c.RealIP()) {
		f.refusals.Refused(ctx, "sign-in rate limited", c.RealIP())
		return fail(http.StatusTooManyRequests, "login.busy")
	}
	password := form.password
	acc, hash, err := extension.Account{}, "", extension.ErrNotFound
	if !form.Unusable {
		acc, hash, err = f.store.LocalCredentials(ctx, id, form.Email)
		if err == nil && hash == "" {
			// An account made through an OpenID Connect provider has no password: it signs
			// in there, and a password sign-in fails as for an unknown address.
			err = extension.ErrNotFound
		}
	}
	if errors.Is(err, extension.ErrNotFound) {
		// The same work as for a known address, so the time says nothing either.
		if err := f.hasher.VerifyDummy(ctx, password); errors.Is(err, extension.ErrBusy) {
			return fail(http.StatusTooManyRequests, "login.busy")
		}
		f.refusals.Refused(ctx, "sign-in with an unknown address", c.RealIP())
		return fail(http.StatusUnauthorized, loginFailedCopy)
	}
	if err != nil {
		return f.internal(c, "load credentials", err)
	}
	match, err := f.hasher.Verify(ctx, password, hash)
	switch {
	case errors.Is(err, extension.ErrBusy):
		return fail(http.StatusTooManyRequests, "login.busy")
	case err != nil:
		return f.internal(c, "verify password", err)
	}
	if acc.Locked(time.Now()) {
		// Locked: even the right password waits, or the lock would be no lock.
		_ = f.store.Audit(ctx, extension.AuditEvent{InstanceID: id, AccountID: acc.ID, Kind: extension.AuditSignInLocked})
		return fail(http.StatusUnauthorized, loginFailedCopy)
	}
	if !match {
		if _, _, err := f.store.RecordLoginFailure(ctx, acc.ID); err != nil {
			return f.internal(c, "record failure", err)
		}
		_ = f.store.Audit(ctx, extension.AuditEvent{InstanceID: id, AccountID: acc.ID, Kind: extension.AuditSignInFailed})
		return fail(http.StatusUnauthorized, loginFailedCopy)
	}
	if err := f.store.ResetLoginFailures(ctx, acc.ID); err != nil {
		return f.internal(c, "reset failures", err)
	}
	if err := f.Sessions.Start(c, acc, ""); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusForbidden, "problem.disabled", "")
	} else if err != nil {
		return f.internal(c, "start session", err)
	}
	if err := f.store.Audit(ctx, extension.AuditEvent{InstanceID: id, AccountID: acc.ID, Kind: extension.AuditSignIn,
		Detail: map[string]string{"method": "password"}}); err != nil {
		return f.internal(c, "audit sign-in", err)
	}
	f.logger.InfoContext(ctx, "signed in with a password", "instance_id", id, "account_id", acc.ID)
	return c.Redirect(http.StatusSeeOther, AppPath(id))
}
