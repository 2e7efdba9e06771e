package extension

import (
	"context"
	"fmt"
	"slices"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// FindingKind is what the reconciliation with the platform found wrong about an
// instance. The kinds are a closed set: they label a metric.
type FindingKind string

// The kinds of findings.
const (
	// FindingLostInstall: the platform has the instance, and we never received its
	// install (or hold only its tombstone).
	FindingLostInstall FindingKind = "lost_install"
	// FindingMissedRemoval: we hold the instance, and the platform no longer has it.
	FindingMissedRemoval FindingKind = "missed_removal"
	// FindingHalted: the platform stopped sending the instance's webhooks after failed
	// attempts; nothing more arrives until someone resumes them.
	FindingHalted FindingKind = "halted"
	// FindingFailed: a webhook of the instance failed and the platform will try again.
	FindingFailed FindingKind = "failed"
)

// FindingKinds lists every kind, in the order reports show them.
var FindingKinds = []FindingKind{FindingLostInstall, FindingMissedRemoval, FindingHalted, FindingFailed}

// Valid reports whether k is one of FindingKinds.
func (k FindingKind) Valid() bool { return slices.Contains(FindingKinds, k) }

// Advice says what the operator should do about a finding of the kind.
func (k FindingKind) Advice() string {
	switch k {
	case FindingLostInstall:
		return "the install never reached us: ask the platform to send it again (rotate the instance's secret, which sends it with SecretRotated, or have the customer reinstall); until then its users cannot sign in"
	case FindingMissedRemoval:
		return "the removal never reached us: check the delivery journal (`deliveries --instance ID`); the instance's data stays here until a removal arrives"
	case FindingHalted:
		return "the platform stopped sending this instance's webhooks: fix why our endpoint refused them (`deliveries --instance ID`), then resume them (`reconcile --resume` or the ops console)"
	case FindingFailed:
		return "a webhook to us failed and the platform will retry: check `deliveries --instance ID` and the endpoint's health before it halts"
	}
	return "unknown finding"
}

// ReconcileFinding is one finding of the reconciliation, as every replica sees it.
type ReconcileFinding struct {
	Kind       FindingKind `gorm:"primaryKey" json:"kind"`
	InstanceID string      `gorm:"primaryKey" json:"instanceId"`
	// Detail says what was seen (the platform's execution state, kind and attempts, or
	// which side holds the instance); never a secret.
	Detail     string     `json:"detail"`
	FirstSeen  time.Time  `json:"firstSeen"`
	LastSeen   time.Time  `json:"lastSeen"`
	ResolvedAt *time.Time `json:"resolvedAt,omitempty"` // set when a later run no longer found it (or a resume mended it)
}

// TableName is the table of findings.
func (ReconcileFinding) TableName() string { return "reconcile_findings" }

// Open reports whether the finding still stands.
func (f ReconcileFinding) Open() bool { return f.ResolvedAt == nil }

// RecordReconcile stores what one complete run found at the time at: each finding is
// added, or its detail and last_seen refreshed (one resolved before opens again, from
// at); every open finding the run did not find again is resolved. It returns the
// findings that were not open before, which the caller reports, and how many it resolved.
func (s *Store) RecordReconcile(ctx context.Context, found []ReconcileFinding, at time.Time) (fresh []ReconcileFinding, resolved int64, err error) {
	at = at.UTC()
	for _, f := range found {
		if !f.Kind.Valid() || f.InstanceID == "" {
			return nil, 0, fmt.Errorf("record reconcile: finding %q for instance %q: unknown kind or no instance", f.Kind, f.InstanceID)
		}
	}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var open []ReconcileFinding
		if err := tx.Where("resolved_at IS NULL").Find(&open).Error; err != nil {
			return err
		}
		type key struct {
			kind FindingKind
			id   string
		}
		wasOpen := map[key]bool{}
		for _, f := range open {
			wasOpen[key{f.Kind, f.InstanceID}] = true
		}
		seen := map[key]bool{}
		for _, f := range found {
			k := key{f.Kind, f.InstanceID}
			if seen[k] {
				continue // the platform listed it twice (pages that moved): once is enough
			}
			seen[k] = true
			row := ReconcileFinding{Kind: f.Kind, InstanceID: f.InstanceID, Detail: f.Detail, FirstSeen: at, LastSeen: at}
			update := map[string]any{"detail": f.Detail, "last_seen": at, "resolved_at": nil}
			if !wasOpen[k] {
				update["first_seen"] = at // a finding that comes back is a new one
				fresh = append(fresh, row)
			}
			if err := tx.Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "kind"}, {Name: "instance_id"}},
				DoUpdates: clause.Assignments(update),
			}).Create(&row).Error; err != nil {
				return err
			}
		}
		for _, f := range open {
			if seen[key{f.Kind, f.InstanceID}] {
				continue
			}
			res := tx.Model(&ReconcileFinding{}).Where("kind = ? AND instance_id = ? AND resolved_at IS NULL", f.Kind, f.InstanceID).
				Update("resolved_at", at)
			if res.Error != nil {
				return res.Error
			}
			resolved += res.RowsAffected
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("record reconcile: %w", translate(err))
	}
	return fresh, resolved, nil
}

// ResolveFinding marks an open finding resolved at the time at, as after a successful
// resume of a halted instance; ErrNotFound when it is not open.
func (s *Store) ResolveFinding(ctx context.Context, kind FindingKind, instanceID string, at time.Time) error {
	res := s.db.WithContext(ctx).Model(&ReconcileFinding{}).
		Where("kind = ? AND instance_id = ? AND resolved_at IS NULL", kind, instanceID).Update("resolved_at", at.UTC())
	if res.Error != nil {
		return fmt.Errorf("resolve finding: %w", translate(res.Error))
	}
	if res.RowsAffected == 0 {
		return ErrNotFound
	}
	return nil
}

// ReconcileFindings lists the findings, open ones only unless includeResolved is set,
// by kind in FindingKinds' order and then by first seen.
func (s *Store) ReconcileFindings(ctx context.Context, includeResolved bool) ([]ReconcileFinding, error) {
	q := s.db.WithContext(ctx).Order("first_seen").Order("instance_id")
	if !includeResolved {
		q = q.Where("resolved_at IS NULL")
	}
	var out []ReconcileFinding
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list reconcile findings: %w", translate(err))
	}
	slices.SortStableFunc(out, func(a, b ReconcileFinding) int {
		return slices.Index(FindingKinds, a.Kind) - slices.Index(FindingKinds, b.Kind)
	})
	return out, nil
}

// OpenFindingCounts counts the open findings by kind; every kind is in the map.
func (s *Store) OpenFindingCounts(ctx context.Context) (map[FindingKind]int, error) {
	var rows []struct {
		Kind  FindingKind
		Count int
	}
	err := s.db.WithContext(ctx).Model(&ReconcileFinding{}).Select("kind, COUNT(*) AS count").
		Where("resolved_at IS NULL").Group("kind").Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("count reconcile findings: %w", translate(err))
	}
	out := make(map[FindingKind]int, len(FindingKinds))
	for _, k := range FindingKinds {
		out[k] = 0
	}
	for _, r := range rows {
		if r.Kind.Valid() {
			out[r.Kind] = r.Count
		}
	}
	return out, nil
}
