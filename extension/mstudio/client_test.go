package mstudio_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
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
