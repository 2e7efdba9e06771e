package extension_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

const testClientSecret = extension.Secret("client-secret-Zq8wLm3xR7tVp2Kd")

func googleProvider(instanceID string) extension.OIDCProvider {
	return extension.OIDCProvider{InstanceID: instanceID, Template: "google", Name: "Google", Issuer: "https://accounts.google.com",
		ClientID: "client-1", Scopes: []string{"openid", "email"}, DefaultRole: extension.RoleMember, Enabled: true}
}

// Providers are the owners' to manage; the client secret is stored sealed, kept by an edit
// that leaves it out, and never in the audit log.
func TestOIDCProviderStore(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		if _, err := tm.s.SaveOIDCProvider(ctx, member.ID, googleProvider("i-1"), testClientSecret, true); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("a member saved a provider: %v", err)
		}
		p, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), testClientSecret, true)
		if err != nil {
			t.Fatal(err)
		}
		if !p.HasClientSecret || !p.Enabled || p.Template != "google" {
			t.Errorf("saved provider: %+v", p)
		}
		for _, table := range []string{"oidc_providers", "audit_events"} {
			for _, cell := range rawCells(t, tm.s, table) {
				if strings.Contains(cell, testClientSecret.Reveal()) {
					t.Errorf("%s holds the client secret", table)
				}
			}
		}
		if got, err := tm.s.OIDCClientSecret(ctx, p); err != nil || got != testClientSecret {
			t.Errorf("OIDCClientSecret = %v, want the secret saved", err)
		}
		// An edit without a secret keeps it.
		p.Name = "Google Workspace"
		if p, err = tm.s.SaveOIDCProvider(ctx, tm.owner.ID, p, "", false); err != nil || p.Name != "Google Workspace" {
			t.Fatalf("edit: %+v, %v", p, err)
		}
		if got, err := tm.s.OIDCClientSecret(ctx, p); err != nil || got != testClientSecret {
			t.Errorf("secret after an edit without one: %v", err)
		}
		if _, err := tm.s.OIDCProviderByID(ctx, "i-2", p.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("another instance's provider: %v, want %v", err, extension.ErrNotFound)
		}
		if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, p.ID, false); err != nil {
			t.Fatal(err)
		}
		if got, _ := tm.s.OIDCProviderByID(ctx, "i-1", p.ID); got.Enabled {
			t.Error("still enabled after disabling")
		}
		bad := googleProvider("i-1")
		bad.Scopes = []string{"email"}
		if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, bad, "", true); !errors.Is(err, extension.ErrInvalidProvider) {
			t.Errorf("scopes without openid: %v, want %v", err, extension.ErrInvalidProvider)
		}
		bad = googleProvider("i-1")
		bad.AutoProvision = true // anyone with a Google account would join
		if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, bad, "", true); !errors.Is(err, extension.ErrInvalidProvider) {
			t.Errorf("auto-provisioning without domain or claim: %v, want %v", err, extension.ErrInvalidProvider)
		}
		bad = googleProvider("i-1")
		bad.DefaultRole = extension.RoleOwner
		if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, bad, "", true); !errors.Is(err, extension.ErrInvalidRole) {
			t.Errorf("owner as the default role: %v, want %v", err, extension.ErrInvalidRole)
		}
		// Deleting a provider unlinks its identities.
		if _, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-1", "new@example.com"), extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		if err := tm.s.DeleteOIDCProvider(ctx, "i-1", tm.owner.ID, p.ID); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, tm.s, "oidc_identities"); n != 0 {
			t.Errorf("%d identities after deleting their provider", n)
		}
	})
}

func claims(subject, email string) extension.OIDCClaims {
	n, _ := extension.NormalizeEmail(email)
	return extension.OIDCClaims{Subject: subject, Email: email, Normalized: n, Name: "Name of " + email}
}

// An identity belongs to one account; an invitation is accepted by its verified address;
// the last way in stays.
func TestOIDCIdentities(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		p, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), "", true)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "Invited@Example.com", extension.RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.AcceptInvitationByOIDC(ctx, "i-1", p.ID, claims("sub-x", "other@example.com")); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("accepting for an address without invitation: %v, want %v", err, extension.ErrNotFound)
		}
		invited, err := tm.s.AcceptInvitationByOIDC(ctx, "i-1", p.ID, claims("sub-inv", "invited@example.com"))
		if err != nil {
			t.Fatal(err)
		}
		if invited.Role != extension.RoleAdmin || invited.Email != "Invited@Example.com" {
			t.Errorf("invited account: %+v", invited)
		}
		if got, err := tm.s.OIDCIdentityAccount(ctx, p.ID, "sub-inv"); err != nil || got.ID != invited.ID {
			t.Errorf("OIDCIdentityAccount = %+v, %v", got, err)
		}
		// A password sign-in of the account without a password finds no password.
		if _, hash, err := tm.s.LocalCredentials(ctx, "i-1", "invited@example.com"); err != nil || hash != "" {
			t.Errorf("LocalCredentials: %q, %v; want no hash", hash, err)
		}
		// The identity cannot be linked to another account.
		other := tm.invite(t, tm.owner, "other@example.com", extension.RoleMember)
		if err := tm.s.LinkOIDCIdentity(ctx, "i-1", other.ID, p.ID, claims("sub-inv", "invited@example.com")); !errors.Is(err, extension.ErrIdentityLinked) {
			t.Errorf("linking another's identity: %v, want %v", err, extension.ErrIdentityLinked)
		}
		// Provisioning an address that has a local account is refused.
		if _, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-2", "invited@example.com"), extension.RoleMember); !errors.Is(err, extension.ErrEmailTaken) {
			t.Errorf("provisioning a taken address: %v, want %v", err, extension.ErrEmailTaken)
		}
		if _, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-3", "x@example.com"), extension.RoleOwner); !errors.Is(err, extension.ErrInvalidRole) {
			t.Errorf("provisioning an owner: %v, want %v", err, extension.ErrInvalidRole)
		}
		ids, err := tm.s.OIDCIdentities(ctx, "i-1", invited.ID)
		if err != nil || len(ids) != 1 || ids[0].ProviderName != "Google" {
			t.Fatalf("OIDCIdentities = %+v, %v", ids, err)
		}
		// Its only way in: it stays.
		if err := tm.s.UnlinkOIDCIdentity(ctx, "i-1", invited.ID, ids[0].ID); !errors.Is(err, extension.ErrLastWayIn) {
			t.Errorf("unlinking the last way in: %v, want %v", err, extension.ErrLastWayIn)
		}
		// A control panel user signs in through the control panel only.
		if err := tm.s.LinkOIDCIdentity(ctx, "i-1", tm.owner.ID, p.ID, claims("sub-owner", "owner@example.com")); !errors.Is(err, extension.ErrNotLocalAccount) {
			t.Errorf("linking a platform user: %v, want %v", err, extension.ErrNotLocalAccount)
		}
		// A local account with a password may drop its identity: the password is a way in.
		local := tm.invite(t, tm.owner, "local@example.com", extension.RoleMember)
		if err := tm.s.LinkOIDCIdentity(ctx, "i-1", local.ID, p.ID, claims("sub-local", "local@example.com")); err != nil {
			t.Fatal(err)
		}
		owned, _ := tm.s.OIDCIdentities(ctx, "i-1", local.ID)
		if err := tm.s.UnlinkOIDCIdentity(ctx, "i-1", invited.ID, owned[0].ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("unlinking another account's identity: %v, want %v", err, extension.ErrNotFound)
		}
		if err := tm.s.UnlinkOIDCIdentity(ctx, "i-1", local.ID, owned[0].ID); err != nil {
			t.Errorf("unlinking beside a password: %v", err)
		}
	})
}

// Turning password sign-in off ends the sessions of accounts that signed in with a
// password, and keeps those of accounts that have none (made through a provider).
func TestPasswordOffKeepsProviderSessions(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		p, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), "", true)
		if err != nil {
			t.Fatal(err)
		}
		withPassword := tm.invite(t, tm.owner, "pw@example.com", extension.RoleMember)
		viaProvider, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-1", "idp@example.com"), extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		pwSession, idpSession := createSession(t, tm.s, withPassword, time.Hour), createSession(t, tm.s, viaProvider, time.Hour)
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, extension.InstanceSettings{DefaultRole: extension.RoleMember}); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.SessionByID(ctx, pwSession, time.Hour, time.Hour); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("password account's session after password sign-in off: %v, want %v", err, extension.ErrNotFound)
		}
		if _, err := tm.s.SessionByID(ctx, idpSession, time.Hour, time.Hour); err != nil {
			t.Errorf("provider account's session after password sign-in off: %v", err)
		}
	})
}

// A sign-in's state is used once.
func TestOIDCStateUsedOnce(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		exp := tm.clk.Now().Add(10 * time.Minute)
		if err := tm.s.UseOIDCState(ctx, "state-1", exp); err != nil {
			t.Fatal(err)
		}
		if err := tm.s.UseOIDCState(ctx, "state-1", exp); !errors.Is(err, extension.ErrStateUsed) {
			t.Errorf("second use: %v, want %v", err, extension.ErrStateUsed)
		}
		tm.clk.Advance(time.Hour)
		if err := tm.s.UseOIDCState(ctx, "state-2", tm.clk.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, tm.s, "oidc_used_states"); n != 1 {
			t.Errorf("%d used states kept, want only the one not expired", n)
		}
	})
}

// Rekey seals providers' client secrets again with the first key.
func TestRekeyClientSecrets(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		installInstances(t, withA, "i-1")
		owner := ensureAccount(t, withA, "i-1", "u-owner")
		p, err := withA.SaveOIDCProvider(ctx, owner.ID, googleProvider("i-1"), testClientSecret, true)
		if err != nil {
			t.Fatal(err)
		}
		public := googleProvider("i-1")
		public.Name = "Public client"
		if _, err := withA.SaveOIDCProvider(ctx, owner.ID, public, "", true); err != nil {
			t.Fatal(err)
		}
		rotating := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		stats, err := rotating.Rekey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.Resealed != 2 { // the instance's secret and the client secret
			t.Errorf("Rekey resealed %d, want 2", stats.Resealed)
		}
		onlyB := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB)})
		if got, err := onlyB.OIDCClientSecret(ctx, p); err != nil || got != testClientSecret {
			t.Errorf("with the new key alone: %v", err)
		}
		onlyA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		if _, err := onlyA.OIDCClientSecret(ctx, p); !errors.Is(err, extension.ErrUnsealable) {
			t.Errorf("with the old key alone: %v, want %v", err, extension.ErrUnsealable)
		}
	})
}

// A subject is unique only at its issuer: an edit that points a provider at another issuer
// (or template) drops its identities, so a colliding subject there finds no account; an
// edit of anything else keeps them.
func TestOIDCIssuerChangeDropsIdentities(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		p, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), "", true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-1", "victim@example.com"), extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		p.Name, p.Issuer = "Renamed", "HTTPS://Accounts.Google.com/" // the same issuer, written otherwise
		if p, err = tm.s.SaveOIDCProvider(ctx, tm.owner.ID, p, "", false); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.OIDCIdentityAccount(ctx, p.ID, "sub-1"); err != nil {
			t.Errorf("identity after renaming: %v, want it kept", err)
		}
		p.Issuer = "https://idp.elsewhere.example"
		if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, p, "", false); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.OIDCIdentityAccount(ctx, p.ID, "sub-1"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("identity after the issuer changed: %v, want %v", err, extension.ErrNotFound)
		}
		evs, _, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{}, extension.AuditPage{Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		dropped := ""
		for _, ev := range evs {
			if ev.Kind == extension.AuditOIDCProviderChanged && ev.Detail["connections_dropped"] != "" {
				dropped = ev.Detail["connections_dropped"]
			}
		}
		if dropped != "1" {
			t.Errorf("audit connections_dropped = %q, want 1", dropped)
		}
		if _, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", p.ID, claims("sub-2", "second@example.com"), extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		p.Template = "custom"
		if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, p, "", false); err != nil {
			t.Fatal(err)
		}
		if n := countRows(t, tm.s, "oidc_identities"); n != 0 {
			t.Errorf("%d identities after the template changed, want 0", n)
		}
	})
}

// An identity at a disabled provider is no way in: the last identity at an enabled one
// stays.
func TestOIDCLastWayInIgnoresDisabledProviders(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		on, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), "", true)
		if err != nil {
			t.Fatal(err)
		}
		second := googleProvider("i-1")
		second.Name, second.Issuer = "Second", "https://idp.second.example"
		off, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, second, "", true)
		if err != nil {
			t.Fatal(err)
		}
		acc, err := tm.s.ProvisionOIDCAccount(ctx, "i-1", on.ID, claims("sub-1", "made@example.com"), extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		if err := tm.s.LinkOIDCIdentity(ctx, "i-1", acc.ID, off.ID, claims("sub-2", "made@example.com")); err != nil {
			t.Fatal(err)
		}
		if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, off.ID, false); err != nil {
			t.Fatal(err)
		}
		ids, err := tm.s.OIDCIdentities(ctx, "i-1", acc.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if id.ProviderID == on.ID {
				if err := tm.s.UnlinkOIDCIdentity(ctx, "i-1", acc.ID, id.ID); !errors.Is(err, extension.ErrLastWayIn) {
					t.Errorf("unlinking the only identity at an enabled provider: %v, want %v", err, extension.ErrLastWayIn)
				}
			}
		}
		// With every provider of its identities off, it has no way in besides a password.
		if got, err := tm.s.AccountsWithIdentities(ctx, "i-1"); err != nil || !got[acc.ID] {
			t.Errorf("AccountsWithIdentities with one provider on = %v, %v; want the account", got, err)
		}
		if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, on.ID, false); err != nil {
			t.Fatal(err)
		}
		if got, err := tm.s.AccountsWithIdentities(ctx, "i-1"); err != nil || got[acc.ID] {
			t.Errorf("AccountsWithIdentities with both providers off = %v, %v; want no account", got, err)
		}
		for _, id := range []string{on.ID, off.ID} {
			if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, id, true); err != nil {
				t.Fatal(err)
			}
		}
		for _, id := range ids {
			if id.ProviderID == on.ID {
				if err := tm.s.UnlinkOIDCIdentity(ctx, "i-1", acc.ID, id.ID); err != nil {
					t.Errorf("unlinking beside an identity at an enabled provider: %v", err)
				}
			}
		}
	})
}

// Identities are listed by instance and account (account page, team page): an index
// leads with those columns in both dialects.
func TestOIDCIdentitiesIndex(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := newTeam(t, d).s
		var cols []string
		var q string
		if d == extension.Postgres {
			q = `SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE c.relname = 'oidc_identities_instance_account' AND c.relnamespace = current_schema()::regnamespace
ORDER BY array_position(i.indkey::int2[], a.attnum)`
		} else {
			q = `SELECT name FROM pragma_index_info('oidc_identities_instance_account') ORDER BY seqno`
		}
		rows, err := s.SQLDB().Query(q)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
		if got := strings.Join(cols, ","); got != "instance_id,account_id" {
			t.Errorf("index columns = %q, want instance_id,account_id", got)
		}
	})
}

// With password sign-in off, an instance whose people sign in through a provider still
// invites: an enabled provider is the invited person's way in. Without one (none, or
// only disabled ones) nobody invited could get in, so the invitation is refused.
func TestInvitationWithProvidersOnly(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, extension.InstanceSettings{DefaultRole: extension.RoleMember}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "a@example.com", extension.RoleMember); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("password off, no provider: %v, want %v", err, extension.ErrPasswordLoginOff)
		}
		p, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, googleProvider("i-1"), "", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := tm.s.HasEnabledOIDCProvider(ctx, "i-1"); err != nil || !ok {
			t.Errorf("HasEnabledOIDCProvider = %v, %v, want true", ok, err)
		}
		inv, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "a@example.com", extension.RoleMember)
		if err != nil {
			t.Fatalf("password off, a provider on: %v", err)
		}
		// The provider of another instance does not count.
		if _, _, err := tm.s.CreateInvitation(ctx, "i-2", tm.other.ID, "a@example.com", extension.RoleMember); err != nil {
			t.Errorf("instance 2 has password sign-in on: %v", err)
		}
		if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, p.ID, false); err != nil {
			t.Fatal(err)
		}
		if ok, err := tm.s.HasEnabledOIDCProvider(ctx, "i-1"); err != nil || ok {
			t.Errorf("HasEnabledOIDCProvider with the provider off = %v, %v, want false", ok, err)
		}
		if _, _, err := tm.s.CreateInvitation(ctx, "i-1", tm.owner.ID, "b@example.com", extension.RoleMember); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("password off, provider disabled: %v, want %v", err, extension.ErrPasswordLoginOff)
		}
		if _, _, err := tm.s.ReissueInvitation(ctx, "i-1", tm.owner.ID, inv.ID); !errors.Is(err, extension.ErrPasswordLoginOff) {
			t.Errorf("reissue, provider disabled: %v, want %v", err, extension.ErrPasswordLoginOff)
		}
		if err := tm.s.SetOIDCProviderEnabled(ctx, "i-1", tm.owner.ID, p.ID, true); err != nil {
			t.Fatal(err)
		}
		if _, _, err := tm.s.ReissueInvitation(ctx, "i-1", tm.owner.ID, inv.ID); err != nil {
			t.Errorf("reissue, provider on: %v", err)
		}
	})
}

// A custom provider's own endpoints receive the code, the PKCE verifier and the client
// secret: the store refuses one that is not https (http only on loopback), whoever calls
// it, not only the form (found by review).
func TestOIDCCustomEndpointsMustBeSecure(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		custom := func(token string) extension.OIDCProvider {
			p := googleProvider("i-1")
			p.Template, p.Name, p.Issuer = "custom", "Custom", "https://sso.example.com"
			p.Endpoints = extension.OIDCEndpoints{Token: token}
			return p
		}
		for _, bad := range []string{"http://sso.example.com/token", "ftp://sso.example.com/token", "https://user:pw@sso.example.com/token", "/token"} {
			if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, custom(bad), "", true); !errors.Is(err, extension.ErrInvalidProvider) {
				t.Errorf("token endpoint %q: %v, want %v", bad, err, extension.ErrInvalidProvider)
			}
		}
		for _, good := range []string{"https://sso.example.com/token", "http://127.0.0.1:9000/token", "http://localhost/token"} {
			if _, err := tm.s.SaveOIDCProvider(ctx, tm.owner.ID, custom(good), "", true); err != nil {
				t.Errorf("token endpoint %q: %v", good, err)
			}
		}
	})
}
