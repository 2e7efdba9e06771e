package extension

import (
	"fmt"
	"net"
	"net/url"
	"slices"
)

// OIDCEndpoints are a custom provider's own endpoints and extra authorization
// parameters: each one set overrides what the issuer's discovery document says. The
// issuer and its signing keys always come from discovery, so an ID token is still checked
// against the provider's own issuer and keys.
type OIDCEndpoints struct {
	Authorization string            `json:"authorization,omitempty"`
	Token         string            `json:"token,omitempty"`
	Userinfo      string            `json:"userinfo,omitempty"`
	ExtraParams   map[string]string `json:"extra_params,omitempty"`
}

// IsZero reports whether nothing is overridden.
func (e OIDCEndpoints) IsZero() bool {
	return e.Authorization == "" && e.Token == "" && e.Userinfo == "" && len(e.ExtraParams) == 0
}

// ReservedAuthParams are the authorization request's parameters the sign-in sets itself;
// extra parameters may not replace them.
var ReservedAuthParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "response_mode", "request", "request_uri",
	"id_token_hint", "max_age", "acr_values", "claims"}

// checkEndpoints checks a provider's endpoints: only the custom template has them.
func checkEndpoints(template string, e OIDCEndpoints) error {
	if e.IsZero() {
		return nil
	}
	if template != "custom" {
		return fmt.Errorf("%w: only a custom provider has its own endpoints", ErrInvalidProvider)
	}
	for _, u := range []string{e.Authorization, e.Token, e.Userinfo} {
		if len(u) > 2048 {
			return fmt.Errorf("%w: an endpoint is too long", ErrInvalidProvider)
		}
		if u != "" && !secureEndpoint(u) {
			// The code, the PKCE verifier and the client secret go to these.
			return fmt.Errorf("%w: an endpoint must be https (http only on loopback)", ErrInvalidProvider)
		}
	}
	if len(e.ExtraParams) > 20 {
		return fmt.Errorf("%w: too many extra parameters", ErrInvalidProvider)
	}
	for k, v := range e.ExtraParams {
		if k == "" || len(k) > 100 || len(v) > 1000 || slices.Contains(ReservedAuthParams, k) {
			return fmt.Errorf("%w: extra parameter %q", ErrInvalidProvider, k)
		}
	}
	return nil
}

// secureEndpoint reports whether u is an https URL with a host, or http on loopback.
func secureEndpoint(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil || parsed.Host == "" || parsed.User != nil {
		return false
	}
	switch parsed.Scheme {
	case "https":
		return true
	case "http":
		host := parsed.Hostname()
		if host == "localhost" {
			return true
		}
		ip := net.ParseIP(host)
		return ip != nil && ip.IsLoopback()
	}
	return false
}
