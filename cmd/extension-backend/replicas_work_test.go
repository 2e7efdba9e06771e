package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/jobs"
)

// testTokens: many callers at once, spread over both replicas' token brokers, ask for the
// tokens of several instances: the simulator mints one token per instance, and every
// caller gets it.
func (tr *twoReplicas) testTokens(t *testing.T) {
	const instances, callers = 6, 40 // callers per instance
	ids := make([]string, instances)
	for i := range ids {
		ids[i] = tr.install(t, mstudiotest.CallRequest{}).ID
	}
	tokens := make([][]mstudio.InstanceToken, instances)
	for i := range tokens {
		tokens[i] = make([]mstudio.InstanceToken, callers)
	}
	var wg sync.WaitGroup
	for i, id := range ids {
		for c := range callers {
			wg.Go(func() {
				tok, err := tr.r[(i+c)%2].b.broker.Token(context.Background(), id)
				if err != nil {
					t.Errorf("instance %d, caller %d: %v", i, c, err)
				}
				tokens[i][c] = tok
			})
		}
	}
	wg.Wait()
	for i, id := range ids {
		mints := 0
		for _, c := range tr.sim.SimRequests("POST /v2/extension-instances/{id}/tokens") {
			if c.Route == "POST /v2/extension-instances/"+id+"/tokens" && c.Status == http.StatusCreated {
				mints++
			}
		}
		if mints != 1 {
			t.Errorf("instance %d: %d mints at the simulator, want 1", i, mints)
		}
		for c, tok := range tokens[i] {
			if tok.Token != tokens[i][0].Token {
				t.Errorf("instance %d: caller %d got another token than caller 0", i, c)
				break
			}
		}
		if !accepted(t, tr.sim, id, tokens[i][0].Token.Reveal()) {
			t.Errorf("instance %d: the simulator refuses the token", i)
		}
	}
}

// testJobs: a signed-in user starts many renames of two projects on the pages of both
// replicas at once; each job runs once: every rename reaches the simulator once, and
// River records each job completed at its first attempt, by one worker.
func (tr *twoReplicas) testJobs(t *testing.T) {
	const renames = 8 // per instance
	ada := tr.user(t, "Ada Admin")
	b := apptest.Browser(t)
	var ins []mstudiotest.Instance
	for range 2 {
		in := tr.install(t, mstudiotest.CallRequest{Context: "project", ConsentedScopes: []string{"project:read", jobs.ScopeRenameProject}})
		tr.signIn(t, b, tr.r[len(ins)%2], in.ID, ada)
		ins = append(ins, in)
	}
	type started struct {
		instanceID, actionID, name string
	}
	var mu sync.Mutex
	var actions []started
	var wg sync.WaitGroup
	for i, in := range ins {
		for n := range renames {
			wg.Go(func() {
				r := tr.r[(i+n)%2]
				name := "Renamed " + in.ID[:8] + " " + string(rune('a'+n))
				resp, body, err := tr.postForm(b, r.url+"/app/"+in.ID+"/actions/rename-project", url.Values{"name": {name}})
				prefix := "/app/" + in.ID + "/actions/"
				switch {
				case err != nil:
					t.Errorf("rename on replica %s: %v", r.name, err)
					return
				case resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), prefix):
					t.Errorf("rename on replica %s: %d %s\n%s", r.name, resp.StatusCode, resp.Header.Get("Location"), body)
					return
				}
				mu.Lock()
				actions = append(actions, started{in.ID, strings.TrimPrefix(resp.Header.Get("Location"), prefix), name})
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	store := tr.r[0].b.store
	for _, a := range actions {
		waitFor(t, "action "+a.actionID+" ends", 30*time.Second, func() bool {
			got, err := store.ActionByID(t.Context(), a.instanceID, a.actionID)
			return err == nil && (got.State == extension.ActionDone || got.State == extension.ActionFailed)
		})
		if got, _ := store.ActionByID(t.Context(), a.instanceID, a.actionID); got.State != extension.ActionDone {
			t.Errorf("action %s: %s (%s), want done", a.actionID, got.State, got.Outcome)
		}
	}

	// Each rename reached the platform once.
	sent := map[string]int{}
	for _, in := range ins {
		for _, c := range tr.sim.SimRequests("PATCH /v2/projects/" + in.ContextID) {
			var body struct{ Description string }
			if err := json.Unmarshal(c.Body, &body); err != nil {
				t.Fatal(err)
			}
			sent[body.Description]++
		}
	}
	for _, a := range actions {
		if sent[a.name] != 1 {
			t.Errorf("rename to %q: %d requests at the simulator, want 1", a.name, sent[a.name])
		}
	}
	if len(sent) != len(actions) {
		t.Errorf("the simulator got %d names, want %d", len(sent), len(actions))
	}

	// River's word: each job done at its first attempt, by one worker. River records a
	// completion a moment after the job returned, in batches.
	waitFor(t, "River records the rename jobs finished", 10*time.Second, func() bool {
		var open int
		err := store.SQLDB().QueryRowContext(t.Context(),
			`SELECT count(*) FROM river_job WHERE kind = $1 AND finalized_at IS NULL`, jobs.KindRenameProject).Scan(&open)
		return err == nil && open == 0
	})
	workers := riverWorkers(t, store.SQLDB(), jobs.KindRenameProject, len(actions))
	t.Logf("rename jobs by worker client: %v", workers)
}

// riverWorkers checks River's rows of the kind: want jobs, each completed at its first
// attempt by one client; it returns how many each client worked.
func riverWorkers(t *testing.T, db *sql.DB, kind string, want int) map[string]int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(),
		`SELECT id, state, attempt, coalesce(array_length(attempted_by, 1), 0), coalesce(attempted_by[1], '') FROM river_job WHERE kind = $1`, kind)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	workers := map[string]int{}
	n := 0
	for rows.Next() {
		var id int64
		var state, by string
		var attempt, clients int
		if err := rows.Scan(&id, &state, &attempt, &clients, &by); err != nil {
			t.Fatal(err)
		}
		n++
		if state != "completed" || attempt != 1 || clients != 1 {
			t.Errorf("job %d (%s): %s after %d attempts by %d clients, want completed after 1 by 1", id, kind, state, attempt, clients)
		}
		workers[by]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Errorf("%d %s jobs in River, want %d", n, kind, want)
	}
	return workers
}
