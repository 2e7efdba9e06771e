package frontend

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
)

// The operator's console: pages on a listener of its own (EXT_OPS_ADDR) that show every
// instance with its state, its deliveries and its token, the job queue (River's UI, which
// cmd mounts), reconcile findings and doctor's results. It has no sign-in of its own: the
// operator puts the listener behind their own access control, and the pages say so. It
// changes nothing but two things, each a form behind a same-origin check: resuming an
// instance's halted webhooks at the platform, and retrying a job (in River's UI).

// DoctorFinding is one line of doctor's report, in doctor's own words (English).
type DoctorFinding struct {
	Check  string // what was checked
	Status string // DoctorOK, DoctorWarn or DoctorFail
	Detail string // what was found
	Fix    string // what to do; "" when nothing
}

// Statuses of a DoctorFinding.
const (
	DoctorOK   = "ok"
	DoctorWarn = "warn"
	DoctorFail = "fail"
)

// DoctorSource runs doctor's offline checks; cmd fills it with doctor's function.
type DoctorSource func(ctx context.Context) []DoctorFinding

// Kinds of a ReconcileFinding.
const (
	ReconcileLostInstall   = "lost_install"   // the platform has it, we never received its install
	ReconcileMissedRemoval = "missed_removal" // we hold it, the platform no longer has it
	ReconcileHalted        = "halted"         // its webhook execution is halted at the platform
	ReconcileFailed        = "failed"         // its webhook execution failed at the platform
)

// ReconcileFinding is one difference between the platform and our instances.
type ReconcileFinding struct {
	Kind       string // ReconcileLostInstall, …
	InstanceID string
	Detail     string // reconcile's own words (English); "" when the kind says it all
	FoundAt    time.Time
	// Resumable: the platform can resume the instance's halted webhook execution.
	Resumable bool
}

// ReconcileSource is what reconcile with the platform found, and its resume action; cmd
// fills it.
type ReconcileSource interface {
	Findings(ctx context.Context) ([]ReconcileFinding, error)
	// Resume asks the platform to resume the instance's halted webhook executions.
	Resume(ctx context.Context, instanceID string) error
}

// ConsoleConfig configures the console. A source left nil shows its section as not
// configured.
type ConsoleConfig struct {
	Doctor    DoctorSource
	Reconcile ReconcileSource
	// Jobs sums up an instance's jobs on its page; nil: left out.
	Jobs JobHealthReader
	// JobsUI is the path River's UI is served at (such as "/jobs"); "": no job pages.
	JobsUI string
}

// Console serves the ops console's pages.
type Console struct {
	f   *Frontend
	cfg ConsoleConfig
}

// Console returns the ops console on this frontend's page engine and store.
func (f *Frontend) Console(cfg ConsoleConfig) *Console {
	return &Console{f: f, cfg: cfg}
}

// consoleTabs is the console's navigation.
type consoleTabs struct {
	Current string
	JobsUI  string
}

func (c *Console) tabs(current string) consoleTabs {
	return consoleTabs{Current: current, JobsUI: c.cfg.JobsUI}
}

type consoleHomeView struct {
	Tabs                  consoleTabs
	Counts                extension.InstanceCounts
	FailingTokens         int64
	ReconcileOn, DoctorOn bool
	ReconcileCount        int
	ReconcileHalted       int
	ReconcileError        bool
}

// ConsoleHome is GET / of the ops listener: counts and where to look.
func (c *Console) ConsoleHome(ec echo.Context) error {
	ctx := ec.Request().Context()
	v := consoleHomeView{Tabs: c.tabs("home"), ReconcileOn: c.cfg.Reconcile != nil, DoctorOn: c.cfg.Doctor != nil}
	var err error
	if v.Counts, err = c.f.store.CountInstances(ctx); err != nil {
		return err
	}
	if v.FailingTokens, err = c.f.store.FailingTokenCount(ctx); err != nil {
		return err
	}
	if c.cfg.Reconcile != nil {
		fs, err := c.cfg.Reconcile.Findings(ctx)
		if err != nil {
			c.f.logger.Warn("ops console: reconcile findings", "error", err.Error())
			v.ReconcileError = true
		}
		v.ReconcileCount = len(fs)
		for _, f := range fs {
			if f.Kind == ReconcileHalted {
				v.ReconcileHalted++
			}
		}
	}
	return c.f.renderReloadable(ec, http.StatusOK, pageConsoleHome, v)
}

// consoleDoctorView is the doctor page.
type consoleDoctorView struct {
	Tabs     consoleTabs
	On       bool
	Findings []DoctorFinding
	Failed   int
}

// ConsoleDoctor is GET /doctor: doctor's offline checks, run now.
func (c *Console) ConsoleDoctor(ec echo.Context) error {
	v := consoleDoctorView{Tabs: c.tabs("doctor"), On: c.cfg.Doctor != nil}
	if v.On {
		ctx, cancel := context.WithTimeout(ec.Request().Context(), 20*time.Second)
		defer cancel()
		v.Findings = c.cfg.Doctor(ctx)
		for _, f := range v.Findings {
			if f.Status == DoctorFail {
				v.Failed++
			}
		}
	}
	return c.f.renderReloadable(ec, http.StatusOK, pageConsoleDoctor, v)
}

// consoleReconcileView is the reconcile page.
type consoleReconcileView struct {
	Tabs     consoleTabs
	On       bool
	Failed   bool // the findings could not be read
	Findings []reconcileRow
	Resumed  string // the instance whose resume was just asked for
	Problem  string // copy key of a refused resume
}

type reconcileRow struct {
	ReconcileFinding
	KindKey string
	Found   string
}

// maxReconcileRows bounds the findings a page shows; the count says how many there are.
const maxReconcileRows = 500

// ConsoleReconcile is GET /reconcile: what reconcile with the platform found.
func (c *Console) ConsoleReconcile(ec echo.Context) error {
	v := consoleReconcileView{Tabs: c.tabs("reconcile"), On: c.cfg.Reconcile != nil}
	if id := ec.QueryParam("resumed"); id != "" && validInstanceID(id) {
		v.Resumed = id
	}
	return c.renderReconcile(ec, http.StatusOK, v)
}

func (c *Console) renderReconcile(ec echo.Context, status int, v consoleReconcileView) error {
	if v.On {
		fs, err := c.cfg.Reconcile.Findings(ec.Request().Context())
		if err != nil {
			c.f.logger.Warn("ops console: reconcile findings", "error", err.Error())
			v.Failed = true
		}
		for i, f := range fs {
			if i == maxReconcileRows {
				break
			}
			kind := "ops.reconcile.kind.other"
			switch f.Kind {
			case ReconcileLostInstall, ReconcileMissedRemoval, ReconcileHalted, ReconcileFailed:
				kind = "ops.reconcile.kind." + f.Kind
			}
			row := reconcileRow{ReconcileFinding: f, KindKey: kind}
			if !f.FoundAt.IsZero() {
				row.Found = minute(f.FoundAt)
			}
			v.Findings = append(v.Findings, row)
		}
	}
	return c.f.renderReloadable(ec, status, pageConsoleReconcile, v)
}

// ConsoleResume is POST /reconcile/resume, field instance: resume the instance's halted
// webhooks at the platform, then back to the findings.
func (c *Console) ConsoleResume(ec echo.Context) error {
	v := consoleReconcileView{Tabs: c.tabs("reconcile"), On: c.cfg.Reconcile != nil}
	if !v.On {
		v.Problem = "ops.reconcile.off"
		return c.renderReconcile(ec, http.StatusNotFound, v)
	}
	id := strings.ToLower(strings.TrimSpace(ec.FormValue("instance")))
	if !mstudio.IsUUID(id) { // the platform's instance ids are UUIDs; anything else is a hand-made form

		v.Problem = "ops.resume.bad_instance"
		return c.renderReconcile(ec, http.StatusBadRequest, v)
	}
	ctx, cancel := context.WithTimeout(ec.Request().Context(), 30*time.Second)
	defer cancel()
	if err := c.cfg.Reconcile.Resume(ctx, id); err != nil {
		c.f.logger.Warn("ops console: resume", "instance_id", id, "error", err.Error())
		v.Problem = "ops.resume.failed"
		return c.renderReconcile(ec, http.StatusBadGateway, v)
	}
	c.f.logger.Info("ops console: resume asked for", "instance_id", id)
	return ec.Redirect(http.StatusSeeOther, "/reconcile?"+url.Values{"resumed": {id}}.Encode())
}

// ConsoleSameOrigin refuses a state-changing request that a browser sends from another
// site, with 403. The console is reached at an address of the operator's choosing, so the
// check compares with the request's own host, not EXT_PUBLIC_URL: Sec-Fetch-Site must say
// same-origin, or, from a browser that does not send it, Origin must name the host the
// request came to. A request with neither is refused: a browser sends one on every post.
func (c *Console) ConsoleSameOrigin() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(ec echo.Context) error {
			r := ec.Request()
			switch r.Method {
			case http.MethodGet, http.MethodHead:
				return next(ec)
			}
			if consoleSameOrigin(r) {
				return next(ec)
			}
			c.f.refusals.Refused(r.Context(), "ops console: cross-site request", ec.RealIP())
			return c.f.Problem(ec, http.StatusForbidden, "problem.cross_site", "")
		}
	}
}

func consoleSameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return false
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// ConsoleJobs serves River's UI (h) under the console's JobsUI path, read-only but for
// retrying a job: pages and the reads of its API pass, a retry passes behind the
// same-origin check, and every other change River's UI offers (cancel, delete, pausing a
// queue) is refused with 403.
func (c *Console) ConsoleJobs(h http.Handler) echo.HandlerFunc {
	retry := c.cfg.JobsUI + "/api/jobs/retry"
	return func(ec echo.Context) error {
		r := ec.Request()
		switch {
		case r.Method == http.MethodGet || r.Method == http.MethodHead:
		case r.Method == http.MethodPost && r.URL.Path == retry:
			if !consoleSameOrigin(r) {
				c.f.refusals.Refused(r.Context(), "ops console: cross-site request", ec.RealIP())
				return echo.NewHTTPError(http.StatusForbidden, "cross-site request refused")
			}
		default:
			return echo.NewHTTPError(http.StatusForbidden, "the ops console changes nothing here but retrying a job")
		}
		// River's UI sets no framing policy of its own: a page that frames it could lure
		// a click on its retry button.
		hd := ec.Response().Header()
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "frame-ancestors 'none'")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(ec.Response(), r)
		return nil
	}
}

// validInstanceID reports whether s looks like a platform id: a search or a path never
// reaches the database with anything else.
func validInstanceID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Static serves the stylesheet and fonts the console's pages name.
func (c *Console) Static(ec echo.Context) error { return c.f.Static(ec) }
