package main

import (
	"os/exec"
	"strings"
	"testing"
)

// mayImport is DESIGN.md's package table, by direct import of the non-test code: imports
// point down the table, and the edge packages (webhooks, atrek, frontend, jobs) never
// import each other. httpfront, the HTTP front, imports nothing of ours; doctor, the
// checks of a deployment, only the domain, the platform client and the migrations;
// extensiontest, apptest and apptest/browsertest are test support that only tests
// import. A package of ours that is not listed fails the test, so a new one is placed on
// purpose.
var mayImport = map[string][]string{
	"migrations":                    {},
	"extension":                     {"migrations"},
	"extension/mstudio":             {"extension"},
	"extension/mstudio/mstudiotest": {"extension/mstudio"},
	"webhooks":                      {"extension", "extension/mstudio"},
	"atrek":                         {"extension", "extension/mstudio"},
	"frontend":                      {"extension", "extension/mstudio"},
	"jobs":                          {"extension", "extension/mstudio"},
	"httpfront":                     {},
	"doctor":                        {"migrations", "extension", "extension/mstudio"},
	"cmd/extension-backend": {"migrations", "extension", "extension/mstudio", "extension/mstudio/mstudiotest",
		"webhooks", "atrek", "frontend", "jobs", "httpfront", "doctor"},
	"extension/extensiontest": {"extension", "migrations"},
	"apptest": {"extension", "extension/extensiontest", "extension/mstudio", "extension/mstudio/mstudiotest",
		"frontend", "httpfront"},
	"apptest/browsertest": {},
}

// TestPackageLayout asks the go tool what each package of ours imports and fails on an
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
	out, err = exec.Command(goTool, "list", "-f", `{{.ImportPath}}:{{join .Imports " "}}`, "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, imports, _ := strings.Cut(line, ":")
		pkg := strings.TrimPrefix(path, module+"/")
		allowed, known := mayImport[pkg]
		if !known {
			t.Errorf("package %s is not in the layout table: place it in DESIGN.md's table and here", pkg)
			continue
		}
		seen++
		ok := map[string]bool{}
		for _, a := range allowed {
			ok[a] = true
		}
		for _, imp := range strings.Fields(imports) {
			if ours, found := strings.CutPrefix(imp, module+"/"); found && !ok[ours] {
				t.Errorf("%s imports %s, which the layout does not allow", pkg, ours)
			}
		}
	}
	if seen != len(mayImport) {
		t.Errorf("go list found %d of the %d packages in the table", seen, len(mayImport))
	}
}
