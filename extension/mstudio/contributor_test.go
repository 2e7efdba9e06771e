package mstudio_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// TestExtensionInstancesPaginates: more instances than one page holds all arrive, each
// once, in pages of limit and skip.
func TestExtensionInstancesPaginates(t *testing.T) {
	p := apptest.NewPlatform(t, mstudiotest.Options{})
	var want []string
	for range 230 {
		in, err := p.Sim.CreateInstance(mstudiotest.InstanceSpec{})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, in.ID)
	}
	c := newTestClient(t, p.SimURL)
	got, err := c.ExtensionInstances(context.Background(), extension.Secret(p.Sim.ContributorToken()), p.Sim.ExtensionID())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range got {
		ids = append(ids, in.ID)
		if !in.PendingInstallation || in.ExtensionID != p.Sim.ExtensionID() {
			t.Errorf("instance %+v: want pending installation (no webhook was sent) of our extension", in)
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("listed %d instances, want the %d created", len(ids), len(want))
	}
	if n := p.SimHits("GET /v2/extension-instances"); n != 3 {
		t.Errorf("%d list requests for 230 instances, want 3 pages of 100", n)
	}
}

// TestExtensionInstancesStopsOnTotal: a platform that ignores skip (the same full page
// every time) ends the listing at the total it names, not after maxListPages.
func TestExtensionInstancesStopsOnTotal(t *testing.T) {
	var calls int
	var page []map[string]any
	for range 100 {
		page = append(page, map[string]any{"id": uuid.NewString()})
	}
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		calls++
		w.Header().Set("X-Pagination-TotalCount", "200")
		_ = json.NewEncoder(w).Encode(page)
	})
	c := newTestClient(t, srv.URL)
	got, err := c.ExtensionInstances(context.Background(), "tok", uuid.NewString())
	if err != nil || len(got) != 200 || calls != 2 {
		t.Errorf("got %d instances in %d calls, %v; want 200 in 2", len(got), calls, err)
	}
}

// TestWebhookExecutionsFilters: the state filter reaches the simulator, and what comes
// back is filtered again.
func TestWebhookExecutionsFilters(t *testing.T) {
	var seen []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r.URL.RawQuery)
		fmt.Fprint(w, `[{"id":"e1","extensionInstanceId":"A0000000-0000-4000-8000-000000000001","extensionId":"x","contributorId":"c","kind":"instanceUpdated","state":"halted","attempts":20},
			{"id":"e2","extensionInstanceId":"a0000000-0000-4000-8000-000000000002","extensionId":"x","contributorId":"c","kind":"instanceUpdated","state":"successful","attempts":1},
			{"id":"e3","extensionInstanceId":"not-a-uuid","state":"halted"}]`)
	})
	c := newTestClient(t, srv.URL)
	got, err := c.WebhookExecutions(context.Background(), "tok", uuid.NewString(), mstudio.ExecutionFilter{ExtensionID: "x", States: []string{"halted", "failed"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "e1" || got[0].ExtensionInstanceID != "a0000000-0000-4000-8000-000000000001" {
		t.Errorf("got %+v, want only e1 with its id lowercased", got)
	}
	if len(seen) != 1 || !strings.Contains(seen[0], "state=halted&state=failed") || !strings.Contains(seen[0], "extensionId=x") {
		t.Errorf("queries %q: want the filters sent", seen)
	}
}

// TestContributorCallsRefused: a missing, wrong or foreign token is ErrContributorToken
// (or refused before sending), and the error never quotes the token.
func TestContributorCallsRefused(t *testing.T) {
	p := apptest.NewPlatform(t, mstudiotest.Options{})
	c := newTestClient(t, p.SimURL)
	ctx := context.Background()
	if _, err := c.ExtensionInstances(ctx, "", p.Sim.ExtensionID()); !errors.Is(err, mstudio.ErrInvalidArgument) {
		t.Errorf("no token: %v, want ErrInvalidArgument", err)
	}
	for name, token := range map[string]string{
		"wrong": "wrong-token-" + uuid.NewString(), "foreign": p.Sim.IssueContributorToken(uuid.NewString()),
	} {
		_, err := c.ExtensionInstances(ctx, extension.Secret(token), p.Sim.ExtensionID())
		if !errors.Is(err, mstudio.ErrContributorToken) || strings.Contains(err.Error(), token) {
			t.Errorf("%s token: list: %v", name, err)
		}
		_, err = c.WebhookExecutions(ctx, extension.Secret(token), p.Sim.ContributorID(), mstudio.ExecutionFilter{})
		if !errors.Is(err, mstudio.ErrContributorToken) || strings.Contains(err.Error(), token) {
			t.Errorf("%s token: executions: %v", name, err)
		}
		err = c.ResumeWebhookExecution(ctx, extension.Secret(token), p.Sim.ContributorID(), p.Sim.ExtensionID(), uuid.NewString())
		if !errors.Is(err, mstudio.ErrContributorToken) || strings.Contains(err.Error(), token) {
			t.Errorf("%s token: resume: %v", name, err)
		}
	}
}

// TestResumeNotRetried: a resume answered 503 is not repeated (it may have acted), where
// a GET would be.
func TestResumeNotRetried(t *testing.T) {
	var calls int
	srv := newServer(t, func(w http.ResponseWriter, _ *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c := newTestClient(t, srv.URL)
	err := c.ResumeWebhookExecution(context.Background(), "tok", uuid.NewString(), uuid.NewString(), uuid.NewString())
	if err == nil || calls != 1 {
		t.Errorf("resume: %v after %d calls, want an error after 1", err, calls)
	}
}

// TestCompare: what the comparison finds, and what it leaves alone: instances still being
// installed or removed, another extension's entries, executions that succeeded.
func TestCompare(t *testing.T) {
	ext := uuid.NewString()
	id := func(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }
	removedAt := time.Now()
	listed := func(n int, mod func(*mstudio.ListedInstance)) mstudio.ListedInstance {
		in := mstudio.ListedInstance{Instance: mstudio.Instance{ID: id(n), ExtensionID: ext}}
		if mod != nil {
			mod(&in)
		}
		return in
	}
	platform := []mstudio.ListedInstance{
		listed(1, nil), // both have it
		listed(2, nil), // lost
		listed(3, func(in *mstudio.ListedInstance) { in.PendingInstallation = true }), // on its way
		listed(4, func(in *mstudio.ListedInstance) { in.PendingRemoval = true }),      // we hold it, removal on its way
		listed(5, func(in *mstudio.ListedInstance) { in.ExtensionID = uuid.NewString() }),
		listed(6, nil), // we hold a tombstone
	}
	ours := []extension.Instance{
		{ID: id(1)}, {ID: id(4)}, {ID: id(6), RemovedAt: &removedAt},
		{ID: id(7)},                        // missed removal
		{ID: id(8), RemovedAt: &removedAt}, // removed on both sides
	}
	executions := []mstudio.WebhookExecution{
		{ID: "e1", ExtensionInstanceID: id(1), ExtensionID: ext, State: mstudio.ExecutionHalted, Kind: "instanceUpdated", Attempts: 20},
		{ID: "e2", ExtensionInstanceID: id(4), ExtensionID: ext, State: mstudio.ExecutionFailed, Kind: "instanceRemovedFromContext", Attempts: 2, NextScheduledExecution: "2026-01-02T03:04:05Z"},
		{ID: "e3", ExtensionInstanceID: id(1), ExtensionID: ext, State: mstudio.ExecutionSuccessful},
		{ID: "e4", ExtensionInstanceID: id(9), ExtensionID: uuid.NewString(), State: mstudio.ExecutionHalted},
	}
	var got []string
	for _, f := range mstudio.Compare(ext, platform, ours, executions) {
		got = append(got, string(f.Kind)+" "+f.InstanceID)
		if f.Detail == "" {
			t.Errorf("%s %s: no detail", f.Kind, f.InstanceID)
		}
	}
	want := []string{"lost_install " + id(2), "lost_install " + id(6), "missed_removal " + id(7), "halted " + id(1), "failed " + id(4)}
	if !slices.Equal(got, want) {
		t.Errorf("Compare = %v\nwant %v", got, want)
	}
}

// FuzzDecodeInstanceList: any answer decodes or fails cleanly; what decodes has UUID ids.
func FuzzDecodeInstanceList(f *testing.F) {
	f.Add([]byte(`[{"id":"b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d","extensionId":"3F1E6C2A-8B4D-4E59-9A7C-2D5B8E1F4A60","aggregateReference":{"aggregate":"project","domain":"project","id":"5e8f1a2b-3c4d-4e5f-a6b7-c8d9e0f1a2b3"},"consentedScopes":["project:read"],"disabled":false,"pendingInstallation":false,"pendingRemoval":true,"webhookExecutionHalted":true}]`))
	f.Add([]byte(`{"items":[{"id":"b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d"}]}`))
	f.Add([]byte(`{"items":null}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"id":5}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := mstudio.DecodeInstanceList(data)
		if err != nil {
			if list != nil {
				t.Fatalf("error %v with a list", err)
			}
			return
		}
		for _, in := range list {
			if !mstudio.IsUUID(in.ID) || in.ID != strings.ToLower(in.ID) {
				t.Fatalf("id %q kept", in.ID)
			}
		}
	})
}

// FuzzDecodeExecutionList: like FuzzDecodeInstanceList, for the execution log; Next
// never panics on any date.
func FuzzDecodeExecutionList(f *testing.F) {
	f.Add([]byte(`[{"id":"e","extensionInstanceId":"b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d","extensionId":"x","contributorId":"c","kind":"secretRotated","state":"HALTED","attempts":20,"nextScheduledExecution":"2025-03-14T11:36:24.249313263Z"}]`))
	f.Add([]byte(`{"items":[{"extensionInstanceId":"b2a4c6e8-1d3f-4a5b-8c7d-9e0f1a2b3c4d","nextScheduledExecution":"yesterday"}]}`))
	f.Add([]byte(`[{"attempts":"3"}]`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := mstudio.DecodeExecutionList(data)
		if err != nil {
			return
		}
		for _, ex := range list {
			if !mstudio.IsUUID(ex.ExtensionInstanceID) || ex.State != strings.ToLower(ex.State) {
				t.Fatalf("entry %+v kept", ex)
			}
			_ = ex.Next()
		}
	})
}
