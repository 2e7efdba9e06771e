package frontend

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"
)

// Sign-in with an instance's OpenID Connect provider, the way out: the login page links
// (a link, not a form: the pages' form-action CSP would stop a form whose answer
// redirects to another site) to /app/{instanceId}/login/oidc/{providerId}, which answers
// 303 to the provider with an authorization code request, PKCE (S256), state and nonce.
// What the way back needs (state, PKCE verifier, nonce, provider, and what the sign-in is
// for) travels in a short-lived cookie sealed with the instance secrets' keys, so it can
// be neither read nor changed; the callback takes it once.

// oidcCallbackPath is the one redirect URI of every provider: EXT_PUBLIC_URL + this.
const oidcCallbackPath = "/login/oidc/callback"

// flowTTL is how long a sign-in at a provider may take.
const flowTTL = 10 * time.Minute

// flowCookieName is the cookie of a sign-in under way; __Host- on https (see hostPrefix).
const flowCookieName = "ext_oidc"

// maxFlowCookie bounds the cookie read: what we write is well under 1 KiB.
const maxFlowCookie = 4096

// flowAAD binds a sealed flow to its use: no other sealed value opens as one.
const flowAAD = "oidc-flow"

// What a sign-in at a provider is for.
const (
	intentLogin   = "login"
	intentConnect = "connect" // a signed-in account links the provider
	intentInvite  = "invite"  // accept an invitation
)

// oidcFlow is a sign-in under way, sealed into the flow cookie.
type oidcFlow struct {
	Instance   string `json:"i"`
	Provider   string `json:"p"`
	State      string `json:"s"`
	Verifier   string `json:"v"`
	Nonce      string `json:"n"`
	Expires    int64  `json:"e"` // Unix seconds
	Intent     string `json:"k"`
	Account    string `json:"a,omitempty"` // connect: the signed-in account
	Invitation string `json:"t,omitempty"` // invite: the invitation's link token
}

// errBadFlow: the flow cookie is missing, damaged, forged or expired.
var errBadFlow = errors.New("no valid sign-in under way")

// parseFlow opens and checks a flow cookie's value.
func parseFlow(kr *extension.Keyring, value string, now time.Time) (oidcFlow, error) {
	if value == "" || len(value) > maxFlowCookie {
		return oidcFlow{}, errBadFlow
	}
	plain, err := kr.Open(value, flowAAD)
	if err != nil {
		return oidcFlow{}, errBadFlow
	}
	var fl oidcFlow
	dec := json.NewDecoder(strings.NewReader(plain.Reveal()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fl); err != nil {
		return oidcFlow{}, errBadFlow
	}
	switch {
	case !uuidPattern.MatchString(fl.Instance), !uuidPattern.MatchString(fl.Provider),
		len(fl.State) != 43, len(fl.Nonce) != 43, len(fl.Verifier) < 43 || len(fl.Verifier) > 128,
		!now.Before(time.Unix(fl.Expires, 0)):
		return oidcFlow{}, errBadFlow
	}
	switch fl.Intent {
	case intentLogin:
		if fl.Account != "" || fl.Invitation != "" {
			return oidcFlow{}, errBadFlow
		}
	case intentConnect:
		if fl.Account == "" || fl.Invitation != "" {
			return oidcFlow{}, errBadFlow
		}
	case intentInvite:
		if fl.Invitation == "" || fl.Account != "" {
			return oidcFlow{}, errBadFlow
		}
	default:
		return oidcFlow{}, errBadFlow
	}
	return fl, nil
}

func (f *Frontend) flowCookieName() string {
	if f.Sessions.secure {
		return hostPrefix + flowCookieName
	}
	return flowCookieName
}

// setFlowCookie writes (maxAge > 0) or drops the flow cookie. SameSite=Lax: the way back
// from the provider is a cross-site top-level navigation, which must carry it.
func (f *Frontend) setFlowCookie(c echo.Context, value string, maxAge int) {
	http.SetCookie(c.Response(), &http.Cookie{Name: f.flowCookieName(), Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: f.Sessions.secure, SameSite: http.SameSiteLaxMode})
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// callbackURL is the redirect URI of every provider.
func (f *Frontend) callbackURL() string { return f.origin + oidcCallbackPath }

// StartOIDC serves GET /app/{instanceId}/login/oidc/{providerId}: 303 to the provider.
// ?prompt=select asks the provider to let the user pick another account, where its
// template says it can.
func (f *Frontend) StartOIDC(c echo.Context) error {
	id := c.Param(InstanceParam)
	if !uuidPattern.MatchString(id) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	if _, ok, err := f.signInSettings(c, id); !ok {
		return err
	}
	return f.startFlow(c, oidcFlow{Instance: strings.ToLower(id), Provider: c.Param("providerId"), Intent: intentLogin})
}

// ConnectOIDC serves GET /app/{instanceId}/account/identities/connect/{providerId}, behind
// the session and from our own pages only: a sign-in at the provider that links its
// identity to the signed-in account.
func (f *Frontend) ConnectOIDC(c echo.Context) error {
	// A GET, yet it changes the account: another site must not send a signed-in browser
	// here to connect an identity of its choosing. The account page's link is same-origin.
	if !f.sameOrigin(c.Request()) {
		f.refusals.Refused(c.Request().Context(), "cross-site connect", c.RealIP())
		return f.Problem(c, http.StatusForbidden, "problem.cross_site", "")
	}
	s, _ := SignedInFrom(c.Request().Context())
	// Another instance's provider is none of this page's business, whoever asks.
	if _, err := f.store.OIDCProviderByID(c.Request().Context(), s.Instance.ID, strings.ToLower(c.Param("providerId"))); errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	} else if err != nil {
		return f.internal(c, "load provider", err)
	}
	if !s.Account.Local() {
		return f.Problem(c, http.StatusForbidden, "oidc.platform_account", AccountPath(s.Instance.ID))
	}
	return f.startFlow(c, oidcFlow{Instance: s.Instance.ID, Provider: c.Param("providerId"), Intent: intentConnect, Account: s.Account.ID})
}

// InviteOIDC serves GET /invite/{token}/oidc/{providerId}: accept the invitation by
// signing in at the provider with the invited address.
func (f *Frontend) InviteOIDC(c echo.Context) error {
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	token := extension.Secret(c.Param("token"))
	inv, err := f.store.Invitation(c.Request().Context(), token)
	if errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	} else if err != nil {
		return f.internal(c, "load invitation", err)
	}
	if inv.State != extension.InvitationPending {
		return f.Problem(c, http.StatusGone, "oidc.invitation_gone", "")
	}
	return f.startFlow(c, oidcFlow{Instance: inv.InstanceID, Provider: c.Param("providerId"), Intent: intentInvite,
		Invitation: token.Reveal()})
}

// startFlow seals fl with fresh state, nonce and verifier into the flow cookie and sends
// the browser to the provider.
func (f *Frontend) startFlow(c echo.Context, fl oidcFlow) error {
	ctx := c.Request().Context()
	c.Response().Header().Set("Cache-Control", "no-store")
	// Each start costs a trip to the provider on the way back, and each failed way back
	// an audit entry: starts share the sign-in form's limit per address.
	if !f.loginLimit.allow(c.RealIP()) {
		f.refusals.Refused(ctx, "provider sign-in rate limited", c.RealIP())
		c.Response().Header().Set("Retry-After", "1")
		return f.Problem(c, http.StatusTooManyRequests, "error.too_many", "")
	}
	if !uuidPattern.MatchString(fl.Provider) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	p, err := f.store.OIDCProviderByID(ctx, fl.Instance, strings.ToLower(fl.Provider))
	if errors.Is(err, extension.ErrNotFound) || (err == nil && !p.Enabled) {
		return f.Problem(c, http.StatusNotFound, "oidc.provider_gone", LoginPath(fl.Instance))
	} else if err != nil {
		return f.internal(c, "load provider", err)
	}
	fl.Provider = p.ID
	op, err := f.oidcProvider(ctx, p.Issuer)
	if err != nil {
		f.logger.WarnContext(ctx, "provider discovery failed", "instance_id", p.InstanceID, "provider_id", p.ID, "error", err.Error())
		return f.Problem(c, http.StatusBadGateway, "oidc.provider_down", LoginPath(fl.Instance))
	}
	if fl.State, err = randomToken(); err == nil {
		fl.Nonce, err = randomToken()
	}
	if err != nil {
		return f.internal(c, "random state", err)
	}
	fl.Verifier = oauth2.GenerateVerifier()
	fl.Expires = f.now().Add(flowTTL).Unix()
	plain, err := json.Marshal(fl)
	if err != nil {
		return f.internal(c, "encode flow", err)
	}
	sealed, err := f.store.Keys().Seal(extension.Secret(plain), flowAAD)
	if err != nil {
		return f.internal(c, "seal flow", err)
	}
	f.setFlowCookie(c, sealed, int(flowTTL/time.Second))
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(fl.Verifier), oauth2.SetAuthURLParam("nonce", fl.Nonce)}
	if c.QueryParam("prompt") == "select" && p.TemplateInfo().SelectAccount {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	for k, v := range p.Endpoints.ExtraParams { // never one the sign-in sets (ReservedAuthParams)
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	conf := oauth2.Config{ClientID: p.ClientID, Endpoint: endpointOf(op, p), RedirectURL: f.callbackURL(), Scopes: p.Scopes}
	return c.Redirect(http.StatusSeeOther, conf.AuthCodeURL(fl.State, opts...))
}

// providerLink is a link that starts a sign-in at a provider.
type providerLink struct {
	ID, Name, URL string
}

// providerLinks are links to the instance's enabled providers and then the operator's,
// each prefix + its id. A failure to list them is logged and leaves them out: the page
// works without them.
func (f *Frontend) providerLinks(c echo.Context, instanceID, prefix string) []providerLink {
	ps, err := f.store.OIDCProviders(c.Request().Context(), instanceID)
	if err != nil {
		f.logger.ErrorContext(c.Request().Context(), "frontend: list providers failed", "error", err.Error())
		return nil
	}
	var out []providerLink
	for _, p := range append(ps, f.store.OperatorOIDCProviders(instanceID)...) {
		if p.Enabled {
			out = append(out, providerLink{ID: p.ID, Name: p.Name, URL: prefix + p.ID})
		}
	}
	return out
}

// DisconnectIdentity serves POST /app/{instanceId}/account/identities/{identityId}/remove:
// the account's identity at a provider is unlinked, unless it is the account's last way
// to sign in (the page says so, 409).
func (f *Frontend) DisconnectIdentity(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	err := f.store.UnlinkOIDCIdentity(ctx, s.Instance.ID, s.Account.ID, c.Param("identityId"))
	switch {
	case errors.Is(err, extension.ErrLastWayIn):
		return f.renderAccount(c, http.StatusConflict, accountView{Name: s.Account.Name, Language: s.Account.Language,
			IdentityProblem: "account.identities.last_way_in"})
	case errors.Is(err, extension.ErrNotFound):
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	case err != nil:
		return f.internal(c, "unlink identity", err)
	}
	f.logger.InfoContext(ctx, "identity disconnected", "instance_id", s.Instance.ID, "account_id", s.Account.ID)
	return c.Redirect(http.StatusSeeOther, AccountPath(s.Instance.ID)+"?done="+doneDisconnected)
}
