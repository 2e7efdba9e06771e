package main

// doctor as an operator runs it: the real binary, against the real binary's serve behind
// a TLS proxy (the operator's Caddy), with the platform simulator over HTTP.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/doctor"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// tlsFront is an https reverse proxy on loopback in front of a backend started later,
// sending Strict-Transport-Security as an operator's TLS proxy would.
type tlsFront struct {
	*httptest.Server
	target atomic.Pointer[url.URL]
}

func newTLSFront(t *testing.T) *tlsFront {
	t.Helper()
	f := &tlsFront{}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(f.target.Load())
			r.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Header.Set("Strict-Transport-Security", "max-age=31536000")
			return nil
		},
	}
	f.Server = httptest.NewTLSServer(proxy)
	t.Cleanup(f.Close)
	return f
}

func (f *tlsFront) to(backend string) {
	u, err := url.Parse(backend)
	if err != nil {
		panic(err)
	}
	f.target.Store(u)
}

// trustFile writes the certificate of the test TLS servers (httptest uses one for all)
// to a PEM file, for SSL_CERT_FILE, and returns a client that trusts it too.
func trustFile(t *testing.T, srv *httptest.Server) (string, *http.Client) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "test-ca.pem")
	der := srv.Certificate().Raw
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return file, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// runDoctorProcess runs `bin doctor args…` with vars as its whole EXT_ environment (and
// SSL_CERT_FILE to trust the test proxies), in an empty folder, and returns its stdout and
// exit status.
func runDoctorProcess(t *testing.T, bin, caFile string, vars map[string]string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"doctor"}, args...)...)
	cmd.Env = append(processEnv(vars), "SSL_CERT_FILE="+caFile)
	cmd.Dir = t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("doctor %s:\n%s", strings.Join(args, " "), stdout.String())
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return stdout.String(), exit.ExitCode()
	case err != nil:
		t.Fatalf("doctor: %v\n%s", err, stderr.String())
	}
	return stdout.String(), 0
}

// lines returns the lines of out that start with the level and name the check.
func lines(out string, level doctor.Level, check string) []string {
	var found []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, string(level)) && strings.Contains(l, "  "+check+": ") {
			found = append(found, l)
		}
	}
	return found
}

// wantLine fails the test unless out has a line of the level and check that contains
// every one of the texts.
func wantLine(t *testing.T, out string, level doctor.Level, check string, texts ...string) {
	t.Helper()
	for _, l := range lines(out, level, check) {
		all := true
		for _, s := range texts {
			all = all && strings.Contains(l, s)
		}
		if all {
			return
		}
	}
	t.Errorf("no %s line of %s with %q in:\n%s", level, check, texts, out)
}

// TestDoctorProbe runs doctor --probe against serve processes behind an https proxy: a
// healthy one passes with nothing to warn about; one with a foreign extension id, one
// that checks signatures with another simulator's keys (a "broken key": every genuine
// delivery fails) and one whose EXT_PUBLIC_URL is http each get a failure naming the
// fault, and exit status 1. Offline, doctor reports a database whose secrets the
// configured encryption key cannot open, naming the key id, and an http public URL.
func TestDoctorProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the binary: not in -short")
	}
	bin := buildServeBinary(t)
	fronts := map[string]*tlsFront{}
	for _, name := range []string{"healthy", "foreign", "broken-key", "http-public-url"} {
		fronts[name] = newTLSFront(t)
	}
	caFile, trusting := trustFile(t, fronts["healthy"].Server)

	dir := t.TempDir()
	keyFileA := filepath.Join(dir, "a", "simulator-keys.json")
	simA := apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID, KeyFile: keyFileA,
		SecretActivationDelay: -1, HTTPClient: trusting})
	simB := apptest.NewPlatform(t, mstudiotest.Options{ExtensionID: testExtensionID,
		KeyFile: filepath.Join(dir, "b", "simulator-keys.json"), SecretActivationDelay: -1})
	key := extensiontest.Key(t)
	serveVars := func(t *testing.T, front *tlsFront) map[string]string {
		return map[string]string{
			"EXT_DATABASE_URL":    "sqlite:" + filepath.Join(t.TempDir(), "extension.db"),
			"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(key),
			"EXT_EXTENSION_ID":    testExtensionID,
			"EXT_CONTRIBUTOR_ID":  simA.Sim.ContributorID(),
			"EXT_MSTUDIO_API_URL": simA.SimURL,
			"EXT_PUBLIC_URL":      front.URL,
			"EXT_TRUSTED_PROXIES": "127.0.0.1",
			"EXT_LOG_LEVEL":       "info", // startServeProcess reads the address off its "listening" line
		}
	}
	// doctor's own configuration: the platform and extension the endpoint should serve,
	// and a contributor member's token for the platform's dry run.
	doctorVars := func(serve map[string]string) map[string]string {
		v := map[string]string{}
		for k, val := range serve {
			v[k] = val
		}
		v["EXT_EXTENSION_ID"], v["EXT_MSTUDIO_API_URL"] = testExtensionID, simA.SimURL
		v["EXT_CONTRIBUTOR_TOKEN"] = simA.Sim.ContributorToken()
		return v
	}
	start := func(t *testing.T, name string, change func(map[string]string)) (map[string]string, *tlsFront) {
		front := fronts[name]
		vars := serveVars(t, front)
		if change != nil {
			change(vars)
		}
		p := startServeProcess(t, bin, name, vars)
		front.to(p.URL)
		// The platform calls the endpoint under test (its dry run included).
		simA.Sim.SetWebhookURL(front.URL + "/mstudio/webhooks")
		return vars, front
	}

	t.Run("healthy", func(t *testing.T) {
		vars, front := start(t, "healthy", nil)
		install(t, front.URL, simA, uuid.NewString()) // a secret sealed in its database
		dv := doctorVars(vars)
		out, code := runDoctorProcess(t, bin, caFile, dv, "--probe", front.URL, "--key-file", keyFileA)
		if code != 0 || !strings.Contains(out, " 0 warnings, 0 failures") {
			t.Errorf("exit %d, want 0 with no warning:\n%s", code, out)
		}
		wantLine(t, out, doctor.OK, "encryption-keys", "every stored secret opens", extension.KeyID(key))
		wantLine(t, out, doctor.OK, "endpoint-config", "EXT_PUBLIC_URL is "+front.URL)
		wantLine(t, out, doctor.OK, "endpoint-config", "configured for extension "+testExtensionID)
		wantLine(t, out, doctor.OK, "tampered-delivery", "altered after signing", "refused with 401")
		wantLine(t, out, doctor.OK, "foreign-delivery", "refused with 403")
		wantLine(t, out, doctor.OK, "platform-dry-run", "answered 200")
		wantLine(t, out, doctor.OK, "sso-page", "with an HTML page")
		wantLine(t, out, doctor.OK, "security-headers", "Content-Security-Policy")
		wantLine(t, out, doctor.OK, "security-headers", "Strict-Transport-Security")
		if !regexp.MustCompile(`ok    dry-run: a dry run signed with the key file .* answered 200 in [0-9.]+m?s `).MatchString(out) {
			t.Errorf("no timed dry run in:\n%s", out)
		}
		if strings.Contains(out, dv["EXT_CONTRIBUTOR_TOKEN"]) || strings.Contains(out, dv["EXT_ENCRYPTION_KEYS"]) {
			t.Errorf("a secret is in the output:\n%s", out)
		}

		// The same as JSON, from outside (no offline checks).
		out, code = runDoctorProcess(t, bin, caFile, dv, "--probe", front.URL+"/mstudio/webhooks", "--probe-only", "--key-file", keyFileA, "--json")
		var findings []doctor.Finding
		if err := json.Unmarshal([]byte(out), &findings); err != nil || code != 0 {
			t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
		}
		checks := map[string]bool{}
		for _, f := range findings {
			checks[f.Check] = true
			if f.Level != doctor.OK {
				t.Errorf("--json: %+v", f)
			}
		}
		if checks["database"] || !checks["dry-run"] || !checks["sso-page"] {
			t.Errorf("--probe-only ran %v, want the probe's checks only", checks)
		}

		// Offline, with another encryption key than the one that sealed its secrets: the
		// database is refused, by key id.
		other := extensiontest.Key(t)
		dv["EXT_ENCRYPTION_KEYS"] = base64.StdEncoding.EncodeToString(other)
		out, code = runDoctorProcess(t, bin, caFile, dv)
		if code != 1 {
			t.Errorf("another encryption key: exit %d, want 1", code)
		}
		wantLine(t, out, doctor.Fail, "encryption-keys", "sealed with key id "+extension.KeyID(key), extension.KeyID(other))
		if strings.Contains(out, dv["EXT_ENCRYPTION_KEYS"]) || strings.Contains(out, vars["EXT_ENCRYPTION_KEYS"]) {
			t.Errorf("a key is in the output:\n%s", out)
		}
	})

	t.Run("foreign extension id", func(t *testing.T) {
		foreign := uuid.NewString()
		vars, front := start(t, "foreign", func(v map[string]string) { v["EXT_EXTENSION_ID"] = foreign })
		out, code := runDoctorProcess(t, bin, caFile, doctorVars(vars), "--probe", front.URL, "--probe-only", "--key-file", keyFileA)
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, doctor.Fail, "endpoint-config", "configured for extension \""+foreign+"\", not "+testExtensionID)
		wantLine(t, out, doctor.Fail, "dry-run", "refused with 403", "EXT_EXTENSION_ID")
		wantLine(t, out, doctor.Fail, "platform-dry-run", "refused with 403")
	})

	t.Run("broken key", func(t *testing.T) {
		// The endpoint fetches its webhook keys from simulator B, while A signs.
		vars, front := start(t, "broken-key", func(v map[string]string) { v["EXT_MSTUDIO_API_URL"] = simB.SimURL })
		out, code := runDoctorProcess(t, bin, caFile, doctorVars(vars), "--probe", front.URL, "--probe-only", "--key-file", keyFileA)
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, doctor.Fail, "dry-run", "refused with 401", "another platform's keys", "EXT_MSTUDIO_API_URL")
		wantLine(t, out, doctor.Fail, "platform-dry-run", "refused with 401")
		wantLine(t, out, doctor.Warn, "endpoint-config", "sign in at "+simB.SimURL)
		wantLine(t, out, doctor.OK, "tampered-delivery", "refused with 401")
	})

	t.Run("http public URL", func(t *testing.T) {
		// Reached over https, but its links and cookies are built for plain http (serve
		// takes http only on loopback, so an operator who left the default gets this).
		httpURL := "http://127.0.0.1:8080"
		vars, front := start(t, "http-public-url", func(v map[string]string) { v["EXT_PUBLIC_URL"] = httpURL })
		out, code := runDoctorProcess(t, bin, caFile, doctorVars(vars), "--probe", front.URL, "--probe-only", "--key-file", keyFileA)
		if code != 1 {
			t.Errorf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, doctor.Fail, "endpoint-config", "EXT_PUBLIC_URL "+httpURL, "reached at "+front.URL)

		// Offline, an http public URL on a public host, which serve would refuse.
		dv := doctorVars(vars)
		dv["EXT_PUBLIC_URL"] = "http://ext.example.com"
		out, code = runDoctorProcess(t, bin, caFile, dv)
		if code != 1 {
			t.Errorf("offline: exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, doctor.Fail, "public-url", "http on a public host")
	})
}

// doctor in-process, as the tests start every command: what it says when the
// configuration is missing or wrong, that it creates no database, and which probe checks
// it skips (warnings, not failures) without a simulator key or a contributor token.
func TestDoctorWithout(t *testing.T) {
	dir := t.TempDir()
	dbFile := filepath.Join(dir, "none", "extension.db")
	out, _, err := runCmd(map[string]string{"EXT_DATABASE_URL": "sqlite:" + dbFile, "EXT_MSTUDIO_API_URL": "http://127.0.0.1:1"}, "doctor")
	if !errors.Is(err, errDoctorFailed) || exitCode(err) != 1 {
		t.Errorf("nothing configured: got %v, want exit 1", err)
	}
	wantLine(t, out, doctor.Fail, "extension-id", "EXT_EXTENSION_ID is not set")
	wantLine(t, out, doctor.Fail, "encryption-keys", "EXT_ENCRYPTION_KEYS is not set")
	wantLine(t, out, doctor.Warn, "database", "does not exist yet")
	wantLine(t, out, doctor.Warn, "public-url", "http://127.0.0.1:8080")
	wantLine(t, out, doctor.Fail, "platform-api", "does not answer")
	if _, err := os.Stat(filepath.Dir(dbFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("doctor created %s (or its folder): %v", dbFile, err)
	}

	const password = "hunter2-smtp-password"
	out, _, err = runCmd(map[string]string{"EXT_SMTP_URL": "http://mailer:" + password + "@mail.example.com"}, "doctor")
	if exitCode(err) != 1 || strings.Contains(out, password) {
		t.Errorf("bad SMTP URL: got %v and\n%s", err, out)
	}
	wantLine(t, out, doctor.Fail, "configuration", "EXT_SMTP_URL")

	for _, args := range [][]string{{"doctor", "--probe-only"}, {"doctor", "extra"}, {"doctor", "--probe", "ftp://x"}} {
		if _, _, err := runCmd(map[string]string{}, args...); exitCode(err) != 2 {
			t.Errorf("%v: got %v, want a usage error", args, err)
		}
	}

	// A serve on plain http, probed without a simulator key (not its simulator's default
	// file in ./data: the test's folder has none) and without a contributor token.
	p := newPlatform(t)
	vars := testEnv(t, p.SimURL)
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port to name in EXT_PUBLIC_URL before serve listens
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	vars["EXT_PUBLIC_URL"] = "http://" + addr
	base, _, _ := startServe(t, vars, "--addr", addr)
	out, _, err = runCmd(vars, "doctor", "--probe", base, "--probe-only")
	if err != nil {
		t.Errorf("probe without a key: got %v, want exit 0 (skipped checks warn)\n%s", err, out)
	}
	wantLine(t, out, doctor.Warn, "endpoint-url", "only this machine reaches it")
	wantLine(t, out, doctor.OK, "tampered-delivery", "the platform's current serial", "refused with 401")
	wantLine(t, out, doctor.Warn, "foreign-delivery", "skipped", "--key-file")
	wantLine(t, out, doctor.Warn, "dry-run", "skipped")
	wantLine(t, out, doctor.Warn, "platform-dry-run", "skipped", "EXT_CONTRIBUTOR_TOKEN")
	wantLine(t, out, doctor.OK, "sso-page", "with an HTML page")
	if len(lines(out, doctor.OK, "security-headers")) != 1 {
		t.Errorf("want one ok line of security headers (no HSTS line on http):\n%s", out)
	}
}
