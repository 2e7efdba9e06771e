// Package doctor owns the checks of a deployment that `extension-backend doctor` runs and
// the ops console shows: named checks, each of which reports findings of one line with a
// level (ok, warn, fail) and what to do next. The offline checks look at the
// configuration, the database and the platform's API from where the backend runs; the
// probe looks at a running endpoint from outside, as the platform and a browser reach it.
// It holds the rules of what is healthy; cmd only reads the configuration, opens the
// store and prints. Nothing here writes to the database, and no finding carries a secret.
package doctor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"unicode"
)

// Level is how bad a finding is.
type Level string

// Levels, from good to bad.
const (
	OK   Level = "ok"
	Warn Level = "warn" // works, but not as it should, or a check was skipped
	Fail Level = "fail" // broken: the deployment will lose deliveries, sign-ins or data
)

// Finding is one thing a check found: one line, and what to do about it.
type Finding struct {
	Check   string `json:"check"` // the check's name, such as "encryption-keys"
	Level   Level  `json:"level"`
	Message string `json:"message"`          // what was found, one line
	Action  string `json:"action,omitempty"` // what to do next; empty for ok
}

// Check is one named check.
type Check struct {
	Name string
	Run  func(ctx context.Context) []Finding
}

// Run runs the checks at once and returns their findings in the order of the checks. A
// check that reports nothing gets an ok line, so every check shows; a check that panics
// gets a fail line instead of taking the process with it.
func Run(ctx context.Context, checks []Check) []Finding {
	results := make([][]Finding, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					results[i] = []Finding{{Check: c.Name, Level: Fail, Message: "the check itself failed",
						Action: "report this as a bug of extension-backend"}}
				}
			}()
			results[i] = c.Run(ctx)
		}()
	}
	wg.Wait()
	var out []Finding
	for i, fs := range results {
		if len(fs) == 0 {
			fs = []Finding{{Level: OK, Message: "nothing to report"}}
		}
		for _, f := range fs {
			if f.Check == "" {
				f.Check = checks[i].Name
			}
			f.Message, f.Action = oneLine(f.Message), oneLine(f.Action)
			out = append(out, f)
		}
	}
	return out
}

// Failed reports whether any finding is a failure.
func Failed(findings []Finding) bool {
	for _, f := range findings {
		if f.Level == Fail {
			return true
		}
	}
	return false
}

// Worst is the worst level among the findings; OK for none.
func Worst(findings []Finding) Level {
	worst := OK
	for _, f := range findings {
		switch {
		case f.Level == Fail:
			return Fail
		case f.Level == Warn:
			worst = Warn
		}
	}
	return worst
}

// String is the finding as doctor prints it: level, check, message and action on one line.
func (f Finding) String() string {
	s := fmt.Sprintf("%-4s  %s: %s", f.Level, f.Check, f.Message)
	if f.Action != "" {
		s += " -> " + f.Action
	}
	return s
}

func ok(format string, args ...any) Finding {
	return Finding{Level: OK, Message: fmt.Sprintf(format, args...)}
}

func warn(action, format string, args ...any) Finding {
	return Finding{Level: Warn, Message: fmt.Sprintf(format, args...), Action: action}
}

func fail(action, format string, args ...any) Finding {
	return Finding{Level: Fail, Message: fmt.Sprintf(format, args...), Action: action}
}

// oneLine keeps a text on one printable line: control characters (a line break in an
// error of the database, an escape sequence in a probed server's answer) become spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// quote shows text from elsewhere (a probed server's answer), short and escaped.
func quote(s string, max int) string {
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "…"
	}
	return fmt.Sprintf("%q", s)
}
