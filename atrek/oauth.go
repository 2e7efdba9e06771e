package atrek

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"
)

// The OAuth2 sign-in of a user who opens the extension directly, not from the control
// panel: authorization code with PKCE (S256) at the platform, then the same session as
// the click-through.

const (
	oauthLoginPath    = "/login/mstudio"
	oauthCallbackPath = oauthLoginPath + "/callback"
	oauthChoosePath   = oauthLoginPath + "/choose"

	// oauthCookieTTL bounds both the round trip through the platform's consent and the
	// time to pick an instance.
	oauthCookieTTL = 10 * time.Minute
	oauthPreAAD    = "oauth-presession"
	oauthChoiceAAD = "oauth-choice"
	// oauthDefaultScope reads the user and the contexts the extension lives in.
	oauthDefaultScope = "user:read project:read customer:read"
	// oauthCheckParallel bounds the instance reads of one sign-in.
	oauthCheckParallel = 8
)

// OAuthConfig configures NewOAuth.
type OAuthConfig struct {
	Store  *extension.Store
	Client *mstudio.Client
	// ExtensionID is the OAuth client id: the platform's client id is the extension id.
	ExtensionID string
	// PublicURL is where users reach the backend; the redirect URI is PublicURL +
	// "/login/mstudio/callback", and https makes the cookies Secure.
	PublicURL    string
	ClientSecret extension.Secret // optional: without it the backend is a public client
	Scope        string           // default "user:read project:read customer:read"
	// SignIn completes a login exactly as the click-through does (tokens saved, account
	// provisioned, session started, 303 to the app).
	SignIn func(c echo.Context, in *extension.Instance, platformUserID string, tok mstudio.UserToken) error
	Pages  Pages
	Now    func() time.Time
	Logger *slog.Logger
}

// OAuth serves the OAuth2 sign-in routes.
type OAuth struct {
	store        *extension.Store
	client       *mstudio.Client
	clientID     string
	redirectURI  string
	secret       extension.Secret
	scope        string
	secure       bool
	preCookie    string
	choiceCookie string
	signIn       func(echo.Context, *extension.Instance, string, mstudio.UserToken) error
	now          func() time.Time
	logger       *slog.Logger
	pages        Pages
	// refusals logs the callbacks a client brings about itself (no sign-in of this
	// browser, a wrong state, an error in the query) at a bounded rate: nothing limits
	// how often the callback is called.
	refusals *mstudio.RefusalLog
}

// NewOAuth checks cfg and returns the OAuth2 sign-in.
func NewOAuth(cfg OAuthConfig) (*OAuth, error) {
	switch {
	case cfg.Store == nil || cfg.Client == nil || cfg.SignIn == nil || cfg.Pages == nil:
		return nil, errors.New("atrek: oauth needs a store, a client, SignIn and pages")
	case cfg.Store.Keys() == nil:
		return nil, errors.New("atrek: oauth needs a store with keys to seal its cookies")
	case !mstudio.IsUUID(cfg.ExtensionID):
		return nil, fmt.Errorf("atrek: oauth client id %q is not an extension id", cfg.ExtensionID)
	}
	pub, err := url.Parse(strings.TrimSuffix(cfg.PublicURL, "/"))
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" || pub.RawQuery != "" || pub.Fragment != "" {
		return nil, fmt.Errorf("atrek: oauth public url %q: want http(s)://HOST[/PATH]", cfg.PublicURL)
	}
	o := &OAuth{
		store: cfg.Store, client: cfg.Client, clientID: strings.ToLower(cfg.ExtensionID),
		redirectURI: pub.String() + oauthCallbackPath, secret: cfg.ClientSecret, scope: cfg.Scope,
		secure: pub.Scheme == "https", preCookie: "ext_oauth", choiceCookie: "ext_oauth_choice",
		signIn: cfg.SignIn, now: cfg.Now, logger: cfg.Logger, pages: cfg.Pages,
	}
	if o.secure {
		// The prefix makes the browser refuse the cookie unless it is Secure.
		o.preCookie, o.choiceCookie = "__Secure-"+o.preCookie, "__Secure-"+o.choiceCookie
	}
	if o.scope == "" {
		o.scope = oauthDefaultScope
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	o.refusals = mstudio.NewRefusalLog(o.logger, "oauth sign-in refused", slog.LevelInfo, 0)
	return o, nil
}

// NoStore is the middleware of the sign-in's routes (Login, Callback, Choose).
func (o *OAuth) NoStore() echo.MiddlewareFunc { return oauthNoStore }

// oauthNoStore keeps codes, states and chooser pages out of caches and Referer headers.
func oauthNoStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		return next(c)
	}
}

// oauthPreSession binds a sign-in in flight to the browser that started it.
type oauthPreSession struct {
	State    string `json:"s"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"` // Unix seconds: the browser's Max-Age is not ours to trust
}

// oauthChoice carries the user's tokens to the choice of instance, sealed in a cookie:
// tokens never go into a URL.
type oauthChoice struct {
	UserID       string    `json:"u"`
	Token        string    `json:"t"`
	Refresh      string    `json:"r"`
	TokenExpires time.Time `json:"x"`
	Expires      int64     `json:"e"`
	// Nonce makes the cookie single use: Choose claims it once, on any replica.
	Nonce string `json:"n"`
}

// Login (GET /login/mstudio) starts a sign-in: a fresh state and verifier in the pre-session cookie, and off
// to the platform's consent.
func (o *OAuth) Login(c echo.Context) error {
	pre := oauthPreSession{State: oauthRandom(), Verifier: oauthRandom(), Expires: o.now().Add(oauthCookieTTL).Unix()}
	if err := o.setSealed(c, o.preCookie, oauthPreAAD, pre); err != nil {
		return o.internal(c, "seal pre-session", err)
	}
	return c.Redirect(http.StatusSeeOther, o.client.AuthorizeURL(mstudio.AuthorizeRequest{
		ClientID: o.clientID, RedirectURI: o.redirectURI, Scope: o.scope,
		State: pre.State, CodeChallenge: mstudio.PKCEChallenge(pre.Verifier),
	}))
}

// Callback (GET /login/mstudio/callback) takes the platform's answer: it must come back to the browser that started
// the sign-in (state), and the code is exchanged with that browser's verifier.
func (o *OAuth) Callback(c echo.Context) error {
	// Every answer ends this attempt: a state is good for one callback only.
	o.clearCookie(c, o.preCookie)
	ctx := c.Request().Context()
	var pre oauthPreSession
	if !o.openSealed(c, o.preCookie, oauthPreAAD, &pre) || o.now().Unix() >= pre.Expires {
		o.refusals.Refused(ctx, "no valid pre-session cookie", c.RealIP())
		return o.fail(c, oauthProblemExpired)
	}
	q := c.QueryParams()
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(pre.State)) != 1 {
		o.refusals.Refused(ctx, "state mismatch", c.RealIP())
		return o.fail(c, oauthProblemState)
	}
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			o.refusals.Refused(ctx, "the platform answered access_denied", c.RealIP())
			return o.fail(c, oauthProblemDenied)
		}
		// The error's text is the sender's: only that there was one is logged.
		o.refusals.Refused(ctx, "the platform answered an error", c.RealIP())
		return o.fail(c, oauthProblemIncomplete)
	}
	code := q.Get("code")
	if code == "" {
		return o.fail(c, oauthProblemIncomplete)
	}
	tok, err := o.client.ExchangeAuthorizationCode(ctx, code, o.redirectURI, pre.Verifier, o.clientID, o.secret)
	if err != nil {
		// The client's error texts mask the code and the verifier.
		var apiErr *mstudio.Error
		if errors.As(err, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Status != http.StatusTooManyRequests {
			o.logger.InfoContext(ctx, "oauth sign-in: code refused", "error", err.Error())
			return o.fail(c, oauthProblemIncomplete)
		}
		o.logger.WarnContext(ctx, "oauth sign-in: code exchange failed", "error", err.Error())
		return o.fail(c, oauthProblemPlatform)
	}
	ut := mstudio.UserToken{Token: tok.AccessToken, RefreshToken: tok.RefreshToken, ExpiresAt: tok.ExpiresAt}
	user, err := o.client.User(ctx, ut.Token, "self")
	if err != nil {
		o.logger.WarnContext(ctx, "oauth sign-in: reading the user failed", "error", err.Error())
		return o.fail(c, oauthProblemPlatform)
	}
	ins, err := o.usableInstances(ctx, ut.Token)
	if err != nil {
		o.logger.WarnContext(ctx, "oauth sign-in: reading instances failed", "user_id", user.ID, "error", err.Error())
		return o.fail(c, oauthProblemPlatform)
	}
	switch len(ins) {
	case 0:
		o.logger.InfoContext(ctx, "oauth sign-in: no instance for the user", "user_id", user.ID)
		return o.fail(c, oauthProblemNone)
	case 1:
		o.logger.InfoContext(ctx, "oauth sign-in", "user_id", user.ID, "instance_id", ins[0].ID)
		return o.signIn(c, &ins[0], user.ID, ut)
	}
	choice := oauthChoice{
		UserID: user.ID, Token: ut.Token.Reveal(), Refresh: ut.RefreshToken.Reveal(),
		TokenExpires: ut.ExpiresAt, Expires: o.now().Add(oauthCookieTTL).Unix(), Nonce: oauthRandom(),
	}
	if err := o.setSealed(c, o.choiceCookie, oauthChoiceAAD, choice); err != nil {
		return o.internal(c, "seal choice", err)
	}
	entries := make([]ChoiceEntry, 0, len(ins))
	for _, in := range ins {
		entries = append(entries, ChoiceEntry{Name: in.ContextName, Customer: in.ContextKind == extension.ContextCustomer,
			URL: oauthChoosePath + "?" + url.Values{"instance": {in.ID}}.Encode()})
	}
	o.logger.InfoContext(ctx, "oauth sign-in: choice of instances", "user_id", user.ID, "instances", len(ins))
	return o.pages.Render(c, http.StatusOK, PageChoose, entries)
}

// Choose (GET /login/mstudio/choose) signs the user in to the instance picked on the chooser page. The choice
// cookie proves that this browser went through the callback; the platform is asked
// again whether the user may act in the instance, since the link names any id.
func (o *OAuth) Choose(c echo.Context) error {
	ctx := c.Request().Context()
	var ch oauthChoice
	if !o.openSealed(c, o.choiceCookie, oauthChoiceAAD, &ch) || o.now().Unix() >= ch.Expires || !o.now().Before(ch.TokenExpires) {
		o.clearCookie(c, o.choiceCookie)
		return o.fail(c, oauthProblemExpired)
	}
	id := strings.ToLower(c.QueryParam("instance"))
	if !mstudio.IsUUID(id) {
		return o.fail(c, oauthProblemUnavailable)
	}
	in, err := o.store.InstanceByID(ctx, id)
	switch {
	case errors.Is(err, extension.ErrNotFound):
		return o.fail(c, oauthProblemUnavailable)
	case err != nil:
		return o.internal(c, "load instance", err)
	case in.Removed() || !in.Enabled:
		return o.fail(c, oauthProblemUnavailable)
	}
	tok := mstudio.UserToken{Token: extension.Secret(ch.Token), RefreshToken: extension.Secret(ch.Refresh), ExpiresAt: ch.TokenExpires}
	ok, err := o.mayAct(ctx, tok.Token, id)
	if err != nil {
		o.logger.WarnContext(ctx, "oauth sign-in: reading the instance failed", "user_id", ch.UserID, "instance_id", id, "error", err.Error())
		return o.fail(c, oauthProblemPlatform)
	}
	if !ok {
		return o.fail(c, oauthProblemUnavailable)
	}
	// The cookie is good for one sign-in: a copy of it, replayed while it lasts, finds
	// its nonce taken. Claimed only now, so a refused choice can be made again.
	o.clearCookie(c, o.choiceCookie)
	if first, err := o.store.ClaimRetrievalKey(ctx, oauthChoiceAAD+":"+ch.Nonce, oauthCookieTTL); err != nil {
		return o.internal(c, "claim choice", err)
	} else if !first || ch.Nonce == "" {
		o.logger.InfoContext(ctx, "oauth sign-in refused: choice already used", "user_id", ch.UserID)
		return o.fail(c, oauthProblemExpired)
	}
	o.logger.InfoContext(ctx, "oauth sign-in", "user_id", ch.UserID, "instance_id", id)
	return o.signIn(c, in, ch.UserID, tok)
}

// PageChoose is the page where a platform user who may open several instances picks
// one; its data is a []ChoiceEntry.
const PageChoose = "choose"

// ChoiceEntry is one instance on the chooser page.
type ChoiceEntry struct {
	Name     string // the project's or organisation's name; "" if not known yet
	Customer bool   // an organisation, not a project
	URL      string
}

// usableInstances lists the live, enabled instances the token's user may act in.
func (o *OAuth) usableInstances(ctx context.Context, token extension.Secret) ([]extension.Instance, error) {
	all, err := o.store.Instances(ctx, false)
	if err != nil {
		return nil, err
	}
	var live []extension.Instance
	for _, in := range all {
		if in.Enabled {
			live = append(live, in)
		}
	}
	ok := make([]bool, len(live))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(oauthCheckParallel)
	for i := range live {
		g.Go(func() (err error) {
			ok[i], err = o.mayAct(gctx, token, live[i].ID)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var out []extension.Instance
	for i, in := range live {
		if ok[i] {
			out = append(out, in)
		}
	}
	return out, nil
}

// mayAct reports whether the token's user may read the instance at the platform: 403
// and 404 say no, any other failure is an error.
func (o *OAuth) mayAct(ctx context.Context, token extension.Secret, id string) (bool, error) {
	in, err := o.client.Instance(ctx, token, id)
	var apiErr *mstudio.Error
	switch {
	case err == nil:
		return !in.Disabled, nil
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusForbidden || apiErr.Status == http.StatusNotFound):
		return false, nil
	}
	return false, err
}
