package frontend

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// The audit log page (GET /app/{instanceId}/audit), for owners and admins: the instance's
// events newest first, each as a plain sentence in the page's language, filtered by
// account and kind, in pages of auditPageSize linked by the store's cursor. Events are
// kept a year (extension.AuditRetention; serve's daily clean-up prunes older ones).

const pageAudit = "audit"

// auditPageSize is how many events one page shows.
const auditPageSize = 50

// Audit kinds the jobs write (package jobs, which the frontend may not import; a test in
// cmd checks these match).
const (
	auditActionStarted = "action.started"
	auditActionEnded   = "action.ended"
)

// auditKinds are the kinds of audit events there are, in the order the filter offers
// them. Each has a label (audit.kind.KIND) and at least one sentence (audit.what.KIND…).
var auditKinds = []string{
	extension.AuditSignIn, extension.AuditSignInFailed, extension.AuditSignInLocked,
	extension.AuditPasswordChanged, extension.AuditPasswordResetIssued, extension.AuditPasswordReset,
	extension.AuditSessionsEnded,
	extension.AuditInvitationCreated, extension.AuditInvitationReissued, extension.AuditInvitationRevoked, extension.AuditInvitationAccepted,
	extension.AuditRoleChanged, extension.AuditAccountRemoved, extension.AuditOwnershipTransferred, extension.AuditOwnershipReclaimed,
	extension.AuditSettingsChanged, extension.AuditDataExported,
	extension.AuditSignInRefused, extension.AuditIdentityLinked, extension.AuditIdentityUnlinked, extension.AuditAccountProvisioned,
	extension.AuditRoleDerived, extension.AuditOIDCProviderAdded, extension.AuditOIDCProviderChanged, extension.AuditOIDCProviderDeleted,
	auditActionStarted, auditActionEnded,
}

// AuditKinds lists the audit kinds the audit page describes.
func AuditKinds() []string { return slices.Clone(auditKinds) }

// auditQuery is the audit page's query: its filters and where the page starts.
type auditQuery struct {
	Account string // an account id; "": every account
	Kind    string // one of auditKinds; "": every kind
	Before  *extension.AuditCursor
}

// encode writes the query back, without the cursor.
func (q auditQuery) values() url.Values {
	v := url.Values{}
	if q.Account != "" {
		v.Set("account", q.Account)
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	return v
}

// parseAuditQuery reads the audit page's query strictly: account (an id), kind (a known
// kind) and before (a cursor the page wrote), each at most once; other parameters (such
// as lang) are not its business. ok is false for anything else: the page then says so
// rather than show a list that is not what was asked for.
func parseAuditQuery(q url.Values) (aq auditQuery, ok bool) {
	for _, k := range []string{"account", "kind", "before"} {
		if len(q[k]) > 1 {
			return auditQuery{}, false
		}
	}
	aq.Account, aq.Kind = q.Get("account"), q.Get("kind")
	if aq.Account != "" && (!uuidPattern.MatchString(aq.Account) || strings.ToLower(aq.Account) != aq.Account) {
		return auditQuery{}, false
	}
	if aq.Kind != "" && !slices.Contains(auditKinds, aq.Kind) {
		return auditQuery{}, false
	}
	if raw := q.Get("before"); raw != "" {
		c, err := extension.ParseAuditCursor(raw)
		if err != nil {
			return auditQuery{}, false
		}
		aq.Before = &c
	}
	return aq, true
}

// auditView is what the audit page shows.
type auditView struct {
	Tabs     tabsView
	Accounts []auditAccount
	Kinds    []auditKindOption
	Query    auditQuery
	Events   []auditLine
	Older    string // the link to the next page; "" on the last
	Newest   string // the link to the first page, on a later one
	Problem  bool   // the query was not one the page wrote
	Filtered bool
}

type auditAccount struct {
	ID, Label string
}

type auditKindOption struct {
	Kind, Label string
}

type auditLine struct {
	Time, When string // the time shown, and its machine-readable form
	Who        string
	What       string
	Facts      []auditFact
}

type auditFact struct {
	Label, Value string
}

// Audit serves GET /app/{instanceId}/audit?account=&kind=&before=.
func (f *Frontend) Audit(c echo.Context) error {
	ctx := c.Request().Context()
	s, _ := SignedInFrom(ctx)
	if !extension.CanReadAudit(s.Account.Role) {
		return f.Problem(c, http.StatusForbidden, "audit.forbidden", "")
	}
	cat := f.copyFor(c)
	accounts, err := f.store.Accounts(ctx, s.Instance.ID)
	if err != nil {
		return f.internal(c, "list accounts", err)
	}
	v := auditView{Tabs: tabsFor(s, tabAudit)}
	for _, a := range accounts {
		label := a.Name
		switch {
		case label == "" && a.Email == "":
			label = cat.text("audit.who.unnamed")
		case label == "":
			label = a.Email
		case a.Email != "":
			label += " (" + a.Email + ")"
		}
		v.Accounts = append(v.Accounts, auditAccount{ID: a.ID, Label: label})
	}
	for _, k := range auditKinds {
		v.Kinds = append(v.Kinds, auditKindOption{Kind: k, Label: cat.text("audit.kind." + k)})
	}
	q, ok := parseAuditQuery(c.QueryParams())
	if ok && q.Account != "" && !slices.ContainsFunc(accounts, func(a extension.Account) bool { return a.ID == q.Account }) {
		ok = false // not an account of this instance (or no more)
	}
	if !ok {
		v.Problem = true
		return f.Render(c, http.StatusBadRequest, pageAudit, v)
	}
	v.Query, v.Filtered = q, q.Account != "" || q.Kind != ""
	events, next, err := f.store.AuditEvents(ctx, s.Instance.ID, extension.AuditFilter{AccountID: q.Account, Kind: q.Kind},
		extension.AuditPage{After: q.Before, Limit: auditPageSize})
	if err != nil {
		return f.internal(c, "list audit events", err)
	}
	for _, ev := range events {
		v.Events = append(v.Events, describeAudit(cat, ev))
	}
	base := AppPath(s.Instance.ID) + "/audit"
	if next != nil {
		older := q.values()
		older.Set("before", next.String())
		v.Older = base + "?" + older.Encode()
	}
	if q.Before != nil {
		v.Newest = base
		if enc := q.values().Encode(); enc != "" {
			v.Newest += "?" + enc
		}
	}
	return f.renderReloadable(c, http.StatusOK, pageAudit, v)
}

// describeAudit turns an event into a line of the page: who, and what in a sentence with
// the facts of its details that mean something to a reader. Ids in the details are left
// out; the details never hold a secret in the first place.
func describeAudit(cat catalog, ev extension.AuditEvent) auditLine {
	line := auditLine{Time: ev.CreatedAt.Format("2006-01-02 15:04:05 UTC"), When: ev.CreatedAt.Format("2006-01-02T15:04:05Z")}
	switch {
	case ev.AccountID == "" && ev.ActorName == extension.ActorOperator:
		line.Who = cat.text("audit.who.operator")
	case ev.AccountID == "" && ev.ActorName == extension.ActorPlatform:
		line.Who = cat.text("audit.who.platform")
	case ev.AccountID == "" && (ev.ActorName == extension.ActorForgotPassword || ev.ActorName == "forgot password"):
		// "forgot password": the label before ActorForgotPassword, in older events.
		line.Who = cat.text("audit.who.forgot_password")
	case ev.ActorName != "":
		line.Who = ev.ActorName
	case ev.AccountID == "":
		line.Who = cat.text("audit.who.system")
	default:
		line.Who = cat.text("audit.who.unnamed")
	}
	d := ev.Detail
	role := func(r string) string {
		if extension.ValidRole(r) {
			return cat.text("role." + r)
		}
		return r
	}
	name := d["name"]
	if name == "" {
		name = cat.text("audit.someone")
	}
	fact := func(labelKey, value string) {
		if value != "" {
			line.Facts = append(line.Facts, auditFact{Label: cat.text(labelKey), Value: value})
		}
	}
	what := func(key string, args ...string) { line.What = cat.text(key, args...) }
	switch ev.Kind {
	case extension.AuditSignIn:
		if m := d["method"]; m == "password" || m == "platform" {
			what("audit.what.sign_in." + m)
		} else if m == "oidc" {
			what("audit.what.sign_in.oidc", "provider", d["provider"])
		} else {
			what("audit.what.sign_in")
		}
	case extension.AuditSignInFailed, extension.AuditSignInLocked:
		if d["where"] == "password_change" {
			what("audit.what." + ev.Kind + ".password_change")
		} else {
			what("audit.what." + ev.Kind)
		}
	case extension.AuditPasswordChanged, extension.AuditPasswordReset:
		what("audit.what." + ev.Kind)
	case extension.AuditPasswordResetIssued:
		what("audit.what."+ev.Kind, "name", name)
		fact("audit.fact.email", d["email"])
	case extension.AuditSessionsEnded:
		switch {
		case d["count"] == "1" && d["user_agent"] != "":
			what("audit.what.sessions.ended.one", "device", deviceText(cat, d["user_agent"]))
		case d["count"] == "1":
			what("audit.what.sessions.ended.other")
		default:
			what("audit.what.sessions.ended", "count", d["count"])
		}
	case extension.AuditInvitationCreated, extension.AuditInvitationReissued, extension.AuditInvitationRevoked:
		what("audit.what."+ev.Kind, "email", d["email"], "role", role(d["role"]))
	case extension.AuditInvitationAccepted:
		what("audit.what."+ev.Kind, "role", role(d["role"]))
		fact("audit.fact.email", d["email"])
		fact("audit.fact.invited_by", d["invited_by"])
	case extension.AuditRoleChanged:
		what("audit.what."+ev.Kind, "name", name, "from", role(d["from"]), "to", role(d["to"]))
	case extension.AuditAccountRemoved:
		what("audit.what."+ev.Kind, "name", name)
		fact("audit.fact.email", d["email"])
		fact("audit.fact.role", role(d["role"]))
	case extension.AuditOwnershipTransferred, extension.AuditOwnershipReclaimed:
		what("audit.what."+ev.Kind, "name", name)
	case extension.AuditSignInRefused:
		reason := cat.text("oidc.refused." + d["reason"] + ".title")
		what("audit.what."+ev.Kind, "provider", d["provider"], "reason", reason)
		fact("audit.fact.email", d["email"])
	case extension.AuditIdentityLinked, extension.AuditIdentityUnlinked:
		what("audit.what."+ev.Kind, "provider", d["provider"])
		fact("audit.fact.email", d["email"])
	case extension.AuditAccountProvisioned:
		what("audit.what."+ev.Kind, "provider", d["provider"], "role", role(d["role"]))
		fact("audit.fact.email", d["email"])
	case extension.AuditRoleDerived:
		what("audit.what."+ev.Kind, "provider", d["provider"], "name", name, "from", role(d["from"]), "to", role(d["to"]))
		if d["group"] != "" {
			fact("audit.fact.group", d["group"])
		} else {
			fact("audit.fact.group", cat.text("audit.fact.no_group"))
		}
	case extension.AuditOIDCProviderAdded, extension.AuditOIDCProviderChanged, extension.AuditOIDCProviderDeleted:
		what("audit.what."+ev.Kind, "name", d["name"])
		fact("audit.fact.issuer", d["issuer"])
		fact("audit.fact.role_map", d["role_map"])
		if e := d["enabled"]; e == "true" || e == "false" {
			fact("audit.fact.enabled", cat.text("audit.fact.enabled."+e))
		}
	case extension.AuditDataExported:
		what("audit.what." + ev.Kind)
	case extension.AuditSettingsChanged:
		what("audit.what." + ev.Kind)
		settingsFacts(cat, d, fact, role)
	case auditActionStarted:
		if d["action"] == actionRenameProject {
			what("audit.what.action.started.rename_project", "name", d["name"])
		} else {
			what("audit.what.action.started")
		}
	case auditActionEnded:
		state := d["state"]
		if _, ok := cat["action.state."+state]; ok {
			state = cat.text("action.state." + state)
		}
		if d["action"] == actionRenameProject {
			what("audit.what.action.ended.rename_project", "state", state)
		} else {
			what("audit.what.action.ended", "state", state)
		}
		if _, ok := cat["action.outcome."+d["outcome"]]; ok {
			fact("audit.fact.outcome", cat.text("action.outcome."+d["outcome"]))
		}
	default:
		what("audit.what.unknown", "kind", ev.Kind)
	}
	return line
}

// settingsFacts lists what a change of the sign-in settings changed; its details hold
// "before → after" per setting.
func settingsFacts(cat catalog, d map[string]string, fact func(labelKey, value string), role func(string) string) {
	change := func(key string, show func(string) string) string {
		before, after, ok := strings.Cut(d[key], " → ")
		if !ok || before == after {
			return ""
		}
		return show(before) + " → " + show(after)
	}
	fact("audit.fact.default_role", change("default_role", role))
	fact("audit.fact.allowed_domains", change("allowed_domains", func(s string) string {
		if s == "" {
			return cat.text("audit.any_domain")
		}
		return strings.ReplaceAll(s, ",", ", ")
	}))
	fact("audit.fact.password_login", change("password_login", func(s string) string {
		switch s {
		case "true":
			return cat.text("audit.on")
		case "false":
			return cat.text("audit.off")
		}
		return s
	}))
}
