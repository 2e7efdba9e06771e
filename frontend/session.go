package frontend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
)

// The browser session. A browser holds one session cookie per instance, so it can be
// signed in to several instances at once (two tabs, two instances) and neither sign-in
// ends the other. The cookie's name carries the instance id; the session it names must
// belong to that instance, or it is not a session of that instance's pages.
const (
	sessionCookiePrefix = "ext_s_"
	// With Secure cookies the __Host- prefix makes the browser itself insist on Secure,
	// Path=/ and no Domain, so no sibling host can plant or overwrite the cookie.
	hostPrefix = "__Host-"
)

// SignedIn is what a request's session found: the live session, its account and its
// instance. The session's id is not part of it: it lives in the cookie only.
type SignedIn struct {
	Session  extension.Session
	Account  extension.Account
	Instance *extension.Instance
}

type signedInKey struct{}

// SignedInFrom returns what RequireSession put into the request; ok is false outside it.
func SignedInFrom(ctx context.Context) (SignedIn, bool) {
	s, ok := ctx.Value(signedInKey{}).(SignedIn)
	return s, ok
}

// Current returns the account of the session RequireSession found for the request, and
// the platform user it signed in as ("" for a local account); ok is false outside it.
func (s *Sessions) Current(c echo.Context) (acc extension.Account, platformUserID string, ok bool) {
	si, ok := SignedInFrom(c.Request().Context())
	return si.Account, si.Session.PlatformUserID, ok
}

// Errors of reading a session, besides the store's.
var (
	// ErrNoSession: the browser holds no live session of the instance.
	ErrNoSession = errors.New("no session for this instance")
)

// Sessions starts, reads and ends browser sessions. The store keeps only the hash of a
// session's id.
type Sessions struct {
	store    *extension.Store
	idle     time.Duration
	absolute time.Duration
	secure   bool
	refusals *mstudio.RefusalLog
}

// cookieName is the session cookie of an instance. Instance ids are UUIDs; the name
// holds their 32 hex digits (a cookie name may not carry every character an id could).
func (s *Sessions) cookieName(instanceID string) string {
	n := sessionCookiePrefix + strings.ReplaceAll(strings.ToLower(instanceID), "-", "")
	if s.secure {
		return hostPrefix + n
	}
	return n
}

func (s *Sessions) cookie(instanceID string, r *http.Request) (extension.Secret, bool) {
	ck, err := r.Cookie(s.cookieName(instanceID))
	if err != nil || ck.Value == "" {
		return "", false
	}
	return extension.Secret(ck.Value), true
}

func (s *Sessions) setCookie(w http.ResponseWriter, instanceID string, id extension.Secret, maxAge int) {
	// Max-Age equals the absolute timeout: the cookie never outlives the session it names.
	// Lax: the click-through from the control panel is a cross-site top-level navigation
	// that ends in a redirect to our pages, which must carry the cookie.
	http.SetCookie(w, &http.Cookie{Name: s.cookieName(instanceID), Value: id.Reveal(), Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// Start signs the account in to its instance in this browser: a new session and a new
// cookie. A cookie the browser brought for the instance is never adopted: the session it
// names (if any) ends, so an id planted before sign-in is worthless. Sessions of other
// instances in the same browser are left alone. The session keeps the browser's
// User-Agent for the account page's list of sessions, and an account's chosen page
// language becomes the browser's. It fails with extension.ErrNotFound when
// the account or instance is gone or disabled meanwhile.
func (s *Sessions) Start(c echo.Context, acc extension.Account, platformUserID string) error {
	ctx := c.Request().Context()
	st := s.Starting(c, acc.InstanceID)
	if !st.Replaces.IsZero() {
		if err := s.store.DeleteSession(ctx, st.Replaces); err != nil {
			return fmt.Errorf("end previous session: %w", err)
		}
	}
	id, _, err := s.store.CreateSessionWithAgent(ctx, acc.ID, acc.InstanceID, platformUserID, st.Absolute, st.UserAgent)
	if err != nil {
		return err
	}
	s.Started(c, acc, id)
	return nil
}

// Starting says how a sign-in to the instance starts a session in this browser, for a
// sign-in that writes the session itself in its own transaction (the platform's):
// Start's timeout and User-Agent, and the session the browser brought, to end.
func (s *Sessions) Starting(c echo.Context, instanceID string) extension.SessionStart {
	old, _ := s.cookie(instanceID, c.Request())
	return extension.SessionStart{Absolute: s.absolute, UserAgent: c.Request().UserAgent(), Replaces: old}
}

// Started hands the browser a session the store started for the account, as Start does:
// the cookie, and the account's chosen page language.
func (s *Sessions) Started(c echo.Context, acc extension.Account, id extension.Secret) {
	s.setCookie(c.Response(), acc.InstanceID, id, int(s.absolute/time.Second))
	if isLang(acc.Language) {
		// The account's chosen language holds in this browser from now on, as a ?lang= would.
		setLangCookie(c, acc.Language, s.secure)
	}
}

// End ends this browser's session of the instance, if it has one, and drops its cookie.
func (s *Sessions) End(c echo.Context, instanceID string) error {
	if id, ok := s.cookie(instanceID, c.Request()); ok {
		if err := s.store.DeleteSession(c.Request().Context(), id); err != nil {
			return err
		}
	}
	s.setCookie(c.Response(), instanceID, "", -1)
	return nil
}

// maxSessionCookies bounds how many session cookies of one request are looked at: each
// costs a query, and a request may carry thousands of made-up ones. A browser holds one
// per instance it is signed in to.
const maxSessionCookies = 32

// EndAll ends every session this browser holds, of any instance.
func (s *Sessions) EndAll(c echo.Context) error {
	prefix := sessionCookiePrefix
	if s.secure {
		prefix = hostPrefix + prefix
	}
	seen := 0
	for _, ck := range c.Request().Cookies() {
		if !strings.HasPrefix(ck.Name, prefix) || ck.Value == "" {
			continue
		}
		if seen++; seen > maxSessionCookies {
			break
		}
		if err := s.store.DeleteSession(c.Request().Context(), extension.Secret(ck.Value)); err != nil {
			return err
		}
		http.SetCookie(c.Response(), &http.Cookie{Name: ck.Name, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
	}
	return nil
}

// Read returns this browser's live session of the instance: within the idle and absolute
// timeouts, of an account that still exists, and of this very instance. It fails with
// ErrNoSession when there is none, extension.ErrRemoved or extension.ErrDisabled when the
// instance is gone or disabled (its sessions end with it anyway; this closes the window of
// a request racing that event), or with the store's error.
func (s *Sessions) Read(c echo.Context, instanceID string) (SignedIn, error) {
	ctx := c.Request().Context()
	id, ok := s.cookie(instanceID, c.Request())
	if !ok {
		return SignedIn{}, ErrNoSession
	}
	// The session, its account and its instance in one statement: every page behind a
	// session needs all three. A session whose account or instance is gone is none.
	sess, acc, in, err := s.store.SignedInSession(ctx, id, s.idle, s.absolute)
	if errors.Is(err, extension.ErrNotFound) {
		s.setCookie(c.Response(), instanceID, "", -1)
		return SignedIn{}, ErrNoSession
	}
	if err != nil {
		return SignedIn{}, err
	}
	if !strings.EqualFold(sess.InstanceID, instanceID) {
		// A session of another instance under this instance's cookie name: it was copied
		// there. It is no session of this instance.
		s.refusals.Refused(ctx, "session of another instance", c.RealIP())
		return SignedIn{}, ErrNoSession
	}
	switch {
	case in.Removed():
		return SignedIn{}, extension.ErrRemoved
	case !in.Enabled:
		return SignedIn{}, extension.ErrDisabled
	}
	return SignedIn{Session: sess, Account: acc, Instance: in}, nil
}

// instancesOf lists the instances whose session cookie the browser carries.
func (s *Sessions) instancesOf(r *http.Request) []string {
	prefix := sessionCookiePrefix
	if s.secure {
		prefix = hostPrefix + prefix
	}
	var ids []string
	for _, ck := range r.Cookies() {
		hex, ok := strings.CutPrefix(ck.Name, prefix)
		if !ok || len(hex) != 32 {
			continue
		}
		id := hex[:8] + "-" + hex[8:12] + "-" + hex[12:16] + "-" + hex[16:20] + "-" + hex[20:]
		if uuidPattern.MatchString(id) {
			ids = append(ids, id)
		}
		if len(ids) == maxSessionCookies {
			break
		}
	}
	return ids
}
