package extension

import (
	"context"
	"slices"
)

// WritePostgresBatch writes events as one batch of the PostgreSQL group commit, on a
// connection of its own, and returns each event's result or error, as pgGroup answers
// them.
func (s *Store) WritePostgresBatch(ctx context.Context, events []LifecycleEvent) ([]Result, []error, error) {
	batch := make([]*pgWrite, len(events))
	for i, ev := range events {
		var sealed string
		if !ev.Secret.IsZero() {
			var err error
			if sealed, err = s.keys.Seal(ev.Secret, secretAAD(ev.InstanceID)); err != nil {
				return nil, nil, err
			}
		}
		w, err := s.pgWriteOf(ev, sealed)
		if err != nil {
			return nil, nil, err
		}
		w.ctx, w.done = ctx, make(chan pgWritten, 1)
		batch[i] = w
	}
	conn, err := s.sqlDB.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	writeBatch(conn, slices.Clone(batch)) // it clears the entries it answers
	results, errs := make([]Result, len(events)), make([]error, len(events))
	for i, w := range batch {
		r := <-w.done
		if errs[i] = r.err; r.err == nil {
			results[i] = pgResult(events[i], carriedGroups(events[i]), r.row)
		}
	}
	return results, errs, nil
}

// PreparePostgresStatements prepares the one-statement delivery of every set of carried
// groups there can be.
func (s *Store) PreparePostgresStatements(ctx context.Context) (int, error) {
	n := 0
	for g := fieldGroup(1); g <= allGroups; g++ {
		if _, err := s.sqlDB.PrepareContext(ctx, pgLifecycleStatement(g)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
