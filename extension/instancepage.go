package extension

import (
	"context"
	"fmt"
	"strings"
)

// Instance states an InstanceQuery filters by.
const (
	StateLive     = ""         // enabled or disabled, not removed
	StateEnabled  = "enabled"  // live and enabled
	StateDisabled = "disabled" // live and disabled
	StateRemoved  = "removed"  // tombstones
	StateAll      = "all"      // every instance
)

// ValidInstanceState reports whether s is a state an InstanceQuery takes.
func ValidInstanceState(s string) bool {
	switch s {
	case StateLive, StateEnabled, StateDisabled, StateRemoved, StateAll:
		return true
	}
	return false
}

// InstanceQuery selects one page of instances, in id order.
type InstanceQuery struct {
	// Search matches the start of the instance id or the context id, or any part of the
	// context's name, without regard to case; "" matches every instance.
	Search string
	State  string // StateLive, StateEnabled, …
	After  string // the page starts after this id; "": at the first
	Limit  int    // 1 to 500
}

// InstancePage lists one page of instances; next is the After of the page that follows,
// "" on the last page. There may be tens of thousands: the page is read by the primary
// key from After on, never counted or offset.
func (s *Store) InstancePage(ctx context.Context, q InstanceQuery) (page []Instance, next string, err error) {
	if q.Limit < 1 || q.Limit > 500 {
		return nil, "", fmt.Errorf("list instances: limit %d: want 1 to 500", q.Limit)
	}
	if !ValidInstanceState(q.State) {
		return nil, "", fmt.Errorf("list instances: state %q", q.State)
	}
	db := s.db.WithContext(ctx).Order("id").Limit(q.Limit + 1)
	switch q.State {
	case StateLive:
		db = db.Where("removed_at IS NULL")
	case StateEnabled:
		db = db.Where("removed_at IS NULL AND enabled")
	case StateDisabled:
		db = db.Where("removed_at IS NULL AND NOT enabled")
	case StateRemoved:
		db = db.Where("removed_at IS NOT NULL")
	}
	if q.After != "" {
		db = db.Where("id > ?", q.After)
	}
	if search := strings.ToLower(strings.TrimSpace(q.Search)); search != "" {
		like := escapeLike(search)
		db = db.Where(`(id LIKE ? ESCAPE '\' OR context_id LIKE ? ESCAPE '\' OR LOWER(context_name) LIKE ? ESCAPE '\')`,
			like+"%", like+"%", "%"+like+"%")
	}
	if err := db.Find(&page).Error; err != nil {
		return nil, "", fmt.Errorf("list instances: %w", translate(err))
	}
	if len(page) > q.Limit {
		page = page[:q.Limit]
		next = page[len(page)-1].ID
	}
	return page, next, nil
}

// escapeLike makes s match itself in a LIKE pattern with ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// InstanceCounts are how many instances are in each state.
type InstanceCounts struct {
	Enabled, Disabled, Removed int64
}

// CountInstances counts the instances by state.
func (s *Store) CountInstances(ctx context.Context) (InstanceCounts, error) {
	var c InstanceCounts
	err := s.db.WithContext(ctx).Raw(`SELECT
COALESCE(SUM(CASE WHEN removed_at IS NULL AND enabled THEN 1 ELSE 0 END), 0),
COALESCE(SUM(CASE WHEN removed_at IS NULL AND NOT enabled THEN 1 ELSE 0 END), 0),
COALESCE(SUM(CASE WHEN removed_at IS NOT NULL THEN 1 ELSE 0 END), 0)
FROM instances`).Row().Scan(&c.Enabled, &c.Disabled, &c.Removed)
	if err != nil {
		return c, fmt.Errorf("count instances: %w", translate(err))
	}
	return c, nil
}
