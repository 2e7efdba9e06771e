package httpfront_test

import (
	"fmt"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/httpfront"
	"github.com/labstack/echo/v4"
)

func metricsSize(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return len(b)
}

// 5,000 requests with made-up methods and paths leave /metrics within 5 % of its size:
// no label is taken from a request's own text.
func TestMetricsLabelsBounded(t *testing.T) {
	f := httpfront.New(httpfront.Options{})
	f.GET("/things/:id", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	srv := httptest.NewServer(f)
	defer srv.Close()
	// Warm every route and status once, so the baseline holds the series that exist.
	for _, p := range []string{"/things/1", "/nowhere", "/metrics", "/healthz"} {
		http.Get(srv.URL + p)
	}
	for _, p := range []string{"/warm", "/things/1"} {
		req, _ := http.NewRequest("BREW", srv.URL+p, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	before := metricsSize(t, srv.URL)
	client := &http.Client{}
	for i := range 5000 {
		method := fmt.Sprintf("M%dX", i)
		path := fmt.Sprintf("/made-up/%d/%s", i, strings.Repeat("p", i%50))
		if i%3 == 0 {
			path = fmt.Sprintf("/things/%d", i) // a real route with ever new parameters
		}
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	after := metricsSize(t, srv.URL)
	if float64(after) > float64(before)*1.05 {
		t.Errorf("/metrics grew from %d to %d bytes", before, after)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, bad := range []string{"M17X", "/made-up", "/things/3"} {
		if strings.Contains(string(body), bad) {
			t.Errorf("/metrics carries %q from a request", bad)
		}
	}
	if !strings.Contains(string(body), `route="/things/:id"`) || !strings.Contains(string(body), `method="other"`) {
		t.Errorf("/metrics lacks the route template or the other method:\n%s", body)
	}
}

type pages struct{}

func (pages) ErrorPage(c echo.Context, status int) error {
	return c.HTML(status, fmt.Sprintf("<p>page %d</p>", status))
}

// A browser gets the page of an error, anybody else JSON; a panic is a 500 and the
// process lives on.
func TestErrorAnswers(t *testing.T) {
	f := httpfront.New(httpfront.Options{Pages: pages{}})
	f.GET("/panic", func(echo.Context) error { panic("boom") })
	srv := httptest.NewServer(f)
	defer srv.Close()
	for _, c := range []struct {
		path, accept, wantType, wantBody string
		status                           int
	}{
		{"/nowhere", "text/html,application/xhtml+xml;q=0.9", "text/html", "page 404", 404},
		{"/nowhere", "application/json", "application/json", `"error"`, 404},
		{"/nowhere", "", "application/json", `"error"`, 404},
		{"/panic", "text/html", "text/html", "page 500", 500},
		{"/panic", "*/*", "application/json", `"Internal Server Error"`, 500},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.wantType) || !strings.Contains(string(body), c.wantBody) {
			t.Errorf("%s with Accept %q: %d %q %s", c.path, c.accept, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}

func TestWantsHTML(t *testing.T) {
	for accept, want := range map[string]bool{
		"text/html": true, "TEXT/HTML;q=0.9": true, "application/json, text/html": true,
		"": false, "*/*": false, "application/json": false, "text/htmlx": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", accept)
		if got := httpfront.WantsHTML(r); got != want {
			t.Errorf("%q: %v, want %v", accept, got, want)
		}
	}
}

func FuzzWantsHTML(f *testing.F) {
	f.Add("text/html;q=0.9,*/*")
	f.Fuzz(func(t *testing.T, accept string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept", accept)
		got := httpfront.WantsHTML(r)
		if got && !strings.Contains(strings.ToLower(accept), "text/html") {
			t.Fatalf("%q wants HTML?", accept)
		}
	})
}

// A flood of identical refusals writes one request line, not one per request.
func TestRefusalsLoggedBounded(t *testing.T) {
	var logs extensiontest.LogBuffer
	f := httpfront.New(httpfront.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	f.GET("/ok", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	srv := httptest.NewServer(f)
	defer srv.Close()
	for range 500 {
		resp, err := http.Get(srv.URL + "/nowhere")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for range 3 {
		resp, err := http.Get(srv.URL + "/ok")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var notFound, ok int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		switch {
		case strings.Contains(line, `"status":404`):
			notFound++
		case strings.Contains(line, `"status":200`):
			ok++
		}
	}
	if notFound != 1 || ok != 3 {
		t.Errorf("%d lines for 500 refusals and %d for 3 successes; want 1 and 3:\n%s", notFound, ok, logs.String())
	}
}

// Failures of ours (5xx) are gated too: a flood of identical ones writes one request line
// and one error line, not two per request.
func TestFailuresLoggedBounded(t *testing.T) {
	var logs extensiontest.LogBuffer
	f := httpfront.New(httpfront.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	f.GET("/down", func(c echo.Context) error { return echo.NewHTTPError(http.StatusServiceUnavailable) })
	srv := httptest.NewServer(f)
	defer srv.Close()
	for range 300 {
		resp, err := http.Get(srv.URL + "/down")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := strings.Count(logs.String(), `"status":503`); n != 2 {
		t.Errorf("%d lines name status 503 after 300 failures, want 2 (the request, the error):\n%s", n, logs.String())
	}
}

// A path under a secret prefix is logged as the prefix alone: in the request line, a
// failure of ours, a panic and a wrong method alike.
func TestSecretPathsRedacted(t *testing.T) {
	var logs extensiontest.LogBuffer
	f := httpfront.New(httpfront.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), SecretPaths: []string{"/invite/"}})
	f.GET("/invite/:token", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	f.POST("/invite/:token", func(c echo.Context) error { return echo.NewHTTPError(http.StatusInternalServerError) })
	f.PUT("/invite/:token", func(c echo.Context) error { panic("boom") })
	srv := httptest.NewServer(f)
	defer srv.Close()
	const secret = "S3cr3tT0kenS3cr3tT0kenS3cr3tT0kenS3cr3tT0k"
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		req, err := http.NewRequest(method, srv.URL+"/invite/"+secret, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	out := logs.String()
	if strings.Contains(out, secret[4:]) {
		t.Errorf("a log line carries the secret:\n%s", out)
	}
	// GET, POST (request, failure), PUT (panic, request), DELETE (405).
	if n := strings.Count(out, `"path":"/invite/…"`); n != 6 {
		t.Errorf("%d lines name the redacted path, want 6:\n%s", n, out)
	}
}
