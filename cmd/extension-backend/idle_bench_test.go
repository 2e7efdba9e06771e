package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// The connection timeouts BenchmarkIdle starts serve with: short, so that a run takes
// seconds; give serve's defaults (10s and 2m) to measure those.
var (
	idleHeaderTimeout = flag.Duration("idle.read-header-timeout", 3*time.Second, "BenchmarkIdle: serve --read-header-timeout")
	idleKeepTimeout   = flag.Duration("idle.idle-timeout", 5*time.Second, "BenchmarkIdle: serve --idle-timeout")
)

// idleConns is how many idle connections BenchmarkIdle opens, a third of each kind.
const idleConns = 2000

// BenchmarkIdle builds the binary and starts its serve as users run it (job workers on;
// SQLite in a temp dir, and PostgreSQL in a schema of its own when EXT_TEST_POSTGRES_URL
// is set), with the simulator as its platform. After the start has settled it reports the
// process's resident memory (VmRSS: goal under 40 MB). Then it opens 2,000 connections
// that do nothing: a third send nothing, a third half a request head, a third one whole
// request and then wait, keep-alive. It reports the memory with all of them open, and for
// each kind when serve closed the last of them, as a multiple of the timeout that should
// have closed it (--read-header-timeout for the first two kinds, --idle-timeout for the
// third): 1.0 is on time. A connection still open at twice its timeout fails the run.
//
//	go test ./cmd/extension-backend -run '^$' -bench Idle -benchtime 1x
//	go test ./cmd/extension-backend -run '^$' -bench Idle -benchtime 1x -idle.read-header-timeout 10s -idle.idle-timeout 2m
func BenchmarkIdle(b *testing.B) {
	bin := buildBinary(b)
	for _, d := range extensiontest.Dialects() {
		b.Run("db="+string(d), func(b *testing.B) {
			for range b.N {
				benchIdle(b, bin, d)
			}
		})
	}
}

// buildBinary builds extension-backend into a temp dir: the process measured is the one
// users run, not the test binary.
func buildBinary(b *testing.B) string {
	b.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Skip("the go tool is not on PATH: cannot build the binary")
	}
	bin := filepath.Join(b.TempDir(), "extension-backend")
	if out, err := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func benchIdle(b *testing.B, bin string, d extension.Dialect) {
	sim, err := mstudiotest.New(mstudiotest.Options{ExtensionID: testExtensionID})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sim.Close)
	platform := httptest.NewServer(sim)
	b.Cleanup(platform.Close)

	b.StopTimer() // the start is not what is measured
	addr, pid := startServeBinary(b, bin, []string{
		"EXT_DATABASE_URL=" + extensiontest.URL(b, d),
		"EXT_ENCRYPTION_KEYS=" + base64.StdEncoding.EncodeToString(extensiontest.Key(b)),
		"EXT_EXTENSION_ID=" + testExtensionID,
		"EXT_MSTUDIO_API_URL=" + platform.URL,
	}, "--read-header-timeout", idleHeaderTimeout.String(), "--idle-timeout", idleKeepTimeout.String())
	// Settled: River elected its leader, the key caches filled, the first prune ran.
	time.Sleep(3 * time.Second)
	b.ReportMetric(rssMB(b, pid), "idle-RSS-MB")
	// The part of it that is the process's own memory, not pages of the binary's file:
	// those vary with the page cache (a binary just built maps more of itself).
	b.ReportMetric(statusMB(b, pid, "RssAnon"), "idle-anon-MB")
	b.StartTimer()

	kinds := []struct {
		name    string
		send    string // what the connection sends before it goes quiet
		timeout time.Duration
	}{
		{"silent", "", *idleHeaderTimeout},
		{"partial-head", "GET /healthz HTTP/1.1\r\nHost: backend\r\n", *idleHeaderTimeout},
		{"keep-alive", "GET /healthz HTTP/1.1\r\nHost: backend\r\n\r\n", *idleKeepTimeout},
	}
	type closed struct {
		kind     int
		lifetime time.Duration // from going quiet to closed by serve
		err      error
	}
	results := make(chan closed, idleConns)
	var opened sync.WaitGroup
	for i := range idleConns {
		k := i % len(kinds)
		opened.Add(1)
		go func() {
			quiet, c, err := openIdle(addr, kinds[k].send)
			opened.Done()
			if err != nil {
				results <- closed{kind: k, err: err}
				return
			}
			defer c.conn.Close()
			// serve closes the connection: the read ends with EOF or a reset. The local
			// deadline only stops a connection serve never closes.
			c.conn.SetReadDeadline(quiet.Add(2*kinds[k].timeout + 5*time.Second))
			_, err = io.Copy(io.Discard, c.r)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				results <- closed{kind: k, err: fmt.Errorf("still open %s after going quiet", time.Since(quiet).Round(time.Millisecond))}
				return
			}
			results <- closed{kind: k, lifetime: time.Since(quiet)}
		}()
	}
	opened.Wait()
	b.ReportMetric(rssMB(b, pid), "RSS-2000-open-MB")

	worst := make([]time.Duration, len(kinds))
	late := 0
	for range idleConns {
		r := <-results
		if r.err != nil {
			b.Errorf("%s connection: %v", kinds[r.kind].name, r.err)
			continue
		}
		worst[r.kind] = max(worst[r.kind], r.lifetime)
		if r.lifetime > kinds[r.kind].timeout+time.Second {
			late++
		}
	}
	b.StopTimer()
	for i, k := range kinds {
		b.ReportMetric(worst[i].Seconds()/k.timeout.Seconds(), k.name+"-closed-x-timeout")
	}
	b.ReportMetric(float64(late), "closed-over-1s-late")
	b.ReportMetric(rssMB(b, pid), "RSS-after-close-MB")
}

// idleConn is a connection to serve and the reader of what serve sends on it.
type idleConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// openIdle connects, sends send and, for a whole request, reads the answer; it returns
// the moment the connection went quiet.
func openIdle(addr, send string) (time.Time, idleConn, error) {
	conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return time.Time{}, idleConn{}, err
	}
	c := idleConn{conn: conn, r: bufio.NewReader(conn)}
	if send == "" {
		return time.Now(), c, nil
	}
	if _, err := io.WriteString(conn, send); err != nil {
		conn.Close()
		return time.Time{}, idleConn{}, err
	}
	if !strings.HasSuffix(send, "\r\n\r\n") {
		return time.Now(), c, nil
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /healthz: %s", resp.Status)
		}
	}
	if err != nil {
		conn.Close()
		return time.Time{}, idleConn{}, err
	}
	conn.SetReadDeadline(time.Time{})
	return time.Now(), c, nil
}

// startServeBinary runs bin serve on a free loopback port with only the given variables
// in its environment, and returns its address and process id once it listens. The
// process is stopped with SIGTERM when the benchmark ends.
func startServeBinary(b *testing.B, bin string, vars []string, flags ...string) (string, int) {
	b.Helper()
	var stdout, stderr extensiontest.LogBuffer
	cmd := exec.Command(bin, append([]string{"serve", "--addr", "127.0.0.1:0"}, flags...)...)
	cmd.Env, cmd.Stdout, cmd.Stderr = vars, &stdout, &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			b.Errorf("serve did not stop within 20s of SIGTERM")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for line := range bytes.Lines([]byte(stdout.String())) {
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "listening" {
				return l.Addr, cmd.Process.Pid
			}
		}
		select {
		case err := <-exited:
			b.Fatalf("serve exited: %v\n%s%s", err, stdout.String(), stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatalf("serve did not listen within a minute:\n%s%s", stdout.String(), stderr.String())
	return "", 0
}

// rssMB reads the resident memory of process pid, in MB (10^6 bytes).
func rssMB(b *testing.B, pid int) float64 {
	return statusMB(b, pid, "VmRSS")
}

// statusMB reads a memory field (in kB) of /proc/PID/status, in MB.
func statusMB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc to read the memory from: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatalf("%s %q: %v", field, v, err)
			}
			return float64(kb) * 1024 / 1e6
		}
	}
	b.Fatalf("/proc/PID/status has no %s", field)
	return 0
}
