package extension

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// metaSimulatorURL names the store_meta row that marks a database as a simulator's.
const metaSimulatorURL = "simulator_url"

// MarkSimulated records that the instances in this database come from the platform
// simulator at apiURL (as dev installs them), so that nothing sends their secrets to
// another API: see SimulatorURL. An earlier mark is replaced (the simulator's port may
// change between runs).
func (s *Store) MarkSimulated(ctx context.Context, apiURL string) error {
	err := s.db.WithContext(ctx).Exec(`INSERT INTO store_meta (name, value, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		metaSimulatorURL, apiURL, s.now().UTC()).Error
	if err != nil {
		return fmt.Errorf("mark the database as the simulator's: %w", translate(err))
	}
	return nil
}

// SimulatorURL returns the API URL of the simulator that the database was marked with by
// MarkSimulated, or "" for a database of the real platform.
func (s *Store) SimulatorURL(ctx context.Context) (string, error) {
	var value string
	err := s.db.WithContext(ctx).Raw(`SELECT value FROM store_meta WHERE name = ?`, metaSimulatorURL).Row().Scan(&value)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		return "", fmt.Errorf("read the database's simulator mark: %w", translate(err))
	}
	return value, nil
}

// MarkSimulatedIfEmpty marks the database as the simulator's at apiURL, as MarkSimulated
// does, but only while it holds no instance (removed ones count too: their records stay),
// and it keeps an earlier mark as it is. It reports whether the database is marked now.
// A database that already holds unmarked instances stays unmarked: they may be the real
// platform's, and a mark would keep them from it.
func (s *Store) MarkSimulatedIfEmpty(ctx context.Context, apiURL string) (bool, error) {
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var instances int64
		if err := tx.Raw(`SELECT COUNT(*) FROM instances`).Row().Scan(&instances); err != nil {
			return err
		}
		if instances > 0 {
			return nil
		}
		return tx.Exec(`INSERT INTO store_meta (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			metaSimulatorURL, apiURL, s.now().UTC()).Error
	})
	if err != nil {
		return false, fmt.Errorf("mark the database as the simulator's: %w", translate(err))
	}
	sim, err := s.SimulatorURL(ctx)
	return sim != "", err
}
