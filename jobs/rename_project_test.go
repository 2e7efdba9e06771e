package jobs

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// waitAction waits for the action to end and returns it.
func (en *env) waitAction(t testing.TB, instanceID, id string) extension.Action {
	t.Helper()
	var a extension.Action
	waitFor(t, "the action to end", 15*time.Second, func() bool {
		var err error
		a, err = en.Store.ActionByID(context.Background(), instanceID, id)
		if err != nil {
			t.Fatal(err)
		}
		return a.Finished()
	})
	return a
}

// The worked domain action renames the project at the platform with the instance token,
// and the dashboard's name follows.
func TestRenameProject(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			en := newEnv(t, d, envOptions{workers: 4})
			id := en.install(t, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read", "project:write"}})
			en.waitFinished(t, id)
			a, err := en.Jobs.StartRenameProject(t.Context(), id, "acc-1", "  Shop & Blog  ")
			if err != nil {
				t.Fatal(err)
			}
			if a.Input != "Shop & Blog" || a.State != extension.ActionQueued {
				t.Errorf("started %+v", a)
			}
			if got := en.waitAction(t, id, a.ID); got.State != extension.ActionDone || got.Outcome != extension.OutcomeOK {
				t.Fatalf("action %+v, want done", got)
			}
			// The audit log ties the platform's change to the account that asked for it.
			evs, _, err := en.Store.AuditEvents(t.Context(), id, extension.AuditFilter{AccountID: "acc-1"}, extension.AuditPage{Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, ev := range evs {
				if ev.Detail["action_id"] == a.ID {
					kinds = append(kinds, ev.Kind+"/"+ev.Detail["outcome"])
				}
			}
			if want := []string{AuditActionEnded + "/" + extension.OutcomeOK, AuditActionStarted + "/"}; !slices.Equal(kinds, want) {
				t.Errorf("audit events of the action %v, want %v", kinds, want)
			}
			in := en.instance(t, id)
			if in.ContextName != "Shop & Blog" {
				t.Errorf("context name %q after the rename", in.ContextName)
			}
			tok, err := mstudio.NewBroker(en.Store, en.Client, mstudio.BrokerOptions{}).Token(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if p, err := en.Client.Project(t.Context(), tok.Token, in.ContextID); err != nil || p.Description != "Shop & Blog" {
				t.Errorf("the platform's project: %+v, %v", p, err)
			}
		})
	}
}

// Without project:write the action ends at once with its own outcome and no platform
// call; an organisation's instance has no project to rename; a refusal by the platform
// itself counts as a missing scope too.
func TestRenameProjectRefused(t *testing.T) {
	en := newEnv(t, extension.SQLite, envOptions{workers: 4})
	readOnly := en.install(t, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read"}})
	customer := en.install(t, mstudiotest.CallRequest{Context: "customer", ConsentedScopes: []string{"customer:read", "project:write"}})
	stale := en.install(t, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read"}})
	for _, id := range []string{readOnly, customer, stale} {
		en.waitFinished(t, id)
	}
	// Our copy of an instance says project:write, the platform's does not (a consent we
	// heard of before the platform made it count): the platform's 403 decides.
	in := en.instance(t, stale)
	en.Apply(t, extension.LifecycleEvent{Kind: extension.EventUpdated, InstanceID: stale, ContextKind: in.ContextKind,
		ContextID: in.ContextID, Scopes: []string{"project:read", "project:write"}, Enabled: new(true)})
	for _, c := range []struct {
		id, outcome string
	}{{readOnly, extension.OutcomeMissingScope}, {customer, extension.OutcomeNotAProject}} {
		before := en.SimCalls()
		a, err := en.Jobs.StartRenameProject(t.Context(), c.id, "acc-1", "New name")
		if err != nil {
			t.Fatal(err)
		}
		if got := en.waitAction(t, c.id, a.ID); got.State != extension.ActionFailed || got.Outcome != c.outcome {
			t.Errorf("action %+v, want failed with %s", got, c.outcome)
		}
		if n := en.SimHits("PATCH /v2/projects/{id}"); n != 0 {
			t.Errorf("%d platform calls for a refused rename (of %d in all since)", n, en.SimCalls()-before)
		}
	}
	a, err := en.Jobs.StartRenameProject(t.Context(), stale, "acc-1", "New name")
	if err != nil {
		t.Fatal(err)
	}
	if got := en.waitAction(t, stale, a.ID); got.State != extension.ActionFailed || got.Outcome != extension.OutcomeMissingScope {
		t.Errorf("refused by the platform: %+v, want failed with %s", got, extension.OutcomeMissingScope)
	}
	if n := en.SimHits("PATCH /v2/projects/{id}"); n != 1 {
		t.Errorf("%d platform calls, want the one the platform refused", n)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 256), "\xff"} {
		if _, err := en.Jobs.StartRenameProject(t.Context(), readOnly, "acc-1", bad); !errors.Is(err, ErrBadProjectName) {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	if list, err := en.Store.Actions(t.Context(), readOnly, 10); err != nil || len(list) != 1 {
		t.Errorf("bad names left actions behind: %+v, %v", list, err)
	}
}
