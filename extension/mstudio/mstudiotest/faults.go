package mstudiotest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is trouble injected into one route, for resilience tests of clients.
type Fault struct {
	Latency    time.Duration // added before answering (or before the fault)
	Status     int           // answer this status with the platform's error body; 0: answer normally
	RetryAfter int           // seconds, sent as Retry-After with Status
	Drop       bool          // close the connection without an answer
	Times      int           // how many requests it hits; 0: every one until cleared
}

type faults struct {
	mu     sync.Mutex
	routes map[string]*Fault
}

func newFaults() *faults { return &faults{routes: map[string]*Fault{}} }

// InjectFault makes the route with the given pattern (as registered, for example
// "POST /v2/extension-instances/{id}/tokens") misbehave. It refuses a route that does not
// exist and a fault that could not be answered (a status outside 400–599, negative values).
func (s *Server) InjectFault(route string, f Fault) error {
	if !slices.Contains(s.patterns, route) {
		return errorf("no route %q; routes: %s", route, strings.Join(s.patterns, ", "))
	}
	if (f.Status != 0 && (f.Status < 400 || f.Status > 599)) || f.Latency < 0 || f.Times < 0 || f.RetryAfter < 0 {
		return errorf("fault: status must be 0 or 400–599, and latency, times and retryAfter not negative")
	}
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.routes[route] = &f
	return nil
}

// ClearFaults removes every injected fault.
func (s *Server) ClearFaults() {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	clear(s.faults.routes)
}

// apply runs the route's fault, if any, and reports whether it answered the request.
func (f *faults) apply(route string, w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	ft, ok := f.routes[route]
	var fault Fault
	if ok {
		fault = *ft
		if ft.Times > 0 {
			if ft.Times--; ft.Times == 0 {
				delete(f.routes, route)
			}
		}
	}
	f.mu.Unlock()
	if !ok {
		return false
	}
	if fault.Latency > 0 {
		select {
		case <-time.After(fault.Latency):
		case <-r.Context().Done():
			return true
		}
	}
	switch {
	case fault.Drop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return true
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2 or a recorder: abort the stream instead
	case fault.Status != 0:
		if fault.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(fault.RetryAfter))
		}
		typ, msg := "InternalError", "injected fault"
		if fault.Status == http.StatusTooManyRequests {
			typ, msg = "RateLimitError", "too many requests"
			w.Header().Set("X-RateLimit-Remaining", "0")
		}
		writeError(w, fault.Status, typ, msg)
		return true
	}
	return false
}

// faultRequest is the body of PUT /internal/faults, for clients in other languages.
type faultRequest struct {
	Route      string `json:"route"`
	LatencyMS  int    `json:"latencyMs"`
	Status     int    `json:"status"`
	RetryAfter int    `json:"retryAfter"`
	Drop       bool   `json:"drop"`
	Times      int    `json:"times"`
}

func (s *Server) putFault(w http.ResponseWriter, r *http.Request) {
	var fr faultRequest
	if !decodeBody(w, r, &fr) {
		return
	}
	if fr.Route == "" {
		writeValidation(w, ValidationIssue{Message: "route is required, e.g. \"POST /v2/extension-instances/{id}/tokens\"", Path: "route", Type: "required"})
		return
	}
	err := s.InjectFault(fr.Route, Fault{
		Latency: time.Duration(fr.LatencyMS) * time.Millisecond, Status: fr.Status,
		RetryAfter: fr.RetryAfter, Drop: fr.Drop, Times: fr.Times,
	})
	if err != nil {
		writeValidation(w, ValidationIssue{Message: err.Error(), Path: "route", Type: "invalid"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteFaults(w http.ResponseWriter, _ *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}
