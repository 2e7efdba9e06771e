package mstudiotest

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// contributorCall sends a request with the token (none when empty) and returns the
// status and the decoded JSON body (nil when there is none).
func contributorCall(t *testing.T, method, url, token string) (int, http.Header, any) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Access-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, resp.Header, body
}

// TestContributorRoutesCheckTheToken: no token or an unknown one is 401; a user's, an
// instance's or another contributor's token is 403 on what is not theirs; nothing is
// resumed by a refused request, and every request to the resume route is counted.
func TestContributorRoutesCheckTheToken(t *testing.T) {
	sim, srv := newSenderSim(t, "")
	in, err := sim.CreateInstance(InstanceSpec{})
	if err != nil {
		t.Fatal(err)
	}
	instanceToken, _ := sim.issueToken(grant{instanceID: in.ID, scopes: in.Scopes}, time.Hour)
	cid, eid := sim.ContributorID(), sim.ExtensionID()
	other := uuid.NewString()
	list := srv.URL + "/v2/extension-instances?extensionId=" + eid
	executions := srv.URL + "/v2/contributors/" + cid + "/webhook-executions"
	resume := func(c, e string) string {
		return srv.URL + "/v2/contributors/" + c + "/extensions/" + e + "/extension-instances/" + in.ID + "/actions/resume-webhook-execution"
	}
	for _, tc := range []struct {
		name, method, url, token string
		want                     int
	}{
		{"list without token", "GET", list, "", 401},
		{"list with unknown token", "GET", list, "nope", 401},
		{"list with instance token", "GET", list, instanceToken, 403},
		{"list by another contributor", "GET", list, sim.IssueContributorToken(other), 403},
		{"list of another extension", "GET", srv.URL + "/v2/extension-instances?extensionId=" + uuid.NewString(), sim.ContributorToken(), 403},
		{"executions without token", "GET", executions, "", 401},
		{"executions with user token", "GET", executions, sim.Users()[0].Token, 403},
		{"executions of another contributor", "GET", srv.URL + "/v2/contributors/" + other + "/webhook-executions", sim.ContributorToken(), 403},
		{"executions by another contributor", "GET", executions, sim.IssueContributorToken(other), 403},
		{"resume with unknown token", "POST", resume(cid, eid), "nope", 401},
		{"resume with user token", "POST", resume(cid, eid), sim.Users()[0].Token, 403},
		{"resume another contributor's extension", "POST", resume(other, eid), sim.IssueContributorToken(other), 403},
		{"resume an extension not the contributor's", "POST", resume(cid, uuid.NewString()), sim.ContributorToken(), 403},
		{"resume with nothing halted", "POST", resume(cid, eid), sim.ContributorToken(), 412},
		{"list", "GET", list, sim.ContributorToken(), 200},
		{"list as a user", "GET", srv.URL + "/v2/extension-instances", sim.Users()[0].Token, 200},
		{"executions", "GET", executions + "?state=halted", sim.ContributorToken(), 200},
		{"executions with a bad state", "GET", executions + "?state=sleepy", sim.ContributorToken(), 400},
	} {
		status, _, body := contributorCall(t, tc.method, tc.url, tc.token)
		if status != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.want)
		}
		if m, ok := body.(map[string]any); status >= 400 && (!ok || m["type"] == "" || m["message"] == "") {
			t.Errorf("%s: error body %v, want {type, message}", tc.name, body)
		}
	}
	if got := sim.ResumeRequests(); got != 5 {
		t.Errorf("ResumeRequests = %d, want 5", got)
	}
	if got := sim.Resumes(); got != 0 {
		t.Errorf("Resumes = %d, want 0", got)
	}
}

// TestContributorRoutesFollowTheSender: the list shows an instance being installed as
// pendingInstallation and one being removed as pendingRemoval; the execution log lists a
// halted execution in the platform's shape; a resume un-halts it, and the queued webhook
// is delivered again.
func TestContributorRoutesFollowTheSender(t *testing.T) {
	var refuse atomic.Bool
	rcv := newSenderReceiver(t, func(*http.Request, senderDelivery, int) (int, string) {
		if refuse.Load() {
			return http.StatusBadGateway, ""
		}
		return http.StatusNoContent, ""
	})
	sim, srv := newSenderSim(t, rcv.URL)
	ctx := context.Background()
	added, err := sim.Trigger(ctx, CallExtensionAddedToContext, CallRequest{})
	if err != nil || !added.Successful {
		t.Fatalf("install: %+v, %v", added, err)
	}
	id := added.InstanceID
	token := sim.ContributorToken()
	listed := func() map[string]any {
		t.Helper()
		status, h, body := contributorCall(t, "GET", srv.URL+"/v2/extension-instances?extensionId="+sim.ExtensionID()+"&limit=10", token)
		list, _ := body.([]any)
		if status != 200 || h.Get("X-Pagination-TotalCount") == "" || h.Get("X-Pagination-Limit") != "10" {
			t.Fatalf("list: %d %v %v", status, h, body)
		}
		for _, e := range list {
			if m := e.(map[string]any); m["id"] == id {
				return m
			}
		}
		return nil
	}
	if m := listed(); m == nil || m["pendingInstallation"] != false || m["pendingRemoval"] != false {
		t.Errorf("installed instance listed as %v", m)
	}

	refuse.Store(true)
	if _, err := sim.Trigger(ctx, CallInstanceUpdated, CallRequest{ExtensionInstanceID: id}); err != nil {
		t.Fatal(err)
	}
	senderWait(t, "the halt", func() bool { halted, _ := sim.WebhookStatus(id); return halted })
	if m := listed(); m == nil || m["webhookExecutionHalted"] != true {
		t.Errorf("halted instance listed as %v", m)
	}
	status, _, body := contributorCall(t, "GET", srv.URL+"/v2/contributors/"+sim.ContributorID()+"/webhook-executions?state=halted&extensionInstanceId="+id, token)
	list, _ := body.([]any)
	if status != 200 || len(list) != 1 {
		t.Fatalf("halted executions: %d %v", status, body)
	}
	ex := list[0].(map[string]any)
	for _, field := range []string{"id", "extensionInstanceId", "extensionId", "contributorId", "kind", "state", "attempts"} {
		if _, ok := ex[field]; !ok {
			t.Errorf("execution %v: no %s", ex, field)
		}
	}
	if _, ok := ex["lastError"]; ok || ex["state"] != "halted" || ex["kind"] != CallInstanceUpdated {
		t.Errorf("execution %v: want the platform's shape, halted, instanceUpdated", ex)
	}

	refuse.Store(false)
	n := len(rcv.deliveries())
	url := srv.URL + "/v2/contributors/" + sim.ContributorID() + "/extensions/" + sim.ExtensionID() + "/extension-instances/" + strings.ToUpper(id) + "/actions/resume-webhook-execution"
	if status, _, body := contributorCall(t, "POST", url, token); status != http.StatusNoContent {
		t.Fatalf("resume: %d %v", status, body)
	}
	senderWait(t, "the resumed update", func() bool { return senderState(sim, id, CallInstanceUpdated) == ExecutionSuccessful })
	if len(rcv.deliveries()) != n+1 || sim.Resumes() != 1 {
		t.Errorf("%d deliveries after the resume, %d resumes; want 1 and 1", len(rcv.deliveries())-n, sim.Resumes())
	}
	if status, _, _ := contributorCall(t, "POST", url, token); status != http.StatusPreconditionFailed || sim.Resumes() != 1 {
		t.Errorf("second resume: %d, %d resumes; want 412 and still 1", status, sim.Resumes())
	}

	// A removal the backend refuses leaves the instance listed, pending removal.
	refuse.Store(true)
	if _, err := sim.Trigger(ctx, CallInstanceRemovedFromContext, CallRequest{ExtensionInstanceID: id}); err != nil {
		t.Fatal(err)
	}
	if m := listed(); m == nil || m["pendingRemoval"] != true {
		t.Errorf("instance being removed listed as %v", m)
	}
	refuse.Store(false)
	senderWait(t, "the removal", func() bool { return senderState(sim, id, CallInstanceRemovedFromContext) == ExecutionSuccessful })
	if m := listed(); m != nil {
		t.Errorf("removed instance still listed: %v", m)
	}
}
