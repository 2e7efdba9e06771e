package jobs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// mailServer is an in-process SMTP server (go-smtp) that keeps what it receives.
type mailServer struct {
	addr     *net.TCPAddr
	roots    *x509.CertPool // trust these to accept its certificate
	user     string
	password string
	// refuse answers the RCPT of a recipient with these errors, one per attempt, in turn.
	refuse map[string][]*smtp.SMTPError

	mu       sync.Mutex
	received []receivedMail
	mails    int // MAIL commands seen
}

type receivedMail struct {
	from, to string
	tls      bool
	data     []byte
}

type mailServerOptions struct {
	startTLS bool // offer STARTTLS
	implicit bool // TLS from the first byte (smtps)
	auth     bool // require AUTH PLAIN
}

func newMailServer(t *testing.T, o mailServerOptions) *mailServer {
	t.Helper()
	ms := &mailServer{}
	if o.auth {
		ms.user, ms.password = "mailer", "s3cret-mail-password"
	}
	s := smtp.NewServer(ms)
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.ErrorLog = smtpLog{t}
	s.AllowInsecureAuth = !o.startTLS && !o.implicit
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.startTLS || o.implicit {
		var cfg *tls.Config
		cfg, ms.roots = selfSigned(t)
		if o.implicit {
			ln = tls.NewListener(ln, cfg)
		} else {
			s.TLSConfig = cfg
		}
	}
	ms.addr = ln.Addr().(*net.TCPAddr)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return ms
}

type smtpLog struct{ t *testing.T }

func (l smtpLog) Printf(format string, v ...any) { l.t.Logf("smtp server: "+format, v...) }
func (l smtpLog) Println(v ...any)               { l.t.Log(append([]any{"smtp server:"}, v...)...) }

// config is the mail setup that reaches this server.
func (ms *mailServer) config(requireTLS bool) *MailConfig {
	return &MailConfig{
		SMTP: SMTPConfig{Host: "127.0.0.1", Port: ms.addr.Port, Username: ms.user, Password: extension.Secret(ms.password),
			RequireTLS: requireTLS},
		From: "Extension <extension@example.test>", RootCAs: ms.roots, Timeout: 5 * time.Second,
	}
}

func (ms *mailServer) all() []receivedMail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]receivedMail(nil), ms.received...)
}

func (ms *mailServer) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &mailSession{ms: ms, conn: c}, nil
}

type mailSession struct {
	ms       *mailServer
	conn     *smtp.Conn
	authed   bool
	from, to string
}

func (s *mailSession) AuthMechanisms() []string {
	if s.ms.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.ms.user || pass != s.ms.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authed = true
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.ms.mu.Lock()
	s.ms.mails++
	s.ms.mu.Unlock()
	if s.ms.user != "" && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	if errs := s.ms.refuse[to]; len(errs) > 0 {
		s.ms.refuse[to] = errs[1:]
		return errs[0]
	}
	s.to = to
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.ms.mu.Lock()
	defer s.ms.mu.Unlock()
	s.ms.received = append(s.ms.received, receivedMail{from: s.from, to: s.to, tls: isTLS, data: data})
	return nil
}

func (s *mailSession) Reset()        { s.from, s.to = "", "" }
func (s *mailSession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test mail server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

// parsedMail is a received mail, decoded.
type parsedMail struct {
	header mail.Header
	body   string
}

func parseMail(t *testing.T, raw []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var body io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return parsedMail{m.Header, strings.ReplaceAll(string(b), "\r\n", "\n")}
}

func (p parsedMail) subject(t *testing.T) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(p.header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mailEnv is a queue with workers and e-mail, and an instance with a local account.
type mailEnv struct {
	*env
	logs     *extensiontest.LogBuffer
	instance string
	owner    extension.Account
	local    extension.Account
}

func newMailEnv(t *testing.T, d extension.Dialect, mc *MailConfig) *mailEnv {
	t.Helper()
	logs := &extensiontest.LogBuffer{}
	en := newEnv(t, d, envOptions{workers: 4, config: func(c *Config) {
		c.Mail = mc
		c.Logger = slog.New(slog.NewJSONHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}})
	me := &mailEnv{env: en, logs: logs}
	me.instance = en.install(t, mstudiotest.CallRequest{Context: "project"})
	en.waitFinished(t, me.instance)
	ctx := t.Context()
	var err error
	if me.owner, _, err = en.Store.EnsurePlatformAccount(ctx, me.instance, en.User(t, "Ada Admin").ID, "ada@example.test", "Ada Admin", extension.RoleMember); err != nil {
		t.Fatal(err)
	}
	_, token, err := en.Store.CreateInvitation(ctx, me.instance, me.owner.ID, "lena@example.test", extension.RoleMember)
	if err != nil {
		t.Fatal(err)
	}
	const hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	if me.local, err = en.Store.AcceptInvitation(ctx, token, "Lena Local", hash); err != nil {
		t.Fatal(err)
	}
	return me
}

// mailJobs are the instance's mail jobs, oldest first.
func (me *mailEnv) mailJobs(t *testing.T) []JobInfo {
	var out []JobInfo
	for _, j := range me.jobsOf(t, me.instance) {
		if j.Kind == KindSendMail {
			out = append(out, j)
		}
	}
	return out
}

// waitMailJobs waits until n mail jobs have ended and returns them.
func (me *mailEnv) waitMailJobs(t *testing.T, n int) []JobInfo {
	t.Helper()
	var got []JobInfo
	waitFor(t, "the mail jobs to end", 20*time.Second, func() bool {
		got = me.mailJobs(t)
		done := 0
		for _, j := range got {
			if j.FinalizedAt != nil {
				done++
			}
		}
		return done >= n
	})
	return got
}

// storedArgs are the raw arguments of every job in River's table.
func (me *mailEnv) storedArgs(t *testing.T) string {
	t.Helper()
	rows, err := me.Store.SQLDB().QueryContext(t.Context(), `SELECT args FROM river_job`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all []string
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		all = append(all, string(b))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(all, "\n")
}

var linkPattern = regexp.MustCompile(`https://ext\.example\.test/(reset|invite)/[A-Za-z0-9_-]+`)

// The round trip: a reset mail (English) and an invitation (German) go through a server
// that wants STARTTLS and a password; the reset link in the mail works; the job's stored
// arguments, its errors and the log hold neither link nor token.
func TestMailRoundTrip(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ms := newMailServer(t, mailServerOptions{startTLS: true, auth: true})
			me := newMailEnv(t, d, ms.config(true))
			ctx := t.Context()
			resetToken, pr, err := me.Store.IssuePasswordResetAsOperator(ctx, me.instance, me.local.ID)
			if err != nil {
				t.Fatal(err)
			}
			resetLink := extension.Secret("https://ext.example.test/reset/" + resetToken.Reveal())
			if err := me.Jobs.SendPasswordReset(ctx, ResetMail{InstanceID: me.instance, To: "lena@example.test", Name: "Lena Local",
				ContextName: "Shop & Blog", Lang: "en", Link: resetLink, Expires: pr.ExpiresAt}); err != nil {
				t.Fatal(err)
			}
			_, inviteToken, err := me.Store.CreateInvitation(ctx, me.instance, me.owner.ID, "max@example.test", extension.RoleAdmin)
			if err != nil {
				t.Fatal(err)
			}
			inviteLink := extension.Secret("https://ext.example.test/invite/" + inviteToken.Reveal())
			if err := me.Jobs.SendInvitation(ctx, InvitationMail{InstanceID: me.instance, To: "max@example.test", InviterName: "Ada Admin",
				Role: extension.RoleAdmin, Lang: "de", Link: inviteLink, Expires: time.Now().Add(extension.InvitationTTL)}); err != nil {
				t.Fatal(err)
			}
			// Before the worker got to them, and after: no token in River's table.
			for _, tok := range []string{resetToken.Reveal(), inviteToken.Reveal()} {
				if strings.Contains(me.storedArgs(t), tok) {
					t.Fatal("a job's stored arguments hold a link token")
				}
			}
			for _, j := range me.waitMailJobs(t, 2) {
				if j.State != "completed" {
					t.Fatalf("mail job %+v, want completed", j)
				}
			}
			got := ms.all()
			if len(got) != 2 {
				t.Fatalf("the server received %d mails, want 2", len(got))
			}
			byTo := map[string]parsedMail{}
			for _, r := range got {
				if !r.tls {
					t.Errorf("mail to %s travelled without TLS", r.to)
				}
				if r.from != "extension@example.test" {
					t.Errorf("envelope sender %q", r.from)
				}
				byTo[r.to] = parseMail(t, r.data)
			}
			reset := byTo["lena@example.test"]
			if s := reset.subject(t); s != "Reset your password" {
				t.Errorf("reset subject %q", s)
			}
			for _, want := range []string{"Hello Lena Local,", "“Shop & Blog”", "until " + mailEnglish.when(pr.ExpiresAt), "ignore this e-mail"} {
				if !strings.Contains(reset.body, want) {
					t.Errorf("the reset mail lacks %q:\n%s", want, reset.body)
				}
			}
			found := linkPattern.FindString(reset.body)
			if found != resetLink.Reveal() {
				t.Fatalf("the reset mail's link %q, want the one handed over", found)
			}
			tok := extension.Secret(found[strings.LastIndexByte(found, '/')+1:])
			if r, err := me.Store.PasswordResetByToken(ctx, tok); err != nil || r.AccountID != me.local.ID {
				t.Errorf("the mailed link does not work: %+v, %v", r, err)
			}
			invite := byTo["max@example.test"]
			// The instance's project name, which the post-install job read, fills in.
			name := me.env.instance(t, me.instance).ContextName
			if s := invite.subject(t); s != "Einladung zu „"+name+"“" {
				t.Errorf("invitation subject %q", s)
			}
			for _, want := range []string{"Ada Admin hat dich eingeladen", "als Administrator", inviteLink.Reveal(), "ignorieren"} {
				if !strings.Contains(invite.body, want) {
					t.Errorf("the invitation lacks %q:\n%s", want, invite.body)
				}
			}
			if invite.header.Get("Content-Language") != "de" || invite.header.Get("Auto-Submitted") != "auto-generated" {
				t.Errorf("invitation headers %v", invite.header)
			}
			for _, tok := range []string{resetToken.Reveal(), inviteToken.Reveal()} {
				if strings.Contains(me.storedArgs(t), tok) || strings.Contains(me.logs.String(), tok) {
					t.Error("a link token is in the job table or the log")
				}
			}
			if strings.Contains(me.logs.String(), ms.password) {
				t.Error("the SMTP password is in the log")
			}
			if !strings.Contains(me.logs.String(), `"msg":"e-mail sent"`) {
				t.Error("no log line for the sent mail")
			}
		})
	}
}

// smtps:// speaks TLS from the first byte.
func TestMailImplicitTLS(t *testing.T) {
	ms := newMailServer(t, mailServerOptions{implicit: true, auth: true})
	mc := ms.config(false)
	mc.SMTP.ImplicitTLS = true
	me := newMailEnv(t, extension.SQLite, mc)
	if err := me.Jobs.SendPasswordReset(t.Context(), ResetMail{InstanceID: me.instance, To: "lena@example.test", Lang: "de",
		Link: "https://ext.example.test/reset/tok-implicit-0123456789", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if j := me.waitMailJobs(t, 1)[0]; j.State != "completed" {
		t.Fatalf("mail job %+v", j)
	}
	got := ms.all()
	if len(got) != 1 || !got[0].tls {
		t.Fatalf("received %+v", got)
	}
	if p := parseMail(t, got[0].data); p.subject(t) != "Passwort zurücksetzen" || !strings.Contains(p.body, "Hallo,\n") {
		t.Errorf("German reset mail: %q\n%s", p.subject(t), p.body)
	}
}

// A server that does not offer STARTTLS, where TLS is required, gets nothing: not even
// the sender. The job ends at once, and says why.
func TestMailStartTLSRefused(t *testing.T) {
	ms := newMailServer(t, mailServerOptions{})
	me := newMailEnv(t, extension.SQLite, ms.config(true))
	if err := me.Jobs.SendPasswordReset(t.Context(), ResetMail{InstanceID: me.instance, To: "lena@example.test",
		Link: "https://ext.example.test/reset/tok-plaintext-0123456789", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	j := me.waitMailJobs(t, 1)[0]
	if j.State != "cancelled" || j.Attempts != 1 || len(j.Errors) != 1 || !strings.Contains(j.Errors[0], "STARTTLS") {
		t.Fatalf("mail job %+v, want cancelled after one attempt for want of STARTTLS", j)
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.mails != 0 || len(ms.received) != 0 {
		t.Errorf("the server saw %d MAIL commands and %d mails", ms.mails, len(ms.received))
	}
	if strings.Contains(me.logs.String(), "tok-plaintext") {
		t.Error("the token is in the log")
	}
}

// The same server on loopback without the requirement: the mail goes, unencrypted on
// this machine only (ParseSMTPURL requires TLS for every other host).
func TestMailLoopbackWithoutTLS(t *testing.T) {
	ms := newMailServer(t, mailServerOptions{auth: true})
	me := newMailEnv(t, extension.SQLite, ms.config(false))
	if err := me.Jobs.SendPasswordReset(t.Context(), ResetMail{InstanceID: me.instance, To: "lena@example.test",
		Link: "https://ext.example.test/reset/tok-loopback-0123456789", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if j := me.waitMailJobs(t, 1)[0]; j.State != "completed" {
		t.Fatalf("mail job %+v", j)
	}
	if got := ms.all(); len(got) != 1 || got[0].tls {
		t.Fatalf("received %+v", got)
	}
}

// A link that expired before the worker got to its mail is not sent, and not retried.
func TestMailExpiredLinkNotSent(t *testing.T) {
	ms := newMailServer(t, mailServerOptions{startTLS: true})
	me := newMailEnv(t, extension.SQLite, ms.config(true))
	if err := me.Jobs.SendInvitation(t.Context(), InvitationMail{InstanceID: me.instance, To: "max@example.test", InviterName: "Ada",
		Role: extension.RoleMember, Link: "https://ext.example.test/invite/tok-expired-0123456789", Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	j := me.waitMailJobs(t, 1)[0]
	if j.State != "cancelled" || j.Attempts != 1 {
		t.Fatalf("mail job %+v, want cancelled after one attempt", j)
	}
	if n := len(ms.all()); n != 0 {
		t.Errorf("%d mails sent with an expired link", n)
	}
	if !strings.Contains(me.logs.String(), "its link expired") {
		t.Error("no log line says why the mail was not sent")
	}
}

// A temporary refusal (451) is retried and the mail goes on the next attempt; a permanent
// one (550) ends the job and is logged, and neither the job's errors nor the log carry
// the link, even when the server's answer quotes it.
func TestMailRetriesAndFailures(t *testing.T) {
	ms := newMailServer(t, mailServerOptions{startTLS: true})
	const tempTok, permTok = "tok-temporary-0123456789", "tok-permanent-0123456789"
	ms.refuse = map[string][]*smtp.SMTPError{
		"lena@example.test": {{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}},
		"max@example.test": {{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: "rejected: https://ext.example.test/invite/" + permTok + " is listed"}},
	}
	me := newMailEnv(t, extension.SQLite, ms.config(true))
	ctx := t.Context()
	if err := me.Jobs.SendPasswordReset(ctx, ResetMail{InstanceID: me.instance, To: "lena@example.test",
		Link: "https://ext.example.test/reset/" + tempTok, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	first := me.waitMailJobs(t, 1)[0]
	if first.State != "completed" || first.Attempts != 2 || len(first.Errors) != 1 || !strings.Contains(first.Errors[0], "451") {
		t.Fatalf("mail job %+v, want completed on the second attempt after a 451", first)
	}
	if err := me.Jobs.SendInvitation(ctx, InvitationMail{InstanceID: me.instance, To: "max@example.test", Role: extension.RoleMember,
		Link: "https://ext.example.test/invite/" + permTok, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	jobs := me.waitMailJobs(t, 2)
	second := jobs[1]
	if second.State != "cancelled" || second.Attempts != 1 || len(second.Errors) != 1 || !strings.Contains(second.Errors[0], "550") {
		t.Fatalf("mail job %+v, want cancelled after a 550", second)
	}
	if strings.Contains(second.Errors[0], permTok) {
		t.Errorf("the job's error quotes the token: %s", second.Errors[0])
	}
	logs := me.logs.String()
	if !strings.Contains(logs, "refused it for good") {
		t.Error("the permanent failure is not logged")
	}
	for _, tok := range []string{tempTok, permTok} {
		if strings.Contains(logs, tok) || strings.Contains(me.storedArgs(t), tok) {
			t.Errorf("token %s in the log or the job table", tok)
		}
	}
	if n := len(ms.all()); n != 1 {
		t.Errorf("%d mails received, want the retried one", n)
	}
}

// A queue without e-mail refuses to enqueue one; a mail without a recipient or link is
// refused before it is stored.
func TestMailRefused(t *testing.T) {
	me := newMailEnv(t, extension.SQLite, nil)
	if err := me.Jobs.SendPasswordReset(t.Context(), ResetMail{InstanceID: me.instance, To: "lena@example.test", Link: "x",
		Expires: time.Now().Add(time.Hour)}); !errors.Is(err, ErrMailOff) {
		t.Errorf("without e-mail: %v", err)
	}
	ms := newMailServer(t, mailServerOptions{})
	me = newMailEnv(t, extension.SQLite, ms.config(false))
	for _, m := range []ResetMail{{InstanceID: me.instance, To: "not an address", Link: "x"}, {InstanceID: me.instance, To: "a@example.test"}} {
		if err := me.Jobs.SendPasswordReset(t.Context(), m); !errors.Is(err, ErrBadMail) {
			t.Errorf("%+v: %v", m, err)
		}
	}
}

func TestParseSMTPURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want SMTPConfig
	}{
		{"smtp://mail.example.com", SMTPConfig{Host: "mail.example.com", Port: 587, RequireTLS: true}},
		{"smtp://u%40x:p%3Aw%2Fd%23@Mail.Example.com:25/", SMTPConfig{Host: "mail.example.com", Port: 25, Username: "u@x", Password: "p:w/d#", RequireTLS: true}},
		{"smtps://user:pass@mail.example.com", SMTPConfig{Host: "mail.example.com", Port: 465, Username: "user", Password: "pass", ImplicitTLS: true}},
		{"smtp://127.0.0.1:2525", SMTPConfig{Host: "127.0.0.1", Port: 2525}},
		{"smtp://localhost:1025", SMTPConfig{Host: "localhost", Port: 1025}},
		{"smtp://[::1]:1025", SMTPConfig{Host: "::1", Port: 1025}},
		{"smtp://[2001:db8::1]", SMTPConfig{Host: "2001:db8::1", Port: 587, RequireTLS: true}},
	} {
		got, err := ParseSMTPURL(c.in)
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "mail.example.com", "http://mail.example.com", "smtp:mail", "smtp://", "smtp://:25",
		"smtp://mail.example.com:0", "smtp://mail.example.com:65536", "smtp://mail.example.com:", "smtp://mail.example.com:x",
		"smtp://user@mail.example.com", "smtp://user:@mail.example.com", "smtp://:pass@mail.example.com",
		"smtp://mail.example.com/path", "smtp://mail.example.com?tls=off", "smtp://mail.example.com#x",
		"smtp://us%00er:pass@mail.example.com", "smtp://mail_.exa mple.com", "smtp://-bad.example.com", "smtp://[fe80::1%25eth0]"} {
		if got, err := ParseSMTPURL(bad); err == nil {
			t.Errorf("%q: accepted as %+v", bad, got)
		} else if strings.Contains(bad, "pass") && strings.Contains(err.Error(), "pass@") {
			t.Errorf("%q: the error quotes the input: %v", bad, err)
		}
	}
	c, _ := ParseSMTPURL("smtps://user:secret-pw@mail.example.com")
	if s := c.String(); s != "smtps://user:xxxxx@mail.example.com:465" {
		t.Errorf("String() = %q", s)
	}
}

func FuzzParseSMTPURL(f *testing.F) {
	for _, s := range []string{"smtp://user:pass@mail.example.com:587", "smtps://mail.example.com", "smtp://[::1]:25",
		"smtp://u%40x:p%3A@h", "smtp://h:99999", "smtp://h/x?y#z", "smtp://user:p@ss@h", "smtp://%zz@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := ParseSMTPURL(raw)
		if err != nil {
			if len(raw) > 12 && strings.Contains(err.Error(), raw) {
				t.Fatalf("the error quotes the input: %v", err)
			}
			return
		}
		if c.Host == "" || c.Port < 1 || c.Port > 65535 || (c.Username == "") != c.Password.IsZero() {
			t.Fatalf("accepted %q as %+v", raw, c)
		}
		if c.RequireTLS && (c.ImplicitTLS || isLoopbackHost(c.Host)) {
			t.Fatalf("%q: TLS required where it should not be: %+v", raw, c)
		}
		// String() masks the password: what it shows parses back to the mask.
		again, err := ParseSMTPURL(c.String())
		if err != nil || again.Host != c.Host || again.Port != c.Port || again.ImplicitTLS != c.ImplicitTLS ||
			again.Username != c.Username || (c.Username != "" && again.Password != "xxxxx") {
			t.Fatalf("%q → %s does not parse back: %+v, %v", raw, c.String(), again, err)
		}
	})
}
