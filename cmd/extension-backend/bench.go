package main

import (
	"bytes"
	"context"
	"flag"
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
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

func runBench(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "webhooks" {
		return usagef("usage: extension-backend bench webhooks --to URL [--duration 10s] [--concurrency 32] [--instances 1000]")
	}
	fs := flag.NewFlagSet("bench webhooks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "http://127.0.0.1:8080/mstudio/webhooks", "the backend's webhook URL")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	concurrency := fs.Int("concurrency", 32, "deliveries in flight at once")
	instances := fs.Int("instances", 1000, "distinct extension instances to spread deliveries over")
	keyFile := fs.String("key-file", defaultKeyFile, "the simulator key file to sign with")
	extensionID := fs.String("extension-id", "", "meta.extensionId (default: EXT_EXTENSION_ID, else the dev setup's)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err}
	}
	if *concurrency < 1 || *instances < *concurrency || *duration <= 0 || *duration > time.Hour {
		return usagef("need --concurrency ≥ 1, --instances ≥ --concurrency and 0 < --duration ≤ 1h")
	}
	sg, err := loadDevSigner(getenv, *keyFile, *extensionID)
	if err != nil {
		return err
	}
	if err := sg.requireExtensionID(); err != nil {
		return err
	}
	key, extID, contributorID := sg.key, sg.extensionID, sg.contributorID

	ids := make([]string, *instances)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	client := &http.Client{
		Timeout:   6 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *concurrency, MaxConnsPerHost: *concurrency},
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
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
	for w := range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each sender owns a disjoint set of instances and sends each one's events in
			// order, as the platform does: an install first, then updates and rotations.
			var own []string
			for i := w; i < len(ids); i += *concurrency {
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
				spec := mstudiotest.PayloadSpec{
					Kind: kind, InstanceID: id, ExtensionID: extID, ContributorID: contributorID,
					ContextKind: "project", ContextID: id, Scopes: mstudiotest.DefaultScopes, Enabled: true,
					TargetURL: *to,
				}
				if kind != "InstanceUpdated" {
					spec.Secret = "bench-" + uuid.NewString()
				}
				body, err := mstudiotest.BuildPayload(spec)
				if err != nil {
					record(0, "build error")
					return
				}
				status, d := benchSend(ctx, client, *to, key, body)
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
		}()
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
	elapsed := time.Since(start)
	return printBenchSummary(stdout, elapsed, &latencies, statuses)
}

// benchSend signs and posts one delivery; it returns the status ("" once the run's time
// is up) and the latency.
func benchSend(ctx context.Context, client *http.Client, to string, key mstudiotest.KeyPair, body []byte) (string, time.Duration) {
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

func printBenchSummary(w io.Writer, elapsed time.Duration, h *latencyHistogram, statuses map[string]int) error {
	ok := 0
	keys := make([]string, 0, len(statuses))
	for k, n := range statuses {
		keys = append(keys, k)
		if strings.HasPrefix(k, "2") {
			ok += n
		}
	}
	sort.Strings(keys)
	if h.n > 0 {
		fmt.Fprintf(w, "deliveries  %d answered in %s\n", h.n, elapsed.Round(time.Millisecond))
		fmt.Fprintf(w, "throughput  %.0f deliveries/s\n", float64(h.n)/elapsed.Seconds())
		fmt.Fprintf(w, "latency     p50 %s  p90 %s  p99 %s  max %s\n", h.quantile(0.50), h.quantile(0.90), h.quantile(0.99), h.max.Round(10*time.Microsecond))
	}
	fmt.Fprint(w, "status     ")
	for _, k := range keys {
		fmt.Fprintf(w, " %s: %d", k, statuses[k])
	}
	fmt.Fprintln(w)
	if ok == 0 {
		return fmt.Errorf("no delivery was answered with a 2xx")
	}
	return nil
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
