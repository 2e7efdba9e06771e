package main

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/argon2"
)

// BenchmarkSignInBurst sends 200 concurrent sign-ins with correct passwords to the whole
// backend over HTTP, each from its own address, while lifecycle webhooks keep arriving
// for the same instance. A client told 429 waits its Retry-After and tries again, as the
// page tells a person to. It reports sign-ins/s beside a baseline of bare argon2id hashes/s
// with the same parameters on every CPU, the webhook round trips' p99 (through the
// simulator, which signs and sends each) during the burst,
// and the process's peak RSS during the burst.
//
//	go test ./cmd/extension-backend -run '^$' -bench SignInBurst -benchtime 3x
func BenchmarkSignInBurst(b *testing.B) {
	const burst = 200
	const password = "correct horse battery staple"
	const webhookPause = 50 * time.Millisecond
	// The process runs with serve's soft memory limit (unless GOMEMLIMIT is set), as the
	// peak it reports is serve's.
	applyMemoryLimit()
	app := apptest.New(b, apptest.Options{})
	cfg := &Config{PublicURL: apptest.PublicURL, ExtensionID: app.Sim.ExtensionID(), DefaultRole: "member",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	front, err := newHTTP(b.Context(), cfg, app.Logger, prometheus.NewRegistry(), app.Store, app.Client, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(front)
	b.Cleanup(srv.Close)
	app.Sim.SetWebhookURL(srv.URL + "/mstudio/webhooks")
	in := app.Install(b, mstudiotest.InstanceSpec{})
	ctx := b.Context()
	owner, _, err := app.Store.EnsurePlatformAccount(ctx, in.ID, app.User(b, "Ada Admin").ID, "ada@example.test", "Ada Admin", extension.RoleOwner)
	if err != nil {
		b.Fatal(err)
	}
	hash, err := extension.HashPassword(password, extension.PasswordOWASP)
	if err != nil {
		b.Fatal(err)
	}
	emails := make([]string, burst)
	for i := range emails {
		emails[i] = fmt.Sprintf("user%d@example.test", i)
		_, token, err := app.Store.CreateInvitation(ctx, in.ID, owner.ID, emails[i], extension.RoleMember)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := app.Store.AcceptInvitation(ctx, token, fmt.Sprintf("User %d", i), hash); err != nil {
			b.Fatal(err)
		}
	}

	// Webhooks go to instances of their own, one sender each: the platform sends an
	// instance's events one after another. Each sender pauses between deliveries, so
	// the four make a steady stream of about 80/s (far more than a platform sends)
	// rather than a second flood that competes for the CPUs.
	hookInstances := make([]string, 4)
	for i := range hookInstances {
		hookInstances[i] = app.Install(b, mstudiotest.InstanceSpec{}).ID
	}

	// The baseline: bare argon2id with OWASP's parameters, one hash per CPU at a time,
	// measured in each round just before the burst, as the machine is at that moment.
	p := extension.PasswordOWASP
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	bareHashesPerSec := func() float64 {
		start := time.Now()
		var hashed sync.WaitGroup
		next := make(chan struct{}, burst)
		for range burst {
			next <- struct{}{}
		}
		close(next)
		for range runtime.GOMAXPROCS(0) {
			hashed.Go(func() {
				for range next {
					argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
				}
			})
		}
		hashed.Wait()
		return burst / time.Since(start).Seconds()
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	signIn := func(i int) (retries int, err error) {
		form := url.Values{"email": {emails[i]}, "password": {password}}.Encode()
		for {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/app/"+in.ID+"/login", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", apptest.PublicURL)
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i%250+1))
			resp, err := noRedirect.Do(req)
			if err != nil {
				return retries, err
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusSeeOther && len(resp.Cookies()) == 1:
				return retries, nil
			case resp.StatusCode == http.StatusTooManyRequests:
				wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				retries++
				time.Sleep(time.Duration(max(wait, 1)) * time.Second)
			default:
				return retries, fmt.Errorf("sign-in %d: status %d", i, resp.StatusCode)
			}
		}
	}

	var signInsPerSec, baseline, webhookP99, peakRSS, startRSS, totalRetries float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		baseline += bareHashesPerSec()
		b.StartTimer()
		resetPeakRSS()
		startRSS = max(startRSS, readPeakRSSMB())
		done := make(chan struct{})
		var hooks sync.WaitGroup
		var lat []time.Duration
		var latMu sync.Mutex
		var hookErrs atomic.Int64
		for _, hooked := range hookInstances {
			hooks.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					start := time.Now()
					res, err := app.Sim.Trigger(ctx, mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: hooked})
					d := time.Since(start)
					if err != nil || !res.Successful {
						if hookErrs.Add(1) == 1 {
							b.Logf("webhook: %+v, %v", res, err)
						}
					}
					latMu.Lock()
					lat = append(lat, d)
					latMu.Unlock()
					time.Sleep(webhookPause)
				}
			})
		}
		start := time.Now()
		var signIns sync.WaitGroup
		var retries atomic.Int64
		errs := make(chan error, burst)
		for i := range burst {
			signIns.Go(func() {
				n, err := signIn(i)
				retries.Add(int64(n))
				if err != nil {
					errs <- err
				}
			})
		}
		signIns.Wait()
		elapsed := time.Since(start)
		close(done)
		hooks.Wait()
		close(errs)
		for err := range errs {
			b.Error(err)
		}
		if n := hookErrs.Load(); n > 0 {
			b.Errorf("%d webhook deliveries failed during the burst", n)
		}
		slices.Sort(lat)
		if len(lat) == 0 {
			b.Fatal("no webhook delivery during the burst")
		}
		signInsPerSec += burst / elapsed.Seconds()
		webhookP99 += float64(lat[len(lat)*99/100].Microseconds()) / 1000
		peakRSS = max(peakRSS, readPeakRSSMB())
		totalRetries += float64(retries.Load())
	}
	n := float64(b.N)
	b.ReportMetric(signInsPerSec/n, "signins/s")
	b.ReportMetric(baseline/n, "argon2id-hashes/s")
	b.ReportMetric(signInsPerSec/baseline, "ratio")
	b.ReportMetric(webhookP99/n, "webhook-p99-ms")
	b.ReportMetric(peakRSS, "peak-RSS-MB")
	// What the process held before the burst: the test's own simulator, store and data.
	b.ReportMetric(startRSS, "start-RSS-MB")
	b.ReportMetric(totalRetries/n, "429-retries/burst")
}

// resetPeakRSS starts the kernel's record of the process's peak resident set anew
// (Linux: clear_refs 5), so the peak read afterwards is that of what ran in between.
// The heap's free pages go back to the kernel first, so the peak is not the residue of
// what ran before (the baseline's hashes).
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// readPeakRSSMB reads the process's peak resident set (VmHWM) in MB; 0 where /proc is
// not there.
func readPeakRSSMB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
