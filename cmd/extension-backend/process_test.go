package main

// The real binary as its own process, for the tests that must kill it: built once, run
// with an environment of the test's own, waited for through its health route, and never
// left running after the test.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildServeBinary builds this command into a temporary folder. It is built without the
// race detector even when the tests run with it: the process under test should run at
// the speed it runs in production, and only the test's own side needs the checks.
func buildServeBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatalf("the go tool is not on PATH, so the binary cannot be built: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "extension-backend")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serveProcess is `extension-backend serve` running as a process of its own.
type serveProcess struct {
	URL  string // base URL, http://127.0.0.1:PORT
	name string
	cmd  *exec.Cmd
	log  string        // file that takes its stdout and stderr
	done chan struct{} // closed once it has exited and been reaped
}

// startServeProcess starts `bin serve` on a free loopback port with the EXT_ variables
// in vars (none from the test's environment) and returns once /readyz answers 200. The
// process is killed when the test ends, and its log's last lines are shown if the test
// failed.
func startServeProcess(t *testing.T, bin, name string, vars map[string]string) *serveProcess {
	t.Helper()
	p := &serveProcess{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "serve", "--addr", "127.0.0.1:0")
	p.cmd.Env = processEnv(vars)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = dieWithParent()
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait() //nolint:errcheck // a killed process reports its signal; the test looks at done
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s's log, last lines:\n%s", name, fileTail(p.log, 40))
		}
	})
	p.waitReady(t)
	return p
}

// processEnv is the test's environment without any EXT_ variable, plus vars.
func processEnv(vars map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EXT_") {
			env = append(env, kv)
		}
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	return env
}

// waitReady waits for the log line that names the address, then for /readyz to answer 200.
func (p *serveProcess) waitReady(t *testing.T) {
	t.Helper()
	// Generous: a start migrates the database first, on a machine busy with other tests.
	deadline := time.Now().Add(60 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready:\n%s", p.name, fileTail(p.log, 40))
		default:
		}
		if p.URL == "" {
			p.URL = listeningURL(p.log)
			continue
		}
		resp, err := http.Get(p.URL + "/readyz")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
	}
	t.Fatalf("%s was not ready within a minute:\n%s", p.name, fileTail(p.log, 40))
}

// listeningURL finds the address in serve's "listening" log line; "" until it is written.
func listeningURL(logFile string) string {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" && line.Addr != "" {
			return "http://" + line.Addr
		}
	}
	return ""
}

// exited reports whether the process has ended.
func (p *serveProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (a no-op once the process has ended) and waits until it is reaped.
func (p *serveProcess) kill() {
	p.cmd.Process.Kill() //nolint:errcheck // "process already finished" is fine
	<-p.done
}

// fileTail returns up to n last lines of a file.
func fileTail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}
