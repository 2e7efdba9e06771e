package mstudiotest

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// edgePackages are the folders of the backend's edge: the HTTP handlers, the job workers
// and the command. The simulator is the platform's side, so it may use the platform's
// client and the domain, never them: a simulator that imports the webhook handler would
// test that handler against itself, and drags Echo into every tool built on it.
var edgePackages = []string{"webhooks", "atrek", "frontend", "jobs", "httpfront", "apptest", "cmd"}

// TestImportsNoEdgePackage asks the go tool for everything the simulator's non-test code
// is built from, and fails on any edge package among it.
func TestImportsNoEdgePackage(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH, so the simulator's imports cannot be listed")
	}
	module := goOutput(t, goTool, "list", "-m")
	deps := strings.Fields(goOutput(t, goTool, "list", "-deps", "."))
	self := module + "/extension/mstudio/mstudiotest"
	if len(deps) == 0 || deps[len(deps)-1] != self {
		t.Fatalf("go list -deps . did not end with %s (got %d packages): the test ran elsewhere", self, len(deps))
	}
	for _, dep := range deps {
		for _, edge := range edgePackages {
			if dep == module+"/"+edge || strings.HasPrefix(dep, module+"/"+edge+"/") {
				t.Errorf("the simulator depends on edge package %s; it may use only extension/mstudio and what that imports", dep)
			}
		}
	}
}

func goOutput(t *testing.T, goTool string, args ...string) string {
	t.Helper()
	out, err := exec.Command(goTool, args...).Output()
	if err != nil {
		var stderr string
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}
