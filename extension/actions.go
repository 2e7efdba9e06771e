package extension

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"gorm.io/gorm"
)

// Action states: an action is queued when started, running while its job works, and ends
// done or failed; retrying is a failed attempt that will be tried again.
const (
	ActionQueued   = "queued"
	ActionRunning  = "running"
	ActionRetrying = "retrying"
	ActionDone     = "done"
	ActionFailed   = "failed"
)

// Action outcomes: fixed words a page translates, never a text from the platform.
const (
	OutcomeOK            = "ok"
	OutcomeMissingScope  = "missing_scope"
	OutcomeNotAProject   = "not_a_project"
	OutcomePlatformError = "platform_error"
)

// maxActionInput bounds what an action keeps of its input.
const maxActionInput = 1024

// Action is a domain action a user started on the platform for an instance.
type Action struct {
	ID         string
	InstanceID string
	AccountID  string // who started it
	Kind       string
	Input      string // what the user asked for, as shown back to them
	State      string
	Outcome    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Finished reports whether the action has ended, done or failed.
func (a Action) Finished() bool { return a.State == ActionDone || a.State == ActionFailed }

type actionRow struct {
	ID         string `gorm:"primaryKey"`
	InstanceID string
	AccountID  string
	Kind       string
	Input      string
	State      string
	Outcome    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func (actionRow) TableName() string { return "actions" }

func (r actionRow) action() Action {
	return Action{ID: r.ID, InstanceID: r.InstanceID, AccountID: r.AccountID, Kind: r.Kind, Input: r.Input,
		State: r.State, Outcome: r.Outcome, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()}
}

// CreateAction records a new action of the account in the instance, queued, and returns
// it with its id. The input is kept to 1 KiB.
func (s *Store) CreateAction(ctx context.Context, instanceID, accountID, kind, input string) (Action, error) {
	if instanceID == "" || accountID == "" || kind == "" {
		return Action{}, errors.New("create action: instance, account and kind are required")
	}
	now := s.now().UTC()
	r := actionRow{ID: uuid.NewString(), InstanceID: instanceID, AccountID: accountID, Kind: kind,
		Input: clipUTF8(input, maxActionInput), State: ActionQueued, CreatedAt: now, UpdatedAt: now}
	if err := s.db.WithContext(ctx).Create(&r).Error; err != nil {
		return Action{}, fmt.Errorf("create action: %w", translateRef(translate(err)))
	}
	return r.action(), nil
}

// SetActionState moves an action of the instance on. An action that has ended stays as
// it is (a job run again after its end changes nothing); ErrNotFound for no such action.
func (s *Store) SetActionState(ctx context.Context, instanceID, id, state, outcome string) error {
	res := s.db.WithContext(ctx).Model(&actionRow{}).
		Where("id = ? AND instance_id = ? AND state NOT IN (?, ?)", id, instanceID, ActionDone, ActionFailed).
		Updates(map[string]any{"state": state, "outcome": outcome, "updated_at": s.now().UTC()})
	if res.Error != nil {
		return fmt.Errorf("set action state: %w", translate(res.Error))
	}
	if res.RowsAffected == 0 {
		if _, err := s.ActionByID(ctx, instanceID, id); err != nil {
			return err
		}
	}
	return nil
}

// ActionByID returns an action of the instance: an id of another instance's action is
// ErrNotFound, as an unknown one is.
func (s *Store) ActionByID(ctx context.Context, instanceID, id string) (Action, error) {
	var r actionRow
	err := s.db.WithContext(ctx).Where("id = ? AND instance_id = ?", id, instanceID).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return Action{}, ErrNotFound
	}
	if err != nil {
		return Action{}, fmt.Errorf("load action: %w", translate(err))
	}
	return r.action(), nil
}

// Actions returns the instance's most recent actions, newest first, at most limit.
func (s *Store) Actions(ctx context.Context, instanceID string, limit int) ([]Action, error) {
	var rows []actionRow
	err := s.db.WithContext(ctx).Where("instance_id = ?", instanceID).
		Order("created_at DESC").Order("id").Limit(limit).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", translate(err))
	}
	out := make([]Action, len(rows))
	for i, r := range rows {
		out[i] = r.action()
	}
	return out, nil
}

// clipUTF8 cuts s to at most n bytes on a rune boundary.
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
