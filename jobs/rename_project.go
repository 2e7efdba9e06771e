package jobs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/riverqueue/river"
)

// The worked domain action: a user of the extension's pages renames the instance's
// project (its description, the name users know it by) on the platform. It shows the
// pattern of every action: the page records the action (who, what), a job does the work
// with the instance token, and the action's row carries progress and result back to the
// page.

// Audit kinds of domain actions: started by an account, and ended (done or failed, with
// the outcome), attributed to the account that started it.
const (
	AuditActionStarted = "action.started"
	AuditActionEnded   = "action.ended"
)

// KindRenameProject is the rename action's job kind.
const KindRenameProject = "rename_project"

// ScopeRenameProject is the scope the instance needs for the rename.
const ScopeRenameProject = "project:write"

// renameAttempts is how often the rename is tried before it counts as failed.
const renameAttempts = 5

// MaxProjectName bounds a new project name, as the platform does.
const MaxProjectName = 255

// ErrBadProjectName is a name the platform would not take: empty, too long or not text.
var ErrBadProjectName = errors.New("a project name has 1 to 255 characters")

type renameProjectArgs struct {
	For
	ActionID string `json:"action_id"`
	Name     string `json:"name"`
}

func (renameProjectArgs) Kind() string { return KindRenameProject }

func (renameProjectArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: renameAttempts}
}

// StartRenameProject records the account's action to rename the instance's project and
// enqueues the job that does it; the action's row tells the page how it goes.
func (j *Jobs) StartRenameProject(ctx context.Context, instanceID, accountID, name string) (extension.Action, error) {
	name = strings.TrimSpace(name)
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxProjectName {
		return extension.Action{}, ErrBadProjectName
	}
	a, err := j.store.CreateAction(ctx, instanceID, accountID, KindRenameProject, name)
	if err != nil {
		return extension.Action{}, err
	}
	// Local users act through the instance token: the audit log is where the platform's
	// change is tied to the account that asked for it.
	if err := j.store.Audit(ctx, extension.AuditEvent{InstanceID: instanceID, AccountID: accountID, Kind: AuditActionStarted,
		Detail: map[string]string{"action": KindRenameProject, "action_id": a.ID, "name": name}}); err != nil {
		return extension.Action{}, err
	}
	if err := j.Enqueue(ctx, renameProjectArgs{For: For{instanceID}, ActionID: a.ID, Name: name}); err != nil {
		// The action cannot run: say so on its row rather than leave it queued for ever.
		_ = j.store.SetActionState(context.WithoutCancel(ctx), instanceID, a.ID, extension.ActionFailed, extension.OutcomePlatformError)
		return extension.Action{}, err
	}
	return a, nil
}

func (j *Jobs) registerActions() {
	river.AddWorker(j.workers, &renameWorker{j: j})
}

type renameWorker struct {
	river.WorkerDefaults[renameProjectArgs]
	j *Jobs
}

func (w *renameWorker) Work(ctx context.Context, job *river.Job[renameProjectArgs]) error {
	args := job.Args
	return w.j.forInstance(ctx, args.InstanceID, func(in *extension.Instance, api InstanceAPI) error {
		err := w.j.renameProject(ctx, in, api, args)
		if err == nil {
			return nil
		}
		var cancel *river.JobCancelError
		final := errors.As(err, &cancel) || job.Attempt >= job.MaxAttempts
		state := extension.ActionRetrying
		if final {
			state = extension.ActionFailed
		}
		if final {
			if aerr := w.j.auditEnd(ctx, in.ID, args.ActionID, state, extension.OutcomePlatformError); aerr != nil {
				return aerr
			}
		}
		if serr := w.j.store.SetActionState(ctx, in.ID, args.ActionID, state, extension.OutcomePlatformError); serr != nil {
			return serr
		}
		return err
	})
}

// renameProject does the rename: it checks what the platform would refuse first (an
// organisation's instance, a missing scope), so those end at once with their own
// outcome, then calls the platform and stores the new name on the instance.
func (j *Jobs) renameProject(ctx context.Context, in *extension.Instance, api InstanceAPI, args renameProjectArgs) error {
	end := func(state, outcome string) error {
		// The audit event first: an action that shows as ended has its event.
		if state == extension.ActionDone || state == extension.ActionFailed {
			if err := j.auditEnd(ctx, in.ID, args.ActionID, state, outcome); err != nil {
				return err
			}
		}
		return j.store.SetActionState(ctx, in.ID, args.ActionID, state, outcome)
	}
	switch {
	case in.ContextKind != extension.ContextProject:
		return end(extension.ActionFailed, extension.OutcomeNotAProject)
	case !slices.Contains(in.ConsentedScopes, ScopeRenameProject):
		return end(extension.ActionFailed, extension.OutcomeMissingScope)
	}
	if err := end(extension.ActionRunning, ""); err != nil {
		return err
	}
	token, err := api.Token(ctx)
	if err != nil {
		return err
	}
	err = api.Client.UpdateProjectDescription(ctx, token, in.ContextID, args.Name)
	// The name holds at the platform from the answer on: a read that began before it
	// (a post-install or refresh job) may still bring the old name, with an earlier time,
	// and so cannot overwrite this one.
	at := time.Now()
	var apiErr *mstudio.Error
	switch {
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusForbidden:
		// The platform's word on the scope is the last: ours may lag a consent.
		return end(extension.ActionFailed, extension.OutcomeMissingScope)
	case err != nil && permanent(err):
		return Cancel(fmt.Errorf("rename project: %w", err))
	case err != nil:
		return err
	}
	if err := j.store.SetContextName(ctx, in.ID, args.Name, at); err != nil {
		return err
	}
	return end(extension.ActionDone, extension.OutcomeOK)
}

// BadInput reports whether err is the caller's mistake in starting an action (such as a
// name the platform would refuse), as opposed to a failure of ours.
func (j *Jobs) BadInput(err error) bool { return errors.Is(err, ErrBadProjectName) }

// auditEnd records how an action ended, attributed to the account that started it.
func (j *Jobs) auditEnd(ctx context.Context, instanceID, actionID, state, outcome string) error {
	a, err := j.store.ActionByID(ctx, instanceID, actionID)
	if err != nil {
		return err
	}
	return j.store.Audit(ctx, extension.AuditEvent{InstanceID: instanceID, AccountID: a.AccountID, Kind: AuditActionEnded,
		Detail: map[string]string{"action": a.Kind, "action_id": a.ID, "state": state, "outcome": outcome}})
}
