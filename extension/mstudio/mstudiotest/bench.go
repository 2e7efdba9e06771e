package mstudiotest

// The load generator (`extension-backend bench webhooks`): signed deliveries, as the
// simulator signs them, from many senders at once against a running backend.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// BenchOptions configures Bench.
type BenchOptions struct {
	To            string // the backend's webhook URL; required
	KeyFile       string // the simulator key file to sign with; required
	ExtensionID   string // meta.extensionId; required
	ContributorID string // meta.contributorId; default: a new one

	Duration    time.Duration // how long to send; (0, 1 h]
	Concurrency int           // deliveries in flight at once; at least 1
	Instances   int           // distinct instances the deliveries are spread over; at least Concurrency

	// Sim, when set, is the URL of the simulator the backend calls: the instances are
	// registered there first (POST /internal/instances), with the secret their installs
	// and rotations carry, so that the backend's post-install jobs find them.
	Sim string

	HTTPClient *http.Client // default: one with the platform's 6 s timeout and Concurrency connections
}

// Bench sends valid signed deliveries for Duration: each sender installs its own
// instances, then updates and rotates them in order, as the platform would. It writes a
// progress line each second to stderr and a summary (throughput, latency percentiles,
// counts per status) to stdout. It fails when no delivery was answered 2xx.
func Bench(ctx context.Context, opts BenchOptions, stdout, stderr io.Writer) error {
	res, err := RunBench(ctx, opts, stderr)
	if err != nil {
		return err
	}
	res.WriteSummary(stdout)
	return res.Err(opts.KeyFile)
}

// BenchResult is what one run of the load generator measured.
type BenchResult struct {
	Elapsed  time.Duration
	Statuses map[string]int // deliveries by HTTP status, or by what went wrong instead
	latency  latencyHistogram
}

// Answered is how many deliveries got an HTTP answer, of any status.
func (r *BenchResult) Answered() int { return r.latency.n }

// Throughput is answered deliveries per second.
func (r *BenchResult) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.latency.n) / r.Elapsed.Seconds()
}

// Latency returns the q-quantile of the answered deliveries' latency, within 1 %.
func (r *BenchResult) Latency(q float64) time.Duration { return r.latency.quantile(q) }

// NotOK counts the deliveries that were not answered 2xx.
func (r *BenchResult) NotOK() int {
	n := 0
	for k, c := range r.Statuses {
		if !strings.HasPrefix(k, "2") {
			n += c
		}
	}
	return n
}

// RunBench is Bench without the summary: it sends the load and returns what it
// measured, writing only the progress line to stderr.
func RunBench(ctx context.Context, opts BenchOptions, stderr io.Writer) (*BenchResult, error) {
	switch {
	case opts.To == "" || opts.KeyFile == "" || opts.ExtensionID == "":
		return nil, errorf("bench: the webhook URL, the key file and the extension id are required")
	case opts.Concurrency < 1 || opts.Instances < opts.Concurrency || opts.Duration <= 0 || opts.Duration > time.Hour:
		return nil, errorf("bench: need concurrency ≥ 1, instances ≥ concurrency and 0 < duration ≤ 1h")
	}
	key, err := loadSigningKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	if opts.ContributorID == "" {
		opts.ContributorID = uuid.NewString()
	}
	ids := make([]string, opts.Instances)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{
			Timeout:   6 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: opts.Concurrency, MaxConnsPerHost: opts.Concurrency},
		}
	}
	var secrets map[string]string // with Sim: each instance's one secret
	if opts.Sim != "" {
		if secrets, err = registerBenchInstances(ctx, client, opts.Sim, ids); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()

	var (
		mu        sync.Mutex
		latencies latencyHistogram // answered deliveries only
		statuses  = map[string]int{}
	)
	record := func(d time.Duration, status string) {
		mu.Lock()
		if d > 0 {
			latencies.add(d)
		}
		statuses[status]++
		mu.Unlock()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range opts.Concurrency {
		wg.Go(func() {
			// Each sender owns a disjoint set of instances and sends each one's events in
			// order, as the platform does: an install first, then updates and rotations.
			var own []string
			for i := w; i < len(ids); i += opts.Concurrency {
				own = append(own, ids[i])
			}
			installed := map[string]bool{}
			for n := 0; ctx.Err() == nil; n++ {
				id := own[n%len(own)]
				kind := "ExtensionAddedToContext"
				if installed[id] {
					kind = "InstanceUpdated"
					if rand.IntN(10) < 3 {
						kind = "SecretRotated"
					}
				}
				spec := PayloadSpec{
					Kind: kind, InstanceID: id, ExtensionID: opts.ExtensionID, ContributorID: opts.ContributorID,
					ContextKind: "project", ContextID: id, Scopes: DefaultScopes, Enabled: true,
					TargetURL: opts.To,
				}
				if kind != "InstanceUpdated" {
					spec.Secret = "bench-" + uuid.NewString()
					if secrets != nil {
						// The simulator knows one secret: a rotation hands it over again.
						spec.Secret = secrets[id]
					}
				}
				body, err := BuildPayload(spec)
				if err != nil {
					record(0, "build error")
					return
				}
				status, d := benchSend(ctx, client, opts.To, key, body)
				switch {
				case status == "":
					return // the run is over
				case status == "transport error":
					// No answer: count it, but keep it out of throughput and latency, and
					// do not spin against a backend that is down.
					record(0, status)
					time.Sleep(10 * time.Millisecond)
					continue
				case strings.HasPrefix(status, "2"):
					installed[id] = true
				}
				record(d, status)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
progress:
	for {
		select {
		case <-done:
			break progress
		case <-tick.C:
			mu.Lock()
			n := latencies.n
			mu.Unlock()
			el := time.Since(start)
			fmt.Fprintf(stderr, "\r%5.1fs  %8d sent  %8.0f/s", el.Seconds(), n, float64(n)/el.Seconds())
		}
	}
	fmt.Fprintln(stderr)
	return &BenchResult{Elapsed: time.Since(start), Statuses: statuses, latency: latencies}, nil
}

// benchSend signs and posts one delivery; it returns the status ("" once the run's time
// is up) and the latency.
func benchSend(ctx context.Context, client *http.Client, to string, key KeyPair, body []byte) (string, time.Duration) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, to, bytes.NewReader(body))
	if err != nil {
		return "request error", 0
	}
	req.Header.Set("Content-Type", "application/json")
	mstudio.Sign(req.Header, key.Serial, key.Private, body)
	t := time.Now()
	resp, err := client.Do(req)
	d := time.Since(t)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0
		}
		return "transport error", d
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprint(resp.StatusCode), d
}

// WriteSummary writes the throughput, the latency percentiles and the counts per status.
func (r *BenchResult) WriteSummary(w io.Writer) {
	h := &r.latency
	if h.n > 0 {
		fmt.Fprintf(w, "deliveries  %d answered in %s\n", h.n, r.Elapsed.Round(time.Millisecond))
		fmt.Fprintf(w, "throughput  %.0f deliveries/s\n", r.Throughput())
		fmt.Fprintf(w, "latency     p50 %s  p90 %s  p99 %s  max %s\n", h.quantile(0.50), h.quantile(0.90), h.quantile(0.99), h.max.Round(10*time.Microsecond))
	}
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprint(w, "status     ")
	for _, k := range keys {
		fmt.Fprintf(w, " %s: %d", k, r.Statuses[k])
	}
	fmt.Fprintln(w)
}

// Err says why the run failed: no delivery was answered 2xx. A 401 is explained, with the
// key file that signed.
func (r *BenchResult) Err(keyFile string) error {
	for k, n := range r.Statuses {
		if strings.HasPrefix(k, "2") && n > 0 {
			return nil
		}
	}
	if r.Statuses["401"] > 0 {
		return refusedSignature(keyFile, fmt.Sprintf(" on %d of %d deliveries", r.Statuses["401"], r.latency.n))
	}
	return fmt.Errorf("no delivery was answered with a 2xx")
}

// latencyHistogram keeps latencies in buckets 1 % apart, so a long run needs constant
// memory and the percentiles are within 1 %.
type latencyHistogram struct {
	counts map[int]int
	n      int
	max    time.Duration
}

const bucketGrowth = 1.01

func (h *latencyHistogram) add(d time.Duration) {
	if h.counts == nil {
		h.counts = map[int]int{}
	}
	h.counts[int(math.Log(float64(max(d, time.Microsecond)))/math.Log(bucketGrowth))]++
	h.n++
	h.max = max(h.max, d)
}

// quantile returns the upper edge of the bucket holding the q-quantile.
func (h *latencyHistogram) quantile(q float64) time.Duration {
	buckets := make([]int, 0, len(h.counts))
	for b := range h.counts {
		buckets = append(buckets, b)
	}
	slices.Sort(buckets)
	want, seen := int(math.Ceil(q*float64(h.n))), 0
	for _, b := range buckets {
		if seen += h.counts[b]; seen >= want {
			return time.Duration(math.Pow(bucketGrowth, float64(b+1))).Round(10 * time.Microsecond)
		}
	}
	return h.max
}

// registerBenchInstances registers the load's instances with the simulator at simURL, a
// thousand per request, and returns each one's secret.
func registerBenchInstances(ctx context.Context, client *http.Client, simURL string, ids []string) (map[string]string, error) {
	secrets := make(map[string]string, len(ids))
	for chunk := range slices.Chunk(ids, 1000) {
		req := RegisterRequest{Instances: make([]RegisterSpec, len(chunk))}
		for i, id := range chunk {
			secret := "bench-" + uuid.NewString()
			req.Instances[i] = RegisterSpec{ID: id, ContextKind: "project", ContextID: id, Scopes: DefaultScopes, Secret: secret}
			secrets[id] = secret
		}
		body, err := json.Marshal(req)
		if err != nil {
			return nil, err
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(simURL, "/")+"/internal/instances", bytes.NewReader(body))
		if err != nil {
			return nil, errorf("bench: --sim: %v", err)
		}
		hr.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(hr)
		if err != nil {
			return nil, errorf("bench: register the instances with the simulator: %v", err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return nil, errorf("bench: register the instances with the simulator at %s: %s %s", simURL, resp.Status, bytes.TrimSpace(msg))
		}
	}
	return secrets, nil
}
