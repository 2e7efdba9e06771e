package mstudio_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// TestReviewListKeepsPagingPastADroppedEntry: a full page of 100 of which one entry has
// an id the decoder drops must not end the listing: every instance on the next page
// would otherwise be reported as a missed removal.
func TestReviewListKeepsPagingPastADroppedEntry(t *testing.T) {
	var all []map[string]any
	all = append(all, map[string]any{"id": "not-a-uuid"})
	for range 149 {
		all = append(all, map[string]any{"id": uuid.NewString()})
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		skip, _ := strconv.Atoi(r.URL.Query().Get("skip"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		end := min(skip+limit, len(all))
		w.Header().Set("X-Pagination-TotalCount", strconv.Itoa(len(all)))
		_ = json.NewEncoder(w).Encode(all[min(skip, len(all)):end])
	})
	c := newTestClient(t, srv.URL)
	got, err := c.ExtensionInstances(context.Background(), "tok", uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 149 {
		t.Errorf("listed %d instances, want the 149 with valid ids (listing stopped after the first page)", len(got))
	}
}

// TestReviewResumeHaltedOncePerInstance: an instance with two halted executions in the
// log (two webhooks queued behind the halt) is resumed once, not once per execution.
func TestReviewResumeHaltedOncePerInstance(t *testing.T) {
	var resumes atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			resumes.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	})
	store, err := extension.Open(context.Background(), "sqlite://"+filepath.Join(t.TempDir(), "db.sqlite"), extension.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	ext, contributor, inst := uuid.NewString(), uuid.NewString(), uuid.NewString()
	rec, err := mstudio.NewReconciler(mstudio.ReconcilerConfig{Client: newTestClient(t, srv.URL), Store: store,
		Token: "tok", ContributorID: contributor, ExtensionID: ext})
	if err != nil {
		t.Fatal(err)
	}
	var executions []mstudio.WebhookExecution
	for i, kind := range []string{"instanceUpdated", "secretRotated"} {
		executions = append(executions, mstudio.WebhookExecution{ID: fmt.Sprint("e", i), ExtensionInstanceID: inst,
			ExtensionID: ext, Kind: kind, State: mstudio.ExecutionHalted, Attempts: 5})
	}
	platform := []mstudio.ListedInstance{{Instance: mstudio.Instance{ID: inst, ExtensionID: ext}}}
	ours := []extension.Instance{{ID: inst}}
	rep := mstudio.Report{Findings: mstudio.Compare(ext, platform, ours, executions)}
	out := rec.ResumeHalted(context.Background(), rep)
	if n := resumes.Load(); n != 1 || len(out) != 1 {
		t.Errorf("resume reached the platform %d times (%d outcomes) for one halted instance, want once", n, len(out))
	}
}

// TestReviewListFollowsAPlatformCappedLimit: a platform that caps limit below what we ask
// (answering X-Pagination-Limit with its own) is paged to the end, not stopped after its
// first, "short" page.
func TestReviewListFollowsAPlatformCappedLimit(t *testing.T) {
	const capped = 50
	var all []map[string]any
	for range 120 {
		all = append(all, map[string]any{"id": uuid.NewString()})
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		skip, _ := strconv.Atoi(r.URL.Query().Get("skip"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		limit = min(limit, capped)
		w.Header().Set("X-Pagination-Limit", strconv.Itoa(limit))
		w.Header().Set("X-Pagination-TotalCount", strconv.Itoa(len(all)))
		_ = json.NewEncoder(w).Encode(all[min(skip, len(all)):min(skip+limit, len(all))])
	})
	c := newTestClient(t, srv.URL)
	got, err := c.ExtensionInstances(context.Background(), "tok", uuid.NewString())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Errorf("listed %d instances, want all %d", len(got), len(all))
	}
}

// TestReviewCompareReadsTheHaltedFlag: an instance the platform lists with
// webhookExecutionHalted is found halted even when the execution log shows nothing of
// it, and only once when the log shows it too.
func TestReviewCompareReadsTheHaltedFlag(t *testing.T) {
	ext, a, b := uuid.NewString(), uuid.NewString(), uuid.NewString()
	platform := []mstudio.ListedInstance{
		{Instance: mstudio.Instance{ID: a, ExtensionID: ext}, WebhookExecutionHalted: true},
		{Instance: mstudio.Instance{ID: b, ExtensionID: ext}, WebhookExecutionHalted: true},
	}
	ours := []extension.Instance{{ID: a}, {ID: b}}
	executions := []mstudio.WebhookExecution{{ID: "e1", ExtensionInstanceID: b, ExtensionID: ext, State: mstudio.ExecutionHalted}}
	halted := map[string]int{}
	for _, f := range mstudio.Compare(ext, platform, ours, executions) {
		if f.Kind == extension.FindingHalted {
			halted[f.InstanceID]++
		}
	}
	if halted[a] != 1 || halted[b] != 1 || len(halted) != 2 {
		t.Errorf("halted findings %v, want one for each of %s and %s", halted, a, b)
	}
}

// TestReviewTokenNotSentAcrossARedirect: an answer of the platform's address that
// redirects to another host must not carry the contributor token there (Go's client
// forwards every header but Authorization and Cookie to any redirect target).
func TestReviewTokenNotSentAcrossARedirect(t *testing.T) {
	const token = "contributor-token-s3cret"
	var leaked atomic.Int64
	other := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Access-Token") != "" || r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		_, _ = w.Write([]byte(`[]`))
	})
	platform := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
	})
	c := newTestClient(t, platform.URL)
	_, _ = c.ExtensionInstances(context.Background(), token, uuid.NewString())
	_ = c.ResumeWebhookExecution(context.Background(), token, uuid.NewString(), uuid.NewString(), uuid.NewString())
	if n := leaked.Load(); n != 0 {
		t.Errorf("the token reached another host %d times through a redirect", n)
	}
}

// TestMissedRemovalConfirmedByID: an instance the paged list left out (an install or
// removal between two pages shifts the offsets) but which the platform still answers
// for by id is no missed removal; one it answers 404 for is.
func TestMissedRemovalConfirmedByID(t *testing.T) {
	ext, contributor := uuid.NewString(), uuid.NewString()
	listed, skipped, gone := uuid.NewString(), uuid.NewString(), uuid.NewString()
	body := func(id string) map[string]any {
		return map[string]any{"id": id, "extensionId": ext, "contributorId": contributor, "disabled": false,
			"aggregateReference": map[string]any{"aggregate": "project", "domain": "project", "id": uuid.NewString()}}
	}
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v2/extension-instances":
			json.NewEncoder(w).Encode([]any{body(listed)}) //nolint:errcheck // the test reads what arrives
		case "/v2/contributors/" + contributor + "/webhook-executions":
			w.Write([]byte("[]")) //nolint:errcheck // as above
		case "/v2/extension-instances/" + skipped:
			json.NewEncoder(w).Encode(body(skipped)) //nolint:errcheck // as above
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"type":"NotFound","message":"extension instance not found"}`)) //nolint:errcheck // as above
		}
	})
	store := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{Keys: extensiontest.Keyring(t)})
	enabled := true
	for _, id := range []string{listed, skipped, gone} {
		if _, err := store.ApplyLifecycle(context.Background(), extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: "r-" + id,
			CreatedAt: time.Now(), InstanceID: id, ContextKind: "project", ContextID: uuid.NewString(), Enabled: &enabled, Secret: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	rec, err := mstudio.NewReconciler(mstudio.ReconcilerConfig{Client: newTestClient(t, srv.URL), Store: store,
		Token: "tok", ContributorID: contributor, ExtensionID: ext})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rec.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Kind != extension.FindingMissedRemoval || rep.Findings[0].InstanceID != gone {
		t.Errorf("findings %+v, want one missed removal of %s (not of %s, which the platform still has)", rep.Findings, gone, skipped)
	}
}
