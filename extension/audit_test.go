package extension_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/google/go-cmp/cmp"
)

func TestAuditListing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember) // 2 events at ssoStart
		// 25 events a second apart, alternating actors and kinds, some at one instant.
		for i := range 25 {
			ev := extension.AuditEvent{InstanceID: "i-1", AccountID: tm.owner.ID, Kind: extension.AuditSignIn,
				Detail: map[string]string{"n": fmt.Sprint(i)}, CreatedAt: ssoStart.Add(time.Duration(i/2+1) * time.Second)}
			if i%3 == 0 {
				ev.AccountID, ev.Kind = member.ID, "action.example"
			}
			if err := tm.s.Audit(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := tm.s.Audit(ctx, extension.AuditEvent{InstanceID: "i-2", AccountID: tm.other.ID, Kind: extension.AuditSignIn}); err != nil {
			t.Fatal(err)
		}
		// Paging through everything: newest first, no event twice or missed.
		var all []extension.AuditEvent
		var after *extension.AuditCursor
		for pages := 0; ; pages++ {
			evs, next, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{}, extension.AuditPage{After: after, Limit: 4})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, evs...)
			if next == nil {
				break
			}
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			// The cursor survives a page link.
			c, err := extension.ParseAuditCursor(next.String())
			if err != nil || !c.At.Equal(next.At) || c.ID != next.ID {
				t.Fatalf("cursor round trip: %+v → %q → %+v, %v", next, next.String(), c, err)
			}
			after = &c
		}
		if len(all) != 27 {
			t.Fatalf("paged %d events, want 27", len(all))
		}
		seen := map[int64]bool{}
		for i, ev := range all {
			if seen[ev.ID] || ev.InstanceID != "i-1" {
				t.Errorf("event %d: %+v repeated or foreign", i, ev)
			}
			seen[ev.ID] = true
			if i > 0 && (ev.CreatedAt.After(all[i-1].CreatedAt) || (ev.CreatedAt.Equal(all[i-1].CreatedAt) && ev.ID > all[i-1].ID)) {
				t.Errorf("event %d is newer than the one before", i)
			}
		}
		want := extension.AuditEvent{ID: all[0].ID, InstanceID: "i-1", AccountID: tm.owner.ID, ActorName: tm.owner.Name, Kind: extension.AuditSignIn,
			Detail: map[string]string{"n": "24"}, CreatedAt: ssoStart.Add(13 * time.Second)}
		if all[0].Kind == "action.example" {
			want.AccountID, want.ActorName, want.Kind = member.ID, member.Name, "action.example"
		}
		if diff := cmp.Diff(want, all[0]); diff != "" {
			t.Errorf("newest event (-want +got):\n%s", diff)
		}
		// Filters.
		byMember, _, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{AccountID: member.ID}, extension.AuditPage{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		actions, _, _ := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{AccountID: member.ID, Kind: "action.example"}, extension.AuditPage{Limit: 100})
		if len(byMember) != 9+1 || len(actions) != 9 {
			t.Errorf("member's events: %d, want 10 (9 actions and the acceptance); actions %d, want 9", len(byMember), len(actions))
		}
		// The actor's name is kept after the account is gone.
		if err := tm.s.RemoveAccount(ctx, "i-1", tm.owner.ID, member.ID); err != nil {
			t.Fatal(err)
		}
		actions, _, _ = tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{AccountID: member.ID, Kind: "action.example"}, extension.AuditPage{Limit: 1})
		if len(actions) != 1 || actions[0].ActorName != member.Name {
			t.Errorf("event of a removed account: %+v", actions)
		}
		// Pruning by age.
		n, err := tm.s.PruneAudit(ctx, ssoStart.Add(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if n != 3+8+1 {
			t.Errorf("pruned %d events, want 12 (the three at the start, eight in its first four seconds, and i-2's)", n)
		}
	})
}

func TestAuditRefusals(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		for _, tc := range []struct {
			name string
			ev   extension.AuditEvent
		}{
			{"no instance", extension.AuditEvent{Kind: "x"}},
			{"no kind", extension.AuditEvent{InstanceID: "i-1"}},
			{"kind too long", extension.AuditEvent{InstanceID: "i-1", Kind: strings.Repeat("k", 65)}},
			{"detail too large", extension.AuditEvent{InstanceID: "i-1", Kind: "x", Detail: map[string]string{"blob": strings.Repeat("b", 3000)}}},
			{"unknown instance", extension.AuditEvent{InstanceID: "i-unknown", Kind: "x"}},
		} {
			if err := tm.s.Audit(ctx, tc.ev); err == nil {
				t.Errorf("%s: no error", tc.name)
			}
		}
		if n := countRows(t, tm.s, "audit_events"); n != 0 {
			t.Errorf("refused events left %d rows", n)
		}
	})
}

func TestParseAuditCursor(t *testing.T) {
	for _, bad := range []string{"", "-", "1", "1-", "-1", "x-1", "1-x", "1-0", "1--1", "-5-1", "1-1-1", strings.Repeat("9", 40) + "-1"} {
		if _, err := extension.ParseAuditCursor(bad); err == nil {
			t.Errorf("ParseAuditCursor(%q): no error", bad)
		}
	}
}

func FuzzParseAuditCursor(f *testing.F) {
	for _, s := range []string{"1773488184123456000-42", "0-1", "", "1-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := extension.ParseAuditCursor(raw)
		if err != nil {
			return
		}
		again, err := extension.ParseAuditCursor(c.String())
		if err != nil || again != c || c.ID <= 0 {
			t.Fatalf("ParseAuditCursor(%q) = %+v, which reads back as %+v, %v", raw, c, again, err)
		}
	})
}

func TestInstanceSettings(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		got, err := tm.s.InstanceSettings(ctx, "i-1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(extension.DefaultInstanceSettings(), got); diff != "" || got.Stored || !got.PasswordLogin {
			t.Errorf("defaults (-want +got):\n%s", diff)
		}
		set := extension.InstanceSettings{DefaultRole: extension.RoleAdmin, AllowedDomains: []string{"Bücher.example", "example.org", "EXAMPLE.org"}}
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", admin.ID, set); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("admin changes settings: %v, want ErrForbidden", err)
		}
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, extension.InstanceSettings{DefaultRole: "root"}); !errors.Is(err, extension.ErrInvalidRole) {
			t.Errorf("unknown default role: %v, want ErrInvalidRole", err)
		}
		if _, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, extension.InstanceSettings{DefaultRole: extension.RoleMember, AllowedDomains: []string{"not a domain"}}); err == nil {
			t.Error("a bad domain was stored")
		}
		want := extension.InstanceSettings{DefaultRole: extension.RoleAdmin, AllowedDomains: []string{"xn--bcher-kva.example", "example.org"},
			PasswordLogin: false, Stored: true, UpdatedAt: ssoStart}
		for range 2 { // the second time updates the row
			got, err := tm.s.UpdateInstanceSettings(ctx, "i-1", tm.owner.ID, set)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("updated settings (-want +got):\n%s", diff)
			}
			if got, err = tm.s.InstanceSettings(ctx, "i-1"); err != nil || !cmp.Equal(want, got) {
				t.Errorf("stored settings: %+v, %v", got, err)
			}
		}
		if other, _ := tm.s.InstanceSettings(ctx, "i-2"); other.Stored {
			t.Error("another instance's settings changed")
		}
		if !want.AllowsEmail("a@example.org") || want.AllowsEmail("a@example.com") || !extension.DefaultInstanceSettings().AllowsEmail("a@example.com") {
			t.Error("AllowsEmail: want the listed domains only, and any with an empty list")
		}
		evs, _, _ := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{Kind: extension.AuditSettingsChanged}, extension.AuditPage{})
		if len(evs) != 2 || evs[1].Detail["password_login"] != "true → false" || evs[1].AccountID != tm.owner.ID {
			t.Errorf("settings changes in the audit log: %+v", evs)
		}
	})
}

func TestParseAllowedDomains(t *testing.T) {
	got, err := extension.ParseAllowedDomains(" example.com, @Bücher.example;example.COM\n\tsub.example.org ")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"example.com", "xn--bcher-kva.example", "sub.example.org"}, got); diff != "" {
		t.Errorf("ParseAllowedDomains (-want +got):\n%s", diff)
	}
	if got, err := extension.ParseAllowedDomains("  "); err != nil || len(got) != 0 {
		t.Errorf("empty list: %v, %v", got, err)
	}
	for _, bad := range []string{"localhost", "exa mple.com@", "ex_ample.com", "a..b", "a@b.c", strings.Repeat("a", 64) + ".com", strings.Repeat("a.com,", 2000)} {
		if _, err := extension.ParseAllowedDomains(bad); err == nil {
			t.Errorf("ParseAllowedDomains(%q): no error", bad)
		}
	}
}

// FuzzParseAllowedDomains: any input is refused or gives domains that an address of the
// domain, normalised, is allowed by.
func FuzzParseAllowedDomains(f *testing.F) {
	for _, s := range []string{"example.com, Bücher.example", "", ",,,", "@a.b", "xn--.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		domains, err := extension.ParseAllowedDomains(raw)
		if err != nil {
			return
		}
		st := extension.InstanceSettings{AllowedDomains: domains}
		for _, d := range domains {
			again, err := extension.ParseAllowedDomains(d)
			if err != nil || len(again) != 1 || again[0] != d {
				t.Fatalf("domain %q from %q does not parse to itself: %v, %v", d, raw, again, err)
			}
			if email, err := extension.NormalizeEmail("a@" + d); err == nil && !st.AllowsEmail(email) {
				t.Fatalf("a@%s is not allowed by %v", d, domains)
			}
		}
	})
}
