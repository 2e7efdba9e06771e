package frontend

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// JobHealthReader sums up an instance's background jobs (the job queue, which cmd hands
// over).
type JobHealthReader interface {
	InstanceJobHealth(ctx context.Context, instanceID string) (extension.JobHealth, error)
}

// Bounds of the dashboard's reading of the journal: the instance's last few deliveries,
// looked for among the journal's newest rows (Store.RecentDeliveries says why).
const (
	dashboardDeliveries   = 5
	dashboardJournalRange = 20_000
)

// Scopes the extension's own work needs, by the kind of context it is installed in: the
// post-install job reads the project's or organisation's name, and the worked action
// renames a project. An extension that adds an action needing another scope adds it here,
// so the dashboard tells a customer when the consent lacks it.
var neededScopes = map[string][]scopeNeed{
	extension.ContextProject: {
		{Scope: "project:read", Use: "scope.use.read_name"},
		{Scope: scopeRenameProject, Use: "scope.use.rename_project"},
	},
	extension.ContextCustomer: {
		{Scope: "customer:read", Use: "scope.use.read_name"},
	},
}

// scopeNeed is a scope and what the extension uses it for (a catalog key).
type scopeNeed struct {
	Scope, Use string
}

type dashboardView struct {
	Tabs       tabsView
	User       string
	Role       string
	Context    contextView
	InstanceID string
	Variant    string
	Installed  string // the date of installation
	LastChange string // when the platform last told us of a change
	Scopes     []scopeView
	Missing    bool // a scope the extension needs is not consented
	Deliveries []deliveryView
	Jobs       extension.JobHealth
	JobsKnown  bool   // the job queue was asked
	JobFailAt  string // when the last failed attempt was
	CanManage  bool   // admin or owner: sees the team's management links
}

type scopeView struct {
	Scope, Use string
	Granted    bool
}

type deliveryView struct {
	At      string
	Kind    string // a catalog key
	Outcome string // a catalog key
}

// Dashboard is the instance's home page (GET /app/{instanceId}): what the instance is,
// whether it has the permissions it needs, what the platform last told us and how its
// background jobs are doing.
func (f *Frontend) Dashboard(c echo.Context) error {
	ctx := c.Request().Context()
	s, ok := SignedInFrom(ctx)
	if !ok {
		return f.internal(c, "dashboard", errors.New("no session in context"))
	}
	deliveries, err := f.store.RecentDeliveries(ctx, s.Instance.ID, dashboardDeliveries, dashboardJournalRange)
	if err != nil {
		return f.internal(c, "recent deliveries", err)
	}
	var health *extension.JobHealth
	if f.jobs != nil {
		h, err := f.jobs.InstanceJobHealth(ctx, s.Instance.ID)
		if err != nil {
			// The dashboard still says everything else; the job summary is left out.
			f.logger.WarnContext(ctx, "frontend: job health failed", "error", err.Error())
		} else {
			health = &h
		}
	}
	return f.renderReloadable(c, http.StatusOK, pageDashboard, f.dashboard(s, deliveries, health))
}

// DashboardFrom renders the dashboard from values given, without the database or the job
// queue: the baseline of the dashboard's benchmark.
func (f *Frontend) DashboardFrom(c echo.Context, s SignedIn, deliveries []extension.Delivery, health *extension.JobHealth) error {
	return f.renderReloadable(c, http.StatusOK, pageDashboard, f.dashboard(s, deliveries, health))
}

func (f *Frontend) dashboard(s SignedIn, deliveries []extension.Delivery, health *extension.JobHealth) dashboardView {
	in := s.Instance
	v := dashboardView{Tabs: tabsFor(s, tabDashboard), User: s.Account.DisplayName(), Role: s.Account.Role, Context: contextOf(in), InstanceID: in.ID, Variant: in.VariantKey,
		Installed: day(in.CreatedAt), CanManage: extension.CanGrant(s.Account.Role, extension.RoleMember)}
	if in.LastEventNano > 0 {
		v.LastChange = minute(in.LastEventAt())
	}
	for _, need := range neededScopes[in.ContextKind] {
		granted := slices.Contains(in.ConsentedScopes, need.Scope)
		v.Scopes = append(v.Scopes, scopeView{Scope: need.Scope, Use: need.Use, Granted: granted})
		v.Missing = v.Missing || !granted
	}
	for _, d := range deliveries {
		v.Deliveries = append(v.Deliveries, deliveryView{At: minute(d.ReceivedAt), Kind: "delivery.kind." + d.Kind,
			Outcome: "delivery.outcome." + string(d.Outcome)})
	}
	if health != nil {
		v.Jobs, v.JobsKnown = *health, true
		if !health.LastFailureAt.IsZero() {
			v.JobFailAt = minute(health.LastFailureAt)
		}
	}
	return v
}
