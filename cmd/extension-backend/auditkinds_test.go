package main

import (
	"slices"
	"testing"

	"github.com/extension-backend/extension-backend/frontend"
	"github.com/extension-backend/extension-backend/jobs"
)

// The audit page describes the kinds of events the jobs write (the frontend may not
// import jobs, so it spells them itself).
func TestAuditPageKnowsJobKinds(t *testing.T) {
	for _, k := range []string{jobs.AuditActionStarted, jobs.AuditActionEnded} {
		if !slices.Contains(frontend.AuditKinds(), k) {
			t.Errorf("the audit page does not describe the jobs' kind %q", k)
		}
	}
}
