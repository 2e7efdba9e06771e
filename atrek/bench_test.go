package atrek_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/atrek"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"golang.org/x/time/rate"
)

// The SSO benchmarks compare the whole entry (key claimed, redeemed, access checked,
// profile read, tokens sealed and saved, account provisioned, session started, 303) with
// a baseline of the same redemption + one INSERT + a redirect, in the same run, both
// against the simulator in-process over loopback, answering at once (rtt=0s: what the
// backend's own work costs) and after 20 ms (rtt=20ms: a network between backend and
// platform, where the entry's two round trips against the baseline's one show):
//
//	go test ./atrek -run '^$' -bench SSOEntry -benchtime 200x -count 6 | benchstat -col /path -
func BenchmarkSSOEntry(b *testing.B) {
	sim, err := mstudiotest.New(mstudiotest.Options{SecretActivationDelay: -1, RetrievalKeyTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	// rtt stands for the network between the backend and the platform: each request to
	// the simulator waits this long before it is answered.
	var rtt atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(rtt.Load()))
		sim.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	client, err := mstudio.New(srv.URL, mstudio.Options{})
	if err != nil {
		b.Fatal(err)
	}
	in, err := sim.CreateInstance(mstudiotest.InstanceSpec{})
	if err != nil {
		b.Fatal(err)
	}
	user := sim.Users()[0]
	keys := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			if out[i], err = sim.NewRetrievalKey(in.ID, user.ID); err != nil {
				b.Fatal(err)
			}
		}
		return out
	}

	baseline := func(b *testing.B) {
		db, err := sql.Open("sqlite3", "file:"+filepath.Join(b.TempDir(), "base.db")+"?_journal_mode=WAL&_synchronous=NORMAL&_busy_timeout=10000&_txlock=immediate")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(`CREATE TABLE sessions (id TEXT PRIMARY KEY, user_id TEXT, token TEXT, expires_at DATETIME)`); err != nil {
			b.Fatal(err)
		}
		ks := keys(b.N)
		b.ResetTimer()
		for i := range b.N {
			tok, err := client.RedeemRetrievalKey(context.Background(), ks[i], user.ID)
			if err != nil {
				b.Fatal(err)
			}
			id := sha256.Sum256([]byte(ks[i]))
			if _, err := db.Exec(`INSERT INTO sessions VALUES (?, ?, ?, ?)`, hex.EncodeToString(id[:]), user.ID, tok.Token.Reveal(), tok.ExpiresAt); err != nil {
				b.Fatal(err)
			}
			rec := httptest.NewRecorder()
			http.Redirect(rec, httptest.NewRequest(http.MethodGet, "/mstudio/sso", nil), "/app", http.StatusSeeOther)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	}

	full := func(b *testing.B) {
		store := extensiontest.Open(b, extensiontest.SQLiteURL(b), extension.Options{Keys: extensiontest.Keyring(b)})
		enabled := true
		if _, err := store.ApplyLifecycle(context.Background(), extension.LifecycleEvent{
			Kind: extension.EventAdded, RequestID: "r1", CreatedAt: time.Now(), InstanceID: in.ID,
			ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.Scopes, Enabled: &enabled, Secret: "s",
		}); err != nil {
			b.Fatal(err)
		}
		pages, err := frontend.New(frontend.Config{Store: store, PublicURL: apptest.PublicURL})
		if err != nil {
			b.Fatal(err)
		}
		h, err := atrek.New(atrek.Config{Store: store, Client: client, ExtensionID: sim.ExtensionID(),
			Sessions: pages.Sessions, Pages: pages, RateLimit: rate.Inf})
		if err != nil {
			b.Fatal(err)
		}
		e := httpfront.New(httpfront.Options{Pages: pages})
		e.GET("/mstudio/sso", h.Entry)
		ks := keys(b.N)
		b.ResetTimer()
		for i := range b.N {
			q := url.Values{"atrek": {ks[i]}, "userId": {user.ID}, "instanceId": {in.ID}}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mstudio/sso?"+q.Encode(), nil))
			if rec.Code != http.StatusSeeOther {
				b.Fatalf("entry: got %d: %s", rec.Code, rec.Body)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	}
	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		rtt.Store(int64(d))
		b.Run(fmt.Sprintf("rtt=%v/path=baseline", d), baseline)
		b.Run(fmt.Sprintf("rtt=%v/path=full", d), full)
	}
}
