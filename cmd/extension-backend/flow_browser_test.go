package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest/browsertest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// TestTeamFlowInBrowser is the whole way of a local user, in headless Chromium, with the
// job queue at work: the owner arrives through the control panel's click-through and
// invites a member; the member accepts in another browser, signs out, signs in again
// with the keyboard alone, renames the project (the worked domain action) and sees the
// result; the owner's audit log names the member as the one who started it. No log line
// carries the password or the invitation's token.
func TestTeamFlowInBrowser(t *testing.T) {
	app, base := jobsApp(t, true)
	ctx := t.Context()
	res, err := app.Sim.Trigger(ctx, mstudiotest.CallExtensionAddedToContext,
		mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read", "project:write"}})
	if err != nil || !res.Successful {
		t.Fatalf("install: %+v, %v", res, err)
	}
	in := mstudiotest.Instance{ID: res.InstanceID}
	ada := app.User(t, "Ada Admin")
	en := pageCopy(t, frontend.LangEnglish)
	const password = "a long and secret passphrase"
	b := browsertest.New(t)

	owner, member := b.NewContext(t), b.NewContext(t)
	owner.Open(clickThrough(t, app, base, in, ada))
	if got := owner.Path(); got != atrek.AppPath(in.ID) {
		t.Fatalf("click-through ends at %s", got)
	}
	owner.Open(base + frontend.TeamPath(in.ID))
	owner.Fill("#invite-email", "Mia.Member@Example.TEST")
	owner.Select("#invite-role", extension.RoleMember)
	owner.Follow("form[action$='/team/invitations'] button[type='submit']")
	link := owner.Value("#link")
	token := strings.TrimPrefix(link, base+"/invite/")
	if token == link || token == "" {
		t.Fatalf("the invitation page shows %q", link)
	}

	// The member accepts in another browser.
	member.Open(link)
	member.Fill("#name", "Mia Member")
	member.Fill("#password", password)
	if member.Exists("#password_repeat") {
		member.Fill("#password_repeat", password)
	}
	member.Follow("form button[type='submit']")
	if got := member.Path(); got != atrek.AppPath(in.ID) {
		t.Fatalf("accepting lands on %s", got)
	}
	member.Follow("form[action='/logout'] button")

	// Keyboard only: Tab to each field, type, Enter.
	member.Open(base + frontend.LoginPath(in.ID))
	member.TabToID("email", 12)
	member.Press("mia.member@example.test")
	member.TabToID("password", 3)
	member.Press(password)
	member.PressAndWait(browsertest.Enter)
	if got := member.Path(); got != atrek.AppPath(in.ID) {
		t.Fatalf("the keyboard sign-in lands on %s:\n%s", got, member.Text("main"))
	}

	// The member starts the domain action and follows it to its result.
	member.Open(base + atrek.AppPath(in.ID) + "/actions/rename-project")
	member.Fill("#name", "Shop & Blog")
	member.Follow("form button[type='submit']")
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(member.Text("main"), en["action.outcome.ok"]) {
		if time.Now().After(deadline) {
			t.Fatalf("the action did not end well:\n%s", member.Text("main"))
		}
		time.Sleep(200 * time.Millisecond)
		member.Open(base + member.Path())
	}
	member.Open(base + atrek.AppPath(in.ID))
	if got := member.Text(".brand"); !strings.Contains(got, "Shop & Blog") {
		t.Errorf("the dashboard names the project %q after the rename", got)
	}

	// The owner's audit log names the member as the one who started it.
	owner.Open(base + atrek.AppPath(in.ID) + "/audit")
	if got := owner.Text("main"); !strings.Contains(got, "Mia Member") || !strings.Contains(got, "Shop & Blog") {
		t.Errorf("the audit log does not say that Mia Member renamed the project:\n%s", got)
	}
	if status := member.Open(base + atrek.AppPath(in.ID) + "/audit"); status != http.StatusForbidden {
		t.Errorf("a member's audit page: %d, want 403", status)
	}

	logs := app.Logs.String()
	for what, secret := range map[string]string{"password": password, "invitation token": token} {
		if strings.Contains(logs, secret) {
			t.Errorf("a log line carries the %s", what)
		}
	}
}
