package extension

import (
	"maps"
	"slices"

	"github.com/google/uuid"
)

// OperatorProvider is an OpenID Connect provider of the extension's operator
// (EXT_OIDC_PROVIDERS_FILE), for the vendor's own staff: the same settings as an
// instance's provider, offered on every instance's login page. Its rules are the
// instance providers' rules, so with AutoProvision off (the default) it lets in only
// people an instance invited or whose identity is linked already: staff never join a
// customer's instance unasked.
type OperatorProvider struct {
	// Key names it in the file; with an instance's id it makes the provider's id there.
	Key          string
	Provider     OIDCProvider // ID and InstanceID empty
	ClientSecret Secret
}

// operatorNamespace is the UUID namespace of operator providers' ids.
var operatorNamespace = uuid.MustParse("6f1c2d7e-8a43-5b9e-9c0d-4e7f1a2b3c5d")

// ProviderID is the id of the operator's provider in an instance: one per instance, so an
// identity (provider id, subject) is linked to one account per instance as it is for an
// instance's own provider, and a staff member may have an account in several instances.
// The issuer (normalised) and the template are part of it: a subject is unique only at its
// issuer, so pointing the file's key at another issuer must not find the identities linked
// at the old one, as an edit of an instance's own provider drops them (found by review).
// A new name keeps them.
func (op OperatorProvider) ProviderID(instanceID string) string {
	return uuid.NewSHA1(operatorNamespace, []byte(op.Key+"\x00"+NormalizeIssuer(op.Provider.Issuer)+"\x00"+op.Provider.Template+"\x00"+instanceID)).String()
}

// SetOperatorProviders sets the operator's providers; called once at start, before the
// store serves pages.
func (s *Store) SetOperatorProviders(ps []OperatorProvider) {
	ps = slices.Clone(ps)
	s.operator.Store(&ps)
}

// operatorProviders are the operator's providers, none when unset.
func (s *Store) operatorProviders() []OperatorProvider {
	if p := s.operator.Load(); p != nil {
		return *p
	}
	return nil
}

// OperatorOIDCProviders are the operator's providers as they are in an instance (their
// ids there, Operator set).
func (s *Store) OperatorOIDCProviders(instanceID string) []OIDCProvider {
	ops := s.operatorProviders()
	out := make([]OIDCProvider, 0, len(ops))
	for _, op := range ops {
		out = append(out, op.in(instanceID))
	}
	return out
}

// in is the provider as it is in an instance.
func (op OperatorProvider) in(instanceID string) OIDCProvider {
	p := op.Provider
	p.ID, p.InstanceID, p.Operator = op.ProviderID(instanceID), instanceID, true
	p.HasClientSecret = op.ClientSecret != ""
	p.Scopes, p.AllowedDomains = slices.Clone(p.Scopes), slices.Clone(p.AllowedDomains)
	p.RequiredValues, p.RoleMap = slices.Clone(p.RequiredValues), slices.Clone(p.RoleMap)
	p.Endpoints.ExtraParams = maps.Clone(p.Endpoints.ExtraParams)
	return p
}

// operatorProvider finds the operator's provider with an id in an instance.
func (s *Store) operatorProvider(instanceID, id string) (OperatorProvider, bool) {
	for _, op := range s.operatorProviders() {
		if op.ProviderID(instanceID) == id {
			return op, true
		}
	}
	return OperatorProvider{}, false
}

// CheckOperatorProvider checks an operator provider's settings as SaveOIDCProvider checks
// an instance's.
func CheckOperatorProvider(p OIDCProvider) error { return checkProvider(p) }
