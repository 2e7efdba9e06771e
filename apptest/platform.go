package apptest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// Platform is the simulator over HTTP, with a log of the requests it received: the piece
// of the app that tests of the platform client need alone.
type Platform struct {
	Sim    *mstudiotest.Server
	SimURL string

	mu    sync.Mutex
	calls []SimCall // every request the simulator received, in order
}

// SimCall is one request the simulator received: "METHOD /path", the body, and the
// status it answered (0 while it is still being answered).
type SimCall struct {
	Route  string
	Body   []byte
	Status int
}

// NewPlatform starts the simulator with opts behind an HTTP server; both end with the test.
func NewPlatform(t testing.TB, opts mstudiotest.Options) *Platform {
	t.Helper()
	sim, err := mstudiotest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	p := &Platform{Sim: sim}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Reading the whole body lets the server notice a client that hangs up (it
		// watches the connection only once the body is consumed), so an injected latency
		// ends with the client's deadline instead of holding up Close.
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		// Counted on arrival, so a request held by a latency fault counts at once.
		p.mu.Lock()
		n := len(p.calls)
		p.calls = append(p.calls, SimCall{Route: r.Method + " " + r.URL.Path, Body: body})
		p.mu.Unlock()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		sim.ServeHTTP(sw, r)
		p.mu.Lock()
		p.calls[n].Status = sw.status
		p.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	p.SimURL = srv.URL
	return p
}

// SimHits returns how many requests the simulator received for route, "METHOD /path",
// where a {name} segment stands for any one segment, as in the simulator's routes.
func (p *Platform) SimHits(route string) int { return len(p.SimRequests(route)) }

// SimRequests returns the requests the simulator received for route (as in SimHits), in
// order.
func (p *Platform) SimRequests(route string) []SimCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []SimCall
	for _, c := range p.calls {
		if routeMatches(route, c.Route) {
			out = append(out, c)
		}
	}
	return out
}

// SimCalls returns how many requests the simulator received in all.
func (p *Platform) SimCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// routeMatches reports whether the request "METHOD /path" fits the route pattern.
func routeMatches(pattern, request string) bool {
	ps, rs := strings.Split(pattern, "/"), strings.Split(request, "/")
	if len(ps) != len(rs) {
		return false
	}
	for i, p := range ps {
		if p != rs[i] && (!strings.HasPrefix(p, "{") || !strings.HasSuffix(p, "}") || rs[i] == "") {
			return false
		}
	}
	return true
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// Flush lets the simulator's streamed answers through.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
