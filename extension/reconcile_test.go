package extension_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// TestRecordReconcile: a run adds its findings and reports them as new; the next run
// refreshes what it finds again, resolves what it no longer finds, and a finding that
// comes back is new again; a bad finding changes nothing; a second replica sees the same.
func TestRecordReconcile(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := extensiontest.URL(t, d)
			s := extensiontest.Open(t, url, extension.Options{})
			replica := extensiontest.Open(t, url, extension.Options{})
			t0 := time.Date(2026, 3, 14, 11, 0, 0, 0, time.UTC)
			a := extension.ReconcileFinding{Kind: extension.FindingLostInstall, InstanceID: "00000000-0000-4000-8000-00000000000a", Detail: "lost"}
			b := extension.ReconcileFinding{Kind: extension.FindingHalted, InstanceID: "00000000-0000-4000-8000-00000000000b", Detail: "halted"}
			names := func(fs []extension.ReconcileFinding) []string {
				var out []string
				for _, f := range fs {
					out = append(out, string(f.Kind))
				}
				return out
			}

			fresh, resolved, err := s.RecordReconcile(ctx, []extension.ReconcileFinding{a, b, a}, t0)
			if err != nil || resolved != 0 || !slices.Equal(names(fresh), []string{"lost_install", "halted"}) {
				t.Fatalf("first run: %v, %d resolved, %v", names(fresh), resolved, err)
			}
			t1 := t0.Add(time.Minute)
			b.Detail = "halted, 21 attempts"
			fresh, resolved, err = s.RecordReconcile(ctx, []extension.ReconcileFinding{b}, t1)
			if err != nil || resolved != 1 || len(fresh) != 0 {
				t.Fatalf("second run: %v, %d resolved, %v; want none new, 1 resolved", names(fresh), resolved, err)
			}
			open, err := replica.ReconcileFindings(ctx, false)
			if err != nil || len(open) != 1 || open[0].Detail != b.Detail || !open[0].FirstSeen.Equal(t0) || !open[0].LastSeen.Equal(t1) {
				t.Fatalf("open findings on the replica: %+v, %v", open, err)
			}
			counts, err := replica.OpenFindingCounts(ctx)
			if err != nil || counts[extension.FindingHalted] != 1 || counts[extension.FindingLostInstall] != 0 || len(counts) != len(extension.FindingKinds) {
				t.Errorf("counts %v, %v", counts, err)
			}

			// Bad input changes nothing.
			if _, _, err := s.RecordReconcile(ctx, []extension.ReconcileFinding{{Kind: "sleepy", InstanceID: "x"}}, t1.Add(time.Minute)); err == nil {
				t.Error("an unknown kind was recorded")
			}
			if _, _, err := s.RecordReconcile(ctx, []extension.ReconcileFinding{{Kind: extension.FindingFailed}}, t1.Add(time.Minute)); err == nil {
				t.Error("a finding without an instance was recorded")
			}
			if again, _ := s.ReconcileFindings(ctx, false); len(again) != 1 {
				t.Errorf("refused runs changed the findings: %+v", again)
			}

			t2 := t1.Add(time.Minute)
			fresh, _, err = s.RecordReconcile(ctx, []extension.ReconcileFinding{a, b}, t2)
			if err != nil || !slices.Equal(names(fresh), []string{"lost_install"}) {
				t.Fatalf("third run: %v, %v; want the lost install new again", names(fresh), err)
			}
			all, _ := s.ReconcileFindings(ctx, true)
			for _, f := range all {
				if f.Kind == extension.FindingLostInstall && (!f.FirstSeen.Equal(t2) || !f.Open()) {
					t.Errorf("the lost install came back as %+v; want open, first seen %v", f, t2)
				}
			}

			if err := s.ResolveFinding(ctx, extension.FindingHalted, b.InstanceID, t2); err != nil {
				t.Fatal(err)
			}
			if err := s.ResolveFinding(ctx, extension.FindingHalted, b.InstanceID, t2); !errors.Is(err, extension.ErrNotFound) {
				t.Errorf("resolving twice: %v, want ErrNotFound", err)
			}
			open, _ = s.ReconcileFindings(ctx, false)
			if !slices.Equal(names(open), []string{"lost_install"}) {
				t.Errorf("open after the resolve: %v", names(open))
			}
		})
	}
}
