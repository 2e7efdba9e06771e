package frontend_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
)

// handedOver keeps the mails the pages hand to the Mailer (the job queue in production,
// whose sending jobs/mail_test.go and cmd's e-mail test cover).
type handedOver struct {
	mu     sync.Mutex
	resets []frontend.ResetMail
}

func (h *handedOver) SendInvitation(context.Context, frontend.InvitationMail) error { return nil }

func (h *handedOver) SendPasswordReset(_ context.Context, m frontend.ResetMail) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resets = append(h.resets, m)
	return nil
}

func (h *handedOver) all() []frontend.ResetMail {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]frontend.ResetMail(nil), h.resets...)
}

func newForgotEnv(t *testing.T, mailer frontend.Mailer) *pagesEnv {
	t.Helper()
	app := apptest.New(t, apptest.Options{Frontend: func(c *frontend.Config) { c.Mailer = mailer }})
	p := app.Pages
	app.Front.GET("/app/:instanceId/login", p.Login)
	app.Front.GET("/app/:instanceId/login/forgot", p.ForgotPassword)
	app.Front.POST("/app/:instanceId/login/forgot", p.SubmitForgotPassword, p.SameOrigin())
	return &pagesEnv{App: app, URL: app.URL(t)}
}

// "Forgot password" answers a known and an unknown address alike (status and page), and
// only the known one gets a link, whose mail carries a working link; the page and the
// log never show the token.
func TestForgotPassword(t *testing.T) {
	mails := &handedOver{}
	e := newForgotEnv(t, mails)
	in := e.Install(t, mstudiotest.InstanceSpec{})
	_, member := e.localUser(t, in, "Lena@Example.TEST", "correct horse battery")
	b := apptest.Browser(t)
	forgot := frontend.LoginPath(in.ID) + "/forgot"
	if _, body := e.do(t, b, http.MethodGet, frontend.LoginPath(in.ID), nil, nil); !strings.Contains(body, `href="`+forgot+`"`) {
		t.Errorf("the sign-in page does not link to %s:\n%s", forgot, body)
	}
	if resp, body := e.do(t, b, http.MethodGet, forgot, nil, nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="email"`) {
		t.Fatalf("forgot page: %d\n%s", resp.StatusCode, body)
	}
	var pages []string
	for _, addr := range []string{"nobody@example.test", "lena@example.test"} {
		resp, body := e.do(t, b, http.MethodPost, forgot, sameOrigin, url.Values{"email": {addr}})
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, "If an account with this address exists") {
			t.Fatalf("%s: %d\n%s", addr, resp.StatusCode, body)
		}
		pages = append(pages, body)
	}
	if pages[0] != pages[1] {
		t.Errorf("the answers differ:\n%s\n---\n%s", pages[0], pages[1])
	}
	var got []frontend.ResetMail
	deadline := time.Now().Add(10 * time.Second)
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = mails.all()
	}
	time.Sleep(100 * time.Millisecond) // the unknown address's lookup has long ended: no second mail
	if got = mails.all(); len(got) != 1 {
		t.Fatalf("%d mails handed over, want the known address's", len(got))
	}
	m := got[0]
	if m.To != "lena@example.test" || m.InstanceID != in.ID || m.Name != member.Name || m.Lang != frontend.LangEnglish ||
		!strings.HasPrefix(m.Link.Reveal(), apptest.PublicURL+"/reset/") || m.Expires.Before(time.Now().Add(23*time.Hour)) {
		t.Fatalf("mail %+v", m)
	}
	token := extension.Secret(strings.TrimPrefix(m.Link.Reveal(), apptest.PublicURL+"/reset/"))
	if pr, err := e.Store.PasswordResetByToken(t.Context(), token); err != nil || pr.AccountID != member.ID {
		t.Errorf("the link does not work: %+v, %v", pr, err)
	}
	if strings.Contains(pages[1], token.Reveal()) || strings.Contains(e.Logs.String(), token.Reveal()) {
		t.Error("the token is on the page or in the log")
	}
	// A bad address is a 400 that says so; a flood for one address is cut off.
	if resp, body := e.do(t, b, http.MethodPost, forgot, sameOrigin, url.Values{"email": {"not an address"}}); resp.StatusCode != http.StatusBadRequest ||
		!strings.Contains(body, "not an e-mail address") {
		t.Errorf("bad address: %d\n%s", resp.StatusCode, body)
	}
	statuses := map[int]int{}
	for range 5 {
		resp, _ := e.do(t, b, http.MethodPost, forgot, sameOrigin, url.Values{"email": {"max@example.test"}})
		statuses[resp.StatusCode]++
	}
	if statuses[http.StatusOK] != 3 || statuses[http.StatusTooManyRequests] != 2 {
		t.Errorf("five requests for one address: %v, want 3 answered and 2 refused", statuses)
	}
	// From another site: refused.
	if resp, _ := e.do(t, b, http.MethodPost, forgot, http.Header{"Sec-Fetch-Site": {"cross-site"}}, url.Values{"email": {"lena@example.test"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site: %d", resp.StatusCode)
	}
}

// Without a Mailer, or with password sign-in off, there is no "forgot password": the
// sign-in page does not offer it and its route answers 404.
func TestForgotPasswordUnavailable(t *testing.T) {
	e := newForgotEnv(t, nil)
	in := e.Install(t, mstudiotest.InstanceSpec{})
	b := apptest.Browser(t)
	forgot := frontend.LoginPath(in.ID) + "/forgot"
	if _, body := e.do(t, b, http.MethodGet, frontend.LoginPath(in.ID), nil, nil); strings.Contains(body, "/forgot") {
		t.Error("the sign-in page offers forgot password without e-mail")
	}
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		if resp, _ := e.do(t, b, method, forgot, sameOrigin, url.Values{"email": {"a@example.test"}}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s without a Mailer: %d", method, resp.StatusCode)
		}
	}
	e = newForgotEnv(t, &handedOver{})
	in = e.Install(t, mstudiotest.InstanceSpec{})
	owner, _, err := e.Store.EnsurePlatformAccount(t.Context(), in.ID, e.User(t, "Ada Admin").ID, "ada@example.test", "Ada", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.UpdateInstanceSettings(t.Context(), in.ID, owner.ID, extension.InstanceSettings{DefaultRole: extension.RoleMember}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.do(t, b, http.MethodGet, frontend.LoginPath(in.ID)+"/forgot", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("with password sign-in off: %d", resp.StatusCode)
	}
}
