package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	stdlog "log"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/jobs"
	"github.com/prometheus/client_golang/prometheus"
)

// EXT_SMTP_URL and EXT_MAIL_FROM: read from the environment or a file, checked at start
// with one line that names the variable and never shows the password; the summary of the
// configuration masks it too.
func TestMailConfig(t *testing.T) {
	const password = "hunter2-smtp-password"
	key := base64.StdEncoding.EncodeToString(extensiontest.Key(t))
	urlFile := filepath.Join(t.TempDir(), "smtp")
	if err := os.WriteFile(urlFile, []byte("smtps://mailer:"+password+"@mail.example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		vars    map[string]string
		wantErr string
	}{
		{"bad scheme", map[string]string{"EXT_SMTP_URL": "http://mailer:" + password + "@mail.example.com", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: want smtp://"},
		{"bad port", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com:99999", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: the port"},
		{"unparsable", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail example.com:x", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: not a URL"},
		{"user without password", map[string]string{"EXT_SMTP_URL": "smtp://mailer@mail.example.com", "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL: give both"},
		{"no sender", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com"}, "EXT_MAIL_FROM: required with EXT_SMTP_URL"},
		{"bad sender", map[string]string{"EXT_SMTP_URL": "smtp://mailer:" + password + "@mail.example.com", "EXT_MAIL_FROM": "not an address"}, "EXT_MAIL_FROM: not an e-mail address"},
		{"sender alone", map[string]string{"EXT_MAIL_FROM": "x@example.com"}, "EXT_MAIL_FROM: set, but EXT_SMTP_URL is not"},
		{"url and file", map[string]string{"EXT_SMTP_URL": "smtp://h", "EXT_SMTP_URL_FILE": urlFile, "EXT_MAIL_FROM": "x@example.com"}, "EXT_SMTP_URL and EXT_SMTP_URL_FILE are both set"},
	} {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]string{"EXT_ENCRYPTION_KEYS": key, "EXT_EXTENSION_ID": testExtensionID}
			for k, v := range c.vars {
				vars[k] = v
			}
			_, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
			if err == nil || !strings.HasPrefix(err.Error(), c.wantErr) {
				t.Fatalf("got %v, want an error starting %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), "\n") {
				t.Errorf("the error shows the password or is not one line: %v", err)
			}
		})
	}
	cfg, err := loadConfig(env(map[string]string{"EXT_ENCRYPTION_KEYS": key, "EXT_EXTENSION_ID": testExtensionID,
		"EXT_SMTP_URL_FILE": urlFile, "EXT_MAIL_FROM": "Extension <extension@example.com>"}), needs{keys: true, extensionID: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP == nil || cfg.SMTP.Host != "mail.example.com" || cfg.SMTP.Port != 465 || !cfg.SMTP.ImplicitTLS ||
		cfg.SMTP.Password.Reveal() != password || cfg.MailFrom != `"Extension" <extension@example.com>` {
		t.Fatalf("read %+v, from %q", cfg.SMTP, cfg.MailFrom)
	}
	if mc := mailConfig(cfg); mc == nil || mc.From != cfg.MailFrom {
		t.Errorf("mail config %+v", mc)
	}
	var out strings.Builder
	newLogger(&out, 0).Info("starting", "config", cfg)
	if strings.Contains(out.String(), password) || !strings.Contains(out.String(), `"smtp":"smtps://mailer:xxxxx@mail.example.com:465"`) {
		t.Errorf("the configuration's summary: %s", out.String())
	}
	if cfg, err := loadConfig(env(map[string]string{"EXT_ENCRYPTION_KEYS": key}), needs{keys: true}); err != nil || cfg.SMTP != nil || mailConfig(cfg) != nil {
		t.Errorf("without EXT_SMTP_URL: %+v, %v", cfg, err)
	}
}

// mailQueue is an insert-only job queue with e-mail set up (to a server that is never
// reached: nothing works its jobs), for route tables whose pages need a Mailer. It sets
// cfg's e-mail settings to match.
func mailQueue(t *testing.T, app *apptest.App, cfg *Config) *jobs.Jobs {
	t.Helper()
	if _, err := jobs.Migrate(t.Context(), app.Store, app.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	cfg.SMTP, cfg.MailFrom = &jobs.SMTPConfig{Host: "127.0.0.1", Port: 1}, "extension@example.test"
	jb, err := jobs.New(t.Context(), jobs.Config{Store: app.Store, DatabaseURL: app.DatabaseURL, Logger: app.Logger, Mail: mailConfig(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jb.Stop(context.Background()) })
	return jb
}

// smtpSink is an SMTP server on loopback that keeps every message it receives.
type smtpSink struct {
	port int
	mu   sync.Mutex
	msgs [][]byte
}

func newSMTPSink(t *testing.T) *smtpSink {
	t.Helper()
	sink := &smtpSink{}
	s := smtp.NewServer(sink)
	s.Domain = "localhost"
	s.ErrorLog = stdlog.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink.port = ln.Addr().(*net.TCPAddr).Port
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return sink
}

func (k *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return sinkSession{k}, nil }

func (k *smtpSink) received() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([][]byte(nil), k.msgs...)
}

type sinkSession struct{ k *smtpSink }

func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (s sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.k.mu.Lock()
	s.k.msgs = append(s.k.msgs, b)
	s.k.mu.Unlock()
	return err
}

// The whole way of "forgot password" as serve wires it with EXT_SMTP_URL: the page, the
// link, the job, the mail server. The known and the unknown address get the same page;
// only the known one gets a mail, and its link works; no token is in the log or in the
// job table.
func TestForgotPasswordMailed(t *testing.T) {
	app := apptest.New(t, apptest.Options{Clock: extensiontest.WallClock()})
	ctx := t.Context()
	sink := newSMTPSink(t)
	if _, err := jobs.Migrate(ctx, app.Store, app.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(env(map[string]string{"EXT_SMTP_URL": "smtp://127.0.0.1:" + strconv.Itoa(sink.port),
		"EXT_MAIL_FROM": "extension@example.test"}), needs{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.ExtensionID = app.Sim.ExtensionID()
	broker := mstudio.NewBroker(app.Store, app.Client, mstudio.BrokerOptions{Logger: app.Logger})
	jb, err := jobs.New(ctx, jobs.Config{Store: app.Store, DatabaseURL: app.DatabaseURL, Tokens: broker, Client: app.Client,
		Workers: 2, Logger: app.Logger, PollInterval: 50 * time.Millisecond, Mail: mailConfig(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = jb.Stop(context.Background()) })
	front, err := newHTTP(ctx, cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, nil, jb)
	if err != nil {
		t.Fatal(err)
	}
	if err := jb.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	in := app.Install(t, mstudiotest.InstanceSpec{})
	owner, _, err := app.Store.EnsurePlatformAccount(ctx, in.ID, app.User(t, "Ada Admin").ID, "ada@example.test", "Ada Admin", "member")
	if err != nil {
		t.Fatal(err)
	}
	_, invite, err := app.Store.CreateInvitation(ctx, in.ID, owner.ID, "lena@example.test", "member")
	if err != nil {
		t.Fatal(err)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	lena, err := app.Store.AcceptInvitation(ctx, invite, "Lena Local", hash)
	if err != nil {
		t.Fatal(err)
	}
	b := apptest.Browser(t)
	if _, body := fetch(t, b, http.MethodGet, srv.URL+"/app/"+in.ID+"/login", nil); !strings.Contains(body, "/login/forgot") {
		t.Fatal("the sign-in page does not offer forgot password")
	}
	var pages []string
	for _, addr := range []string{"lena@example.test", "nobody@example.test"} {
		resp, body := post(t, b, srv.URL+"/app/"+in.ID+"/login/forgot", url.Values{"email": {addr}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d\n%s", addr, resp.StatusCode, body)
		}
		pages = append(pages, body)
	}
	if pages[0] != pages[1] {
		t.Error("the known and the unknown address get different pages")
	}
	var msgs [][]byte
	deadline := time.Now().Add(15 * time.Second)
	for len(msgs) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		msgs = sink.received()
	}
	time.Sleep(200 * time.Millisecond)
	if msgs = sink.received(); len(msgs) != 1 {
		t.Fatalf("%d mails, want 1", len(msgs))
	}
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(regexp.QuoteMeta(apptest.PublicURL) + `/reset/[A-Za-z0-9_-]+`).FindString(string(body))
	if link == "" || m.Header.Get("To") != "<lena@example.test>" {
		t.Fatalf("mail to %q without a reset link:\n%s", m.Header.Get("To"), body)
	}
	token := link[strings.LastIndexByte(link, '/')+1:]
	if pr, err := app.Store.PasswordResetByToken(ctx, extension.Secret(token)); err != nil || pr.AccountID != lena.ID {
		t.Errorf("the mailed link does not work: %+v, %v", pr, err)
	}
	var args strings.Builder
	rows, err := app.Store.SQLDB().QueryContext(ctx, `SELECT args FROM river_job`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a []byte
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		args.Write(a)
	}
	rows.Close()
	if !strings.Contains(args.String(), "sealed_link") || strings.Contains(args.String(), token) {
		t.Errorf("the job table: %s", args.String())
	}
	if strings.Contains(app.Logs.String(), token) || strings.Contains(pages[0], token) {
		t.Error("the token is in the log or on the page")
	}
}
