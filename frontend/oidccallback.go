package frontend

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"
)

// The way back from a provider (GET /login/oidc/callback): the flow cookie is taken once,
// the state must be its own and unused, the code is exchanged with the PKCE verifier, the
// ID token is verified by go-oidc against the provider's own issuer (a token of another
// provider fails: the mix-up defence) and its nonce, and the userinfo claims fill in what
// the ID token leaves out. Who gets in is decided in decide (oidcdecide.go).

// callbackQuery is the callback's query: the provider's answer.
type callbackQuery struct {
	Code, State, Error string
}

// maxCallbackParam bounds each parameter looked at.
const maxCallbackParam = 4096

// parseCallbackQuery reads code, state and error, each at most once and of bounded
// length; ok is false for anything else.
func parseCallbackQuery(q url.Values) (cq callbackQuery, ok bool) {
	for _, k := range []string{"code", "state", "error"} {
		if len(q[k]) > 1 || len(q.Get(k)) > maxCallbackParam {
			return callbackQuery{}, false
		}
	}
	cq = callbackQuery{Code: q.Get("code"), State: q.Get("state"), Error: q.Get("error")}
	if cq.State == "" || (cq.Code == "") == (cq.Error == "") {
		return callbackQuery{}, false // exactly one of code and error
	}
	return cq, true
}

// OIDCCallback serves GET /login/oidc/callback.
func (f *Frontend) OIDCCallback(c echo.Context) error {
	ctx := c.Request().Context()
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().Header().Set("Referrer-Policy", "no-referrer")
	var fl oidcFlow
	ck, err := c.Cookie(f.flowCookieName())
	if err == nil {
		fl, err = parseFlow(f.store.Keys(), ck.Value, f.now())
	}
	f.setFlowCookie(c, "", -1) // taken once, whatever happens next
	if err != nil {
		f.refusals.Refused(ctx, "provider callback without a valid flow cookie", c.RealIP())
		return f.refuse(c, refusal{Reason: reasonState})
	}
	r := refusal{Flow: fl}
	cq, ok := parseCallbackQuery(c.QueryParams())
	if !ok || subtle.ConstantTimeCompare([]byte(cq.State), []byte(fl.State)) != 1 {
		r.Reason = reasonState
		return f.refuseAudited(c, r)
	}
	if err := f.store.UseOIDCState(ctx, extension.Secret(fl.State), time.Unix(fl.Expires, 0)); errors.Is(err, extension.ErrStateUsed) {
		r.Reason = reasonState
		return f.refuseAudited(c, r)
	} else if err != nil {
		return f.internal(c, "use state", err)
	}
	p, err := f.store.OIDCProviderByID(ctx, fl.Instance, fl.Provider)
	if errors.Is(err, extension.ErrNotFound) || (err == nil && !p.Enabled) {
		r.Provider, r.Reason = p, reasonProviderGone
		if err := f.auditRefusal(c, r); err != nil {
			return err
		}
		return f.Problem(c, http.StatusNotFound, "oidc.provider_gone", LoginPath(fl.Instance))
	} else if err != nil {
		return f.internal(c, "load provider", err)
	}
	r.Provider = p
	if cq.Error != "" {
		r.Reason = reasonProviderError
		if cq.Error == "access_denied" {
			r.Reason = reasonDenied
		}
		return f.refuseAudited(c, r)
	}
	id, ok := f.exchange(c, p, fl, cq.Code)
	if !ok {
		r.Reason = reasonToken
		return f.refuseAudited(c, r)
	}
	return f.decide(c, p, fl, id)
}

// exchange redeems the code and returns what the provider says of the user; ok is false
// when the code, the token or its signature, issuer, audience, expiry or nonce does not
// hold. Neither the code nor a token ever reaches a log line: only what failed.
func (f *Frontend) exchange(c echo.Context, p extension.OIDCProvider, fl oidcFlow, code string) (identity, bool) {
	ctx := oidc.ClientContext(c.Request().Context(), f.oidcClient)
	log := f.logger.With("instance_id", p.InstanceID, "provider_id", p.ID)
	op, err := f.oidcProvider(ctx, p.Issuer)
	if err != nil {
		log.WarnContext(ctx, "provider discovery failed", "error", err.Error())
		return identity{}, false
	}
	secret, err := f.store.OIDCClientSecret(ctx, p)
	if err != nil {
		log.ErrorContext(ctx, "client secret does not open", "error", err.Error())
		return identity{}, false
	}
	conf := oauth2.Config{ClientID: p.ClientID, ClientSecret: secret.Reveal(), Endpoint: endpointOf(op, p),
		RedirectURL: f.callbackURL(), Scopes: p.Scopes}
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(fl.Verifier))
	if err != nil {
		// The provider's error text may repeat the code: only its error code is logged.
		var re *oauth2.RetrieveError
		kind := "transport"
		if errors.As(err, &re) {
			kind = clip(re.ErrorCode, 64)
		}
		log.InfoContext(ctx, "code exchange refused", "error_code", kind)
		return identity{}, false
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		log.InfoContext(ctx, "token response without an ID token")
		return identity{}, false
	}
	idt, err := op.Verifier(&oidc.Config{ClientID: p.ClientID, Now: f.now}).Verify(ctx, raw)
	if err != nil {
		log.InfoContext(ctx, "ID token refused", "error", verifyFailure(err))
		return identity{}, false
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(fl.Nonce)) != 1 {
		log.InfoContext(ctx, "ID token refused", "error", "nonce")
		return identity{}, false
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		log.InfoContext(ctx, "ID token refused", "error", "claims")
		return identity{}, false
	}
	if uop := userinfoOf(ctx, op, p); uop.UserInfoEndpoint() != "" {
		uctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ui, err := uop.UserInfo(uctx, oauth2.StaticTokenSource(tok))
		var more map[string]any
		switch {
		case err != nil:
			log.InfoContext(ctx, "userinfo not read", "error", "userinfo")
		case ui.Subject != idt.Subject:
			log.InfoContext(ctx, "userinfo of another subject ignored")
		case ui.Claims(&more) == nil:
			// An address of the userinfo that is not the ID token's brings neither itself
			// nor its verification: the verified claim must speak of the address used.
			tmpl := p.TemplateInfo()
			signed, inToken := claims[tmpl.EmailClaim].(string)
			other, inUserinfo := more[tmpl.EmailClaim].(string)
			if inToken && (inUserinfo && other != signed || !inUserinfo && more[tmpl.EmailClaim] != nil) {
				delete(more, tmpl.EmailClaim)
				delete(more, tmpl.VerifiedClaim)
			}
			for k, v := range more {
				if _, signed := claims[k]; !signed { // the signed ID token wins
					claims[k] = v
				}
			}
		}
	}
	return identityOf(p.TemplateInfo(), idt.Subject, claims), true
}

// verifyFailure names what go-oidc refused, without the token.
func verifyFailure(err error) string {
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		return "expired"
	}
	return "signature, issuer or audience"
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
