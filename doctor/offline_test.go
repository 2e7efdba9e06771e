package doctor_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/extension-backend/extension-backend/doctor"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// only returns the findings of one check, failing the test when there are none.
func only(t *testing.T, findings []doctor.Finding, check string) []doctor.Finding {
	t.Helper()
	var out []doctor.Finding
	for _, f := range findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no findings of %s in %v", check, findings)
	}
	return out
}

// worst is the worst level of a check's findings, and their lines for messages.
func worst(t *testing.T, findings []doctor.Finding, check string) (doctor.Level, string) {
	t.Helper()
	fs := only(t, findings, check)
	var lines []string
	for _, f := range fs {
		lines = append(lines, f.String())
	}
	return doctor.Worst(fs), strings.Join(lines, "\n")
}

func run(t *testing.T, c doctor.Check) []doctor.Finding {
	t.Helper()
	return doctor.Run(context.Background(), []doctor.Check{c})
}

func checkOf(t *testing.T, checks []doctor.Check, name string) doctor.Check {
	t.Helper()
	for _, c := range checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %s", name)
	return doctor.Check{}
}

func TestRunKeepsOrderAndSurvivesAPanic(t *testing.T) {
	fs := doctor.Run(context.Background(), []doctor.Check{
		{Name: "slow", Run: func(context.Context) []doctor.Finding {
			time.Sleep(20 * time.Millisecond)
			return []doctor.Finding{{Level: doctor.OK, Message: "first\nline"}}
		}},
		{Name: "silent", Run: func(context.Context) []doctor.Finding { return nil }},
		{Name: "broken", Run: func(context.Context) []doctor.Finding { panic("boom") }},
	})
	if len(fs) != 3 || fs[0].Check != "slow" || fs[1].Check != "silent" || fs[2].Check != "broken" {
		t.Fatalf("got %+v, want one finding per check in their order", fs)
	}
	if fs[0].Message != "first line" {
		t.Errorf("message %q: want control characters turned into spaces", fs[0].Message)
	}
	if fs[1].Level != doctor.OK || fs[2].Level != doctor.Fail || strings.Contains(fs[2].Message, "boom") {
		t.Errorf("got %+v and %+v, want an ok line for a silent check and a fail line without the panic's text", fs[1], fs[2])
	}
	if !doctor.Failed(fs) || doctor.Worst(fs[:2]) != doctor.OK {
		t.Errorf("Failed/Worst disagree with %+v", fs)
	}
}

func TestPublicURLFinding(t *testing.T) {
	for _, tt := range []struct {
		url  string
		want doctor.Level
	}{
		{"https://ext.example.com", doctor.OK},
		{"https://ext.example.com/base", doctor.OK},
		{"http://127.0.0.1:8080", doctor.Warn},
		{"http://localhost:8080", doctor.Warn},
		{"http://[::1]:8080", doctor.Warn},
		{"http://ext.example.com", doctor.Fail},
		{"http://10.0.0.5", doctor.Fail},
		{"ftp://ext.example.com", doctor.Fail},
		{"", doctor.Fail},
	} {
		if got := doctor.PublicURLFinding("EXT_PUBLIC_URL", tt.url); got.Level != tt.want || (got.Level != doctor.OK && got.Action == "") {
			t.Errorf("%q: got %+v, want level %s with an action unless ok", tt.url, got, tt.want)
		}
	}
}

func TestExtensionIDCheck(t *testing.T) {
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{}.Checks(), "extension-id")), "extension-id"); l != doctor.Fail {
		t.Errorf("no extension id: got %s", s)
	}
	off := doctor.Offline{ExtensionID: uuid.NewString(), ContributorID: uuid.NewString()}
	if l, s := worst(t, run(t, checkOf(t, off.Checks(), "extension-id")), "extension-id"); l != doctor.OK {
		t.Errorf("with ids: got %s", s)
	}
}

func TestClockFinding(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		date string
		want doctor.Level
	}{
		{"same second", now.Format(http.TimeFormat), doctor.OK},
		{"20 s behind", now.Add(20 * time.Second).Format(http.TimeFormat), doctor.OK},
		{"45 s ahead", now.Add(-45 * time.Second).Format(http.TimeFormat), doctor.Fail},
		{"2 min behind", now.Add(2 * time.Minute).Format(http.TimeFormat), doctor.Fail},
		{"missing", "", doctor.Warn},
		{"garbage", "yesterday\x1b[2J", doctor.Warn},
	} {
		got := doctor.ClockFinding(tt.date, now, now.Add(40*time.Millisecond))
		if got.Level != tt.want {
			t.Errorf("%s: got %+v, want %s", tt.name, got, tt.want)
		}
		if strings.ContainsRune(got.Message, '\x1b') {
			t.Errorf("%s: the message carries the header's escape: %q", tt.name, got.Message)
		}
	}
}

// platform starts the simulator; skew, when not zero, sets its answers' Date that far
// off the real clock, as a platform (or a machine) with a wrong clock would.
func platform(t *testing.T, skew time.Duration) (*mstudiotest.Server, string) {
	t.Helper()
	sim, err := mstudiotest.New(mstudiotest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if skew != 0 {
			w.Header().Set("Date", time.Now().Add(skew).UTC().Format(http.TimeFormat))
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func offlineFor(t *testing.T, apiURL string) doctor.Offline {
	t.Helper()
	client, err := mstudio.New(apiURL, mstudio.Options{RetryMax: -1, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return doctor.Offline{APIURL: apiURL, API: client}
}

// The platform's API answers, its clock agrees, its current keys are fetched; with its
// clock two minutes off, the clock fails; with nothing listening, the API and keys fail.
func TestPlatformChecks(t *testing.T) {
	_, good := platform(t, 0)
	fs := doctor.Run(context.Background(), offlineFor(t, good).Checks()[4:6])
	for _, check := range []string{"platform-api", "platform-keys"} {
		if l, s := worst(t, fs, check); l != doctor.OK {
			t.Errorf("healthy platform: %s", s)
		}
	}

	_, skewed := platform(t, 2*time.Minute)
	fs = run(t, checkOf(t, offlineFor(t, skewed).Checks(), "platform-api"))
	if l, s := worst(t, fs, "platform-api"); l != doctor.Fail || !strings.Contains(s, "behind the platform's") {
		t.Errorf("clock 2 min behind: got\n%s", s)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + ln.Addr().String()
	ln.Close()
	fs = doctor.Run(context.Background(), offlineFor(t, gone).Checks()[4:6])
	for _, check := range []string{"platform-api", "platform-keys"} {
		if l, s := worst(t, fs, check); l != doctor.Fail {
			t.Errorf("no platform: %s", s)
		}
	}
}

// The database checks on both dialects: a fresh database lists its pending migrations;
// a migrated one holding a secret sealed with key A passes with A and fails with B alone,
// naming A's id and never a key.
func TestDatabaseAndKeys(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			url := extensiontest.URL(t, d)
			keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
			krA, err := extension.NewKeyring([][]byte{keyA})
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := extension.Open(ctx, url, extension.Options{Keys: krA})
			if err != nil {
				t.Fatal(err)
			}
			off := doctor.Offline{Store: fresh, Database: "the test database", EncryptionKeyIDs: []string{extension.KeyID(keyA)}}
			fs := doctor.Run(ctx, []doctor.Check{checkOf(t, off.Checks(), "database"), checkOf(t, off.Checks(), "encryption-keys")})
			if l, s := worst(t, fs, "database"); l != doctor.Warn || !strings.Contains(s, "pending migrations: ") || !strings.Contains(s, ".sql") {
				t.Errorf("fresh database: got\n%s\nwant a warning listing the pending migrations", s)
			}
			if l, s := worst(t, fs, "encryption-keys"); l != doctor.Warn {
				t.Errorf("fresh database: keys got\n%s\nwant a warning that they cannot be listed yet", s)
			}
			fresh.Close()

			store := extensiontest.Open(t, url, extension.Options{Keys: krA})
			enabled := true
			if _, err := store.ApplyLifecycle(ctx, extension.LifecycleEvent{Kind: extension.EventAdded, RequestID: uuid.NewString(),
				CreatedAt: time.Now(), InstanceID: uuid.NewString(), ContextKind: extension.ContextProject, ContextID: uuid.NewString(),
				Enabled: &enabled, Secret: "instance-secret"}); err != nil {
				t.Fatal(err)
			}
			off.Store = store
			fs = doctor.Run(ctx, []doctor.Check{checkOf(t, off.Checks(), "database"), checkOf(t, off.Checks(), "encryption-keys")})
			if l, s := worst(t, fs, "database"); l != doctor.OK {
				t.Errorf("migrated database: got\n%s", s)
			}
			if l, s := worst(t, fs, "encryption-keys"); l != doctor.OK || !strings.Contains(s, extension.KeyID(keyA)) {
				t.Errorf("the right key: got\n%s", s)
			}

			off.EncryptionKeyIDs = []string{extension.KeyID(keyB)}
			fs = run(t, checkOf(t, off.Checks(), "encryption-keys"))
			l, s := worst(t, fs, "encryption-keys")
			if l != doctor.Fail || !strings.Contains(s, "key id "+extension.KeyID(keyA)) {
				t.Errorf("another key: got\n%s\nwant a failure naming key id %s", s, extension.KeyID(keyA))
			}
			for _, k := range [][]byte{keyA, keyB} {
				if strings.Contains(s, string(k)) || strings.Contains(s, encodeKey(k)) {
					t.Errorf("a key is in the finding: %s", s)
				}
			}

			// A simulator's database with the real platform's API: serve would refuse it.
			if err := store.MarkSimulated(ctx, "http://127.0.0.1:8081"); err != nil {
				t.Fatal(err)
			}
			off.APIURL = mstudio.DefaultBaseURL
			if l, s := worst(t, run(t, checkOf(t, off.Checks(), "database")), "database"); l != doctor.Fail || !strings.Contains(s, "simulator") {
				t.Errorf("simulator's database, real API: got\n%s", s)
			}
		})
	}
	fs := run(t, checkOf(t, doctor.Offline{StoreErr: doctor.ErrNoDatabase, Database: "sqlite:x.db"}.Checks(), "database"))
	if l, s := worst(t, fs, "database"); l != doctor.Warn {
		t.Errorf("no database file: got %s", s)
	}
	fs = run(t, checkOf(t, doctor.Offline{StoreErr: errors.New("connection refused"), Database: "postgres://x"}.Checks(), "database"))
	if l, s := worst(t, fs, "database"); l != doctor.Fail || !strings.Contains(s, "connection refused") {
		t.Errorf("database down: got %s", s)
	}
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{}.Checks(), "encryption-keys")), "encryption-keys"); l != doctor.Fail {
		t.Errorf("no keys: got %s", s)
	}
}

// mailServer is an SMTP server on loopback that greets and takes EHLO.
func mailServer(t *testing.T) string {
	t.Helper()
	s := smtp.NewServer(smtpBackend{})
	s.Domain = "localhost"
	s.ErrorLog = stdlog.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

type smtpBackend struct{}

func (smtpBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return smtpSession{}, nil }

// smtpSession takes no mail: the check sends none.
type smtpSession struct{}

func (smtpSession) Mail(string, *smtp.MailOptions) error { return errors.New("no mail here") }
func (smtpSession) Rcpt(string, *smtp.RcptOptions) error { return errors.New("no mail here") }
func (smtpSession) Data(io.Reader) error                 { return errors.New("no mail here") }
func (smtpSession) Reset()                               {}
func (smtpSession) Logout() error                        { return nil }

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

func TestSMTPCheck(t *testing.T) {
	addr := mailServer(t)
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{SMTP: addr}.Checks(), "smtp")), "smtp"); l != doctor.OK {
		t.Errorf("a mail server: got %s", s)
	}
	// go-smtp offers no STARTTLS without a TLS config: a server that must offer it fails.
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{SMTP: addr, SMTPRequireTLS: true}.Checks(), "smtp")), "smtp"); l != doctor.Fail || !strings.Contains(s, "STARTTLS") {
		t.Errorf("no STARTTLS: got %s", s)
	}
	// A server that greets with something else is no mail server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")) //nolint:errcheck // the client reads what it gets
			c.Close()
		}
	}()
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{SMTP: ln.Addr().String()}.Checks(), "smtp")), "smtp"); l != doctor.Fail {
		t.Errorf("not a mail server: got %s", s)
	}
	if l, s := worst(t, run(t, checkOf(t, doctor.Offline{}.Checks(), "smtp")), "smtp"); l != doctor.OK {
		t.Errorf("no mail server set: got %s", s)
	}
}

// TestKeysOfCapturesChecked: a captured delivery sealed with a key the configuration
// lacks is a failure, as it is for serve's start-up check, even with no other secret.
func TestKeysOfCapturesChecked(t *testing.T) {
	ctx := context.Background()
	keyA, keyB := extensiontest.Key(t), extensiontest.Key(t)
	krB, err := extension.NewKeyring([][]byte{keyB})
	if err != nil {
		t.Fatal(err)
	}
	store := extensiontest.Open(t, extensiontest.SQLiteURL(t), extension.Options{Keys: krB})
	if err := store.SaveCaptures(ctx, []extension.CapturedDelivery{{RequestID: "r-1", Kind: "InstanceUpdated",
		ReceivedAt: time.Now(), Verified: true, Status: 204, Outcome: "applied", URL: "https://example.com/mstudio/webhooks",
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	off := doctor.Offline{Store: store, Database: "the test database", EncryptionKeyIDs: []string{extension.KeyID(keyA)}}
	l, s := worst(t, run(t, checkOf(t, off.Checks(), "encryption-keys")), "encryption-keys")
	if l != doctor.Fail || !strings.Contains(s, "key id "+extension.KeyID(keyB)) {
		t.Errorf("a capture sealed with another key: got\n%s\nwant a failure naming key id %s", s, extension.KeyID(keyB))
	}
}
