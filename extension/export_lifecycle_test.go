package extension

import (
	"context"
	"fmt"
)

// What the external tests need to see of the lifecycle's versions and statements.

// EventVersion is the version the store gives an event.
func EventVersion(ev LifecycleEvent) string { return eventVersion(ev) }

// VersionPrefix is the length of a version's time and kind.
const VersionPrefix = versionPrefix

// PrepareUpserts prepares both upserts of every set of carried groups there can be.
func (s *Store) PrepareUpserts(ctx context.Context) (int, error) {
	n := 0
	for g := fieldGroup(1); g <= allGroups; g++ {
		for _, fast := range []bool{false, true} {
			if _, err := s.prepared(ctx, upsertStatement(g, fast)); err != nil {
				return n, fmt.Errorf("groups %06b (fast %v): %w", g, fast, err)
			}
			n++
		}
	}
	return n, nil
}
