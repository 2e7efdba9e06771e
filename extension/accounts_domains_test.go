package extension_test

import (
	"context"
	"errors"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// TestEnsurePlatformAccountAllowedDomains: with allowed domains set, a platform user
// without an account is provisioned only with an address in one of them (as
// NormalizeEmail reads it); existing accounts sign in whatever their address, and an
// instance's very first account (its owner) is never refused.
func TestEnsurePlatformAccountAllowedDomains(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := newSSOStore(t, d, extensiontest.NewClock(ssoStart), "i-1", "i-2")
		owner, created, err := s.EnsurePlatformAccount(ctx, "i-1", "u-owner", "owner@elsewhere.test", "Owner", extension.RoleMember)
		if err != nil || !created || owner.Role != extension.RoleOwner {
			t.Fatalf("first account: %+v %v %v", owner, created, err)
		}
		set := extension.DefaultInstanceSettings()
		set.AllowedDomains = []string{"example.test", "Bücher.example"}
		if _, err := s.UpdateInstanceSettings(ctx, "i-1", owner.ID, set); err != nil {
			t.Fatal(err)
		}
		before := countRows(t, s, "accounts")
		for _, email := range []string{"bob@other.test", "", "not an address", "bob@example.test.evil", "bob@sub.example.test"} {
			if _, _, err := s.EnsurePlatformAccount(ctx, "i-1", "u-refused", email, "Bob", extension.RoleMember); !errors.Is(err, extension.ErrDomainNotAllowed) {
				t.Errorf("address %q: got %v, want ErrDomainNotAllowed", email, err)
			}
		}
		if n := countRows(t, s, "accounts"); n != before {
			t.Errorf("refused sign-ins made %d accounts", n-before)
		}
		for user, email := range map[string]string{"u-bob": "  Bob@EXAMPLE.test ", "u-carl": "carl@bücher.example"} {
			acc, created, err := s.EnsurePlatformAccount(ctx, "i-1", user, email, "", extension.RoleMember)
			if err != nil || !created || acc.Role != extension.RoleMember {
				t.Errorf("address %q in an allowed domain: %+v %v %v", email, acc, created, err)
			}
		}
		// The owner's address is outside the domains: an existing account signs in.
		if acc, created, err := s.EnsurePlatformAccount(ctx, "i-1", "u-owner", "owner@elsewhere.test", "", extension.RoleMember); err != nil || created || acc.ID != owner.ID {
			t.Errorf("existing account outside the domains: %+v %v %v", acc, created, err)
		}

		// Settings with domains but no account at all (every account removed): the first
		// sign-in becomes the owner whatever its address, or nobody could change them.
		if _, err := s.SQLDB().ExecContext(ctx, `INSERT INTO instance_settings (instance_id, default_role, allowed_domains, password_login, updated_at)
VALUES ('i-2', 'member', '["example.test"]', TRUE, CURRENT_TIMESTAMP)`); err != nil {
			t.Fatal(err)
		}
		if st, err := s.InstanceSettings(ctx, "i-2"); err != nil || len(st.AllowedDomains) != 1 {
			t.Fatalf("settings of i-2: %+v %v", st, err)
		}
		first, created, err := s.EnsurePlatformAccount(ctx, "i-2", "u-first", "first@elsewhere.test", "", extension.RoleMember)
		if err != nil || !created || first.Role != extension.RoleOwner {
			t.Errorf("first account of an instance with domains: %+v %v %v", first, created, err)
		}
		if _, _, err := s.EnsurePlatformAccount(ctx, "i-2", "u-second", "second@elsewhere.test", "", extension.RoleMember); !errors.Is(err, extension.ErrDomainNotAllowed) {
			t.Errorf("second account outside the domains: got %v, want ErrDomainNotAllowed", err)
		}
	})
}
