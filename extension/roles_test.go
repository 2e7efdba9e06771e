package extension_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// fakeHash stands for a PHC string: the store keeps it and never looks inside.
const fakeHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

// team is an instance "i-1" with a platform owner, and another instance "i-2" with its own.
type team struct {
	s     *extension.Store
	clk   *extensiontest.Clock
	owner extension.Account // a platform user, the first account of i-1
	other extension.Account // the owner of i-2
}

func newTeam(t *testing.T, d extension.Dialect) *team {
	t.Helper()
	clk := extensiontest.NewClock(ssoStart)
	s := newSSOStore(t, d, clk, "i-1", "i-2")
	return &team{s: s, clk: clk, owner: ensureAccount(t, s, "i-1", "u-owner"), other: ensureAccount(t, s, "i-2", "u-other")}
}

// invite makes a local account through an invitation by the actor, at a role.
func (tm *team) invite(t *testing.T, actor extension.Account, email, role string) extension.Account {
	t.Helper()
	ctx := context.Background()
	_, token, err := tm.s.CreateInvitation(ctx, actor.InstanceID, actor.ID, email, role)
	if err != nil {
		t.Fatalf("CreateInvitation(%s, %s) by %s: %v", email, role, actor.Role, err)
	}
	acc, err := tm.s.AcceptInvitation(ctx, token, "Name of "+email, fakeHash)
	if err != nil {
		t.Fatalf("AcceptInvitation(%s): %v", email, err)
	}
	return acc
}

func roleOf(t *testing.T, s *extension.Store, id string) string {
	t.Helper()
	acc, err := s.AccountByID(context.Background(), id)
	if err != nil {
		t.Fatalf("AccountByID(%s): %v", id, err)
	}
	return acc.Role
}

// auditKinds lists the kinds of an instance's audit events, oldest first.
func auditKinds(t *testing.T, s *extension.Store, instanceID string) []string {
	t.Helper()
	evs, _, err := s.AuditEvents(context.Background(), instanceID, extension.AuditFilter{}, extension.AuditPage{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for i := len(evs) - 1; i >= 0; i-- {
		kinds = append(kinds, evs[i].Kind)
	}
	return kinds
}

func TestRoleRules(t *testing.T) {
	const o, a, m = extension.RoleOwner, extension.RoleAdmin, extension.RoleMember
	for _, tc := range []struct {
		actor, role        string
		canGrant, canManag bool
	}{
		{o, o, true, true}, {o, a, true, true}, {o, m, true, true},
		{a, o, false, false}, {a, a, true, true}, {a, m, true, true},
		{m, o, false, false}, {m, a, false, false}, {m, m, false, false},
		{o, "root", false, false}, {"", m, false, false}, {"root", m, false, false},
	} {
		if got := extension.CanGrant(tc.actor, tc.role); got != tc.canGrant {
			t.Errorf("CanGrant(%q, %q) = %v, want %v", tc.actor, tc.role, got, tc.canGrant)
		}
		if got := extension.CanManage(tc.actor, tc.role); got != tc.canManag {
			t.Errorf("CanManage(%q, %q) = %v, want %v", tc.actor, tc.role, got, tc.canManag)
		}
	}
	if !extension.CanManageSettings(o) || extension.CanManageSettings(a) || !extension.CanReadAudit(a) || extension.CanReadAudit(m) {
		t.Error("settings are the owner's, the audit log the owner's and the admins'")
	}
}

func TestChangeRole(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		member2 := tm.invite(t, admin, "member2@example.com", extension.RoleMember)

		steps := []struct {
			name                 string
			actor, account, role string
			wantErr              error
			wantRole             string // of account afterwards
		}{
			{"member changes nobody", member.ID, member2.ID, extension.RoleAdmin, extension.ErrForbidden, extension.RoleMember},
			{"member cannot raise itself", member.ID, member.ID, extension.RoleAdmin, extension.ErrForbidden, extension.RoleMember},
			{"admin cannot grant owner", admin.ID, member.ID, extension.RoleOwner, extension.ErrForbidden, extension.RoleMember},
			{"admin cannot raise itself to owner", admin.ID, admin.ID, extension.RoleOwner, extension.ErrForbidden, extension.RoleAdmin},
			{"admin cannot demote an owner", admin.ID, tm.owner.ID, extension.RoleMember, extension.ErrForbidden, extension.RoleOwner},
			{"another instance's owner is nobody here", tm.other.ID, member.ID, extension.RoleAdmin, extension.ErrForbidden, extension.RoleMember},
			{"no actor is refused", "", member.ID, extension.RoleAdmin, extension.ErrForbidden, extension.RoleMember},
			{"unknown role", tm.owner.ID, member.ID, "root", extension.ErrInvalidRole, extension.RoleMember},
			{"last owner cannot demote itself", tm.owner.ID, tm.owner.ID, extension.RoleAdmin, extension.ErrLastOwner, extension.RoleOwner},
			{"admin raises a member to admin", admin.ID, member.ID, extension.RoleAdmin, nil, extension.RoleAdmin},
			{"admin demotes an admin", admin.ID, member.ID, extension.RoleMember, nil, extension.RoleMember},
			{"same role changes nothing", admin.ID, member.ID, extension.RoleMember, nil, extension.RoleMember},
			{"owner makes a second owner", tm.owner.ID, admin.ID, extension.RoleOwner, nil, extension.RoleOwner},
			{"with two owners, one may step down", tm.owner.ID, tm.owner.ID, extension.RoleAdmin, nil, extension.RoleAdmin},
			{"now the other is the last owner", admin.ID, admin.ID, extension.RoleMember, extension.ErrLastOwner, extension.RoleOwner},
		}
		for _, st := range steps {
			_, err := tm.s.ChangeRole(ctx, "i-1", st.actor, st.account, st.role)
			if !errors.Is(err, st.wantErr) || (st.wantErr == nil && err != nil) {
				t.Errorf("%s: got %v, want %v", st.name, err, st.wantErr)
			}
			if got := roleOf(t, tm.s, st.account); got != st.wantRole {
				t.Errorf("%s: role %s, want %s", st.name, got, st.wantRole)
			}
		}
		if _, err := tm.s.ChangeRole(ctx, "i-2", tm.other.ID, member.ID, extension.RoleAdmin); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("an account of another instance: got %v, want ErrNotFound", err)
		}
		evs, _, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{Kind: extension.AuditRoleChanged}, extension.AuditPage{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 4 {
			t.Fatalf("role changes in the audit log: %d, want 4: %+v", len(evs), evs)
		}
		last := evs[0]
		want := extension.AuditEvent{ID: last.ID, InstanceID: "i-1", AccountID: tm.owner.ID, ActorName: tm.owner.Name, Kind: extension.AuditRoleChanged,
			Detail: map[string]string{"account": tm.owner.ID, "name": tm.owner.Name, "from": extension.RoleOwner, "to": extension.RoleAdmin}, CreatedAt: ssoStart}
		if diff := cmp.Diff(want, last); diff != "" {
			t.Errorf("last role change in the audit log (-want +got):\n%s", diff)
		}
		// The operator (break-glass) is not limited by a role, but by the last-owner rule.
		if _, err := tm.s.SetRoleAsOperator(ctx, "i-1", admin.ID, extension.RoleMember); !errors.Is(err, extension.ErrLastOwner) {
			t.Errorf("operator demotes the last owner: got %v, want ErrLastOwner", err)
		}
		if _, err := tm.s.SetRoleAsOperator(ctx, "i-1", member2.ID, extension.RoleOwner); err != nil {
			t.Errorf("operator makes an owner: %v", err)
		}
		evs, _, _ = tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{}, extension.AuditPage{Limit: 1})
		if len(evs) != 1 || evs[0].AccountID != "" || evs[0].ActorName != extension.ActorOperator {
			t.Errorf("operator's change in the audit log: %+v", evs)
		}
	})
}

func TestDemotionRevokesInvitationsBeyondTheNewRole(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		asAdmin, tokAdmin, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "second-admin@example.com", extension.RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		_, tokMember, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "member@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.ChangeRole(ctx, "i-1", tm.owner.ID, admin.ID, extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		// A member grants nothing: both of the former admin's invitations die with the demotion.
		for name, tok := range map[string]extension.Secret{"admin invitation": tokAdmin, "member invitation": tokMember} {
			if _, err := tm.s.AcceptInvitation(ctx, tok, "Late", fakeHash); !errors.Is(err, extension.ErrInvitationRevoked) {
				t.Errorf("%s after the inviter's demotion: got %v, want ErrInvitationRevoked", name, err)
			}
		}
		inv, err := tm.s.Invitation(ctx, tokAdmin)
		if err != nil || inv.State != extension.InvitationRevoked || inv.InviterName != admin.Name || inv.ID != asAdmin.ID {
			t.Errorf("revoked invitation: %+v, %v", inv, err)
		}
	})
}

func TestRemoveAccount(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, admin, "member@example.com", extension.RoleMember)
		sess := createSession(t, tm.s, member, absolute)
		pending, tok, err := tm.s.CreateInvitation(ctx, "i-1", admin.ID, "later@example.com", extension.RoleMember)
		if err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name, actor, account string
			want                 error
		}{
			{"member removes nobody", member.ID, admin.ID, extension.ErrForbidden},
			{"admin cannot remove an owner", admin.ID, tm.owner.ID, extension.ErrForbidden},
			{"the last owner stays", tm.owner.ID, tm.owner.ID, extension.ErrLastOwner},
			{"another instance's owner is nobody here", tm.other.ID, member.ID, extension.ErrForbidden},
			{"unknown account", tm.owner.ID, "a-unknown", extension.ErrNotFound},
		} {
			if err := tm.s.RemoveAccount(ctx, "i-1", tc.actor, tc.account); !errors.Is(err, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		if err := tm.s.RemoveAccount(ctx, "i-1", admin.ID, member.ID); err != nil {
			t.Fatalf("admin removes a member: %v", err)
		}
		if _, err := tm.s.AccountByID(ctx, member.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("removed account: got %v, want ErrNotFound", err)
		}
		checkNoSession(t, tm.s, "removed account's session", sess)
		if err := tm.s.RemoveAccount(ctx, "i-1", tm.owner.ID, admin.ID); err != nil {
			t.Fatalf("owner removes an admin: %v", err)
		}
		if inv, err := tm.s.Invitation(ctx, tok); err != nil || inv.State != extension.InvitationRevoked || inv.InvitedBy != "" || inv.InviterName != admin.Name || inv.ID != pending.ID {
			t.Errorf("invitation of a removed admin: %+v, %v; want revoked, inviter's name kept", inv, err)
		}
		got := auditKinds(t, tm.s, "i-1")
		want := []string{extension.AuditInvitationCreated, extension.AuditInvitationAccepted, extension.AuditInvitationCreated, extension.AuditInvitationAccepted,
			extension.AuditInvitationCreated, extension.AuditAccountRemoved, extension.AuditAccountRemoved}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("audit log (-want +got):\n%s", diff)
		}
	})
}

func TestTransferOwnership(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		admin := tm.invite(t, tm.owner, "admin@example.com", extension.RoleAdmin)
		member := tm.invite(t, tm.owner, "member@example.com", extension.RoleMember)
		if err := tm.s.TransferOwnership(ctx, "i-1", admin.ID, member.ID); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("admin transfers ownership: got %v, want ErrForbidden", err)
		}
		if err := tm.s.TransferOwnership(ctx, "i-1", tm.owner.ID, member.ID); err != nil {
			t.Fatal(err)
		}
		if got := []string{roleOf(t, tm.s, tm.owner.ID), roleOf(t, tm.s, member.ID)}; !cmp.Equal(got, []string{extension.RoleAdmin, extension.RoleOwner}) {
			t.Errorf("after the transfer: old owner %s, new owner %s; want admin and owner", got[0], got[1])
		}
		if err := tm.s.TransferOwnership(ctx, "i-1", tm.owner.ID, admin.ID); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("the former owner transfers again: got %v, want ErrForbidden", err)
		}
		accs, err := tm.s.Accounts(ctx, "i-1")
		if err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, a := range accs {
			order = append(order, a.Role+":"+a.SignInMethod())
		}
		if diff := cmp.Diff([]string{"owner:password", "admin:platform", "admin:password"}, order); diff != "" {
			t.Errorf("team listing (-want +got):\n%s", diff)
		}
	})
}

func TestReclaimOwnership(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		local := tm.invite(t, tm.owner, "local@example.com", extension.RoleOwner)
		if _, err := tm.s.ChangeRole(ctx, "i-1", local.ID, tm.owner.ID, extension.RoleMember); err != nil {
			t.Fatal(err)
		}
		if _, err := tm.s.ReclaimOwnership(ctx, "i-1", local.ID); !errors.Is(err, extension.ErrForbidden) {
			t.Errorf("a local account reclaims: got %v, want ErrForbidden", err)
		}
		acc, err := tm.s.ReclaimOwnership(ctx, "i-1", tm.owner.ID)
		if err != nil || acc.Role != extension.RoleOwner {
			t.Fatalf("platform owner reclaims: %+v, %v", acc, err)
		}
		evs, _, _ := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{Kind: extension.AuditOwnershipReclaimed}, extension.AuditPage{})
		if len(evs) != 1 || evs[0].ActorName != extension.ActorPlatform {
			t.Errorf("reclaim in the audit log: %+v", evs)
		}
	})
}

// TestLastOwnerRace has the two owners of an instance, on two stores on one database
// (two replicas), demote or remove each other (or themselves) at once, many rounds: one
// owner is always left.
func TestLastOwnerRace(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		kr := extensiontest.Keyring(t)
		stores := []*extension.Store{extensiontest.Open(t, url, extension.Options{Keys: kr}), extensiontest.Open(t, url, extension.Options{Keys: kr})}
		for round := range 12 {
			instanceID := fmt.Sprintf("i-race-%d", round)
			installInstances(t, stores[0], instanceID)
			first, _, err := stores[0].EnsurePlatformAccount(ctx, instanceID, "u-1", "", "One", extension.RoleMember)
			if err != nil {
				t.Fatal(err)
			}
			_, tok, err := stores[0].CreateInvitation(ctx, instanceID, first.ID, fmt.Sprintf("two-%d@example.com", round), extension.RoleOwner)
			if err != nil {
				t.Fatal(err)
			}
			second, err := stores[1].AcceptInvitation(ctx, tok, "Two", fakeHash)
			if err != nil {
				t.Fatal(err)
			}
			owners := []extension.Account{first, second}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			start := make(chan struct{})
			for i := range 2 {
				wg.Go(func() {
					<-start
					actor, target := owners[i], owners[1-i]
					switch round % 3 {
					case 0: // each demotes the other
						_, errs[i] = stores[i].ChangeRole(ctx, instanceID, actor.ID, target.ID, extension.RoleAdmin)
					case 1: // each steps down
						_, errs[i] = stores[i].ChangeRole(ctx, instanceID, actor.ID, actor.ID, extension.RoleMember)
					case 2: // each removes the other
						errs[i] = stores[i].RemoveAccount(ctx, instanceID, actor.ID, target.ID)
					}
				})
			}
			close(start)
			wg.Wait()
			var ok, last, forbidden int
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, extension.ErrLastOwner):
					last++
				case errors.Is(err, extension.ErrForbidden), errors.Is(err, extension.ErrNotFound):
					forbidden++ // the other was faster and took this actor's power (or account)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			}
			var n int
			if err := stores[0].SQLDB().QueryRow(d.Rebind(`SELECT COUNT(*) FROM accounts WHERE instance_id = ? AND role = 'owner'`), instanceID).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 || ok != 1 || last+forbidden != 1 {
				t.Errorf("round %d: %d owners left, %d changes made, %d refused as last owner, %d as forbidden; want 1, 1 and 1 refusal", round, n, ok, last, forbidden)
			}
		}
	})
}
