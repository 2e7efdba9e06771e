package extension

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
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
	VariantKey  *string  // nil: not sent
	Secret      Secret   // ExtensionAddedToContext and SecretRotated
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

// ApplyLifecycle applies one lifecycle event and journals it, and returns once that is
// committed. It is idempotent and order-safe: per instance it remembers request.createdAt
// of the last event applied; an event that is not newer changes nothing (stale, or a
// duplicate when it is the very event applied last), and a removed instance is revived
// only by a newer ExtensionAddedToContext.
//
// This is the hot path of the backend, so it runs on database/sql with cached prepared
// statements rather than through GORM; everything else uses GORM.
func (s *Store) ApplyLifecycle(ctx context.Context, ev LifecycleEvent) (Result, error) {
	if !eventKinds[ev.Kind] {
		res := Result{OutcomeIgnored, "unknown event kind"}
		return res, s.RecordDelivery(ctx, ev, res)
	}
	// Only Added and SecretRotated carry a secret. Without one, the stored secret is
	// cleared (the previous one is no longer valid after a rotation) and
	// InstanceCredentials answers ErrNoSecret.
	var sealed string
	if (ev.Kind == EventAdded || ev.Kind == EventSecretRotated) && !ev.Secret.IsZero() {
		var err error
		if sealed, err = s.keys.Seal(ev.Secret, secretAAD(ev.InstanceID)); err != nil {
			return Result{}, fmt.Errorf("seal secret of instance %s: %w", ev.InstanceID, err)
		}
	}
	if s.writer != nil {
		return s.writer.apply(ctx, ev, sealed)
	}
	return s.applyInTx(ctx, ev, sealed)
}

var eventKinds = map[EventKind]bool{EventAdded: true, EventUpdated: true, EventSecretRotated: true, EventRemoved: true}

// pendingEvent is an event with its secret sealed, ready to be written.
type pendingEvent struct {
	ev     LifecycleEvent
	sealed string
	upsert *sql.Stmt
}

// applyInTx applies one event in a transaction of its own.
func (s *Store) applyInTx(ctx context.Context, ev LifecycleEvent, sealed string) (Result, error) {
	res, err := s.applyBatch(ctx, []pendingEvent{{ev: ev, sealed: sealed}})
	if err != nil {
		return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, err)
	}
	return res[0], nil
}

// applyBatch applies events in order in one transaction, journals them with one
// statement, and commits.
func (s *Store) applyBatch(ctx context.Context, events []pendingEvent) ([]Result, error) {
	// Statements are prepared before BEGIN: on SQLite the transaction holds the only
	// connection, and preparing on the pool inside it would wait for itself.
	for i := range events {
		st, err := s.prepared(ctx, upsertStatement(events[i].ev))
		if err != nil {
			return nil, err
		}
		events[i].upsert = st
	}
	forget, err := s.prepared(ctx, forgetSharedToken)
	if err != nil {
		return nil, err
	}
	var signOut []*sql.Stmt
	for _, q := range signOutInstance {
		st, err := s.prepared(ctx, q)
		if err != nil {
			return nil, err
		}
		signOut = append(signOut, st)
	}
	tx, err := s.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return nil, translate(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	results := make([]Result, len(events))
	for i, pe := range events {
		if results[i], err = s.applyLifecycle(ctx, tx, pe); err != nil {
			return nil, translate(err)
		}
		// A rotation, an update (which may disable) or a removal makes the instance's
		// shared token useless: it goes in the same transaction, so no replica can read
		// it after the event is committed. (The token broker drops its memory copy when
		// the webhook path tells it.)
		if results[i].Outcome == OutcomeApplied && pe.ev.Kind != EventAdded {
			if _, err := tx.StmtContext(ctx, forget).ExecContext(ctx, pe.ev.InstanceID); err != nil {
				return nil, translate(err)
			}
		}
		// A removal or a disable ends every user's session and user token in the
		// instance, as the platform invalidates every token then.
		disabled := pe.ev.Kind == EventUpdated && pe.ev.Enabled != nil && !*pe.ev.Enabled
		if results[i].Outcome == OutcomeApplied && (pe.ev.Kind == EventRemoved || disabled) {
			for _, st := range signOut {
				if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, pe.ev.InstanceID); err != nil {
					return nil, translate(err)
				}
			}
		}
	}
	if err := s.journalBatch(ctx, tx, events, results); err != nil {
		return nil, translate(err)
	}
	if err := tx.Commit(); err != nil {
		return nil, translate(err)
	}
	return results, nil
}

// forgetSharedToken deletes an instance's shared token (see tokens.go).
const forgetSharedToken = `DELETE FROM instance_tokens WHERE instance_id = ?`

// signOutInstance ends the instance's sessions and deletes its user tokens (see
// sessions.go and usertokens.go).
var signOutInstance = []string{
	`DELETE FROM sessions WHERE instance_id = ?`,
	`DELETE FROM user_tokens WHERE instance_id = ?`,
}

// upsertInstance writes an event in one statement: it inserts the instance if it is new,
// and otherwise updates it only where the event is newer than the last one applied (and,
// but for a new install, the instance is not removed). The condition sits in the
// statement itself, so two replicas racing on one instance need no lock and no retry:
// PostgreSQL re-evaluates it against the row the other committed.
const upsertInstance = `INSERT INTO instances (id, context_kind, context_id, consented_scopes, enabled, variant_key,
	sealed_secret, last_event_ns, last_event_kind, removed_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET `

// What each kind changes in an existing instance. A field not sent keeps its value; so
// does a context sent empty. An event is newer than the last one applied if its time is
// later, or equal with another kind: whole-second timestamps can tie, and an update and a
// rotation in the same second must both count.
const (
	setContext = `context_kind = CASE WHEN excluded.context_id = '' THEN instances.context_kind ELSE excluded.context_kind END,
	context_id = CASE WHEN excluded.context_id = '' THEN instances.context_id ELSE excluded.context_id END, `
	setScopes  = `consented_scopes = excluded.consented_scopes, `
	setEnabled = `enabled = excluded.enabled, `
	setTail    = `last_event_ns = excluded.last_event_ns, last_event_kind = excluded.last_event_kind, updated_at = excluded.updated_at
WHERE (instances.last_event_ns < excluded.last_event_ns
	OR (instances.last_event_ns = excluded.last_event_ns AND instances.last_event_kind <> excluded.last_event_kind))`
	notRemoved = ` AND instances.removed_at IS NULL`
)

func upsertStatement(ev LifecycleEvent) string {
	var b strings.Builder
	b.WriteString(upsertInstance)
	b.WriteString(setContext)
	switch ev.Kind {
	case EventAdded:
		// A newer install brings a removed instance back with all its fields.
		b.WriteString(setScopes + setEnabled + `variant_key = excluded.variant_key, sealed_secret = excluded.sealed_secret, removed_at = NULL, ` + setTail)
		return b.String()
	case EventUpdated:
		if ev.Scopes != nil {
			b.WriteString(setScopes)
		}
		if ev.Enabled != nil {
			b.WriteString(setEnabled)
		}
		if ev.VariantKey != nil {
			b.WriteString(`variant_key = excluded.variant_key, `)
		}
	case EventSecretRotated:
		b.WriteString(`sealed_secret = excluded.sealed_secret, `)
	case EventRemoved:
		// Destroy the secret: nothing can mint a token for this instance any more.
		if ev.Scopes != nil {
			b.WriteString(setScopes)
		}
		b.WriteString(`enabled = excluded.enabled, sealed_secret = '', removed_at = excluded.removed_at, `)
	}
	b.WriteString(setTail + notRemoved)
	return b.String()
}

// applyLifecycle writes one event and says what became of it.
func (s *Store) applyLifecycle(ctx context.Context, tx *sql.Tx, pe pendingEvent) (Result, error) {
	ev := pe.ev
	now := s.now().UTC()
	scopes := ev.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	scopesJSON, err := json.Marshal(scopes)
	if err != nil {
		return Result{}, err
	}
	enabled := ev.Enabled == nil || *ev.Enabled
	var removedAt *time.Time
	if ev.Kind == EventRemoved {
		enabled, removedAt = false, &now
	}
	variant := ""
	if ev.VariantKey != nil {
		variant = *ev.VariantKey
	}
	created := ev.CreatedAt.UnixNano()
	res, err := tx.StmtContext(ctx, pe.upsert).ExecContext(ctx,
		ev.InstanceID, ev.ContextKind, ev.ContextID, string(scopesJSON), enabled, variant,
		pe.sealed, created, string(ev.Kind), removedAt, now, now)
	if err != nil {
		return Result{}, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return Result{Outcome: OutcomeApplied}, err
	}
	// Nothing changed: find out why. This is the cold path of retries and reordering.
	var last int64
	var lastKind string
	var removed bool
	err = tx.QueryRowContext(ctx, s.dialect.Rebind(`SELECT last_event_ns, last_event_kind, removed_at IS NOT NULL FROM instances WHERE id = ?`), ev.InstanceID).
		Scan(&last, &lastKind, &removed)
	if err != nil {
		return Result{}, err
	}
	switch {
	case created == last && lastKind == string(ev.Kind):
		// The event applied last, delivered again (a retry or a replay).
		return Result{OutcomeDuplicate, "same event as the last applied"}, nil
	case created < last && ev.Kind == EventAdded && pe.sealed != "" && !removed:
		// The record was made by a later event that carried no secret (an update that
		// overtook a lost install): the install's secret is still the one to keep.
		res, err := tx.ExecContext(ctx, s.dialect.Rebind(`UPDATE instances SET sealed_secret = ?, updated_at = ? WHERE id = ? AND sealed_secret = ''`),
			pe.sealed, now, ev.InstanceID)
		if err != nil {
			return Result{}, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return Result{OutcomeApplied, "older install: only its secret was kept"}, err
		}
		return Result{OutcomeStale, "older than the last applied event"}, nil
	case created < last:
		return Result{OutcomeStale, "older than the last applied event"}, nil
	case removed:
		return Result{OutcomeIgnored, "instance was removed"}, nil
	}
	return Result{}, fmt.Errorf("instance %s: event neither applied nor older", ev.InstanceID)
}

// journalBatch writes the journal rows of a batch in one statement.
func (s *Store) journalBatch(ctx context.Context, tx *sql.Tx, events []pendingEvent, results []Result) error {
	var b strings.Builder
	b.WriteString(`INSERT INTO webhook_deliveries (request_id, kind, instance_id, event_created_at, received_at, outcome, reason) VALUES `)
	args := make([]any, 0, 7*len(events))
	for i, pe := range events {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		d := s.deliveryRow(pe.ev, results[i])
		args = append(args, d.RequestID, d.Kind, d.InstanceID, d.EventCreatedAt, d.ReceivedAt, string(d.Outcome), d.Reason)
	}
	_, err := tx.ExecContext(ctx, s.dialect.Rebind(b.String()), args...)
	return err
}

// prepared returns a statement prepared once on the pool and reused after.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	return prepareOnce(ctx, s.sqlDB, &s.stmts, s.dialect.Rebind(query))
}

// preparedRead is prepared for a read-only statement: on the read pool, which on SQLite
// does not wait for the writer's connection.
func (s *Store) preparedRead(ctx context.Context, query string) (*sql.Stmt, error) {
	return prepareOnce(ctx, s.reads, &s.readStmts, s.dialect.Rebind(query))
}

func prepareOnce(ctx context.Context, db *sql.DB, cache *sync.Map, query string) (*sql.Stmt, error) {
	if st, ok := cache.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if prev, loaded := cache.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// Rebind turns ? placeholders into the dialect's own: $1, $2, … on PostgreSQL. It is for
// raw SQL that has no ? anywhere but in its placeholders.
func (d Dialect) Rebind(query string) string {
	if d != Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
