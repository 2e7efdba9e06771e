package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/extension-backend/extension-backend/extension"
	"golang.org/x/oauth2"
)

// Discovery of OpenID Connect providers: the settings form checks an issuer by its
// discovery document, and sign-ins use go-oidc's provider (endpoints and signing keys),
// kept for a while per issuer so a sign-in does not fetch the document and the keys
// every time.

// errIssuerMismatch: the discovery document names another issuer than the one asked for.
var errIssuerMismatch = errors.New("discovery document names another issuer")

const (
	maxDiscoveryBytes = 1 << 20
	oidcProviderTTL   = 10 * time.Minute
)

// discover fetches an issuer's discovery document and returns the issuer it names;
// errIssuerMismatch when that is not the issuer asked for.
func (f *Frontend) discover(ctx context.Context, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := f.oidcClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery document: status %d", resp.StatusCode)
	}
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
		UserinfoEndpoint      string `json:"userinfo_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxDiscoveryBytes)).Decode(&doc); err != nil {
		return "", fmt.Errorf("discovery document: %w", err)
	}
	if doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == "" || doc.JWKSURI == "" {
		return doc.Issuer, errors.New("discovery document: endpoints missing")
	}
	if err := checkOIDCEndpoints(issuer, f.oidcLocal, doc.AuthorizationEndpoint, doc.TokenEndpoint, doc.JWKSURI,
		doc.UserinfoEndpoint); err != nil {
		return doc.Issuer, fmt.Errorf("discovery document: %w", err)
	}
	if doc.Issuer != issuer {
		if len(doc.Issuer) > 2048 {
			doc.Issuer = doc.Issuer[:2048]
		}
		return doc.Issuer, errIssuerMismatch
	}
	return doc.Issuer, nil
}

// oidcProviders keeps go-oidc providers by issuer for oidcProviderTTL.
type oidcProviders struct {
	mu      sync.Mutex
	byIssue map[string]cachedProvider
}

type cachedProvider struct {
	p       *oidc.Provider
	fetched time.Time
}

// oidcProvider returns go-oidc's provider of an issuer, which checks that the discovery
// document names that very issuer.
func (f *Frontend) oidcProvider(ctx context.Context, issuer string) (*oidc.Provider, error) {
	now := time.Now()
	f.providers.mu.Lock()
	cp, ok := f.providers.byIssue[issuer]
	f.providers.mu.Unlock()
	if ok && now.Sub(cp.fetched) < oidcProviderTTL {
		return cp.p, nil
	}
	// The provider keeps this context for fetching its keys later: not the request's.
	p, err := oidc.NewProvider(oidc.ClientContext(context.WithoutCancel(ctx), f.oidcClient), issuer)
	if err != nil {
		return nil, err
	}
	var keys struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&keys); err != nil {
		return nil, err
	}
	if err := checkOIDCEndpoints(issuer, f.oidcLocal, p.Endpoint().AuthURL, p.Endpoint().TokenURL, p.UserInfoEndpoint(),
		keys.JWKSURI); err != nil {
		return nil, err
	}
	f.providers.mu.Lock()
	defer f.providers.mu.Unlock()
	if len(f.providers.byIssue) > 1000 {
		f.providers.byIssue = map[string]cachedProvider{}
	}
	f.providers.byIssue[issuer] = cachedProvider{p: p, fetched: now}
	return p, nil
}

// endpointOf is the provider's authorization and token endpoints: discovery's, or a
// custom provider's own where it has them.
func endpointOf(op *oidc.Provider, p extension.OIDCProvider) oauth2.Endpoint {
	ep := op.Endpoint()
	if u := p.Endpoints.Authorization; u != "" {
		ep.AuthURL = u
	}
	if u := p.Endpoints.Token; u != "" {
		ep.TokenURL = u
	}
	return ep
}

// userinfoOf is the provider to read userinfo through: discovery's, or one with a custom
// provider's own userinfo endpoint. The ID token is still verified with discovery's
// provider (its issuer and keys).
func userinfoOf(ctx context.Context, op *oidc.Provider, p extension.OIDCProvider) *oidc.Provider {
	if p.Endpoints.Userinfo == "" {
		return op
	}
	var doc struct {
		Issuer string `json:"issuer"`
		JWKS   string `json:"jwks_uri"`
	}
	_ = op.Claims(&doc) // the document was read once already; what is missing stays empty
	return (&oidc.ProviderConfig{IssuerURL: doc.Issuer, UserInfoURL: p.Endpoints.Userinfo, JWKSURL: doc.JWKS}).NewProvider(ctx)
}
