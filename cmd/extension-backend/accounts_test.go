package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
)

// accountsSetup is an installed instance with a platform owner (whose name carries
// terminal control sequences) and a local member.
func accountsSetup(t *testing.T) (map[string]string, *extension.Store, extension.Account, extension.Account) {
	t.Helper()
	vars := testEnv(t, "http://127.0.0.1:1")
	vars["EXT_PUBLIC_URL"] = "https://ext.example.test"
	store := seedInstance(t, vars, testInstanceID, "s")
	ctx := context.Background()
	owner, _, err := store.EnsurePlatformAccount(ctx, testInstanceID, "7f1c2a8e-5d4b-4e3a-9c1f-0a1b2c3d4e01", "ada@example.test",
		"Ada\x1b]0;owned\x07\x1b[2J", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	_, invite, err := store.CreateInvitation(ctx, testInstanceID, owner.ID, "lena@example.test", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	member, err := store.AcceptInvitation(ctx, invite, "Lena Local", hash)
	if err != nil {
		t.Fatal(err)
	}
	return vars, store, owner, member
}

// accounts list: a table with names escaped, and exact JSON.
func TestAccountsList(t *testing.T) {
	vars, _, owner, member := accountsSetup(t)
	out, errOut, err := runCmd(vars, "accounts", "list", "--instance", testInstanceID)
	if err != nil {
		t.Fatalf("accounts list: %v\n%s", err, errOut)
	}
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("accounts list prints control characters: %q", out)
	}
	for _, want := range []string{`Ada\x1b]0;owned\x07\x1b[2J`, "ada@example.test", "owner", "platform", "Lena Local", "lena@example.test",
		"member", "password", member.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("accounts list lacks %q:\n%s", want, out)
		}
	}
	out, _, err = runCmd(vars, "accounts", "list", "--instance", strings.ToUpper(testInstanceID), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []accountJSON
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("accounts list --json: %v\n%s", err, out)
	}
	if list[0].ID != owner.ID || list[0].Name != owner.Name || list[0].SignIn != "platform" || list[0].PlatformUserID == "" ||
		list[1].ID != member.ID || list[1].SignIn != "password" || list[1].LockedUntil != nil {
		t.Errorf("accounts list --json: %+v", list)
	}
}

// accounts set-role: by address or id, recorded as the operator's; the last owner keeps
// the role; bad input is a usage error that changes nothing.
func TestAccountsSetRole(t *testing.T) {
	vars, store, owner, member := accountsSetup(t)
	out, errOut, err := runCmd(vars, "accounts", "set-role", "--instance", testInstanceID, "--email", "LENA@example.test", "--role", "owner")
	if err != nil {
		t.Fatalf("set-role: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "member → owner") || !strings.Contains(out, member.ID) {
		t.Errorf("set-role says %q", out)
	}
	evs, _, err := store.AuditEvents(context.Background(), testInstanceID, extension.AuditFilter{Kind: extension.AuditRoleChanged}, extension.AuditPage{})
	if err != nil || len(evs) != 1 || evs[0].ActorName != extension.ActorOperator || evs[0].Detail["to"] != "owner" {
		t.Errorf("audit: %+v, %v", evs, err)
	}
	// Two owners now: the platform owner may step down, and then the local one is the last.
	if _, _, err := runCmd(vars, "accounts", "set-role", "--instance", testInstanceID, "--account", owner.ID, "--role", "admin"); err != nil {
		t.Fatal(err)
	}
	_, _, err = runCmd(vars, "accounts", "set-role", "--instance", testInstanceID, "--account", member.ID, "--role", "member")
	if err == nil || !strings.Contains(err.Error(), "last owner") || exitCode(err) != 1 {
		t.Errorf("demoting the last owner: %v", err)
	}
	if acc, _ := store.AccountByID(context.Background(), member.ID); acc.Role != extension.RoleOwner {
		t.Errorf("the last owner is %s now", acc.Role)
	}
	if out, _, err := runCmd(vars, "accounts", "set-role", "--instance", testInstanceID, "--account", member.ID, "--role", "owner"); err != nil ||
		!strings.Contains(out, "nothing changed") {
		t.Errorf("the same role again: %q, %v", out, err)
	}
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"--account", member.ID, "--role", "boss"}, `--role "boss"`, 2},
		{[]string{"--account", member.ID, "--email", "lena@example.test", "--role", "admin"}, "one of them", 2},
		{[]string{"--role", "admin"}, "one of them", 2},
		{[]string{"--account", "no-such-account", "--role", "admin"}, "has no account no-such-account", 1},
		{[]string{"--email", "nobody@example.test", "--role", "admin"}, "has no account with the address", 1},
		{[]string{"--email", "not an address", "--role", "admin"}, "not an e-mail address", 2},
	} {
		_, _, err := runCmd(vars, append([]string{"accounts", "set-role", "--instance", testInstanceID}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || exitCode(err) != c.code {
			t.Errorf("%v: %v (exit %d), want %q and exit %d", c.args, err, exitCode(err), c.want, c.code)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"accounts", "set-role", "--account", member.ID, "--role", "admin"}, "--instance is required"},
		{[]string{"accounts", "list", "--instance", "x\x1b[2J"}, `not a UUID`},
		{[]string{"accounts", "list", "--instance", "00000000-0000-4000-8000-000000000000"}, "is not known here"},
		{[]string{"accounts", "rename"}, "unknown accounts command"},
		{[]string{"accounts"}, "usage: extension-backend accounts"},
	} {
		_, _, err := runCmd(vars, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.ContainsRune(err.Error(), '\x1b') {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
}

// accounts reset-link: the link alone on stdout, at EXT_PUBLIC_URL, for local accounts
// only; it works, and an earlier one dies.
func TestAccountsResetLink(t *testing.T) {
	vars, store, owner, member := accountsSetup(t)
	var links []string
	for range 2 {
		out, errOut, err := runCmd(vars, "accounts", "reset-link", "--instance", testInstanceID, "--email", "lena@example.test")
		if err != nil {
			t.Fatalf("reset-link: %v\n%s", err, errOut)
		}
		link := strings.TrimSpace(out)
		if !strings.HasPrefix(link, "https://ext.example.test/reset/") || strings.Count(out, "\n") != 1 {
			t.Fatalf("reset-link printed %q", out)
		}
		if !strings.Contains(errOut, "works once") || strings.Contains(errOut, link) {
			t.Errorf("stderr: %q", errOut)
		}
		links = append(links, link)
	}
	token := func(link string) extension.Secret { return extension.Secret(link[strings.LastIndexByte(link, '/')+1:]) }
	if pr, err := store.PasswordResetByToken(context.Background(), token(links[1])); err != nil || pr.AccountID != member.ID {
		t.Errorf("the link does not work: %+v, %v", pr, err)
	}
	if _, err := store.PasswordResetByToken(context.Background(), token(links[0])); err == nil {
		t.Error("the earlier link still works")
	}
	_, _, err := runCmd(vars, "accounts", "reset-link", "--instance", testInstanceID, "--account", owner.ID)
	if err == nil || !strings.Contains(err.Error(), "signs in through the control panel") || strings.ContainsRune(err.Error(), '\x1b') {
		t.Errorf("reset-link for a platform user: %v", err)
	}
	delete(vars, "EXT_PUBLIC_URL")
	out, errOut, err := runCmd(vars, "accounts", "reset-link", "--instance", testInstanceID, "--account", member.ID)
	if err != nil || !strings.HasPrefix(out, "http://127.0.0.1:8080/reset/") || !strings.Contains(errOut, "EXT_PUBLIC_URL is not set") {
		t.Errorf("without EXT_PUBLIC_URL: %q %q %v", out, errOut, err)
	}
	evs, _, err := store.AuditEvents(context.Background(), testInstanceID, extension.AuditFilter{Kind: extension.AuditPasswordResetIssued}, extension.AuditPage{})
	if err != nil || len(evs) != 3 || evs[0].ActorName != extension.ActorOperator {
		t.Errorf("audit: %+v, %v", evs, err)
	}
}
