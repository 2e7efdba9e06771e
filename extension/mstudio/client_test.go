package mstudio_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// testRetryMax is the number of retries the test clients make after the first attempt.
const testRetryMax = 2

// newTestClient returns a client of the API at baseURL with short retry waits.
func newTestClient(t *testing.T, baseURL string) *mstudio.Client {
	t.Helper()
	c, err := mstudio.New(baseURL, mstudio.Options{
		RetryMax:  testRetryMax,
		RetryWait: time.Millisecond,
		Timeout:   10 * time.Second,
	})
	if err != nil {
		t.Fatalf("New(%q): %v", baseURL, err)
	}
	return c
}

// newClient returns a client of the API at baseURL with the options, and short retry
// waits unless they say otherwise.
func newClient(t *testing.T, baseURL string, opts mstudio.Options) *mstudio.Client {
	t.Helper()
	if opts.RetryMax == 0 {
		opts.RetryMax = testRetryMax
	}
	if opts.RetryWait == 0 {
		opts.RetryWait = time.Millisecond
	}
	c, err := mstudio.New(baseURL, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", baseURL, err)
	}
	return c
}

// newServer starts an httptest server with the handler, closed when the test ends.
func newServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
	}{
		{"empty", ""},
		{"no scheme", "api.mittwald.de"},
		{"host only with port", "127.0.0.1:8080"},
		{"ftp scheme", "ftp://api.mittwald.de"},
		{"file scheme", "file:///etc/passwd"},
		{"no host", "https://"},
		{"path only", "/v2"},
		{"unparsable", "http://[::1"},
		{"javascript", "javascript:alert(1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mstudio.New(tc.url, mstudio.Options{})
			if err == nil {
				t.Errorf("New(%q) = %v, nil; want an error", tc.url, c.BaseURL())
			}
		})
	}
}

func TestNewAcceptsBaseURL(t *testing.T) {
	tests := []struct {
		name string
		url  string
		want string
	}{
		{"default", mstudio.DefaultBaseURL, mstudio.DefaultBaseURL},
		{"http with port", "http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"trailing slash dropped", "http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{"path prefix kept", "https://gateway.example/api/", "https://gateway.example/api"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := mstudio.New(tc.url, mstudio.Options{})
			if err != nil {
				t.Fatalf("New(%q): %v", tc.url, err)
			}
			if got := c.BaseURL(); got != tc.want {
				t.Errorf("BaseURL() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBaseURLPathPrefix checks that a base URL with a path keeps it in front of /v2.
func TestBaseURLPathPrefix(t *testing.T) {
	var gotPath string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"publicToken":"tok","expiry":"2030-01-01T00:00:00Z"}`))
	})
	c := newTestClient(t, srv.URL+"/gateway/")
	const id = "0b6f1c3e-2a4d-4e8f-9c1b-3d5e7f9a1b2c"
	if _, err := c.InstanceToken(t.Context(), id, "s3cret"); err != nil {
		t.Fatal(err)
	}
	if want := "/gateway/v2/extension-instances/" + id + "/tokens"; gotPath != want {
		t.Errorf("path = %q, want %q", gotPath, want)
	}
}

// simEnv is the simulator over HTTP (apptest.Platform, on the wall clock) with one
// installed instance whose secret works at once.
type simEnv struct {
	*apptest.Platform
	Instance mstudiotest.Instance
}

// newSimEnv starts a simulator and installs an instance as the call describes.
func newSimEnv(t *testing.T, opts mstudiotest.Options, install mstudiotest.CallRequest) *simEnv {
	t.Helper()
	receiver := newServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	opts.WebhookURL = receiver.URL
	opts.SecretActivationDelay = -1
	env := &simEnv{Platform: apptest.NewPlatform(t, opts)}
	res, err := env.Sim.Trigger(t.Context(), "extensionAddedToContext", install)
	if err != nil || !res.Successful {
		t.Fatalf("install: %+v, %v", res, err)
	}
	env.Instance, _ = env.Sim.Instance(res.InstanceID)
	return env
}

// instanceToken mints a token of the env's instance through the simulator's API.
func (e *simEnv) instanceToken(t *testing.T) extension.Secret {
	t.Helper()
	tok, err := newClient(t, e.SimURL, mstudio.Options{}).InstanceToken(t.Context(), e.Instance.ID, extension.Secret(e.Instance.Secret))
	if err != nil {
		t.Fatalf("InstanceToken: %v", err)
	}
	return tok.Token
}

// user is a simulator user with access to every context.
func (e *simEnv) user(t *testing.T) mstudiotest.User {
	t.Helper()
	for _, u := range e.Sim.Users() {
		if u.Access {
			return u
		}
	}
	t.Fatal("simulator has no user with access")
	return mstudiotest.User{}
}

// apiStatus is the status of the platform error in err; 0 when there is none.
func apiStatus(err error) int {
	var apiErr *mstudio.Error
	if errors.As(err, &apiErr) {
		return apiErr.Status
	}
	return 0
}
