package frontend

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/labstack/echo/v4"
)

// ActionStarter starts domain actions: the job queue (package jobs), which cmd hands over.
// An action runs as a job with the instance's token; its row in the store carries
// progress and result back to the page.
type ActionStarter interface {
	// StartRenameProject records the account's action to rename the instance's project
	// and enqueues it. It fails with ErrBadProjectName's kind of error for a name the
	// platform would refuse (BadInput reports that).
	StartRenameProject(ctx context.Context, instanceID, accountID, name string) (extension.Action, error)
	// BadInput reports whether err is the caller's mistake (such as an empty name).
	BadInput(err error) bool
}

// The rename action's scope and route names, as the job queue knows them.
const (
	actionRenameProject = "rename_project"
	scopeRenameProject  = "project:write"
	maxProjectName      = 255
)

// ActionPath is the page of one action of an instance.
func ActionPath(instanceID, actionID string) string {
	return AppPath(instanceID) + "/actions/" + actionID
}

// RenameProjectPath is the page that starts the rename action.
func RenameProjectPath(instanceID string) string {
	return AppPath(instanceID) + "/actions/rename-project"
}

// renameView is what the rename page shows.
type renameView struct {
	InstanceID string
	Context    contextView
	// Blocked is why the action cannot run here, as a copy key: an organisation's
	// instance has no project, and an instance without project:write may not rename it.
	Blocked string
	Name    string // the name entered, shown again after a mistake
	Problem string // a copy key of what was wrong with the input
	Recent  []actionView
}

type actionView struct {
	ID, Input, State, Outcome, URL string
	Finished                       bool
	CreatedAt                      string
}

func viewAction(a extension.Action) actionView {
	return actionView{ID: a.ID, Input: a.Input, State: a.State, Outcome: a.Outcome, URL: ActionPath(a.InstanceID, a.ID),
		Finished: a.Finished(), CreatedAt: minuteUTC(a.CreatedAt)}
}

// blockedReason says why the instance cannot run the rename, or "" when it can.
func blockedReason(in *extension.Instance) string {
	switch {
	case in.ContextKind != extension.ContextProject:
		return "action.rename.blocked_customer"
	case !slices.Contains(in.ConsentedScopes, scopeRenameProject):
		return "action.rename.blocked_scope"
	}
	return ""
}

// RenameProject serves GET /app/{instanceId}/actions/rename-project: the form, or why the
// action cannot run here and what to do, and the instance's recent actions.
func (f *Frontend) RenameProject(c echo.Context) error {
	return f.renderRename(c, http.StatusOK, "", "")
}

func (f *Frontend) renderRename(c echo.Context, status int, name, problem string) error {
	s, _ := SignedInFrom(c.Request().Context())
	recent, err := f.store.Actions(c.Request().Context(), s.Instance.ID, 10)
	if err != nil {
		return f.internal(c, "list actions", err)
	}
	v := renameView{InstanceID: s.Instance.ID, Context: contextOf(s.Instance), Blocked: blockedReason(s.Instance),
		Name: name, Problem: problem}
	for _, a := range recent {
		v.Recent = append(v.Recent, viewAction(a))
	}
	if status == http.StatusOK {
		return f.renderReloadable(c, status, pageRename, v)
	}
	return f.Render(c, status, pageRename, v)
}

// StartRenameProject serves POST /app/{instanceId}/actions/rename-project with the field
// name: it starts the action for the signed-in account and sends the browser to the
// action's page.
func (f *Frontend) StartRenameProject(c echo.Context) error {
	s, _ := SignedInFrom(c.Request().Context())
	values, ok := formValues(c, "name")
	if !ok {
		return f.Problem(c, http.StatusBadRequest, "error.bad_request", "")
	}
	name := values.Get("name")
	if len(name) > 4*maxProjectName {
		name = name[:4*maxProjectName]
	}
	if f.actions == nil {
		return f.Problem(c, http.StatusServiceUnavailable, "error.server", "")
	}
	if blockedReason(s.Instance) != "" {
		return f.renderRename(c, http.StatusForbidden, name, "")
	}
	a, err := f.actions.StartRenameProject(c.Request().Context(), s.Instance.ID, s.Account.ID, name)
	switch {
	case err != nil && f.actions.BadInput(err):
		return f.renderRename(c, http.StatusBadRequest, name, "action.rename.bad_name")
	case err != nil:
		return f.internal(c, "start action", err)
	}
	f.logger.InfoContext(c.Request().Context(), "action started", "instance_id", s.Instance.ID,
		"account_id", s.Account.ID, "action", actionRenameProject, "action_id", a.ID)
	return c.Redirect(http.StatusSeeOther, ActionPath(s.Instance.ID, a.ID))
}

// Action serves GET /app/{instanceId}/actions/{actionId}: how the action goes. While it
// runs, the page reloads itself every two seconds (a meta refresh: no script needed).
func (f *Frontend) Action(c echo.Context) error {
	s, _ := SignedInFrom(c.Request().Context())
	id := c.Param("actionId")
	if !uuidPattern.MatchString(id) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	a, err := f.store.ActionByID(c.Request().Context(), s.Instance.ID, id)
	if errors.Is(err, extension.ErrNotFound) {
		return f.Problem(c, http.StatusNotFound, "error.not_found", "")
	}
	if err != nil {
		return f.internal(c, "load action", err)
	}
	return f.Render(c, http.StatusOK, pageAction, struct {
		InstanceID string
		Action     actionView
		Back       string
	}{s.Instance.ID, viewAction(a), RenameProjectPath(s.Instance.ID)})
}
