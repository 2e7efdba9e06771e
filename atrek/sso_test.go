package atrek_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
	"golang.org/x/time/rate"
)

func TestSSOHappyPath(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		resp := e.signIn(t, e.HTTP, e.Ada)
		for h, want := range map[string]string{"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s: %q, want %q", h, got, want)
			}
		}
		var ck *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == e.cookieName() {
				ck = c
			}
		}
		if ck == nil {
			t.Fatalf("no session cookie in %q", resp.Header.Values("Set-Cookie"))
		}
		if !ck.HttpOnly || ck.Secure || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/" || ck.Domain != "" ||
			ck.MaxAge != int((24*time.Hour).Seconds()) || !ck.Expires.IsZero() {
			t.Errorf("cookie flags: %q", resp.Header.Values("Set-Cookie"))
		}
		if n := len(ck.Value); n != 43 {
			t.Errorf("session id has %d characters, want 43 (256 bits)", n)
		}
		if got := e.hitCount(routeRedeem); got != 1 {
			t.Errorf("%d redeem calls, want 1", got)
		}

		resp, body := e.get(t, e.HTTP, e.appPath())
		wantPage(t, resp, body, http.StatusOK, "<dd>Ada Admin</dd>")

		accs := accountOf(t, e, e.Ada.ID)
		if accs.Role != extension.RoleOwner || accs.Email != e.Ada.Email || accs.Name != "Ada Admin" {
			t.Errorf("account %+v, want owner Ada with her e-mail", accs)
		}
	})
}

// accountOf loads the platform user's account through a session-less path: a repeat
// EnsurePlatformAccount changes nothing and returns it.
func accountOf(t testing.TB, e *ssoEnv, userID string) extension.Account {
	t.Helper()
	acc, created, err := e.Store.EnsurePlatformAccount(context.Background(), e.Instance.ID, userID, "", "", extension.RoleMember)
	if err != nil || created {
		t.Fatalf("account of %s: created %v, %v", userID, created, err)
	}
	return acc
}

func TestSSOAcceptsLongQueryNameAndContextID(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	key := e.key(t, e.Instance.ID, e.Ada.ID)
	q := url.Values{"accessTokenRetrievalKey": {key}, "userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}, "contextId": {e.Instance.ContextID}}
	resp, body := e.get(t, e.HTTP, "/mstudio/sso?"+q.Encode())
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("answer %d:\n%s", resp.StatusCode, body)
	}
	// A context id that is not the instance's: the link was tampered with.
	q = url.Values{"atrek": {e.key(t, e.Instance.ID, e.Ada.ID)}, "userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}, "contextId": {uuid.NewString()}}
	resp, body = e.get(t, e.newBrowser(t), "/mstudio/sso?"+q.Encode())
	wantPage(t, resp, body, http.StatusBadRequest, "not complete")
}

func TestSSOReloadedLink(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		path := ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID)
		if resp, body := e.get(t, e.HTTP, path); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("first use: %d\n%s", resp.StatusCode, body)
		}
		for _, browser := range []*http.Client{e.HTTP, e.newBrowser(t)} { // a reload, a shared link
			resp, body := e.get(t, browser, path)
			wantPage(t, resp, body, http.StatusBadRequest, "This link was already used")
			if !strings.Contains(body, "Open the extension again from the control panel") {
				t.Errorf("page does not say what to do:\n%s", body)
			}
		}
		if got := e.hitCount(routeRedeem); got != 1 {
			t.Errorf("%d redeem calls, want exactly 1", got)
		}
	})
}

func TestSSOExpiredKey(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	key := e.key(t, e.Instance.ID, e.Ada.ID)
	e.Clock.Advance(61 * time.Second) // the simulator's keys live 60 s
	resp, body := e.get(t, e.HTTP, ssoPath(key, e.Ada.ID, e.Instance.ID))
	wantPage(t, resp, body, http.StatusBadRequest, "expired or was already used")
	if _, ok := e.sessionCookie(e.HTTP); ok {
		t.Error("a session cookie after a refused key")
	}
	if _, err := e.Store.UserToken(context.Background(), e.Ada.ID, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
		t.Errorf("user token after a refused key: %v", err)
	}
}

func TestSSOWrongUserID(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	key := e.key(t, e.Instance.ID, e.Ada.ID)
	resp, body := e.get(t, e.HTTP, ssoPath(key, e.Bob.ID, e.Instance.ID))
	wantPage(t, resp, body, http.StatusBadRequest, "expired or was already used")
	if _, ok := e.sessionCookie(e.HTTP); ok {
		t.Error("a session cookie for a key of another user")
	}
	if _, err := e.Store.UserToken(context.Background(), e.Bob.ID, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
		t.Errorf("Bob has a token: %v", err)
	}
}

func TestSSOMalformedLink(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	good := strings.Repeat("k", 37)
	for name, q := range map[string]url.Values{
		"no key":         {"userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}},
		"short key":      {"atrek": {good[:36]}, "userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}},
		"long key":       {"atrek": {good + "k"}, "userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}},
		"user not uuid":  {"atrek": {good}, "userId": {"ada"}, "instanceId": {e.Instance.ID}},
		"instance ':id'": {"atrek": {good}, "userId": {e.Ada.ID}, "instanceId": {":extensionInstanceId"}},
		"context bad":    {"atrek": {good}, "userId": {e.Ada.ID}, "instanceId": {e.Instance.ID}, "contextId": {"x"}},
	} {
		resp, body := e.get(t, e.HTTP, "/mstudio/sso?"+q.Encode())
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not complete") {
			t.Errorf("%s: %d\n%s", name, resp.StatusCode, body)
		}
	}
	if n := e.SimCalls(); n != 0 {
		t.Errorf("%d platform calls for malformed links, want none", n)
	}
}

func TestSSOInstanceNotUsable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		disabled := e.Install(t, mstudiotest.InstanceSpec{})
		e.Apply(t, extension.LifecycleEvent{Kind: extension.EventUpdated, InstanceID: disabled.ID,
			ContextKind: disabled.ContextKind, ContextID: disabled.ContextID, Scopes: disabled.Scopes, Enabled: new(false)})
		removed := e.Install(t, mstudiotest.InstanceSpec{})
		e.Apply(t, extension.LifecycleEvent{Kind: extension.EventRemoved, InstanceID: removed.ID,
			ContextKind: removed.ContextKind, ContextID: removed.ContextID, Enabled: new(false)})
		// Keys are minted while the simulator still thinks the instances usable: our
		// store's view is what refuses.
		unknown, err := e.Sim.CreateInstance(mstudiotest.InstanceSpec{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			id     string
			status int
			words  string
		}{
			{unknown.ID, http.StatusNotFound, "not installed yet"},
			{disabled.ID, http.StatusForbidden, "disabled"},
			{removed.ID, http.StatusGone, "removed"},
		} {
			key := e.key(t, c.id, e.Ada.ID)
			resp, body := e.get(t, e.HTTP, ssoPath(key, e.Ada.ID, c.id))
			wantPage(t, resp, body, c.status, c.words)
			if resp.Header.Get("Referrer-Policy") != "no-referrer" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: headers %v", c.words, resp.Header)
			}
		}
		if n := e.SimCalls(); n != 0 {
			t.Errorf("%d platform calls, want none", n)
		}
	})
}

func TestSSOUserWithoutAccess(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		// The simulator mints no key for a user without access (Otto): the control
		// panel would not offer him the extension. A user who loses access between the
		// click and the check is what remains; the platform then answers 403 to the
		// instance read with the user's token.
		if _, err := e.Sim.NewRetrievalKey(e.Instance.ID, e.Otto.ID); err == nil {
			t.Fatal("the simulator minted a key for Otto")
		}
		if err := e.Sim.InjectFault("GET /v2/extension-instances/{id}", mstudiotest.Fault{Status: http.StatusForbidden, Times: 1}); err != nil {
			t.Fatal(err)
		}
		key := e.key(t, e.Instance.ID, e.Ada.ID)
		resp, body := e.get(t, e.HTTP, ssoPath(key, e.Ada.ID, e.Instance.ID))
		wantPage(t, resp, body, http.StatusForbidden, "signed in to the control panel as a user without access to this project")
		if _, ok := e.sessionCookie(e.HTTP); ok {
			t.Error("a session cookie for a user without access")
		}
		if _, err := e.Store.UserToken(context.Background(), e.Ada.ID, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("tokens stored for a user without access: %v", err)
		}
		if _, _, err := e.Store.EnsurePlatformAccount(context.Background(), e.Instance.ID, e.Ada.ID, "", "", "member"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSSOCustomerWithoutAccessNamesOrganisation(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	in := e.Install(t, mstudiotest.InstanceSpec{ContextKind: "customer"})
	if err := e.Sim.InjectFault("GET /v2/extension-instances/{id}", mstudiotest.Fault{Status: http.StatusForbidden, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get(t, e.HTTP, ssoPath(e.key(t, in.ID, e.Ada.ID), e.Ada.ID, in.ID))
	wantPage(t, resp, body, http.StatusForbidden, "without access to this organisation")
}

func TestSSOTwoUsers(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		ada, bob := e.HTTP, e.newBrowser(t)
		e.signIn(t, ada, e.Ada)
		e.signIn(t, bob, e.Bob)
		adaID, _ := e.sessionCookie(ada)
		bobID, _ := e.sessionCookie(bob)
		if adaID == "" || adaID == bobID {
			t.Fatal("the two users do not have separate sessions")
		}
		ctx := context.Background()
		at, err := e.Store.UserToken(ctx, e.Ada.ID, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		bt, err := e.Store.UserToken(ctx, e.Bob.ID, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		if at.Token.Reveal() == bt.Token.Reveal() || at.Refresh.Reveal() == bt.Refresh.Reveal() {
			t.Error("the two users share a token")
		}
		aa, ba := accountOf(t, e, e.Ada.ID), accountOf(t, e, e.Bob.ID)
		if aa.ID == ba.ID || aa.Role != extension.RoleOwner || ba.Role != extension.RoleMember {
			t.Errorf("accounts %+v and %+v: want Ada owner, Bob member", aa, ba)
		}
		for _, c := range []struct {
			browser *http.Client
			name    string
		}{{ada, "Ada Admin"}, {bob, "Bob Builder"}} {
			resp, body := e.get(t, c.browser, e.appPath())
			wantPage(t, resp, body, http.StatusOK, "<dd>"+c.name+"</dd>")
		}
	})
}

func TestSSORateLimit(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, func(c *atrek.Config) {
		c.RateLimit, c.RateBurst = rate.Every(time.Hour), 2
	})
	path := ssoPath(strings.Repeat("k", 37), e.Ada.ID, e.Instance.ID)
	for i := range 2 {
		if resp, _ := e.get(t, e.HTTP, path); resp.StatusCode == http.StatusTooManyRequests {
			t.Fatalf("request %d limited within the burst", i+1)
		}
	}
	before := e.hitCount(routeRedeem)
	resp, body := e.get(t, e.HTTP, ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID))
	wantPage(t, resp, body, http.StatusTooManyRequests, "Too many attempts")
	if got := e.hitCount(routeRedeem); got != before {
		t.Errorf("%d redeem calls while limited", got)
	}
	// The bucket refills with the limiter's clock.
	e.Clock.Advance(time.Hour)
	e.signIn(t, e.HTTP, e.Ada)
}

// A user who lost access loses what an earlier sign-in left: their session (this browser
// is signed out) and their stored tokens.
func TestSSOLostAccessEndsEarlierSignIn(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	e.signIn(t, e.HTTP, e.Ada)
	if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed in: the app got %d", resp.StatusCode)
	}
	if err := e.Sim.InjectFault("GET /v2/extension-instances/{id}", mstudiotest.Fault{Status: http.StatusForbidden, Times: 1}); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get(t, e.HTTP, ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID))
	wantPage(t, resp, body, http.StatusForbidden, "without access")
	if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after losing access: the app got %d, want 303 to the sign-in page", resp.StatusCode)
	}
	if _, err := e.Store.UserToken(context.Background(), e.Ada.ID, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
		t.Errorf("after losing access: the old tokens are still stored (%v)", err)
	}
}

// A flood of click-throughs past the rate limit writes one refusal line, not one per
// request, and reaches the platform not at all.
func TestSSOFloodLoggedBounded(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, func(c *atrek.Config) {
		c.RateLimit, c.RateBurst = rate.Every(time.Hour), 1
	})
	path := ssoPath(strings.Repeat("k", 37), e.Ada.ID, e.Instance.ID)
	e.get(t, e.HTTP, path) // the burst
	before := e.SimCalls()
	for range 300 {
		if resp, _ := e.get(t, e.HTTP, path); resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("past the limit: %d", resp.StatusCode)
		}
	}
	if n := strings.Count(e.Logs.String(), "rate limited"); n != 1 {
		t.Errorf("%d log lines for 300 limited requests, want 1", n)
	}
	if n := e.SimCalls() - before; n != 0 {
		t.Errorf("%d platform calls while limited", n)
	}
}

// The instance's template role, once its owner set one, is what later platform users get
// at their first sign-in, over the operator's default.
func TestSSOTemplateRole(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	e.signIn(t, e.HTTP, e.Ada)
	owner := accountOf(t, e, e.Ada.ID)
	st, err := e.Store.InstanceSettings(t.Context(), e.Instance.ID)
	if err != nil {
		t.Fatal(err)
	}
	st.DefaultRole = extension.RoleAdmin
	if _, err := e.Store.UpdateInstanceSettings(t.Context(), e.Instance.ID, owner.ID, st); err != nil {
		t.Fatal(err)
	}
	e.signIn(t, e.newBrowser(t), e.Bob)
	if bob := accountOf(t, e, e.Bob.ID); bob.Role != extension.RoleAdmin {
		t.Errorf("Bob's role %q, want the template role admin", bob.Role)
	}
}

// TestSSOEntryReadsAtOnce checks that the entry asks the platform in two rounds: the
// redeem, then the access check, the profile and the owner question at the same time.
// The access check is held back by the simulator; the other two must arrive while it is
// still unanswered (in one after the other, they would come only after its answer).
func TestSSOEntryReadsAtOnce(t *testing.T) {
	e := newSSOEnv(t, extension.SQLite, nil)
	const accessCheck = "GET /v2/extension-instances/{id}"
	if err := e.Sim.InjectFault(accessCheck, mstudiotest.Fault{Latency: 3 * time.Second, Times: 1}); err != nil {
		t.Fatal(err)
	}
	link := e.AppURL + ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID)
	signedIn := make(chan struct{})
	var status int
	go func() {
		defer close(signedIn)
		if resp, err := e.HTTP.Get(link); err == nil {
			resp.Body.Close()
			status = resp.StatusCode
		}
	}()
	routes := []string{"GET /v2/users/{id}", "GET /v2/projects/{id}/memberships/self"}
	for {
		checks := e.SimRequests(accessCheck)
		arrived := 0
		for _, r := range routes {
			arrived += min(e.SimHits(r), 1)
		}
		if arrived == len(routes) && len(checks) == 1 {
			if checks[0].Status != 0 {
				t.Errorf("access check answered %d before the profile and owner reads arrived, want them at the same time", checks[0].Status)
			}
			break
		}
		select {
		case <-signedIn:
			t.Fatalf("signed in with %d of the reads %v and %d access checks seen, want each while the access check was held", arrived, routes, len(checks))
		case <-time.After(5 * time.Millisecond):
		}
	}
	<-signedIn
	if status != http.StatusSeeOther {
		t.Errorf("entry answered %d, want 303 to the dashboard", status)
	}
	if got := e.hitCount(routeRedeem); got != 1 {
		t.Errorf("%d redeem calls, want 1", got)
	}
	// Ada is owner now: her next sign-in does not ask the platform whether she is.
	owned := e.hitCount(routes[1])
	e.signIn(t, e.newBrowser(t), e.Ada)
	if got := e.hitCount(routes[1]); got != owned {
		t.Errorf("the owner's second sign-in asked the platform for her role %d times, want 0", got-owned)
	}
}

// failAuditWrites makes the database refuse every audit event, by a trigger: the last
// write of a sign-in fails there, as a full disk or a lost connection would make it. It
// returns the trigger's removal.
func failAuditWrites(t *testing.T, e *ssoEnv) func() {
	t.Helper()
	create := []string{`CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'injected failure'); END`}
	drop := []string{`DROP TRIGGER fail_audit`}
	if e.Store.Dialect() == extension.Postgres {
		// In the test's own schema (its search_path), like the tables.
		create = []string{
			`CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
			`CREATE TRIGGER fail_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_audit()`,
		}
		drop = []string{`DROP TRIGGER fail_audit ON audit_events`, `DROP FUNCTION fail_audit()`}
	}
	run := func(qs []string) {
		for _, q := range qs {
			if _, err := e.Store.SQLDB().Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	run(create)
	return func() { run(drop) }
}

// TestSSOSignInAllOrNothing: the writes of a click-through are one transaction. When its
// last write fails in the database, the customer sees the error page, gets no cookie,
// and nothing of the sign-in stays: no account, tokens or session of a new user; for a
// returning user, the tokens, the name and the session of the earlier sign-in, which
// keeps working. The same click-through succeeds once writes do.
func TestSSOSignInAllOrNothing(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		e := newSSOEnv(t, d, nil)
		ctx := context.Background()
		e.signIn(t, e.HTTP, e.Ada)
		// The name the platform had at her earlier sign-in: her next one would write the
		// platform's.
		if _, err := e.Store.SQLDB().Exec(e.Store.Dialect().Rebind(`UPDATE accounts SET name = 'Ada Earlier' WHERE platform_user_id = ?`), e.Ada.ID); err != nil {
			t.Fatal(err)
		}
		adaBefore := accountOf(t, e, e.Ada.ID)
		tokBefore, err := e.Store.UserToken(ctx, e.Ada.ID, e.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		restore := failAuditWrites(t, e)

		bob := e.newBrowser(t)
		resp, body := e.get(t, bob, ssoPath(e.key(t, e.Instance.ID, e.Bob.ID), e.Bob.ID, e.Instance.ID))
		wantPage(t, resp, body, http.StatusInternalServerError, "Something went wrong on our side")
		if len(resp.Cookies()) != 0 {
			t.Errorf("a failed sign-in set cookies: %q", resp.Header.Values("Set-Cookie"))
		}
		if _, err := e.Store.PlatformAccountRole(ctx, e.Instance.ID, e.Bob.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("a failed first sign-in left an account (%v)", err)
		}
		if _, err := e.Store.UserToken(ctx, e.Bob.ID, e.Instance.ID); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("a failed first sign-in left tokens (%v)", err)
		}

		// Ada again, in the browser she is signed in with.
		resp, body = e.get(t, e.HTTP, ssoPath(e.key(t, e.Instance.ID, e.Ada.ID), e.Ada.ID, e.Instance.ID))
		wantPage(t, resp, body, http.StatusInternalServerError, "Something went wrong on our side")
		if got := accountOf(t, e, e.Ada.ID); got != adaBefore {
			t.Errorf("a failed sign-in changed the account: %+v, was %+v", got, adaBefore)
		}
		if tok, err := e.Store.UserToken(ctx, e.Ada.ID, e.Instance.ID); err != nil || tok.Token != tokBefore.Token || tok.Refresh != tokBefore.Refresh {
			t.Errorf("a failed sign-in replaced the tokens (%v)", err)
		}
		if resp, _ := e.get(t, e.HTTP, e.appPath()); resp.StatusCode != http.StatusOK {
			t.Errorf("after a failed sign-in the earlier session got %d, want 200", resp.StatusCode)
		}

		restore()
		e.signIn(t, bob, e.Bob)
		if acc := accountOf(t, e, e.Bob.ID); acc.Role != extension.RoleMember {
			t.Errorf("Bob's account after the sign-in: %+v", acc)
		}
		events, _, err := e.Store.AuditEvents(ctx, e.Instance.ID, extension.AuditFilter{Kind: extension.AuditSignIn}, extension.AuditPage{})
		if err != nil || len(events) != 2 {
			t.Errorf("audit of the sign-ins: %d events (%v), want Ada's first and Bob's", len(events), err)
		}
	})
}
