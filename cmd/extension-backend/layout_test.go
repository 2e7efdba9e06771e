package main

import (
	"os/exec"
	"strings"
	"testing"
)

// mayImport is DESIGN.md's package table: what each package's non-test code may import of
// ours. Imports point down the table; edge packages never import each other.
var mayImport = map[string][]string{
	"extension":                     {"migrations"},
	"extension/mstudio":             {"extension", "migrations"},
	"extension/mstudio/mstudiotest": {"extension/mstudio", "extension", "migrations"},
	"webhooks":                      {"extension", "extension/mstudio", "migrations"},
	"atrek":                         {"extension", "extension/mstudio", "migrations"},
	"frontend":                      {"extension", "extension/mstudio", "migrations"},
	"jobs":                          {"extension", "extension/mstudio", "migrations"},
	"httpfront":                     {},
	"migrations":                    {},
}

// TestPackageLayout asks the go tool what each package is built from and fails on an
// import the table does not allow.
func TestPackageLayout(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not on PATH, so imports cannot be listed")
	}
	out, err := exec.Command(goTool, "list", "-m").Output()
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimSpace(string(out))
	for pkg, allowed := range mayImport {
		out, err := exec.Command(goTool, "list", "-deps", "../../"+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		ok := map[string]bool{pkg: true}
		for _, a := range allowed {
			ok[a] = true
		}
		for _, dep := range strings.Fields(string(out)) {
			ours, found := strings.CutPrefix(dep, module+"/")
			if found && !ok[ours] {
				t.Errorf("%s imports %s, which DESIGN.md's package table does not allow", pkg, ours)
			}
		}
	}
}
