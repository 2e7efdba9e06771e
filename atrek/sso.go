package atrek

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// Defaults of Config.
const (
	// keyMemory is how long a retrieval key's hash is remembered. The platform's keys
	// live a short while (the simulator: 60 s; the platform's own TTL is unpublished);
	// ten minutes covers that with room for clock skew between replicas.
	keyMemory = 10 * time.Minute
	// retrievalKeyLen: the spec fixes the key at exactly 37 characters.
	retrievalKeyLen = 37
)

// Config configures New.
type Config struct {
	Store  *extension.Store
	Client *mstudio.Client
	// UserTokens keeps the users' tokens; share the one that hands them out elsewhere.
	// nil: New builds one on Store and Client (with a random lease owner).
	UserTokens *UserTokens
	// ExtensionID is our extension's id (EXT_EXTENSION_ID). When set, an instance the
	// platform reports for another extension is refused.
	ExtensionID string
	// Sessions starts the browser session of a signed-in user; Pages renders the pages.
	Sessions    Sessions
	Pages       Pages
	DefaultRole string     // role of every account after an instance's first; "": member
	RateLimit   rate.Limit // sign-ins per second per client address; 0: 1; rate.Inf: no limit
	RateBurst   int        // 0: 20
	Logger      *slog.Logger
	Now         func() time.Time // the rate limiter's clock; the store has its own
}

// Handler serves the single sign-on entry.
type Handler struct {
	store       *extension.Store
	client      *mstudio.Client
	tokens      *UserTokens
	sessions    Sessions
	pages       Pages
	extensionID string
	defaultRole string
	limiter     *addrLimiter
	logger      *slog.Logger
	// refusals logs the refusals a client brings about itself at a bounded rate.
	refusals *mstudio.RefusalLog
}

// New checks the configuration and returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil || cfg.Client == nil || cfg.Sessions == nil || cfg.Pages == nil {
		return nil, errors.New("atrek: the sso handler needs a store, a platform client, sessions and pages")
	}
	if cfg.ExtensionID != "" && !mstudio.IsUUID(cfg.ExtensionID) {
		return nil, errors.New("atrek: extension id is not a UUID")
	}
	h := &Handler{store: cfg.Store, client: cfg.Client, tokens: cfg.UserTokens, sessions: cfg.Sessions, pages: cfg.Pages,
		extensionID: strings.ToLower(cfg.ExtensionID), defaultRole: cfg.DefaultRole, logger: cfg.Logger}
	if h.defaultRole == "" {
		h.defaultRole = extension.RoleMember
	}
	if h.defaultRole == extension.RoleOwner {
		return nil, errors.New("atrek: the default role must not be owner: only an instance's first user is")
	}
	if h.logger == nil {
		h.logger = slog.New(slog.DiscardHandler)
	}
	limit, burst, now := cfg.RateLimit, cfg.RateBurst, cfg.Now
	if limit == 0 {
		limit = defaultRateLimit
	}
	if burst <= 0 {
		burst = defaultRateBurst
	}
	if now == nil {
		now = time.Now
	}
	h.limiter = newAddrLimiter(limit, burst, now)
	h.refusals = mstudio.NewRefusalLog(h.logger, "sso: refused", slog.LevelInfo, 0)
	if h.tokens == nil {
		h.tokens = NewUserTokens(cfg.Store, cfg.Client, UserTokenOptions{Now: now, Logger: h.logger})
	}
	return h, nil
}

// Entry serves GET /mstudio/sso, the control panel's click-through: it checks the link,
// redeems its single-use key once, checks the user may act in the instance's context,
// stores the user's tokens, provisions the account, starts a new session and sends the
// browser on with 303, so the key leaves the address bar and history.
//
// Every answer is a page in plain words; none names the key, a token or what exactly the
// platform said. The log has the instance and user ids and the outcome, nothing more.
func (h *Handler) Entry(c echo.Context) error {
	hd := c.Response().Header()
	// The key is in our URL: no Referer may carry it on, no cache may keep the answer.
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	ctx := c.Request().Context()

	if !h.limiter.allow(c.RealIP()) {
		h.refusals.Refused(ctx, "rate limited", c.RealIP())
		return h.fail(c, problemTooMany)
	}

	q := c.QueryParams()
	key := q.Get("atrek")
	if key == "" {
		key = q.Get("accessTokenRetrievalKey")
	}
	userID, instanceID, contextID := q.Get("userId"), q.Get("instanceId"), q.Get("contextId")
	if utf8.RuneCountInString(key) != retrievalKeyLen || !mstudio.IsUUID(userID) || !mstudio.IsUUID(instanceID) ||
		(contextID != "" && !mstudio.IsUUID(contextID)) {
		h.logger.InfoContext(ctx, "sso: malformed link")
		return h.fail(c, problemBadLink)
	}
	userID, instanceID, contextID = strings.ToLower(userID), strings.ToLower(instanceID), strings.ToLower(contextID)
	log := h.logger.With("instance_id", instanceID, "user_id", userID)

	// The instance and the user's role here in one read: the role tells whether the
	// platform must be asked if the user owns the instance's context.
	in, role, err := h.store.SignInState(ctx, instanceID, userID)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		log.InfoContext(ctx, "sso: refused", "outcome", "instance unknown")
		return h.fail(c, problemNotInstalled)
	case err != nil:
		return h.internal(c, "load instance", err)
	case in.Removed():
		log.InfoContext(ctx, "sso: refused", "outcome", "instance removed")
		return h.fail(c, problemRemoved)
	case !in.Enabled:
		log.InfoContext(ctx, "sso: refused", "outcome", "instance disabled")
		return h.fail(c, problemDisabled)
	case contextID != "" && contextID != strings.ToLower(in.ContextID):
		log.InfoContext(ctx, "sso: refused", "outcome", "context id does not match the instance")
		return h.fail(c, problemBadLink)
	}

	// Claimed before the platform sees the key: only the first request with it may
	// redeem, on any replica; a reload or a shared link is told so without a second try.
	first, err := h.store.ClaimRetrievalKey(ctx, key, keyMemory)
	if err != nil {
		return h.internal(c, "claim retrieval key", err)
	}
	if !first {
		log.InfoContext(ctx, "sso: refused", "outcome", "link already used")
		return h.fail(c, problemUsed)
	}
	tok, err := h.client.RedeemRetrievalKey(ctx, key, userID)
	if err != nil {
		var pe *mstudio.Error
		if errors.As(err, &pe) && pe.Status == http.StatusBadRequest {
			// Unknown, spent, expired or for another user: the platform does not say which.
			log.InfoContext(ctx, "sso: refused", "outcome", "platform refused the key")
			return h.fail(c, problemExpired)
		}
		// The client's error texts never contain the key (it masks it).
		log.WarnContext(ctx, "sso: redeeming the key failed", "outcome", "platform error", "error", err.Error())
		return h.fail(c, problemPlatform)
	}

	// The second and last round trip: the access check, the profile and (for a user who
	// is not owner here) the owner question at the same time, so a customer waits for two
	// platform answers in a row, the redeem and then the slowest of these. The profile
	// and the owner answer are used only once access is confirmed.
	var refusal problem
	read, allowed := h.readPlatform(ctx, in, role, tok, func(ctx context.Context) (ok bool) {
		refusal, ok = h.checkAccess(ctx, log, tok.Token, in)
		return ok
	})
	if !allowed {
		// The tokens are dropped unsaved: they are of no use in this instance. A user who
		// lost access loses what an earlier sign-in left too: their stored tokens and
		// their sessions in this instance, this browser's included.
		if err := h.store.SignOutPlatformUser(ctx, instanceID, userID); err != nil {
			return h.internal(c, "sign out user", err)
		}
		if err := h.sessions.End(c, instanceID); err != nil {
			return h.internal(c, "end session", err)
		}
		return h.fail(c, refusal)
	}

	return h.signIn(c, in, userID, tok, read)
}

// platformReads are the platform's answers a sign-in uses besides the access check: the
// user's profile and whether the platform names them owner of the instance's context.
type platformReads struct {
	profile    mstudio.User
	profileErr error
	ownerAsked bool // false when the account was owner as the sign-in began
	owner      bool
	ownerErr   error
}

// SignIn completes a sign-in once the user's access to the instance is checked: it reads
// the user's profile and owner role from the platform (both at once), saves the user's
// tokens, provisions the local account, starts a new session and answers 303 to the
// instance's dashboard, or to the reclaim page for a platform owner who is not owner here.
func (h *Handler) SignIn(c echo.Context, in *extension.Instance, userID string, tok mstudio.UserToken) error {
	role, err := h.store.PlatformAccountRole(c.Request().Context(), in.ID, userID)
	if err != nil && !errors.Is(err, extension.ErrNotFound) {
		return h.internal(c, "load role", err)
	}
	read, _ := h.readPlatform(c.Request().Context(), in, role, tok, nil)
	return h.signIn(c, in, userID, tok, read)
}

// readPlatform reads the user's profile and, unless their account here is owner
// already (role, "" without an account), whether the platform names them owner of the
// instance's context. The access check, when given, runs at the same time and tells
// allowed (true without one); when it refuses, the other reads are cancelled, so a
// refused user does not wait for them.
func (h *Handler) readPlatform(ctx context.Context, in *extension.Instance, role string, tok mstudio.UserToken, access func(context.Context) bool) (read platformReads, allowed bool) {
	others, cancel := context.WithCancel(ctx)
	defer cancel()
	var reads sync.WaitGroup
	// A panic in a read is raised again on the request's goroutine, where the front's
	// recovery answers it: in a goroutine of its own it would end the process.
	var panicked atomic.Value
	goRecovered := func(f func()) {
		reads.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					panicked.CompareAndSwap(nil, p)
				}
			}()
			f()
		})
	}
	allowed = true
	if access != nil {
		goRecovered(func() {
			if allowed = access(ctx); !allowed {
				cancel()
			}
		})
	}
	goRecovered(func() { read.profile, read.profileErr = h.client.User(others, tok.Token, "self") })
	if role != extension.RoleOwner {
		read.ownerAsked = true
		goRecovered(func() {
			read.owner, read.ownerErr = h.client.ContextOwner(others, tok.Token, in.ContextKind, in.ContextID)
		})
	}
	reads.Wait()
	if p := panicked.Load(); p != nil {
		panic(p)
	}
	return read, allowed
}

// signIn is SignIn with the platform's answers already read. Its writes (the user's
// tokens, the account, the session, the audit event) are one transaction: a failure
// leaves no half sign-in.
func (h *Handler) signIn(c echo.Context, in *extension.Instance, userID string, tok mstudio.UserToken, read platformReads) error {
	ctx := c.Request().Context()
	instanceID := in.ID
	log := h.logger.With("instance_id", instanceID, "user_id", userID)
	var email, name string
	if u, err := read.profile, read.profileErr; err != nil {
		// The profile only adds a name and an address; signing in does not depend on it.
		log.WarnContext(ctx, "sso: reading the user's profile failed", "error", err.Error())
	} else if !strings.EqualFold(u.ID, userID) {
		// The token is not the user the link named: nothing of it can be trusted.
		log.WarnContext(ctx, "sso: the token's profile names another user", "outcome", "platform error")
		return h.fail(c, problemPlatform)
	} else {
		email, name = u.Email, strings.TrimSpace(u.FirstName+" "+u.LastName)
	}
	// The tokens are bound to (user, instance): the store seals them with both ids as
	// associated data, so they can never be read as another user's or another
	// instance's. A fresh sign-in's tokens replace older ones, whatever refresh may be
	// under way. The instance's own template role, once an owner set one, wins over the
	// operator's default (EXT_DEFAULT_ROLE); the instance's allowed domains are checked
	// for a new account (not for an existing one, nor for the instance's first: its
	// owner).
	done, err := h.store.SignInPlatformUser(ctx, extension.PlatformSignIn{
		InstanceID: instanceID, PlatformUserID: userID, Email: email, Name: name, DefaultRole: h.defaultRole,
		// PostgreSQL keeps microseconds: cut the rest now, so every replica sees one expiry.
		Token: tok.Token, Refresh: tok.RefreshToken, TokenExpiresAt: tok.ExpiresAt.UTC().Truncate(time.Microsecond),
		Session: h.sessions.Starting(c, instanceID),
	})
	switch {
	case errors.Is(err, extension.ErrDomainNotAllowed) && email == "":
		// The profile could not be read, so its address could not be checked.
		log.InfoContext(ctx, "sso: refused", "outcome", "address unknown, allowed domains set")
		return h.fail(c, problemPlatform)
	case errors.Is(err, extension.ErrDomainNotAllowed):
		log.InfoContext(ctx, "sso: refused", "outcome", "e-mail domain not allowed")
		return h.fail(c, problemDomainNotAllowed)
	case errors.Is(err, extension.ErrNotFound):
		// Disabled or removed while the sign-in was under way.
		log.InfoContext(ctx, "sso: refused", "outcome", "instance disabled meanwhile")
		return h.fail(c, problemDisabled)
	case err != nil:
		return h.internal(c, "sign in", err)
	}
	acc := done.Account
	h.sessions.Started(c, acc, done.SessionID)
	log.InfoContext(ctx, "sso: signed in", "outcome", "signed in", "account_id", acc.ID, "role", acc.Role, "new_account", done.Created)
	// A user the platform names owner of the context, whose account here is not,
	// is offered the owner role (reclaim.go).
	if h.offerReclaim(ctx, log, in, acc, tok.Token, read) {
		return c.Redirect(http.StatusSeeOther, ReclaimPath(instanceID))
	}
	return c.Redirect(http.StatusSeeOther, AppPath(instanceID))
}

// checkAccess reads the instance with the user's token: the platform answers only when
// the user may act in the instance's context. It returns the page to show when not.
func (h *Handler) checkAccess(ctx context.Context, log *slog.Logger, token extension.Secret, in *extension.Instance) (problem, bool) {
	noAccess := problemNoAccessProject
	if in.ContextKind == extension.ContextCustomer {
		noAccess = problemNoAccessCustomer
	}
	pi, err := h.client.Instance(ctx, token, in.ID)
	var pe *mstudio.Error
	switch {
	case errors.As(err, &pe) && (pe.Status == http.StatusForbidden || pe.Status == http.StatusUnauthorized):
		log.InfoContext(ctx, "sso: refused", "outcome", "user has no access to the context")
		return noAccess, false
	case errors.As(err, &pe) && pe.Status == http.StatusNotFound:
		// Gone at the platform; its webhook has not reached us yet.
		log.InfoContext(ctx, "sso: refused", "outcome", "instance not found at the platform")
		return problemRemoved, false
	case err != nil:
		log.WarnContext(ctx, "sso: access check failed", "outcome", "platform error", "error", err.Error())
		return problemPlatform, false
	case !strings.EqualFold(pi.ID, in.ID), h.extensionID != "" && !strings.EqualFold(pi.ExtensionID, h.extensionID):
		log.WarnContext(ctx, "sso: refused", "outcome", "platform answered another instance or extension")
		return problemPlatform, false
	case pi.Disabled:
		log.InfoContext(ctx, "sso: refused", "outcome", "instance disabled at the platform")
		return problemDisabled, false
	}
	return problem{}, true
}
