package extension

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
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
	OutcomeApplied       Outcome = "applied"        // the event set every field it carries
	OutcomePartlyApplied Outcome = "partly-applied" // the event set some fields; newer events had set the others, or held the same values
	OutcomeStale         Outcome = "stale"          // newer events had set every field it carries: nothing changed
	// duplicate: this event, or one of the same kind and createdAt, was applied before,
	// and this one changes nothing: it is a retry with the same values, or it sorts
	// before that one by request id (the tie rule).
	OutcomeDuplicate Outcome = "duplicate"
	OutcomeDryRun    Outcome = "dry-run" // a dry run: verified and validated, nothing changed
	OutcomeIgnored   Outcome = "ignored" // verified, but nothing to do (unknown kind, no field sent)
	OutcomeRefused   Outcome = "refused" // verified, but refused (foreign extension, invalid payload)
)

// Result is the outcome of one delivery and, when nothing or not everything changed, why.
type Result struct {
	Outcome Outcome
	Reason  string
	// changed: the delivery changed what the rest of the backend sees of the instance.
	changed bool
}

// Changed reports whether the delivery changed the instance as the rest of the backend
// sees it: it set fields (wholly or partly applied) of an instance that is not removed,
// or it removed the instance. Follow-up work (dropping a cached token, the post-install
// job) is due exactly then. A field set on a removed instance, kept for an install that
// may follow, changes nothing anyone sees.
func (r Result) Changed() bool { return r.changed }

// ApplyLifecycle applies one lifecycle event and journals it, and returns once that is
// committed. The instance's state converges whatever the order of the events and however
// often each arrives: each group of fields (enabled state, scopes, variant, context,
// secret, removal) remembers the version of the event that last set it (createdAt in
// nanoseconds, then the kind, then the request id), and an event sets a group only if it
// is newer. A removal is a tombstone that only a newer install lifts; an older rotation
// delivered late never replaces a newer secret. Two events with the same createdAt and
// kind are one event delivered twice: the second is a duplicate and changes nothing.
//
// This is the hot path of the backend, so it runs on database/sql with cached prepared
// statements rather than through GORM; everything else uses GORM. One conditional
// statement writes the event (see upsertStatement); on SQLite, a delivery that is not
// news to every group it carries takes a second, and one that changes nothing a read.
func (s *Store) ApplyLifecycle(ctx context.Context, ev LifecycleEvent) (Result, error) {
	if !eventKinds[ev.Kind] {
		res := Result{Outcome: OutcomeIgnored, Reason: "unknown event kind"}
		return res, s.RecordDelivery(ctx, ev, res)
	}
	// Only Added and SecretRotated carry a secret. A removal, or one of them without a
	// secret, stores none (the previous one is no longer valid after a rotation), and
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
	if s.dialect == Postgres {
		return s.applyPostgres(ctx, ev, sealed) // one statement, committed in groups (pglifecycle.go)
	}
	return s.applyInTx(ctx, ev, sealed)
}

var eventKinds = map[EventKind]bool{EventAdded: true, EventUpdated: true, EventSecretRotated: true, EventRemoved: true}

// pendingEvent is an event with its secret sealed, ready to be written.
type pendingEvent struct {
	ev     LifecycleEvent
	sealed string
	upsert *sql.Stmt // nil for an event that carries no field
	fast   *sql.Stmt // SQLite: the fast variant of upsert, tried first
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
	if len(events) == 0 || len(events) > maxBatch {
		return nil, fmt.Errorf("apply a batch of %d events, want 1 to %d", len(events), maxBatch)
	}
	// Statements are prepared before BEGIN: on SQLite the transaction holds the only
	// connection, and preparing on the pool inside it would wait for itself.
	for i := range events {
		carried := carriedGroups(events[i].ev)
		if carried == 0 {
			continue
		}
		var err error
		if events[i].upsert, err = s.preparedUpsert(ctx, carried, false); err != nil {
			return nil, err
		}
		if s.dialect == SQLite {
			if events[i].fast, err = s.preparedUpsert(ctx, carried, true); err != nil {
				return nil, err
			}
		}
	}
	forget, err := s.prepared(ctx, forgetSharedToken)
	if err != nil {
		return nil, err
	}
	journal, err := s.prepared(ctx, journalInsert(len(events)))
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
		w, err := s.applyLifecycle(ctx, tx, pe)
		if err != nil {
			return nil, translate(err)
		}
		results[i] = w.result
		if w.blank {
			continue // nothing to forget or sign out
		}
		// A new secret, a change of the enabled state or a removal (or its lifting) makes
		// the instance's shared token useless: it goes in the same transaction, so no
		// replica can read it after the event is committed. (The token broker drops its
		// memory copy when the webhook path tells it.)
		if w.changed&tokenGroups != 0 {
			if _, err := tx.StmtContext(ctx, forget).ExecContext(ctx, pe.ev.InstanceID); err != nil {
				return nil, translate(err)
			}
		}
		// An event that leaves the instance disabled or removed ends every user's session
		// and user token in the instance, as the platform invalidates every token then.
		if (w.won&groupEnabled != 0 && !w.enabled) || (w.won&groupRemoval != 0 && w.removed) {
			for _, st := range signOut {
				if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, pe.ev.InstanceID); err != nil {
					return nil, translate(err)
				}
			}
		}
	}
	if err := s.journalBatch(ctx, tx, journal, events, results); err != nil {
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

// written is what one event did to its instance.
type written struct {
	result  Result
	fresh   fieldGroup // groups the event set as news
	won     fieldGroup // groups whose version it took: fresh ones and ones it took on a tie
	changed fieldGroup // groups whose values it changed: fresh ones and ones won on a tie with other values
	enabled bool       // the instance's enabled state after it, when it won that group
	removed bool       // whether the instance is removed after it
	// blank: the instance had no shared token, session or user token before the event,
	// because the event made its row, or is an install applied to a removed instance (the
	// removal deleted them all, and none is made for a removed instance).
	blank bool
}

// applyLifecycle writes one event and says what became of it.
func (s *Store) applyLifecycle(ctx context.Context, tx *sql.Tx, pe pendingEvent) (written, error) {
	ev := pe.ev
	carried := carriedGroups(ev)
	if carried == 0 {
		return written{result: Result{Outcome: OutcomeIgnored, Reason: reasonNoField}}, nil
	}
	now := s.now().UTC()
	version := eventVersion(ev)
	args, err := lifecycleArgs(ev, pe.sealed, carried, version, now)
	if err != nil {
		return written{}, err
	}
	enabled := eventEnabled(ev)
	// On SQLite the statement runs without ctx's cancellation: go-sqlite3 steps a
	// cancellable query on a goroutine of its own and waits for it, and on the one writer,
	// with senders busy on every core, that hand-off cost more than the statement. The
	// statement is short, and the transaction around it still ends with ctx.
	qctx := ctx
	if s.dialect == SQLite {
		qctx = context.WithoutCancel(ctx)
	}
	if pe.fast != nil {
		res, err := tx.StmtContext(ctx, pe.fast).ExecContext(qctx, args...)
		if err != nil {
			return written{}, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			// News to every group it carries, and the instance is live after it unless
			// it is the removal: applied, and nothing to read back.
			return written{result: Result{Outcome: OutcomeApplied, changed: true}, fresh: carried, won: carried, changed: carried,
				enabled: enabled, removed: ev.Kind == EventRemoved, blank: ev.Kind == EventAdded}, err
		}
	}
	var bits int64
	var w written
	err = tx.StmtContext(ctx, pe.upsert).QueryRowContext(qctx, args...).Scan(&bits, &w.enabled, &w.removed)
	if errors.Is(err, sql.ErrNoRows) {
		// The event is newer than no group it carries. This is the cold path of retries
		// and reordering.
		w.result, err = s.unchanged(ctx, tx, ev, carried, version)
		return w, err
	}
	if err != nil {
		return written{}, err
	}
	w.fresh, w.won, w.blank = fieldGroup(bits)&allGroups, fieldGroup(bits>>wonShift)&allGroups, bits&insertedBit != 0
	w.changed = w.fresh | fieldGroup(bits>>tieDiffShift)&allGroups
	if w.won&^w.fresh&groupSecret != 0 {
		secretChanged, err := s.settleSecretTie(ctx, tx, pe)
		if err != nil {
			return written{}, err
		}
		if secretChanged {
			w.changed |= groupSecret
		}
	}
	w.result.changed = w.changed != 0 && (!w.removed || w.changed&groupRemoval != 0)
	switch {
	case w.changed == carried:
		w.result.Outcome = OutcomeApplied
	case w.changed != 0:
		w.result.Outcome = OutcomePartlyApplied
		w.result.Reason = "applied: " + w.changed.words()
		if newer := carried &^ w.won; newer != 0 {
			w.result.Reason += "; newer already: " + newer.words()
		}
		if same := carried & w.won &^ w.changed; same != 0 {
			w.result.Reason += "; the same already: " + same.words()
		}
	default:
		// Only groups that hold this event already, under another request id.
		w.result.Outcome, w.result.Reason = OutcomeDuplicate, reasonDuplicate
		return w, nil
	}
	if w.removed && ev.Kind != EventRemoved {
		// Kept for an install that may come: the fields of a removed instance follow the
		// newest events too, or a re-install overtaken by its next update would lose it.
		w.result.Reason = strings.TrimPrefix(w.result.Reason+"; "+reasonStaysRemoved, "; ")
	}
	return w, nil
}

// eventEnabled is the enabled state an event writes: off for a removal, else as sent (on
// when not sent).
func eventEnabled(ev LifecycleEvent) bool {
	return ev.Kind != EventRemoved && (ev.Enabled == nil || *ev.Enabled)
}

// tokenGroups are the groups whose news makes the shared token useless.
const tokenGroups = groupSecret | groupEnabled | groupRemoval

// The reasons the journal gives, on both dialects (pglifecycle.go words them in SQL).
const (
	reasonStaysRemoved = "the instance stays removed"
	reasonDuplicate    = "same event as applied before"
	reasonStale        = "newer events set every field it sends"
	reasonNoField      = "it sends no field to change"
)

// lifecycleArgs are upsertHead's twenty arguments for an event: those of the upsert on
// both dialects, and of PostgreSQL's one statement (pglifecycle.go). A group the event
// does not carry gets the empty version on insert: older than any. The version is boxed
// once for its seven places among the arguments.
func lifecycleArgs(ev LifecycleEvent, sealed string, carried fieldGroup, eventVersion string, now time.Time) ([]any, error) {
	scopes := ev.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	scopesJSON, err := json.Marshal(scopes)
	if err != nil {
		return nil, err
	}
	enabled := eventEnabled(ev)
	var removedAt *time.Time
	if ev.Kind == EventRemoved {
		removedAt = &now
	}
	variant := ""
	if ev.VariantKey != nil {
		variant = *ev.VariantKey
	}
	var version any = eventVersion
	groupVersion := func(g fieldGroup) any {
		if carried&g == 0 {
			return ""
		}
		return version
	}
	args := make([]any, 0, 24) // PostgreSQL's one statement appends four
	return append(args, ev.InstanceID, ev.ContextKind, ev.ContextID, string(scopesJSON), enabled, variant, sealed, removedAt,
		eventNano(ev), string(ev.Kind), version,
		groupVersion(groupEnabled), groupVersion(groupScopes), groupVersion(groupVariant), groupVersion(groupContext),
		groupVersion(groupSecret), groupVersion(groupRemoval),
		int64(carried)|int64(carried)<<wonShift|insertedBit, now, now), nil
}

// settleSecretTie finishes an event that won the secret on a tie: one with the same
// createdAt and kind as the event that set it, and a higher request id. The upsert left
// the sealed secret as it was, since the same secret sealed again gives other bytes; this
// stores the event's secret if it is another one, and reports whether it did. Ties are
// rare (retries under a new request id), so the extra read is off the hot path; the
// upsert holds the row until the transaction ends.
func (s *Store) settleSecretTie(ctx context.Context, tx *sql.Tx, pe pendingEvent) (bool, error) {
	var held string
	if err := tx.QueryRowContext(ctx, s.dialect.Rebind(`SELECT sealed_secret FROM instances WHERE id = ?`), pe.ev.InstanceID).Scan(&held); err != nil {
		return false, err
	}
	if held == pe.sealed {
		return false, nil // both empty
	}
	if held != "" && pe.sealed != "" {
		plain, err := s.keys.Open(held, secretAAD(pe.ev.InstanceID))
		if err == nil && subtle.ConstantTimeCompare([]byte(plain.Reveal()), []byte(pe.ev.Secret.Reveal())) == 1 {
			return false, nil
		}
		// One that cannot be opened any more is replaced by one that can.
	}
	_, err := tx.ExecContext(ctx, s.dialect.Rebind(`UPDATE instances SET sealed_secret = ?, updated_at = ? WHERE id = ?`),
		pe.sealed, s.now().UTC(), pe.ev.InstanceID)
	return err == nil, err
}

// heldVersions reads the versions of an instance's groups, in the order of groupColumns.
var heldVersions = func() string {
	cols := make([]string, len(groupColumns))
	for i, c := range groupColumns {
		cols[i] = c.version
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM instances WHERE id = ?"
}()

// unchanged says why an event changed nothing: a group it carries holds this very event
// (same createdAt and kind, perhaps under another request id), so it is a duplicate; or
// newer events set all of them, so it is stale.
func (s *Store) unchanged(ctx context.Context, tx *sql.Tx, ev LifecycleEvent, carried fieldGroup, version string) (Result, error) {
	held := make([]string, len(groupColumns))
	dest := make([]any, len(groupColumns))
	for i := range held {
		dest[i] = &held[i]
	}
	if err := tx.QueryRowContext(ctx, s.dialect.Rebind(heldVersions), ev.InstanceID).Scan(dest...); err != nil {
		return Result{}, err
	}
	for i, c := range groupColumns {
		if carried&c.group != 0 && strings.HasPrefix(held[i], version[:versionPrefix]) {
			return Result{Outcome: OutcomeDuplicate, Reason: reasonDuplicate}, nil
		}
	}
	return Result{Outcome: OutcomeStale, Reason: reasonStale}, nil
}

// journalBatch writes the journal rows of a batch in one statement, journalInsert of its
// length.
func (s *Store) journalBatch(ctx context.Context, tx *sql.Tx, insert *sql.Stmt, events []pendingEvent, results []Result) error {
	args := make([]any, 0, 7*len(events))
	for i, pe := range events {
		d := s.deliveryRow(pe.ev, results[i])
		args = append(args, d.RequestID, d.Kind, d.InstanceID, d.EventCreatedAt, d.ReceivedAt, string(d.Outcome), d.Reason)
	}
	_, err := tx.StmtContext(ctx, insert).ExecContext(ctx, args...)
	return err
}

// journalInserts are the texts of journalInsert, built once for each length up to maxBatch.
var journalInserts = sync.OnceValue(func() []string {
	out := make([]string, maxBatch+1)
	for n := 1; n <= maxBatch; n++ {
		var b strings.Builder
		b.WriteString(`INSERT INTO webhook_deliveries (request_id, kind, instance_id, event_created_at, received_at, outcome, reason) VALUES `)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
		}
		out[n] = b.String()
	}
	return out
})

// journalInsert is the statement that journals n deliveries (1 <= n <= maxBatch). A batch
// has at most maxBatch, so at most that many are prepared and kept: preparing the
// statement anew for every group commit was a tenth of the writer's time.
func journalInsert(n int) string {
	return journalInserts()[n]
}

// upsertKey names a prepared upsert in the statement cache: looked up per delivery, it
// is quicker to hash than the statement's text.
type upsertKey struct {
	groups fieldGroup
	fast   bool
}

// preparedUpsert returns the upsert of an event carrying the groups g, prepared once.
func (s *Store) preparedUpsert(ctx context.Context, g fieldGroup, fast bool) (*sql.Stmt, error) {
	key := upsertKey{g, fast}
	if st, ok := s.stmts.Load(key); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.prepared(ctx, upsertStatement(g, fast))
	if err != nil {
		return nil, err
	}
	s.stmts.Store(key, st) // also cached under its text: Close closes it twice, the second a no-op
	return st, nil
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
