package main

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

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
