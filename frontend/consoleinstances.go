package frontend

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// consolePageSize is how many instances a page of the list shows.
const consolePageSize = 50

// consoleTimeline bounds an instance's delivery timeline: its newest journal rows.
const consoleTimeline = 100

type consoleInstancesView struct {
	Tabs      consoleTabs
	Search    string
	State     string
	States    []consoleState
	Instances []consoleInstanceRow
	Next      string // URL of the next page; "" on the last
	First     string // URL of the first page, when this is not it
	BadQuery  bool
}

type consoleState struct {
	Value, Key string
}

var consoleStates = []consoleState{
	{extension.StateLive, "ops.state.live"}, {extension.StateEnabled, "ops.state.enabled"},
	{extension.StateDisabled, "ops.state.disabled"}, {extension.StateRemoved, "ops.state.removed"},
	{extension.StateAll, "ops.state.all"},
}

type consoleInstanceRow struct {
	ID, Context, ContextName, Variant, Updated string
	StateKey, StateClass                       string
	Scopes                                     []string
}

func consoleRow(in *extension.Instance) consoleInstanceRow {
	r := consoleInstanceRow{ID: in.ID, Context: in.ContextKind + " " + in.ContextID, ContextName: in.ContextName,
		Variant: in.VariantKey, Updated: minute(in.UpdatedAt), Scopes: in.ConsentedScopes}
	switch {
	case in.Removed():
		r.StateKey, r.StateClass = "ops.state.removed", ""
	case in.Enabled:
		r.StateKey, r.StateClass = "ops.state.enabled", "success"
	default:
		r.StateKey, r.StateClass = "ops.state.disabled", "warning"
	}
	return r
}

// maxSearch bounds the search text.
const maxSearch = 200

// ConsoleInstances is GET /instances?q=&state=&after=: one page of instances, searched
// and filtered, in id order.
func (c *Console) ConsoleInstances(ec echo.Context) error {
	q := extension.InstanceQuery{Search: strings.TrimSpace(ec.QueryParam("q")), State: ec.QueryParam("state"),
		After: ec.QueryParam("after"), Limit: consolePageSize}
	v := consoleInstancesView{Tabs: c.tabs("instances"), Search: q.Search, State: q.State, States: consoleStates}
	if len(q.Search) > maxSearch || !extension.ValidInstanceState(q.State) || (q.After != "" && !validInstanceID(q.After)) {
		v.BadQuery, v.Search, v.State = true, "", ""
		return c.f.renderReloadable(ec, http.StatusBadRequest, pageConsoleInstances, v)
	}
	page, next, err := c.f.store.InstancePage(ec.Request().Context(), q)
	if err != nil {
		return err
	}
	for i := range page {
		v.Instances = append(v.Instances, consoleRow(&page[i]))
	}
	link := func(after string) string {
		vals := url.Values{}
		if q.Search != "" {
			vals.Set("q", q.Search)
		}
		if q.State != "" {
			vals.Set("state", q.State)
		}
		if after != "" {
			vals.Set("after", after)
		}
		if len(vals) == 0 {
			return "/instances"
		}
		return "/instances?" + vals.Encode()
	}
	if next != "" {
		v.Next = link(next)
	}
	if q.After != "" {
		v.First = link("")
	}
	return c.f.renderReloadable(ec, http.StatusOK, pageConsoleInstances, v)
}

type consoleInstanceView struct {
	Tabs       consoleTabs
	Instance   consoleInstanceRow
	Installed  string
	LastEvent  string
	Removed    string
	HasSecret  bool
	Token      consoleTokenView
	Deliveries []consoleDelivery
	Jobs       *extension.JobHealth
	JobsUI     string
}

type consoleTokenView struct {
	Cached                 bool
	Expires, LastMinted    string
	Failing                bool
	LastError, LastErrorAt string
	LastErrorStatus        int
	LastErrorKey           string
}

type consoleDelivery struct {
	At, EventAt, Kind, Outcome, OutcomeClass, Reason, RequestID string
}

// ConsoleInstance is GET /instances/:instanceId: the instance's state, token health, jobs
// and delivery timeline.
func (c *Console) ConsoleInstance(ec echo.Context) error {
	id := strings.ToLower(ec.Param("instanceId"))
	if !validInstanceID(id) {
		return c.f.Problem(ec, http.StatusNotFound, "ops.no_instance", "/instances")
	}
	ctx := ec.Request().Context()
	in, err := c.f.store.InstanceByID(ctx, id)
	if errors.Is(err, extension.ErrNotFound) {
		return c.f.Problem(ec, http.StatusNotFound, "ops.no_instance", "/instances")
	}
	if err != nil {
		return err
	}
	v := consoleInstanceView{Tabs: c.tabs("instances"), Instance: consoleRow(in), Installed: minute(in.CreatedAt),
		HasSecret: in.HasSecret(), JobsUI: c.cfg.JobsUI}
	if in.LastEventNano != 0 {
		v.LastEvent = minute(in.LastEventAt())
	}
	if in.RemovedAt != nil {
		v.Removed = minute(*in.RemovedAt)
	}
	th, err := c.f.store.InstanceTokenHealth(ctx, id, c.f.now())
	if err != nil {
		return err
	}
	v.Token = consoleToken(th)
	ds, err := c.f.store.Deliveries(ctx, id, consoleTimeline)
	if err != nil {
		return err
	}
	for _, d := range ds {
		cd := consoleDelivery{At: secondUTC(d.ReceivedAt), Kind: d.Kind, Outcome: string(d.Outcome), Reason: d.Reason, RequestID: d.RequestID}
		if d.EventCreatedAt != nil {
			cd.EventAt = secondUTC(*d.EventCreatedAt)
		}
		switch d.Outcome {
		case extension.OutcomeRefused:
			cd.OutcomeClass = "warning"
		case extension.OutcomeApplied, extension.OutcomePartlyApplied:
			cd.OutcomeClass = "success"
		}
		v.Deliveries = append(v.Deliveries, cd)
	}
	if c.cfg.Jobs != nil {
		h, err := c.cfg.Jobs.InstanceJobHealth(ctx, id)
		if err != nil {
			c.f.logger.Warn("ops console: job health", "instance_id", id, "error", err.Error())
		} else {
			v.Jobs = &h
		}
	}
	return c.f.renderReloadable(ec, http.StatusOK, pageConsoleInstance, v)
}

func consoleToken(th extension.TokenHealth) consoleTokenView {
	t := consoleTokenView{Cached: th.Cached, Failing: th.Failing()}
	if !th.ExpiresAt.IsZero() {
		t.Expires = secondUTC(th.ExpiresAt)
	}
	if !th.LastMintedAt.IsZero() {
		t.LastMinted = secondUTC(th.LastMintedAt)
	}
	if th.LastError != "" {
		t.LastError, t.LastErrorStatus, t.LastErrorAt = th.LastError, th.LastErrorStatus, secondUTC(th.LastErrorAt)
		t.LastErrorKey = "ops.mint." + th.LastError
	}
	return t
}

// secondUTC is a time to the second, for the operator.
func secondUTC(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
