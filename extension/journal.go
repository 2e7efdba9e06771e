package extension

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// DeliveryRetention is how long journal rows are kept.
const DeliveryRetention = 30 * 24 * time.Hour

// Delivery is one row of the webhook delivery journal. It records what arrived and what
// became of it, never the body or the secret.
type Delivery struct {
	ID             int64 `gorm:"primaryKey"`
	RequestID      string
	Kind           string
	InstanceID     string
	EventCreatedAt *time.Time // request.createdAt, when the payload had one
	ReceivedAt     time.Time
	Outcome        Outcome
	Reason         string
}

// TableName names the journal table.
func (Delivery) TableName() string { return "webhook_deliveries" }

// deliveryRow is the journal row of a delivery.
func (s *Store) deliveryRow(ev LifecycleEvent, res Result) *Delivery {
	d := &Delivery{
		RequestID:  ev.RequestID,
		Kind:       string(ev.Kind),
		InstanceID: ev.InstanceID,
		ReceivedAt: s.now().UTC(),
		Outcome:    res.Outcome,
		Reason:     res.Reason,
	}
	if !ev.CreatedAt.IsZero() {
		t := ev.CreatedAt.UTC()
		d.EventCreatedAt = &t
	}
	return d
}

// RecordDelivery journals a verified delivery that did not go through ApplyLifecycle:
// a dry run, an ignored kind, a refused payload.
func (s *Store) RecordDelivery(ctx context.Context, ev LifecycleEvent, res Result) error {
	if err := s.db.WithContext(ctx).Create(s.deliveryRow(ev, res)).Error; err != nil {
		return fmt.Errorf("journal delivery: %w", translate(err))
	}
	return nil
}

// Deliveries lists at most limit journal rows, newest first; instanceID filters when not
// empty.
func (s *Store) Deliveries(ctx context.Context, instanceID string, limit int) ([]Delivery, error) {
	q := s.db.WithContext(ctx).Order("id DESC").Limit(limit)
	if instanceID != "" {
		q = q.Where("instance_id = ?", instanceID)
	}
	var out []Delivery
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list deliveries: %w", translate(err))
	}
	return out, nil
}

// Outcomes lists every outcome the journal records, in the order of the lifecycle's
// documentation.
func Outcomes() []Outcome {
	return []Outcome{OutcomeApplied, OutcomePartlyApplied, OutcomeStale, OutcomeDuplicate, OutcomeDryRun, OutcomeIgnored, OutcomeRefused}
}

// ParseOutcome reads an outcome as the journal writes it; anything else is an error that
// lists the outcomes there are.
func ParseOutcome(s string) (Outcome, error) {
	for _, o := range Outcomes() {
		if string(o) == s {
			return o, nil
		}
	}
	names := make([]string, 0, len(Outcomes()))
	for _, o := range Outcomes() {
		names = append(names, string(o))
	}
	return "", fmt.Errorf("%q is no delivery outcome: want one of %s", s, strings.Join(names, ", "))
}

// DeliveryFilter selects journal rows; its zero fields select everything.
type DeliveryFilter struct {
	InstanceID string
	Outcome    Outcome
	Since      time.Time // received at or after
	Limit      int       // at most this many, the newest; 0: 1000
}

// ListDeliveries lists the journal rows the filter selects, newest first.
func (s *Store) ListDeliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	q := s.db.WithContext(ctx).Order("id DESC").Limit(f.Limit)
	if f.InstanceID != "" {
		q = q.Where("instance_id = ?", f.InstanceID)
	}
	if f.Outcome != "" {
		q = q.Where("outcome = ?", string(f.Outcome))
	}
	if !f.Since.IsZero() {
		q = q.Where("received_at >= ?", f.Since.UTC())
	}
	var out []Delivery
	if err := q.Find(&out).Error; err != nil {
		return nil, fmt.Errorf("list deliveries: %w", translate(err))
	}
	for i := range out {
		out[i].ReceivedAt = out[i].ReceivedAt.UTC()
		if out[i].EventCreatedAt != nil {
			t := out[i].EventCreatedAt.UTC()
			out[i].EventCreatedAt = &t
		}
	}
	return out, nil
}

// pruneChunk bounds one delete: on SQLite a delete holds the only connection, and
// deliveries must not wait behind a month of rows.
const pruneChunk = 5000

// PruneDeliveries deletes journal rows received before the cutoff, in chunks, and says
// how many.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.pruneReceivedBefore(ctx, &Delivery{}, before, pruneChunk)
	if err != nil {
		return n, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}

// pruneReceivedBefore deletes the rows of model's table received before the cutoff, the
// oldest first, chunk at a time so that no statement holds the writer long, and says how
// many.
func (s *Store) pruneReceivedBefore(ctx context.Context, model any, before time.Time, chunk int) (int64, error) {
	var total int64
	for {
		oldest := s.db.Model(model).Select("id").Where("received_at < ?", before.UTC()).Order("received_at").Limit(chunk)
		res := s.db.WithContext(ctx).Where("id IN (?)", oldest).Delete(model)
		if res.Error != nil {
			return total, translate(res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < int64(chunk) {
			return total, nil
		}
	}
}

// RecentDeliveries lists at most limit journal rows of the instance, newest first, among
// the newest window rows of the whole journal. The journal has no index on the instance
// (one would slow every delivery's commit), so a page that shows an instance's recent
// deliveries reads a bounded stretch of the journal by its key instead of all of it: an
// instance that got nothing among the last window deliveries shows none.
func (s *Store) RecentDeliveries(ctx context.Context, instanceID string, limit, window int) ([]Delivery, error) {
	// A statement prepared once: every dashboard view runs it.
	st, err := s.preparedRead(ctx, `SELECT id, request_id, kind, instance_id, event_created_at, received_at, outcome, reason
FROM webhook_deliveries WHERE instance_id = ? AND id > (SELECT COALESCE(MAX(id), 0) FROM webhook_deliveries) - ?
ORDER BY id DESC LIMIT ?`)
	if err != nil {
		return nil, fmt.Errorf("recent deliveries: %w", err)
	}
	rows, err := st.QueryContext(ctx, instanceID, window, limit)
	if err != nil {
		return nil, fmt.Errorf("recent deliveries: %w", translate(err))
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		var d Delivery
		var created sql.NullTime
		var outcome string
		if err := rows.Scan(&d.ID, &d.RequestID, &d.Kind, &d.InstanceID, &created, &d.ReceivedAt, &outcome, &d.Reason); err != nil {
			return nil, fmt.Errorf("recent deliveries: %w", err)
		}
		if created.Valid {
			t := created.Time.UTC()
			d.EventCreatedAt = &t
		}
		d.ReceivedAt, d.Outcome = d.ReceivedAt.UTC(), Outcome(outcome)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recent deliveries: %w", translate(err))
	}
	return out, nil
}
