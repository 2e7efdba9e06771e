// Package apptest is the harness every package's tests share: a real, migrated store, the
// platform simulator over HTTP, the real platform client, and the production HTTP front
// with the page engine and browser sessions, all on one fake clock. A package's test
// registers its own handlers on App.Front and talks to App.URL like a browser or the
// platform would.
//
// It imports the front, the frontend and the simulator, never the edge package under test
// (webhooks, atrek, jobs), so each of them can use it.
package apptest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/google/uuid"
)

// PublicURL is the public URL the app's pages and sessions are configured with.
const PublicURL = "http://127.0.0.1:8080"

// Options tunes New; the zero value is a SQLite app.
type Options struct {
	Dialect extension.Dialect // "": SQLite
	// Clock is the clock of every part; nil: a clock standing at the current second.
	// extensiontest.WallClock() is for tests that wait in real time.
	Clock *extensiontest.Clock
	// Sim tunes the simulator's options (its clock is the app's).
	Sim func(*mstudiotest.Options)
	// Frontend tunes the frontend's configuration.
	Frontend func(*frontend.Config)
	// Client tunes the platform client's options.
	Client func(*mstudio.Options)
	// Front tunes the HTTP front's options (the request values it logs, its registry).
	Front func(*httpfront.Options)
}

// App is the backend's parts as production wires them, for one test.
type App struct {
	Clock  *extensiontest.Clock
	Logs   *extensiontest.LogBuffer
	Logger *slog.Logger
	*Platform
	Store *extension.Store
	// DatabaseURL is the store's database, for a replica's store or River.
	DatabaseURL string
	Client      *mstudio.Client
	Front       *httpfront.Front
	Pages       *frontend.Frontend

	keys   *extension.Keyring
	mu     sync.Mutex
	events int
	server *httptest.Server
}

// New builds the app; everything it starts ends with the test.
func New(t testing.TB, opts Options) *App {
	t.Helper()
	a := &App{Clock: opts.Clock, Logs: &extensiontest.LogBuffer{}, keys: extensiontest.Keyring(t)}
	if a.Clock == nil {
		a.Clock = extensiontest.NewClock(time.Now().Truncate(time.Second))
	}
	// JSON lines, as production writes them.
	a.Logger = slog.New(slog.NewJSONHandler(a.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	so := mstudiotest.Options{Now: a.Clock.Now, SecretActivationDelay: -1}
	if opts.Sim != nil {
		opts.Sim(&so)
	}
	a.Platform = NewPlatform(t, so)
	d := opts.Dialect
	if d == "" {
		d = extension.SQLite
	}
	a.DatabaseURL = extensiontest.URL(t, d)
	a.Store = a.Replica(t)
	co := mstudio.Options{RetryMax: 1, RetryWait: time.Millisecond, Timeout: 5 * time.Second, Logger: a.Logger}
	if opts.Client != nil {
		opts.Client(&co)
	}
	var err error
	if a.Client, err = mstudio.New(a.SimURL, co); err != nil {
		t.Fatal(err)
	}
	fc := frontend.Config{Store: a.Store, PublicURL: PublicURL, Logger: a.Logger}
	if opts.Frontend != nil {
		opts.Frontend(&fc)
	}
	if a.Pages, err = frontend.New(fc); err != nil {
		t.Fatal(err)
	}
	fo := httpfront.Options{Logger: a.Logger, Pages: a.Pages, Ready: a.Store.Ping, SecretPaths: frontend.SecretPaths()}
	if opts.Front != nil {
		opts.Front(&fo)
	}
	a.Front = httpfront.New(fo)
	return a
}

// Replica opens another store on the app's database, with its keys, clock and logger, as
// a second backend replica would.
func (a *App) Replica(t testing.TB) *extension.Store {
	t.Helper()
	return extensiontest.Open(t, a.DatabaseURL, extension.Options{Keys: a.keys, Now: a.Clock.Now, Logger: a.Logger})
}

// URL starts the app's HTTP server (once; register the routes first) and returns its base URL.
func (a *App) URL(t testing.TB) string {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server == nil {
		a.server = httptest.NewServer(a.Front)
		t.Cleanup(a.server.Close)
		t.Cleanup(a.Sim.Close) // first: no delivery of the simulator outlives the server
	}
	return a.server.URL
}

// Browser is a fresh browser: its own cookie jar; redirects are shown, not followed.
func Browser(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Install creates an instance at the simulator and applies its ExtensionAddedToContext
// to the store, dated after every event the app applied before.
func (a *App) Install(t testing.TB, spec mstudiotest.InstanceSpec) mstudiotest.Instance {
	t.Helper()
	in, err := a.Sim.CreateInstance(spec)
	if err != nil {
		t.Fatal(err)
	}
	variant := in.VariantKey
	a.Apply(t, extension.LifecycleEvent{Kind: extension.EventAdded, InstanceID: in.ID,
		ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.Scopes, Enabled: new(true),
		VariantKey: &variant, Secret: extension.Secret(in.PendingSecret)})
	return in
}

// Apply applies a lifecycle event, newer than every one before, to the store.
func (a *App) Apply(t testing.TB, ev extension.LifecycleEvent) {
	t.Helper()
	a.mu.Lock()
	a.events++
	ev.CreatedAt = a.Clock.Now().Add(time.Duration(a.events) * time.Millisecond)
	a.mu.Unlock()
	ev.RequestID = uuid.NewString()
	if res, err := a.Store.ApplyLifecycle(context.Background(), ev); err != nil || res.Outcome != extension.OutcomeApplied {
		t.Fatalf("apply %s: %+v, %v", ev.Kind, res, err)
	}
}

// User returns the simulator's test user of that name ("Ada Admin", "Bob Builder",
// "Otto Outsider").
func (a *App) User(t testing.TB, name string) mstudiotest.User {
	t.Helper()
	for _, u := range a.Sim.Users() {
		if u.Name == name {
			return u
		}
	}
	t.Fatalf("the simulator has no user %q", name)
	return mstudiotest.User{}
}

// Body reads and closes a response's body.
func Body(t testing.TB, res *http.Response) string {
	t.Helper()
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
