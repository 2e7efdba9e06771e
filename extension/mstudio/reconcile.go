package mstudio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/prometheus/client_golang/prometheus"
)

// Reconciliation with the platform: what the platform says about our extension's
// instances and their webhooks, compared with what we hold. Its findings are stored
// (extension.Store.RecordReconcile), so every replica and the ops console see the same.

// ReconcilerConfig is what NewReconciler needs.
type ReconcilerConfig struct {
	Client *Client
	Store  *extension.Store
	// Token is the contributor's API token (EXT_CONTRIBUTOR_TOKEN): a user token of a
	// member of the contributor. It is sent to the platform and nowhere else.
	Token         extension.Secret
	ContributorID string
	ExtensionID   string
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // the findings gauge and the run counter; nil: none
	Now           func() time.Time
}

// Reconciler compares the platform's view of our instances with ours.
type Reconciler struct {
	cfg     ReconcilerConfig
	runs    *prometheus.CounterVec
	resumes *prometheus.CounterVec
}

// NewReconciler checks the configuration; it calls nothing yet.
func NewReconciler(cfg ReconcilerConfig) (*Reconciler, error) {
	switch {
	case cfg.Client == nil || cfg.Store == nil:
		return nil, errors.New("reconciler: no platform client or store")
	case cfg.Token.IsZero():
		return nil, fmt.Errorf("reconciler: %w: no contributor token", ErrInvalidArgument)
	}
	cfg.ContributorID, cfg.ExtensionID = strings.ToLower(cfg.ContributorID), strings.ToLower(cfg.ExtensionID)
	if err := requireUUID("contributor id", cfg.ContributorID); err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	if err := requireUUID("extension id", cfg.ExtensionID); err != nil {
		return nil, fmt.Errorf("reconciler: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Reconciler{cfg: cfg}
	if reg := cfg.Registerer; reg != nil {
		var err error
		r.runs = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extension_reconcile_runs_total",
			Help: "Reconciliations with the platform by result: ok, refused (the platform refused the contributor token), error.",
		}, []string{"result"})
		if r.runs, err = register(reg, r.runs); err != nil {
			return nil, err
		}
		r.resumes = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extension_reconcile_resumes_total",
			Help: "Resumes of halted webhook executions asked of the platform, by result: ok, refused, error.",
		}, []string{"result"})
		if r.resumes, err = register(reg, r.resumes); err != nil {
			return nil, err
		}
		for _, res := range []string{"ok", "refused", "error"} {
			r.runs.WithLabelValues(res)
			r.resumes.WithLabelValues(res)
		}
		if _, err := register(reg, prometheus.Collector(&findingsCollector{store: cfg.Store})); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Report is what one reconciliation found.
type Report struct {
	At time.Time `json:"at"`
	// PlatformInstances and OurInstances are how many instances each side holds (ours
	// without tombstones); Executions how many halted or failed executions the log had.
	PlatformInstances int `json:"platformInstances"`
	OurInstances      int `json:"ourInstances"`
	Executions        int `json:"executions"`
	// Findings are every finding of this run; New those that were not open before.
	Findings []extension.ReconcileFinding `json:"findings"`
	New      []extension.ReconcileFinding `json:"new"`
	Resolved int64                        `json:"resolved"` // findings of earlier runs that no longer stand
}

// Lines is the report for a terminal (doctor --reconcile, reconcile): one line per
// finding with what to do, or one line that all is well.
func (rep Report) Lines() []string {
	if len(rep.Findings) == 0 {
		return []string{fmt.Sprintf("ok: the platform's %d instances and our %d agree; no webhook is halted or failing",
			rep.PlatformInstances, rep.OurInstances)}
	}
	out := make([]string, 0, len(rep.Findings))
	for _, f := range rep.Findings {
		out = append(out, FindingLine(f))
	}
	return out
}

// FindingLine is one finding on one line: kind, instance, what was seen, what to do.
func FindingLine(f extension.ReconcileFinding) string {
	return fmt.Sprintf("%s: instance %s: %s; %s", f.Kind, f.InstanceID, f.Detail,
		strings.ReplaceAll(f.Kind.Advice(), "ID", f.InstanceID))
}

// Reconcile reads our instances, then the platform's list of them and its log of halted
// and failed webhook executions, compares them, and stores the findings. Ours are read
// first: an instance we hold was created at the platform before, so it is on the list
// unless it was removed. A finding is checked against our record once more before it is
// stored, which leaves out a webhook that arrived while the lists were read. When a call
// fails nothing is stored; a refused token is ErrContributorToken.
func (r *Reconciler) Reconcile(ctx context.Context) (Report, error) {
	rep, err := r.reconcile(ctx)
	result := "ok"
	switch {
	case errors.Is(err, ErrContributorToken):
		result = "refused"
	case err != nil:
		result = "error"
	}
	if r.runs != nil {
		r.runs.WithLabelValues(result).Inc()
	}
	if err != nil {
		return Report{}, fmt.Errorf("reconcile with the platform: %w", err)
	}
	log := r.cfg.Logger
	for _, f := range rep.New {
		log.Warn("reconcile finding", "kind", string(f.Kind), "instance_id", f.InstanceID, "detail", f.Detail, "advice", f.Kind.Advice())
	}
	log.Info("reconciled with the platform", "platform_instances", rep.PlatformInstances, "our_instances", rep.OurInstances,
		"findings", len(rep.Findings), "new", len(rep.New), "resolved", rep.Resolved)
	return rep, nil
}

func (r *Reconciler) reconcile(ctx context.Context) (Report, error) {
	ours, err := r.cfg.Store.Instances(ctx, true)
	if err != nil {
		return Report{}, err
	}
	platform, err := r.cfg.Client.ExtensionInstances(ctx, r.cfg.Token, r.cfg.ExtensionID)
	if err != nil {
		return Report{}, err
	}
	executions, err := r.cfg.Client.WebhookExecutions(ctx, r.cfg.Token, r.cfg.ContributorID, ExecutionFilter{
		ExtensionID: r.cfg.ExtensionID, States: []string{ExecutionHalted, ExecutionFailed},
	})
	if err != nil {
		return Report{}, err
	}
	found := Compare(r.cfg.ExtensionID, platform, ours, executions)
	kept := found[:0]
	for _, f := range found {
		if f.Kind == extension.FindingLostInstall || f.Kind == extension.FindingMissedRemoval {
			in, err := r.cfg.Store.InstanceByID(ctx, f.InstanceID)
			switch {
			case errors.Is(err, extension.ErrNotFound):
				in = nil
			case err != nil:
				return Report{}, err
			}
			live := in != nil && !in.Removed()
			if (f.Kind == extension.FindingLostInstall && live) || (f.Kind == extension.FindingMissedRemoval && !live) {
				continue // its webhook arrived while the lists were read
			}
			// The list is read by offsets: an install or removal between two pages shifts
			// them, and an instance the platform still has can fall between. Ask for it by
			// id; only "not found" (or an error, reported as found) keeps the finding.
			if f.Kind == extension.FindingMissedRemoval {
				if _, err := r.cfg.Client.Instance(ctx, r.cfg.Token, f.InstanceID); err == nil {
					continue
				}
			}
		}
		kept = append(kept, f)
	}
	rep := Report{At: r.cfg.Now().UTC(), Findings: kept, Executions: len(executions)}
	for _, p := range platform {
		if strings.EqualFold(p.ExtensionID, r.cfg.ExtensionID) || p.ExtensionID == "" {
			rep.PlatformInstances++
		}
	}
	for _, in := range ours {
		if !in.Removed() {
			rep.OurInstances++
		}
	}
	if rep.New, rep.Resolved, err = r.cfg.Store.RecordReconcile(ctx, kept, rep.At); err != nil {
		return Report{}, err
	}
	for i := range rep.Findings {
		rep.Findings[i].FirstSeen, rep.Findings[i].LastSeen = rep.At, rep.At
	}
	return rep, nil
}

// Compare finds what differs between the platform's instances of our extension and
// ours (tombstones included), and the instances whose webhook execution is halted or
// failed. Entries of another extension are ignored. An instance the platform is still
// installing or removing is no lost install or missed removal: its webhook is on its way,
// and if it fails, the execution log says so.
func Compare(extensionID string, platform []ListedInstance, ours []extension.Instance, executions []WebhookExecution) []extension.ReconcileFinding {
	extensionID = strings.ToLower(extensionID)
	oursByID := make(map[string]*extension.Instance, len(ours))
	for i := range ours {
		oursByID[strings.ToLower(ours[i].ID)] = &ours[i]
	}
	var found []extension.ReconcileFinding
	listed := map[string]bool{}
	for _, p := range platform {
		if p.ExtensionID != "" && p.ExtensionID != extensionID {
			continue
		}
		listed[p.ID] = true
		if p.PendingInstallation || p.PendingRemoval {
			continue
		}
		in := oursByID[p.ID]
		switch {
		case in == nil:
			found = append(found, extension.ReconcileFinding{Kind: extension.FindingLostInstall, InstanceID: p.ID,
				Detail: fmt.Sprintf("the platform has it (%s %s), we never received its install", contextKind(p.Context.Aggregate), p.Context.ID)})
		case in.Removed():
			found = append(found, extension.ReconcileFinding{Kind: extension.FindingLostInstall, InstanceID: p.ID,
				Detail: fmt.Sprintf("the platform has it (%s %s), we hold it as removed", contextKind(p.Context.Aggregate), p.Context.ID)})
		}
	}
	for _, in := range ours {
		id := strings.ToLower(in.ID)
		if !in.Removed() && !listed[id] {
			found = append(found, extension.ReconcileFinding{Kind: extension.FindingMissedRemoval, InstanceID: id,
				Detail: fmt.Sprintf("we hold it (%s %s), the platform no longer lists it", contextKind(in.ContextKind), in.ContextID)})
		}
	}
	// One finding per instance and kind: several webhooks of one instance can wait
	// halted behind each other, and one resume sets the instance's whole queue going.
	reported := map[extension.FindingKind]map[string]bool{extension.FindingHalted: {}, extension.FindingFailed: {}}
	for _, ex := range executions {
		if ex.ExtensionID != "" && ex.ExtensionID != extensionID {
			continue
		}
		kind := extension.FindingHalted
		switch ex.State {
		case ExecutionHalted:
		case ExecutionFailed:
			kind = extension.FindingFailed
		default:
			continue
		}
		if reported[kind][ex.ExtensionInstanceID] {
			continue
		}
		reported[kind][ex.ExtensionInstanceID] = true
		detail := fmt.Sprintf("its %s webhook (execution %s) is %s after %d attempts", printableWord(ex.Kind), printableWord(ex.ID), ex.State, ex.Attempts)
		if next := ex.Next(); !next.IsZero() {
			detail += ", next attempt " + next.Format(time.RFC3339)
		}
		found = append(found, extension.ReconcileFinding{Kind: kind, InstanceID: ex.ExtensionInstanceID, Detail: detail})
	}
	// The instance list says so too (webhookExecutionHalted): a halt the execution log
	// did not show (another page, a log the token sees less of) is still found.
	for _, p := range platform {
		if (p.ExtensionID == "" || p.ExtensionID == extensionID) && p.WebhookExecutionHalted && !reported[extension.FindingHalted][p.ID] {
			reported[extension.FindingHalted][p.ID] = true
			found = append(found, extension.ReconcileFinding{Kind: extension.FindingHalted, InstanceID: p.ID,
				Detail: "the platform lists its webhook execution as halted"})
		}
	}
	return found
}

// contextKind names a context kind for a detail, whatever the platform sent.
func contextKind(kind string) string {
	if kind == extension.ContextCustomer {
		return extension.ContextCustomer
	}
	return extension.ContextProject
}

// printableWord keeps a value from the platform that goes into a detail short and free
// of anything but letters, digits and dashes: details reach terminals and pages.
func printableWord(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 64 {
			break
		}
		if c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "?"
	}
	return b.String()
}

// Resume asks the platform once to resume the instance's halted webhooks, and on success
// resolves the instance's halted finding. The ops console's "resume" button calls it.
// It is not retried: see ResumeWebhookExecution.
func (r *Reconciler) Resume(ctx context.Context, instanceID string) error {
	instanceID = strings.ToLower(strings.TrimSpace(instanceID))
	err := r.cfg.Client.ResumeWebhookExecution(ctx, r.cfg.Token, r.cfg.ContributorID, r.cfg.ExtensionID, instanceID)
	result := "ok"
	var apiErr *Error
	switch {
	case errors.Is(err, ErrContributorToken):
		result = "refused"
	case err != nil:
		result = "error"
	}
	if r.resumes != nil && !errors.Is(err, ErrInvalidArgument) {
		r.resumes.WithLabelValues(result).Inc()
	}
	log := r.cfg.Logger.With("instance_id", instanceID)
	switch {
	case errors.As(err, &apiErr) && (apiErr.Status == http.StatusConflict || apiErr.Status == http.StatusPreconditionFailed || apiErr.Status == http.StatusNotFound):
		log.Info("resume of webhook execution refused: nothing halted", "status", apiErr.Status)
		return fmt.Errorf("instance %s: %w (nothing halted to resume?)", instanceID, err)
	case err != nil:
		log.Warn("resume of webhook execution failed", "error", err.Error())
		return fmt.Errorf("instance %s: %w", instanceID, err)
	}
	log.Info("webhook execution resumed")
	if err := r.cfg.Store.ResolveFinding(ctx, extension.FindingHalted, instanceID, r.cfg.Now()); err != nil && !errors.Is(err, extension.ErrNotFound) {
		log.Warn("resolve the halted finding after the resume", "error", err.Error())
	}
	return nil
}

// ResumeOutcome is the result of resuming one instance.
type ResumeOutcome struct {
	InstanceID string `json:"instanceId"`
	Error      string `json:"error,omitempty"`
}

// ResumeHalted resumes, once each, the instances the report found halted.
func (r *Reconciler) ResumeHalted(ctx context.Context, rep Report) []ResumeOutcome {
	var out []ResumeOutcome
	for _, f := range rep.Findings {
		if f.Kind != extension.FindingHalted {
			continue
		}
		o := ResumeOutcome{InstanceID: f.InstanceID}
		if err := r.Resume(ctx, f.InstanceID); err != nil {
			o.Error = err.Error()
		}
		out = append(out, o)
	}
	return out
}

// findingsCollector exports the open findings by kind, read from the store at each
// scrape: every replica reports the same numbers, whichever ran the reconciliation. When
// the read fails it reports the last numbers it read (none before the first), so a
// database hiccup does not fail the whole scrape.
type findingsCollector struct {
	store *extension.Store
	mu    sync.Mutex
	last  map[extension.FindingKind]int
}

var findingsDesc = prometheus.NewDesc("extension_reconcile_findings",
	"Open findings of the reconciliation with the platform by kind: lost_install, missed_removal, halted, failed. Every replica reports the same (use max).",
	[]string{"kind"}, nil)

func (c *findingsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- findingsDesc }

func (c *findingsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.store.OpenFindingCounts(ctx)
	c.mu.Lock()
	if err == nil {
		c.last = counts
	}
	counts = c.last
	c.mu.Unlock()
	if counts == nil {
		return
	}
	for _, k := range extension.FindingKinds {
		ch <- prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, float64(counts[k]), string(k))
	}
}
