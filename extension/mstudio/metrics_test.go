package mstudio_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// gathered flattens a registry into "name{label=value,...}" → value (a histogram's
// sample count), with labels in the order Prometheus sorts them.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestMetrics: every series is labelled with the route template, never a path with ids;
// each attempt counts, each call is observed once with its final status.
func TestMetrics(t *testing.T) {
	env := newSimEnv(t, mstudiotest.Options{RateLimit: 500}, mstudiotest.CallRequest{})
	reg := prometheus.NewRegistry()
	c := newClient(t, env.SimURL, mstudio.Options{Registerer: reg})
	in := env.Instance

	tok, err := c.InstanceToken(t.Context(), in.ID, extension.Secret(in.Secret)) // 201
	if err != nil {
		t.Fatal(err)
	}
	env.Sim.InjectFault(projectRoute, mstudiotest.Fault{Status: http.StatusServiceUnavailable, Times: 1})
	if _, err := c.Project(t.Context(), tok.Token, in.ContextID); err != nil { // 503, then 200
		t.Fatal(err)
	}
	if _, err := c.Customer(t.Context(), tok.Token, in.ContextID); apiStatus(err) != http.StatusForbidden { // project instance
		t.Fatalf("Customer: %v, want 403", err)
	}
	closed := newClient(t, "http://"+closedAddr(t), mstudio.Options{Registerer: reg}) // shares the collectors
	if _, err := closed.Project(t.Context(), tok.Token, in.ContextID); err == nil {
		t.Fatal("Project at a closed port: got nil error")
	}

	got := gathered(t, reg)
	const (
		calls    = "extension_mstudio_call_duration_seconds"
		attempts = "extension_mstudio_attempts_total"
		limit    = "extension_mstudio_ratelimit_limit"
		left     = "extension_mstudio_ratelimit_remaining"
		mint     = "route=POST /v2/extension-instances/{id}/tokens"
		project  = "route=GET /v2/projects/{id}"
		customer = "route=GET /v2/customers/{id}"
	)
	want := map[string]float64{
		calls + "{" + mint + ",status=201}":      1,
		calls + "{" + project + ",status=200}":   1,
		calls + "{" + customer + ",status=403}":  1,
		calls + "{" + project + ",status=error}": 1,

		attempts + "{" + mint + ",status=201}":      1,
		attempts + "{" + project + ",status=503}":   1,
		attempts + "{" + project + ",status=200}":   1,
		attempts + "{" + customer + ",status=403}":  1,
		attempts + "{" + project + ",status=error}": 1 + testRetryMax,

		limit + "{" + mint + "}":     500,
		limit + "{" + project + "}":  500,
		limit + "{" + customer + "}": 500,
		// The simulator's window counts every request, 429s and 403s too.
		left + "{" + mint + "}":     500 - 1,
		left + "{" + project + "}":  500 - 3,
		left + "{" + customer + "}": 500 - 4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	for k := range got {
		if strings.Contains(k, in.ID) || strings.Contains(k, in.ContextID) {
			t.Errorf("series %s carries an id", k)
		}
	}
}

func TestRateLimitRecorded(t *testing.T) {
	var headers atomic.Pointer[map[string]string]
	headers.Store(&map[string]string{})
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		for k, v := range *headers.Load() {
			w.Header().Set(k, v)
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"publicToken":"tok","expiry":"2030-01-01T00:00:00Z"}`)
	})
	c := newClient(t, srv.URL, mstudio.Options{})
	if l, r, reset := c.RateLimit(); l != 0 || r != 0 || !reset.IsZero() {
		t.Errorf("RateLimit() before any call = %d, %d, %v; want zeros", l, r, reset)
	}
	tests := []struct {
		name                     string
		headers                  map[string]string
		wantLimit, wantRemaining int
		wantReset                time.Duration // from now; 0: none
	}{
		{"all three", map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "30"}, 100, 7, 30 * time.Second},
		{"exempt route keeps the last", map[string]string{"X-RateLimit-Exempt": "yes"}, 100, 7, 30 * time.Second},
		{"no reset", map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "6"}, 100, 6, 0},
		{"huge reset bounded", map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "1e300"}, 100, 5, 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			headers.Store(&tc.headers)
			before := time.Now()
			if _, err := c.InstanceToken(t.Context(), testInstanceID, testSecret); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			l, r, reset := c.RateLimit()
			if l != tc.wantLimit || r != tc.wantRemaining {
				t.Errorf("RateLimit() = %d, %d; want %d, %d", l, r, tc.wantLimit, tc.wantRemaining)
			}
			if tc.wantReset == 0 {
				if !reset.IsZero() {
					t.Errorf("reset = %v, want none", reset)
				}
				return
			}
			// The exempt answer is the previous case's reset, taken slightly earlier.
			if reset.Before(before.Add(tc.wantReset-time.Second)) || reset.After(after.Add(tc.wantReset)) {
				t.Errorf("reset = %v, want %v from now", reset, tc.wantReset)
			}
		})
	}
}

// TestNewWithoutRegisterer: no registry, no metrics, and calls work.
func TestNewWithoutRegisterer(t *testing.T) {
	_, c := newTokenServer(t, answer{http.StatusCreated, `{"publicToken":"tok","expiry":"2030-01-01T00:00:00Z"}`})
	if _, err := c.InstanceToken(t.Context(), testInstanceID, testSecret); err != nil {
		t.Fatal(err)
	}
}
