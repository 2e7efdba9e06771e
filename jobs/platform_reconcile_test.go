package jobs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// answering is a webhook receiver that answers every delivery with status and keeps
// nothing: a backend that lost what it acknowledged, or one that refuses.
func answering(t *testing.T, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// platformScenario sets up, through the simulator and the real webhook path, one healthy
// instance, a lost install, a missed removal and a halted execution, and returns their ids.
type platformScenario struct{ healthy, lost, removed, halted string }

func setUpPlatformScenario(t *testing.T, en *env) platformScenario {
	t.Helper()
	ctx := context.Background()
	var sc platformScenario
	sc.healthy = en.install(t, mstudiotest.CallRequest{})

	// The install reached a backend that answered 2xx and kept nothing.
	en.Sim.SetWebhookURL(answering(t, http.StatusNoContent))
	res, err := en.Sim.Trigger(ctx, mstudiotest.CallExtensionAddedToContext, mstudiotest.CallRequest{})
	if err != nil || !res.Successful {
		t.Fatalf("lost install: %+v, %v", res, err)
	}
	sc.lost = res.InstanceID
	en.Sim.SetWebhookURL(en.Backend)

	// The removal went the same way.
	sc.removed = en.install(t, mstudiotest.CallRequest{})
	en.Sim.SetWebhookURL(answering(t, http.StatusNoContent))
	if res, err := en.Sim.Trigger(ctx, mstudiotest.CallInstanceRemovedFromContext, mstudiotest.CallRequest{ExtensionInstanceID: sc.removed}); err != nil || !res.Successful {
		t.Fatalf("missed removal: %+v, %v", res, err)
	}
	en.Sim.SetWebhookURL(en.Backend)

	// An update refused until the platform halts the instance's webhooks.
	sc.halted = en.install(t, mstudiotest.CallRequest{})
	en.Sim.SetWebhookURL(answering(t, http.StatusBadGateway))
	if _, err := en.Sim.Trigger(ctx, mstudiotest.CallInstanceUpdated, mstudiotest.CallRequest{ExtensionInstanceID: sc.halted}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the update to halt", 15*time.Second, func() bool {
		halted, _ := en.Sim.WebhookStatus(sc.halted)
		return halted
	})
	// Our endpoint is mended: a resume reaches it.
	en.Sim.SetWebhookURL(en.Backend)
	return sc
}

func newTestReconciler(t *testing.T, en *env, token string, reg prometheus.Registerer) (*mstudio.Reconciler, error) {
	t.Helper()
	return mstudio.NewReconciler(mstudio.ReconcilerConfig{
		Client: en.Client, Store: en.Store, Token: extension.Secret(token),
		ContributorID: en.Sim.ContributorID(), ExtensionID: en.Sim.ExtensionID(),
		Logger: en.Logger, Registerer: reg,
	})
}

func findingsOf(fs []extension.ReconcileFinding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Kind)+" "+f.InstanceID)
	}
	slices.Sort(out)
	return out
}

// TestPlatformReconcile: a lost install, a missed removal and a halted execution are all
// found over HTTP against the simulator, and nothing about the healthy instance; the
// resume reaches the simulator exactly once and the halted webhook then reaches us; the
// next run resolves the halted finding; no token reaches the log.
func TestPlatformReconcile(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 0, noStart: true})
			ctx := context.Background()
			sc := setUpPlatformScenario(t, en)
			reg := prometheus.NewRegistry()
			rec, err := newTestReconciler(t, en, en.Sim.ContributorToken(), reg)
			if err != nil {
				t.Fatal(err)
			}

			rep, err := rec.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"halted " + sc.halted, "lost_install " + sc.lost, "missed_removal " + sc.removed,
			}
			slices.Sort(want)
			if got := findingsOf(rep.Findings); !slices.Equal(got, want) {
				t.Errorf("findings %v, want %v", got, want)
			}
			if got := findingsOf(rep.New); !slices.Equal(got, want) {
				t.Errorf("new findings %v, want %v", got, want)
			}
			stored, err := en.Store.ReconcileFindings(ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := findingsOf(stored); !slices.Equal(got, want) {
				t.Errorf("stored findings %v, want %v", got, want)
			}
			for _, l := range rep.Lines() {
				if !strings.Contains(l, "instance ") || !strings.Contains(l, "; ") {
					t.Errorf("report line %q: want the instance and what to do", l)
				}
			}
			for kind, n := range map[string]float64{"lost_install": 1, "missed_removal": 1, "halted": 1, "failed": 0} {
				if got := metricValue(t, reg, "extension_reconcile_findings", "kind", kind); got != n {
					t.Errorf("extension_reconcile_findings{kind=%q} = %v, want %v", kind, got, n)
				}
			}

			// A second run finds the same, and nothing new.
			rep2, err := rec.Reconcile(ctx)
			if err != nil || len(rep2.New) != 0 || len(rep2.Findings) != 3 {
				t.Errorf("second run: %d findings, %d new, %v; want 3, 0", len(rep2.Findings), len(rep2.New), err)
			}

			outcomes := rec.ResumeHalted(ctx, rep2)
			if len(outcomes) != 1 || outcomes[0].InstanceID != sc.halted || outcomes[0].Error != "" {
				t.Errorf("resume outcomes %+v, want one for %s without error", outcomes, sc.halted)
			}
			if got, ok := en.Sim.ResumeRequests(), en.Sim.Resumes(); got != 1 || ok != 1 {
				t.Errorf("the simulator got %d resume requests (%d resumed), want exactly 1", got, ok)
			}
			waitFor(t, "the resumed update to reach us", 15*time.Second, func() bool {
				halted, _ := en.Sim.WebhookStatus(sc.halted)
				return !halted && len(en.Sim.Executions(sc.halted)) > 0 &&
					en.Sim.Executions(sc.halted)[len(en.Sim.Executions(sc.halted))-1].State == mstudiotest.ExecutionSuccessful
			})

			rep3, err := rec.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want = slices.DeleteFunc(want, func(s string) bool { return strings.HasPrefix(s, "halted ") })
			if got := findingsOf(rep3.Findings); !slices.Equal(got, want) {
				t.Errorf("after the resume: findings %v, want %v", got, want)
			}
			all, err := en.Store.ReconcileFindings(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != 3 || all[2].Kind != extension.FindingHalted || all[2].Open() {
				t.Errorf("all findings %+v: want the halted one resolved", all)
			}
			if got := metricValue(t, reg, "extension_reconcile_findings", "kind", "halted"); got != 0 {
				t.Errorf("halted gauge %v after the resume, want 0", got)
			}
			if logs := en.Logs.String(); strings.Contains(logs, en.Sim.ContributorToken()) {
				t.Error("the contributor token is in the log")
			} else if !strings.Contains(logs, `"kind":"lost_install"`) {
				t.Errorf("no log line for the lost install:\n%s", logs)
			}
		})
	}
}

// metricValue is the value of the metric with the one label, as the registry exports it.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetCounter() != nil {
						return m.GetCounter().GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestPlatformReconcileRefusedToken: a wrong token, another contributor's token and a
// user's token are refused with ErrContributorToken; nothing is stored or resumed, the
// run counter says refused, and no token is in an error or the log.
func TestPlatformReconcileRefusedToken(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			en := newEnv(t, d, envOptions{workers: 0, noStart: true})
			ctx := context.Background()
			sc := setUpPlatformScenario(t, en)
			good, err := newTestReconciler(t, en, en.Sim.ContributorToken(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := good.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			before, err := en.Store.ReconcileFindings(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			tokens := map[string]string{
				"wrong":             "not-a-token-the-platform-issued-" + uuid.NewString(),
				"other contributor": en.Sim.IssueContributorToken(uuid.NewString()),
				"user":              en.Sim.Users()[0].Token,
			}
			for name, token := range tokens {
				reg := prometheus.NewRegistry()
				rec, err := newTestReconciler(t, en, token, reg)
				if err != nil {
					t.Fatal(err)
				}
				_, err = rec.Reconcile(ctx)
				if !errors.Is(err, mstudio.ErrContributorToken) {
					t.Errorf("%s token: %v, want ErrContributorToken", name, err)
				}
				if err != nil && strings.Contains(err.Error(), token) {
					t.Errorf("%s token: the error quotes the token", name)
				}
				if err := rec.Resume(ctx, sc.halted); !errors.Is(err, mstudio.ErrContributorToken) {
					t.Errorf("%s token: resume: %v, want ErrContributorToken", name, err)
				}
				if got := metricValue(t, reg, "extension_reconcile_runs_total", "result", "refused"); got != 1 {
					t.Errorf("%s token: runs{result=refused} = %v, want 1", name, got)
				}
				if strings.Contains(en.Logs.String(), token) {
					t.Errorf("%s token: in the log", name)
				}
			}
			after, err := en.Store.ReconcileFindings(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(before, after, func(a, b extension.ReconcileFinding) bool {
				return a.Kind == b.Kind && a.InstanceID == b.InstanceID && a.LastSeen.Equal(b.LastSeen) && a.Open() == b.Open()
			}) {
				t.Errorf("findings changed by refused runs:\n%+v\n%+v", before, after)
			}
			if en.Sim.Resumes() != 0 {
				t.Errorf("%d resumes by refused tokens", en.Sim.Resumes())
			}
			if halted, _ := en.Sim.WebhookStatus(sc.halted); !halted {
				t.Error("a refused resume un-halted the instance")
			}
			if _, err := newTestReconciler(t, en, "", nil); !errors.Is(err, mstudio.ErrInvalidArgument) {
				t.Errorf("no token: %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// lazyReconciler lets the queue's configuration name a reconciler built after it.
type lazyReconciler struct {
	r atomic.Pointer[mstudio.Reconciler]
}

func (l *lazyReconciler) Reconcile(ctx context.Context) (mstudio.Report, error) {
	r := l.r.Load()
	if r == nil {
		return mstudio.Report{}, errors.New("no reconciler yet")
	}
	return r.Reconcile(ctx)
}

// TestPlatformReconcileJob: the periodic job runs the reconciliation through River and
// its findings are stored for every replica to read.
func TestPlatformReconcileJob(t *testing.T) {
	lazy := &lazyReconciler{}
	en := newEnv(t, extension.SQLite, envOptions{workers: 2, config: func(c *Config) { c.Platform = lazy }})
	ctx := context.Background()
	sc := setUpPlatformScenario(t, en)
	rec, err := newTestReconciler(t, en, en.Sim.ContributorToken(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lazy.r.Store(rec)
	waitFor(t, "the job to store the three findings", 20*time.Second, func() bool {
		if err := en.Jobs.ReconcilePlatformNow(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := en.Store.ReconcileFindings(ctx, false)
		return err == nil && len(got) == 3
	})
	got, _ := en.Store.ReconcileFindings(ctx, false)
	want := []string{"halted " + sc.halted, "lost_install " + sc.lost, "missed_removal " + sc.removed}
	slices.Sort(want)
	if f := findingsOf(got); !slices.Equal(f, want) {
		t.Errorf("findings %v, want %v", f, want)
	}
}
