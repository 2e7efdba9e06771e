package extension

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// EventKind is a lifecycle event kind, in the platform's short (documented) spelling.
type EventKind string

// The four lifecycle events.
const (
	EventAdded         EventKind = "ExtensionAddedToContext"
	EventUpdated       EventKind = "InstanceUpdated"
	EventSecretRotated EventKind = "SecretRotated"
	EventRemoved       EventKind = "InstanceRemovedFromContext"
)

// LifecycleEvent is a verified lifecycle delivery, reduced to what the store needs.
type LifecycleEvent struct {
	Kind       EventKind
	RequestID  string    // unique per delivery attempt
	CreatedAt  time.Time // when the platform built the event; orders events per instance
	InstanceID string

	ContextKind string
	ContextID   string
	Scopes      []string // nil: not sent (SecretRotated)
	Enabled     *bool    // nil: not sent
	VariantKey  string
	Secret      Secret // ExtensionAddedToContext and SecretRotated
}

// Outcome says what a delivery did; it is journaled and logged.
type Outcome string

// Delivery outcomes.
const (
	OutcomeApplied   Outcome = "applied"   // the event changed the instance
	OutcomeStale     Outcome = "stale"     // older than the last applied event: nothing changed
	OutcomeDuplicate Outcome = "duplicate" // this event was applied before: nothing changed
	OutcomeDryRun    Outcome = "dry-run"   // a dry run: verified and validated, nothing changed
	OutcomeIgnored   Outcome = "ignored"   // verified, but nothing to do (unknown kind, removed instance)
	OutcomeRefused   Outcome = "refused"   // verified, but refused (foreign extension, invalid payload)
)

// Result is the outcome of one delivery and, when nothing changed, why.
type Result struct {
	Outcome Outcome
	Reason  string
}

// ApplyLifecycle applies one lifecycle event and journals it, in one transaction.
// It is idempotent and order-safe: per instance it remembers request.createdAt of the last
// event applied; an older event is stale, an equal one or a replayed request id is a
// duplicate, and a removed instance is revived only by a newer ExtensionAddedToContext.
func (s *Store) ApplyLifecycle(ctx context.Context, ev LifecycleEvent) (Result, error) {
	var sealed string
	if !ev.Secret.IsZero() {
		var err error
		if sealed, err = s.keys.Seal(ev.Secret, secretAAD(ev.InstanceID)); err != nil {
			return Result{}, fmt.Errorf("seal secret of instance %s: %w", ev.InstanceID, err)
		}
	}
	for attempt := 1; ; attempt++ {
		var res Result
		err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			var err error
			res, err = s.applyLifecycle(tx, ev, sealed)
			if err != nil {
				return err
			}
			return s.journal(tx, ev, res)
		})
		// Two replicas may both see no row for a new instance and both insert; the loser
		// gets a unique violation and simply runs again against the winner's row.
		if errors.Is(translate(err), ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, translate(err))
		}
		return res, nil
	}
}

func (s *Store) applyLifecycle(tx *gorm.DB, ev LifecycleEvent, sealed string) (Result, error) {
	var seen int64
	if err := tx.Model(&Delivery{}).
		Where("request_id = ? AND outcome IN ?", ev.RequestID, []Outcome{OutcomeApplied, OutcomeStale, OutcomeDuplicate, OutcomeIgnored}).
		Count(&seen).Error; err != nil {
		return Result{}, err
	}
	if seen > 0 {
		return Result{OutcomeDuplicate, "request id seen before"}, nil
	}

	var in Instance
	err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Take(&in, "id = ?", ev.InstanceID).Error
	exists := err == nil
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return Result{}, err
	}
	created := ev.CreatedAt.UnixNano()
	if exists {
		switch {
		case created < in.LastEventNano:
			return Result{OutcomeStale, "older than the last applied event"}, nil
		case created == in.LastEventNano:
			return Result{OutcomeDuplicate, "same event time as the last applied event"}, nil
		case in.Removed() && ev.Kind != EventAdded:
			return Result{OutcomeIgnored, "instance was removed"}, nil
		}
	}
	if !exists || in.Removed() {
		// A new record, or a tombstone brought back by a newer install: start clean.
		in = Instance{ID: ev.InstanceID, Enabled: true, CreatedAt: in.CreatedAt}
	}
	if ev.ContextID != "" {
		in.ContextKind, in.ContextID = ev.ContextKind, ev.ContextID
	}
	switch ev.Kind {
	case EventAdded, EventUpdated:
		if ev.Scopes != nil {
			in.ConsentedScopes = ev.Scopes
		}
		if ev.Enabled != nil {
			in.Enabled = *ev.Enabled
		}
		in.VariantKey = ev.VariantKey
		if sealed != "" {
			in.SealedSecret = sealed
		}
	case EventSecretRotated:
		in.SealedSecret = sealed
	case EventRemoved:
		// Destroy the secret: nothing can mint a token for this instance any more.
		now := s.now().UTC()
		in.SealedSecret, in.Enabled, in.RemovedAt = "", false, &now
		if ev.Scopes != nil {
			in.ConsentedScopes = ev.Scopes
		}
	default:
		return Result{OutcomeIgnored, "unknown event kind"}, nil
	}
	if in.ConsentedScopes == nil {
		in.ConsentedScopes = []string{}
	}
	in.LastEventNano = created
	in.UpdatedAt = s.now().UTC()
	if in.CreatedAt.IsZero() {
		in.CreatedAt = in.UpdatedAt
	}
	if exists {
		err = tx.Select("*").Omit("created_at").Where("id = ?", in.ID).Updates(&in).Error
	} else {
		err = tx.Create(&in).Error
	}
	if err != nil {
		return Result{}, err
	}
	return Result{Outcome: OutcomeApplied}, nil
}
