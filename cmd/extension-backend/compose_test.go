package main

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml the checks read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
}

type composeService struct {
	Image       string       `yaml:"image"`
	Build       any          `yaml:"build"` // "." or {context: .}
	Command     []string     `yaml:"command"`
	Environment composeEnv   `yaml:"environment"`
	Ports       []string     `yaml:"ports"`
	Volumes     []string     `yaml:"volumes"`
	Secrets     []string     `yaml:"secrets"`
	DependsOn   composeNames `yaml:"depends_on"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

// composeEnv is a service's environment in either of compose's forms: a map, or a list
// of NAME=value.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	*e = composeEnv{}
	if n.Kind == yaml.SequenceNode {
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		for _, kv := range list {
			name, value, _ := strings.Cut(kv, "=")
			(*e)[name] = value
		}
		return nil
	}
	return n.Decode((*map[string]string)(e))
}

// composeNames are the service names of depends_on in either of compose's forms: a list,
// or a map from name to condition.
type composeNames []string

func (c *composeNames) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.SequenceNode {
		return n.Decode((*[]string)(c))
	}
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	for name := range m {
		*c = append(*c, name)
	}
	return nil
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

// composeBackend returns the service built from this repository.
func composeBackend(t *testing.T, f composeFile) (string, composeService) {
	t.Helper()
	for name, s := range f.Services {
		if s.Build == "." || s.Build == "./" {
			return name, s
		}
		if m, ok := s.Build.(map[string]any); ok && (m["context"] == "." || m["context"] == "./") {
			return name, s
		}
	}
	t.Fatal("docker-compose.yml has no service built from this repository (build: .)")
	return "", composeService{}
}

// configVariables are the variables the configuration reads, with NAME_FILE for every
// secret: loadConfig asks for each of them whatever it finds, so recording what it asks
// for is the list, with nothing to keep in step by hand.
func configVariables(t *testing.T) []string {
	t.Helper()
	var read []string
	getenv := func(name string) string {
		if !slices.Contains(read, name) {
			read = append(read, name)
		}
		return ""
	}
	if _, err := loadConfig(getenv, needs{}); err != nil {
		t.Fatal(err)
	}
	return read
}

// runtimeVariables are read by the Go runtime (and GOMEMLIMIT by serve, see memlimit.go),
// not by the configuration; a compose file may set them.
var runtimeVariables = []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG", "TZ"}

// The compose file's backend sets only variables that the binary reads, spelled as it
// reads them, and with them serve's configuration loads: every required one is there
// and every value passes the checks serve makes at start. Secrets given as NAME_FILE
// point at a compose secret of the service. The checks themselves are tried on broken
// copies of the file.
func TestComposeEnvironmentIsConfiguration(t *testing.T) {
	if problems := composeEnvProblems(t, readCompose(t)); len(problems) > 0 {
		t.Errorf("docker-compose.yml:\n%s", strings.Join(problems, "\n"))
	}
	for _, tt := range []struct {
		name   string
		change func(env composeEnv)
		want   string
	}{
		{"misspelt", func(env composeEnv) {
			env["EXT_EXTENSON_ID"] = env["EXT_EXTENSION_ID"]
			delete(env, "EXT_EXTENSION_ID")
		},
			"sets EXT_EXTENSON_ID, which extension-backend does not read (nearest it reads: EXT_EXTENSION_ID)"},
		{"unknown", func(env composeEnv) { env["EXT_WORKERS"] = "4" }, "sets EXT_WORKERS, which"},
		{"required missing", func(env composeEnv) { delete(env, "EXT_ENCRYPTION_KEYS_FILE") }, "EXT_ENCRYPTION_KEYS: required"},
		{"invalid", func(env composeEnv) { env["EXT_PUBLIC_URL"] = "http://extension.example" }, "EXT_PUBLIC_URL:"},
		{"secret not listed", func(env composeEnv) { env["EXT_ENCRYPTION_KEYS_FILE"] = "/run/secrets/other" }, "names secret other"},
		{"sqlite", func(env composeEnv) { env["EXT_DATABASE_URL"] = "sqlite:data/extension.db" }, "takes PostgreSQL"},
		{"no trusted proxy", func(env composeEnv) { delete(env, "EXT_TRUSTED_PROXIES") }, "EXT_TRUSTED_PROXIES is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := readCompose(t)
			name, _ := composeBackend(t, f)
			tt.change(f.Services[name].Environment)
			problems := composeEnvProblems(t, f)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("got problems %q, want one with %q", problems, tt.want)
			}
		})
	}
}

// composeEnvProblems checks the backend service's environment against the configuration.
func composeEnvProblems(t *testing.T, f composeFile) []string {
	t.Helper()
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	name, backend := composeBackend(t, f)
	if !slices.Contains(backend.Command, "serve") {
		problem("service %s runs %q, want serve", name, backend.Command)
	}
	known := configVariables(t)
	for v := range backend.Environment {
		if !slices.Contains(known, v) && !slices.Contains(runtimeVariables, v) {
			problem("service %s sets %s, which extension-backend does not read (nearest it reads: %s)", name, v, nearest(v, known))
		}
	}

	// serve's configuration from the compose file's values; a secret file is one with a
	// sample value in its place, as the compose file names the path inside the container.
	samples := map[string]string{
		"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(extensiontest.Key(t)),
		"EXT_DATABASE_URL":    "postgres://extension:extension@postgres:5432/extension",
	}
	vars := map[string]string{}
	for v, value := range backend.Environment {
		secret, isFile := strings.CutSuffix(v, "_FILE")
		if !isFile || !slices.Contains(known, v) {
			vars[v] = value
			continue
		}
		secretName, ok := strings.CutPrefix(value, "/run/secrets/")
		switch {
		case !ok:
			problem("%s=%s: want a compose secret's path, /run/secrets/NAME", v, value)
			continue
		case !slices.Contains(backend.Secrets, secretName):
			problem("%s names secret %s, which service %s does not list under secrets", v, secretName, name)
		case f.Secrets[secretName].File == "":
			problem("%s names secret %s, which the compose file does not define with a file", v, secretName)
		}
		sample, ok := samples[secret]
		if !ok {
			problem("%s: this test has no sample value for %s; add one", v, secret)
			continue
		}
		file := filepath.Join(t.TempDir(), secretName)
		if err := os.WriteFile(file, []byte(sample+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		vars[v] = file
	}
	cfg, err := loadConfig(env(vars), needs{keys: true, extensionID: true})
	if err != nil {
		problem("serve would not start with service %s's environment: %v", name, err)
		return problems
	}
	if d, _, _ := extension.ParseDatabaseURL(cfg.DatabaseURL.Reveal()); d != extension.Postgres {
		problem("EXT_DATABASE_URL is %s: replicas share the database, which takes PostgreSQL", d)
	}
	if len(cfg.TrustedProxies) == 0 {
		problem("EXT_TRUSTED_PROXIES is empty: behind the proxy every client would share the proxy's rate budgets")
	}
	return problems
}

// The compose file runs at least two replicas of the backend, which publish no port of
// their own, behind a proxy service that publishes one and sends to every replica on
// the port they listen on, with a keep-alive shorter than their idle timeout. The checks
// themselves are tried on broken copies of the files.
func TestComposeReplicasBehindProxy(t *testing.T) {
	f := readCompose(t)
	caddyfile, err := os.ReadFile("../../Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if problems := composeProxyProblems(t, f, string(caddyfile)); len(problems) > 0 {
		t.Errorf("docker-compose.yml and Caddyfile:\n%s", strings.Join(problems, "\n"))
	}
	for _, tt := range []struct {
		name      string
		change    func(backend *composeService)
		caddyfile func(string) string
		want      string
	}{
		{name: "one replica", change: func(b *composeService) { b.Deploy.Replicas = 1 }, want: "deploy.replicas 1"},
		{name: "port of its own", change: func(b *composeService) { b.Ports = []string{"8080:8080"} }, want: "cannot share a host port"},
		{name: "other port", change: func(b *composeService) { b.Environment["EXT_ADDR"] = ":9090" }, want: "want every replica of backend on 9090"},
		{name: "Caddy's keepalive", caddyfile: func(c string) string { return strings.Replace(c, "keepalive 60s", "keepalive 2m", 1) },
			want: "want less than the backend's idle timeout"},
		{name: "one upstream", caddyfile: func(c string) string { return strings.Replace(c, "dynamic a backend 8080", "to backend:8080", 1) },
			want: "no `dynamic a SERVICE PORT` upstream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := readCompose(t)
			c := string(caddyfile)
			if tt.change != nil {
				name, backend := composeBackend(t, f)
				tt.change(&backend)
				f.Services[name] = backend
			}
			if tt.caddyfile != nil {
				c = tt.caddyfile(c)
			}
			problems := composeProxyProblems(t, f, c)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("got problems %q, want one with %q", problems, tt.want)
			}
		})
	}
	t.Run("docker compose config", func(t *testing.T) {
		if _, err := exec.LookPath("docker"); err != nil {
			t.Skip("no docker client on PATH: docker compose config not run")
		}
		if err := exec.Command("docker", "compose", "version").Run(); err != nil {
			t.Skip("the docker client has no compose plugin: docker compose config not run")
		}
		// In a copy beside a key file of its own: the compose file names one.
		dir := t.TempDir()
		for _, file := range []string{"docker-compose.yml", "Caddyfile", "Dockerfile"} {
			data, err := os.ReadFile(filepath.Join("../..", file))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range f.Secrets {
			if err := os.WriteFile(filepath.Join(dir, s.File), []byte(base64.StdEncoding.EncodeToString(extensiontest.Key(t))+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command("docker", "compose", "config", "--quiet")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker compose config: %v\n%s", err, out)
		}
	})
}

// composeProxyProblems checks the replicas and the proxy in front of them.
func composeProxyProblems(t *testing.T, f composeFile, caddyfile string) []string {
	t.Helper()
	var problems []string
	problem := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	name, backend := composeBackend(t, f)
	if backend.Deploy.Replicas < 2 {
		problem("service %s has deploy.replicas %d, want at least 2", name, backend.Deploy.Replicas)
	}
	if len(backend.Ports) > 0 {
		problem("service %s publishes %v: replicas cannot share a host port; the proxy publishes it", name, backend.Ports)
	}
	_, listenPort, err := net.SplitHostPort(backend.Environment["EXT_ADDR"])
	if err != nil {
		problem("service %s: EXT_ADDR %q: %v", name, backend.Environment["EXT_ADDR"], err)
	}
	var proxy composeService
	var proxyName string
	for n, s := range f.Services {
		for _, v := range s.Volumes {
			if strings.HasPrefix(v, "./Caddyfile:") {
				proxy, proxyName = s, n
			}
		}
	}
	if proxyName == "" {
		problem("no service mounts ./Caddyfile: the replicas have no proxy in front")
		return problems
	}
	if !strings.HasPrefix(proxy.Image, "caddy:") || len(proxy.Ports) != 1 {
		problem("proxy %s: image %q, ports %v; want the official caddy image publishing one port", proxyName, proxy.Image, proxy.Ports)
		return problems
	}
	if !slices.Contains(proxy.DependsOn, name) {
		problem("proxy %s does not depend on %s", proxyName, name)
	}
	if m := regexp.MustCompile(`(?m)^\s*dynamic a (\S+) (\d+)`).FindStringSubmatch(caddyfile); m == nil {
		problem("the Caddyfile has no `dynamic a SERVICE PORT` upstream: one name would be one replica")
	} else if m[1] != name || m[2] != listenPort {
		problem("the Caddyfile proxies to %s:%s, want every replica of %s on %s", m[1], m[2], name, listenPort)
	}
	// HOST:CONTAINER or IP:HOST:CONTAINER: Caddy listens on the container's port.
	target := proxy.Ports[0][strings.LastIndex(proxy.Ports[0], ":")+1:]
	if !regexp.MustCompile(`(?m)^:` + regexp.QuoteMeta(target) + ` \{`).MatchString(caddyfile) {
		problem("the proxy publishes %s, but the Caddyfile does not listen on :%s", proxy.Ports[0], target)
	}
	keepalive := regexp.MustCompile(`(?m)^\s*keepalive (\S+)`).FindStringSubmatch(caddyfile)
	if keepalive == nil {
		problem("the Caddyfile sets no keepalive: Caddy's default (2m) is the backend's idle timeout, %s, and the two race", defaultConnTimeouts.idle)
	} else if d, err := time.ParseDuration(keepalive[1]); err != nil || d >= defaultConnTimeouts.idle {
		problem("the Caddyfile keeps idle connections %s, want less than the backend's idle timeout %s", keepalive[1], defaultConnTimeouts.idle)
	}
	return problems
}

// nearest returns the name in names closest to s by edit distance: the likely spelling
// of a misspelt variable.
func nearest(s string, names []string) string {
	best, bestDist := "", -1
	for _, n := range names {
		if d := editDistance(s, n); bestDist < 0 || d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
