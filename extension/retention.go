package extension

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Retention after removal: a removed instance keeps its row as the tombstone that order
// safety needs (ApplyLifecycle), and everything else it holds for a grace period, so that
// a customer who re-installs within it finds the team, the settings and the audit log
// again (the install lifts the removal, and with it the pending erasure). After the grace
// period EraseRemovedInstance deletes the instance's rows in every table of erasedTables
// and clears the personal and secret fields of the tombstone.

// DefaultRetentionAfterRemoval is the grace period of EXT_RETENTION_AFTER_REMOVAL.
const DefaultRetentionAfterRemoval = 30 * 24 * time.Hour

// erasedTables are the tables whose rows of a removed instance are deleted at erasure, in
// an order that deletes rows before the rows they refer to. Every table with an
// instance_id column is here or in keptTables (TestEveryInstanceTableHasARetention).
var erasedTables = []string{
	"sessions",              // already ended by the removal; deleted again in case one slipped in
	"user_tokens",           // the same
	"instance_tokens",       // the same
	"instance_token_health", // when its token was last minted, the last mint error
	"webhook_captures",      // the exact deliveries, sealed: the instance's secrets, its context
	"password_resets",       // who asked for a new password
	"oidc_identities",       // who signs in where: subject and e-mail address
	"invitations",           // e-mail addresses and who invited them
	"audit_events",          // who did what: names, e-mail addresses
	"actions",               // what members started, with its input
	"oidc_providers",        // the owners' provider set-up, with a sealed client secret
	"instance_settings",     // the owners' sign-in settings (allowed domains name the company)
	"accounts",              // names, e-mail addresses, password hashes, platform user ids
}

// keptTables are the tables with an instance_id column whose rows erasure leaves, and why.
var keptTables = map[string]string{
	// The delivery journal holds no personal data (request ids, kinds, outcomes) and is
	// pruned after DeliveryRetention whatever becomes of the instance; it is what the
	// operator reads to answer "what happened to this instance".
	"webhook_deliveries": "no personal data; pruned after the delivery journal's retention",
	// Reconcile's findings compare the platform's instances with ours; a removed instance's
	// finding (a removal we missed, an execution that halted) is what the operator needs to
	// see, and the next reconciliation resolves it when it no longer stands.
	"reconcile_findings": "no personal data; resolved by the next reconciliation",
}

// ErasedTables lists the tables EraseRemovedInstance deletes an instance's rows from.
func ErasedTables() []string { return slices.Clone(erasedTables) }

// KeptTables lists the tables with an instance column whose rows erasure leaves, each with
// the reason.
func KeptTables() map[string]string { return maps.Clone(keptTables) }

// Erasure is what EraseRemovedInstance deleted of one instance: rows per table, never a
// value of them.
type Erasure struct {
	InstanceID string
	RemovedAt  time.Time
	Rows       map[string]int64 // table → rows deleted
}

// dueRemovals lists removed instances whose removal is older than the cutoff and whose
// data was not erased since that removal.
const dueRemovals = `SELECT id FROM instances WHERE removed_at IS NOT NULL AND removed_at <= ?
	AND (erased_removal_at IS NULL OR erased_removal_at <> removed_at) ORDER BY removed_at, id LIMIT ?`

// eraseBatch bounds the instances one call of EraseRemovedInstances erases; the next run
// takes the rest.
const eraseBatch = 500

// EraseRemovedInstances erases the data of every instance removed before removedBefore
// (now minus the grace period) and not re-installed since, each in a transaction of its
// own (EraseRemovedInstance), and returns what it erased. Two replicas may run it at once:
// each instance is erased by one of them, and the other skips it.
func (s *Store) EraseRemovedInstances(ctx context.Context, removedBefore time.Time) ([]Erasure, error) {
	var ids []string
	if err := s.db.WithContext(ctx).Raw(dueRemovals, removedBefore.UTC(), eraseBatch).Scan(&ids).Error; err != nil {
		return nil, fmt.Errorf("list removals past their grace: %w", translate(err))
	}
	var out []Erasure
	var failed []error
	for _, id := range ids {
		e, err := s.EraseRemovedInstance(ctx, id, removedBefore)
		if errors.Is(err, ErrNotFound) {
			continue // re-installed, or erased by another replica, since the list was read
		}
		if err != nil {
			if ctx.Err() != nil {
				return out, errors.Join(append(failed, err)...)
			}
			// One instance that cannot be erased must not hold back every one after it:
			// the list starts with it again at every run.
			failed = append(failed, err)
			continue
		}
		out = append(out, e)
	}
	return out, errors.Join(failed...)
}

// EraseRemovedInstance erases one removed instance's data if it is still removed since
// before removedBefore and not erased since that removal; otherwise it changes nothing
// and returns ErrNotFound. The check and the deletes are one transaction that holds the
// instance's row (on PostgreSQL FOR UPDATE, on SQLite the one writer): a re-install that
// commits first is seen and nothing is erased; one that comes second waits for the
// erasure and starts the instance afresh, and whatever it and its users write comes
// after the erasure and stays.
func (s *Store) EraseRemovedInstance(ctx context.Context, instanceID string, removedBefore time.Time) (Erasure, error) {
	e := Erasure{InstanceID: instanceID, Rows: map[string]int64{}}
	lock := ""
	if s.dialect == Postgres {
		lock = " FOR UPDATE"
	}
	tx, err := s.shared.BeginTx(ctx, nil)
	if err != nil {
		return e, fmt.Errorf("erase instance %s: %w", instanceID, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var removedAt time.Time
	err = tx.QueryRowContext(ctx, s.dialect.Rebind(`SELECT removed_at FROM instances WHERE id = ? AND removed_at IS NOT NULL
	AND removed_at <= ? AND (erased_removal_at IS NULL OR erased_removal_at <> removed_at)`+lock), instanceID, removedBefore.UTC()).Scan(&removedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return e, ErrNotFound
	}
	if err != nil {
		return e, fmt.Errorf("erase instance %s: %w", instanceID, err)
	}
	e.RemovedAt = removedAt.UTC()
	for _, table := range erasedTables {
		res, err := tx.ExecContext(ctx, s.dialect.Rebind(`DELETE FROM `+table+` WHERE instance_id = ?`), instanceID)
		if err != nil {
			return e, fmt.Errorf("erase instance %s: %s: %w", instanceID, table, err)
		}
		if e.Rows[table], err = res.RowsAffected(); err != nil {
			return e, fmt.Errorf("erase instance %s: %s: %w", instanceID, table, err)
		}
	}
	// The tombstone keeps what order safety needs (the groups' versions, the removal, the
	// last event) and what says nothing about anybody (kind of context, scopes, variant);
	// the secret, the context's id and its name (a customer's name may be a person's) go.
	// A newer install sets them all again.
	if _, err := tx.ExecContext(ctx, s.dialect.Rebind(`UPDATE instances SET erased_removal_at = removed_at, sealed_secret = '',
	context_id = '', context_name = '', context_name_at = NULL WHERE id = ?`), instanceID); err != nil {
		return e, fmt.Errorf("erase instance %s: %w", instanceID, err)
	}
	if err := tx.Commit(); err != nil {
		return e, fmt.Errorf("erase instance %s: %w", instanceID, err)
	}
	return e, nil
}
