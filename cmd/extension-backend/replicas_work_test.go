package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
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

// testSessions: a customer signs in on replica A and uses the pages on replica B with the
// same cookie; after signing out on A, B refuses that cookie.
func (tr *twoReplicas) testSessions(t *testing.T) {
	a, b := tr.r[0], tr.r[1]
	in := tr.install(t, mstudiotest.CallRequest{})
	ada := tr.user(t, "Ada Admin")
	browser := apptest.Browser(t)
	tr.signIn(t, browser, a, in.ID, ada)
	for _, page := range []string{"", "/team", "/account", "/audit"} {
		resp, body := fetch(t, browser, http.MethodGet, b.url+"/app/"+in.ID+page, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, ada.Name) {
			t.Errorf("page %q on replica B: %d, want 200 naming %s", page, resp.StatusCode, ada.Name)
		}
	}
	jarCookies := browser.Jar.Cookies(&url.URL{Scheme: "http", Host: strings.TrimPrefix(b.url, "http://")})
	if len(jarCookies) == 0 {
		t.Fatal("no cookie after the sign-in")
	}
	var cookies []string // as the browser sent them, kept to be sent again after the sign-out
	for _, c := range jarCookies {
		cookies = append(cookies, c.String())
	}

	resp, body, err := tr.postForm(browser, a.url+"/logout", url.Values{"instance": {in.ID}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out on replica A: %v, %v\n%s", resp.Status, err, body)
	}
	replay := http.Header{"Cookie": {strings.Join(cookies, "; ")}}
	resp, _ = fetch(t, &http.Client{CheckRedirect: browser.CheckRedirect}, http.MethodGet, b.url+"/app/"+in.ID, replay)
	if want := "/app/" + in.ID + "/login"; resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
		t.Errorf("replica B after the sign-out on A, with the old cookie: %d to %q, want 303 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if resp, _ = fetch(t, browser, http.MethodGet, b.url+"/app/"+in.ID, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("replica B after the sign-out on A: %d, want 303", resp.StatusCode)
	}
}

// testInvitations: an owner makes invitations on the team page; each link is accepted
// twice at once, on replica A and on replica B: one acceptance makes the account and
// signs it in, the other is told the invitation was already accepted.
func (tr *twoReplicas) testInvitations(t *testing.T) {
	in := tr.install(t, mstudiotest.CallRequest{})
	owner := apptest.Browser(t)
	tr.signIn(t, owner, tr.r[0], in.ID, tr.user(t, "Ada Admin"))
	used := pageCopy(t, "en")["team.accept.used.title"]
	const invitations = 3
	for i := range invitations {
		email := "invitee-" + string(rune('a'+i)) + "@example.test"
		resp, body, err := tr.postForm(owner, tr.r[i%2].url+"/app/"+in.ID+"/team/invitations", url.Values{"email": {email}, "role": {extension.RoleMember}})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("invite on replica %s: %v, %v\n%s", tr.r[i%2].name, resp.Status, err, body)
		}
		link := inviteLink.FindString(body)
		if link == "" {
			t.Fatalf("no invitation link on the page:\n%s", body)
		}
		type answer struct {
			status   int
			location string
			body     string
		}
		var answers [2]answer
		var browsers [2]*http.Client
		var wg sync.WaitGroup
		for n, r := range tr.r {
			browsers[n] = apptest.Browser(t)
			wg.Go(func() {
				form := url.Values{"name": {"Invitee " + r.name}, "password": {"correct horse battery staple"}, "password_repeat": {"correct horse battery staple"}}
				resp, body, err := tr.postForm(browsers[n], r.url+link, form)
				if err != nil {
					t.Errorf("accept on replica %s: %v", r.name, err)
					return
				}
				answers[n] = answer{resp.StatusCode, resp.Header.Get("Location"), body}
			})
		}
		wg.Wait()
		accepted := -1
		for n, a := range answers {
			switch {
			case a.status == http.StatusSeeOther && a.location == "/app/"+in.ID:
				if accepted >= 0 {
					t.Errorf("invitation %d: accepted on both replicas", i)
				}
				accepted = n
			case a.status == http.StatusGone && strings.Contains(a.body, used):
			default:
				t.Errorf("invitation %d on replica %s: %d to %q, want 303 to the dashboard or 410 %q\n%s", i, tr.r[n].name, a.status, a.location, used, a.body)
			}
		}
		if accepted < 0 {
			t.Errorf("invitation %d: accepted on neither replica", i)
			continue
		}
		// The new account's session works on the other replica too.
		other := tr.other(tr.r[accepted])
		if resp, _ := fetch(t, browsers[accepted], http.MethodGet, other.url+"/app/"+in.ID, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("invitation %d: the new account's dashboard on replica %s: %d", i, other.name, resp.StatusCode)
		}
		accs, err := tr.r[0].b.store.Accounts(t.Context(), in.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, acc := range accs {
			if acc.Email == email {
				n++
			}
		}
		if n != 1 {
			t.Errorf("invitation %d: %d accounts for %s, want 1", i, n, email)
		}
	}
}

// testUserTokenRefresh: a platform user whose token is due for a refresh opens the reclaim
// page (which asks the platform with the user's own token) many times at once, on both
// replicas: the simulator sees one refresh, and every request succeeds.
func (tr *twoReplicas) testUserTokenRefresh(t *testing.T) {
	in := tr.install(t, mstudiotest.CallRequest{})
	tr.signIn(t, apptest.Browser(t), tr.r[0], in.ID, tr.user(t, "Ada Admin")) // the instance's owner
	bob := tr.user(t, "Bob Builder")
	if err := tr.sim.Sim.SetOwner(bob.ID, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.sim.Sim.SetOwner(bob.ID, false) })

	// Bob signs in with a token the simulator issues as if an hour early: it expires lead
	// after it was issued, and a token is due for its refresh before it expires.
	const lead = 200 * time.Millisecond
	tr.simClock.Set(time.Now().Add(lead - userTokenTTL))
	browser := apptest.Browser(t)
	tr.signIn(t, browser, tr.r[0], in.ID, bob)
	tr.simClock.Set(time.Now())
	time.Sleep(lead)

	const route = "PUT /v2/users/self/sessions"
	before := tr.sim.SimHits(route)
	const requests = 16
	var wg sync.WaitGroup
	for n := range requests {
		wg.Go(func() {
			r := tr.r[n%2]
			req, err := http.NewRequest(http.MethodGet, r.url+"/app/"+in.ID+"/reclaim", nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := browser.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("reclaim page on replica %s: %d, want 200", r.name, resp.StatusCode)
			}
		})
	}
	wg.Wait()
	refreshes := tr.sim.SimRequests(route)[before:]
	if len(refreshes) != 1 || refreshes[0].Status != http.StatusOK {
		var statuses []int
		for _, c := range refreshes {
			statuses = append(statuses, c.Status)
		}
		t.Errorf("refreshes at the simulator: %v, want one answered 200", statuses)
	}
}

// inviteLink finds the path of an invitation link on a page.
var inviteLink = regexp.MustCompile(`/invite/[A-Za-z0-9_-]{43}`)
