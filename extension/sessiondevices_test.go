package extension_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
)

const firefoxUA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

// TestSessionDevices: a session keeps the browser's User-Agent (cleaned) and gets a public
// handle; an account lists its own live sessions; a handle ends only a session of the
// account it belongs to; ending the others keeps the current one.
func TestSessionDevices(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		tm := newTeam(t, d)
		lena := tm.invite(t, tm.owner, "lena@example.com", extension.RoleMember)
		start := func(acc extension.Account, ua string) (extension.Secret, extension.Session) {
			t.Helper()
			id, sess, err := tm.s.CreateSessionWithAgent(ctx, acc.ID, acc.InstanceID, acc.PlatformUserID, absolute, ua)
			if err != nil {
				t.Fatal(err)
			}
			return id, sess
		}
		_, stale := start(lena, strings.Repeat("x", 5000))
		if len(stale.UserAgent) != 200 {
			t.Errorf("a long user agent is kept with %d bytes, want 200", len(stale.UserAgent))
		}
		tm.clk.Advance(time.Minute)
		_, phone := start(lena, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Version/17.4 Mobile/15E148 Safari/604.1")
		tm.clk.Advance(10 * time.Minute)
		current, cur := start(lena, "  "+firefoxUA+"\r\nX-Injected: 1\u202e ")
		if want := firefoxUA + " X-Injected: 1"; cur.UserAgent != want {
			t.Errorf("kept user agent %q, want %q", cur.UserAgent, want)
		}
		ownerID, ownerSess := start(tm.owner, "")
		if cur.Handle == phone.Handle || !extension.ValidSessionHandle(ownerSess.Handle) {
			t.Errorf("handles %q, %q, %q: want distinct, 32 hex digits", cur.Handle, phone.Handle, ownerSess.Handle)
		}
		// The handle is no form of the id, and the id is not stored.
		if strings.Contains(current.Reveal(), cur.Handle) || strings.Contains(strings.Join(rawCells(t, tm.s, "sessions"), ""), current.Reveal()) {
			t.Error("the handle is related to the id, or the id is stored")
		}

		// The first two go idle; the current one stays live.
		tm.clk.Advance(idle - 5*time.Minute)
		if _, err := tm.s.SessionByID(ctx, current, idle, absolute); err != nil { // touched
			t.Fatal(err)
		}
		list, err := tm.s.AccountSessions(ctx, "i-1", lena.ID, idle, absolute)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Handle != cur.Handle || list[0].UserAgent != cur.UserAgent || !list[0].LastSeenAt.After(cur.CreatedAt) {
			t.Fatalf("live sessions of lena: %+v, want only the current one, touched", list)
		}
		// Within longer timeouts all three are listed, the most recently used first.
		all, err := tm.s.AccountSessions(ctx, "i-1", lena.ID, 24*time.Hour, absolute)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 || all[0].Handle != cur.Handle || all[1].Handle != phone.Handle || all[2].Handle != stale.Handle {
			t.Errorf("sessions in order of use: %+v", all)
		}
		if other, err := tm.s.AccountSessions(ctx, "i-2", lena.ID, 24*time.Hour, absolute); err != nil || len(other) != 0 {
			t.Errorf("lena's sessions in another instance: %v, %v", other, err)
		}

		// Another account's handle, in the same or another instance, ends nothing.
		for _, tc := range []struct{ name, instance, account, handle string }{
			{"the owner's session", "i-1", lena.ID, ownerSess.Handle},
			{"lena's session as the owner", "i-1", tm.owner.ID, phone.Handle},
			{"lena's session in another instance", "i-2", lena.ID, phone.Handle},
			{"malformed", "i-1", lena.ID, strings.ToUpper(phone.Handle)},
			{"empty", "i-1", lena.ID, ""},
		} {
			if err := tm.s.EndAccountSession(ctx, tc.instance, tc.account, tc.handle); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", tc.name, err)
			}
		}
		if n := countRows(t, tm.s, "sessions"); n != 4 {
			t.Fatalf("%d sessions after refused sign-outs, want 4", n)
		}
		if err := tm.s.EndAccountSession(ctx, "i-1", lena.ID, phone.Handle); err != nil {
			t.Fatal(err)
		}
		if err := tm.s.EndAccountSession(ctx, "i-1", lena.ID, phone.Handle); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("ending it twice: %v", err)
		}
		n, err := tm.s.EndOtherSessions(ctx, "i-1", lena.ID, current)
		if err != nil || n != 1 {
			t.Errorf("EndOtherSessions: %d, %v; want 1 (the stale one)", n, err)
		}
		checkSession(t, tm.s, current, lena)
		checkSession(t, tm.s, ownerID, tm.owner)
		if n, err := tm.s.EndOtherSessions(ctx, "i-1", lena.ID, current); err != nil || n != 0 {
			t.Errorf("EndOtherSessions again: %d, %v", n, err)
		}
		evs, _, err := tm.s.AuditEvents(ctx, "i-1", extension.AuditFilter{AccountID: lena.ID, Kind: extension.AuditSessionsEnded}, extension.AuditPage{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[0].Detail["count"] != "1" || evs[1].Detail["user_agent"] != phone.UserAgent {
			t.Errorf("audit events of the sign-outs: %+v", evs)
		}
	})
}

func TestCleanUserAgent(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		firefoxUA:                        firefoxUA,
		" a \t b\n\nc ":                  "a b c",
		"a\x00b\x1bc\x7fd\u0085e":        "abcd e", // NEL is a line break
		"abc\u202edef\u200b":             "abcdef",
		"caf\xc3\xa9 \xff":               "café",
		strings.Repeat("ä", 150):         strings.Repeat("ä", 100),
		strings.Repeat("a", 199) + " bc": strings.Repeat("a", 199),
	} {
		if got := extension.CleanUserAgent(in); got != want {
			t.Errorf("CleanUserAgent(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzCleanUserAgent(f *testing.F) {
	for _, s := range []string{"", firefoxUA, "a\r\nb", "\u202e", strings.Repeat("é", 300), "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ua string) {
		got := extension.CleanUserAgent(ua)
		if len(got) > 200 || !utf8.ValidString(got) || strings.TrimSpace(got) != got || strings.Contains(got, "  ") {
			t.Fatalf("CleanUserAgent(%q) = %q", ua, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e' {
				t.Fatalf("CleanUserAgent(%q) keeps %U", ua, r)
			}
		}
		if extension.CleanUserAgent(got) != got {
			t.Fatalf("not idempotent on %q", ua)
		}
	})
}
