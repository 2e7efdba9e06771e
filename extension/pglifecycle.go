package extension

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// On PostgreSQL a lifecycle delivery is one autocommit statement: the conditional upsert
// of its field groups and the journal row with the outcome, as data-modifying common
// table expressions, followed in the same batch by the forgetting of the shared token
// (pgForgetStatement; a statement of its own, so that it sees a lease taken while the
// upsert waited for the row). Events that may disable or remove the instance, and ties
// the event wins, take the transaction path: see applyPostgres. The transaction path (applyBatch) took a round trip each for BEGIN, the
// upsert, the journal and COMMIT, and a read for a stale or duplicate delivery; at 32
// concurrent senders those round trips, not the statements, were the cost (0.32–0.47x a
// bare one-INSERT prototype). pgbatch.go sends the statements of concurrent deliveries
// together.
//
// The outcome is the transaction path's to the word: the statement's SQL computes the
// journal's outcome and reason from the same bits that applyLifecycle reads back, and
// pgResult computes the Result from them in Go. A delivery that is news to no group it
// carries writes nothing, as on the transaction path; then a second statement reads the
// versions the instance holds now and journals it as stale or duplicate (pgUnchanged).
// That it is not in the first one's transaction changes nothing: such a delivery changes
// no state, and one not journaled was not acknowledged either.

var pgStatements [allGroups + 1]struct {
	once sync.Once
	text string
}

// pgLifecycleStatement is the one statement of a delivery that carries the groups g. Its
// parameters are upsertHead's twenty, then the journal's request id ($21), kind ($22),
// event time ($23), and whether the event is not a removal ($24). It returns the
// last_write_groups bits and the enabled and removed state after the write, or no row
// when it wrote nothing.
func pgLifecycleStatement(g fieldGroup) string {
	st := &pgStatements[g]
	st.once.Do(func() { st.text = buildPGLifecycle(g) })
	return st.text
}

func buildPGLifecycle(g fieldGroup) string {
	// The upsert of the transaction path: it writes the row only if the event takes one
	// of its groups, and then returns what it did.
	upsert := Postgres.Rebind(upsertStatement(g, false))
	upsert = upsert[:strings.LastIndex(upsert, "\nRETURNING ")]
	// A tie the event would win (same createdAt and kind as the version held, a later
	// request id) is left to the transaction path, which settles it as applyLifecycle
	// does: the secret compared as plaintext, the outcome from what changed. The
	// statement writes nothing then, and pgUnchanged tells it from a duplicate. Retries
	// under a new request id are such ties, so they must not fail the batch.
	var ties []string
	for _, c := range groupColumns {
		if g&c.group != 0 {
			ties = append(ties, "(excluded."+c.version+" > instances."+c.version+" AND instances."+c.version+
				" >= substr(excluded.last_event_version, 1, "+strconv.Itoa(versionPrefix)+"))")
		}
	}
	upsert = "" + strings.Replace(upsert, "\nWHERE ", "\nWHERE NOT ("+strings.Join(ties, " OR ")+") AND (", 1) + ")"
	var b strings.Builder
	b.WriteString("WITH up AS (\n")
	b.WriteString(upsert)
	b.WriteString("\nRETURNING last_write_groups AS bits, enabled, removed_at IS NOT NULL AS removed\n),\n")
	// o: the bits taken apart. f: groups set as news; w: groups whose version it took.
	b.WriteString("o AS (SELECT bits & 255 AS f, (bits >> " + strconv.Itoa(wonShift) + ") & 255 AS w, bits & " +
		strconv.Itoa(insertedBit) + " <> 0 AS inserted, enabled, removed FROM up)")
	b.WriteString(",\njournal AS (INSERT INTO webhook_deliveries (request_id, kind, instance_id, event_created_at, received_at, outcome, reason)\n")
	b.WriteString("SELECT $21::text, $22::text, $1, $23::timestamptz, $19, " + pgOutcomeSQL(g) + ", " + pgReasonSQL(g) + " FROM o)\n")
	b.WriteString("SELECT bits, enabled, removed FROM up")
	return b.String()
}

// pgOutcomeSQL is the outcome as applyLifecycle decides it, from the columns of o.
func pgOutcomeSQL(g fieldGroup) string {
	return "CASE WHEN f = " + strconv.Itoa(int(g)) + " THEN " + sqlText(string(OutcomeApplied)) +
		" WHEN f <> 0 THEN " + sqlText(string(OutcomePartlyApplied)) +
		" ELSE " + sqlText(string(OutcomeDuplicate)) + " END"
}

// pgReasonSQL is the reason as applyLifecycle words it (see pgResult).
func pgReasonSQL(g fieldGroup) string {
	words := func(set bool) string {
		var parts []string
		for _, c := range groupColumns {
			if g&c.group == 0 {
				continue
			}
			op := " <> 0"
			if !set {
				op = " = 0"
			}
			parts = append(parts, "CASE WHEN f & "+strconv.Itoa(int(c.group))+op+" THEN "+sqlText(c.word)+" END")
		}
		return "concat_ws(', ', " + strings.Join(parts, ", ") + ")"
	}
	staysRemoved := "(removed AND $24::boolean)"
	return "CASE WHEN f = " + strconv.Itoa(int(g)) + " THEN CASE WHEN " + staysRemoved + " THEN " + sqlText(reasonStaysRemoved) + " ELSE '' END" +
		" WHEN f <> 0 THEN 'applied: ' || " + words(true) + " || '; newer already: ' || " + words(false) +
		" || CASE WHEN " + staysRemoved + " THEN " + sqlText("; "+reasonStaysRemoved) + " ELSE '' END" +
		" ELSE " + sqlText(reasonDuplicate) + " END"
}

// mayDisable reports whether ev can leave its instance disabled or removed, and so sign
// its users out.
func mayDisable(ev LifecycleEvent) bool {
	return ev.Kind == EventRemoved || ev.Enabled != nil && !*ev.Enabled
}

// sqlText quotes s as an SQL string literal.
func sqlText(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// pgIgnoredStatement journals a delivery that carries no field; it returns the row the
// lifecycle statement does, so that both go through one batch alike.
const pgIgnoredStatement = `INSERT INTO webhook_deliveries (request_id, kind, instance_id, event_created_at, received_at, outcome, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING 0, false, false`

// applyPostgres applies one event in one statement, written together with the
// statements of concurrent deliveries (pgGroup).
//
// An event that may leave the instance disabled or removed takes the transaction path:
// its sign-out must see a sign-in that committed while the upsert waited for the
// instance's row, and one statement reads the sessions as they were when it began
// (TestSignInRepeatBesideDisable). So does an event that wins a group on a tie
// (pgUnchanged).
func (s *Store) applyPostgres(ctx context.Context, ev LifecycleEvent, sealed string) (Result, error) {
	if mayDisable(ev) {
		return s.applyInTx(ctx, ev, sealed)
	}
	w, err := s.pgWriteOf(ev, sealed)
	if err != nil {
		return Result{}, err
	}
	row, err := s.pgGroup.write(ctx, s, w)
	if err == nil && row.none {
		return s.pgUnchanged(ctx, ev, w)
	}
	if err != nil {
		return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, err)
	}
	return pgResult(ev, carriedGroups(ev), row), nil
}

var pgUnchangedStatements [allGroups + 1]struct {
	once sync.Once
	text string
}

// pgUnchangedStatement journals a delivery of the groups g that wrote nothing, as
// duplicate or stale by the versions the instance holds ($1 the instance, $2 the
// event's time and kind, then the journal's request id, kind, event time and time of
// receipt), and returns whether it is a duplicate.
func pgUnchangedStatement(g fieldGroup) string {
	st := &pgUnchangedStatements[g]
	st.once.Do(func() {
		var dup, tie []string
		for _, c := range groupColumns {
			if g&c.group != 0 {
				dup = append(dup, "left("+c.version+", "+strconv.Itoa(versionPrefix)+") = $2::text")
				// A tie it wins, or news (a newer event took the tie meanwhile): the
				// transaction path settles it.
				tie = append(tie, "(left("+c.version+", "+strconv.Itoa(versionPrefix)+") = $2::text AND "+c.version+" < $7::text)",
					c.version+" < $2::text")
			}
		}
		st.text = "WITH o AS (SELECT " + strings.Join(dup, " OR ") + " AS dup, " + strings.Join(tie, " OR ") + " AS tie FROM instances WHERE id = $1),\n" +
			"journal AS (INSERT INTO webhook_deliveries (request_id, kind, instance_id, event_created_at, received_at, outcome, reason)\n" +
			"SELECT $3::text, $4::text, $1, $5::timestamptz, $6::timestamptz, CASE WHEN dup THEN " + sqlText(string(OutcomeDuplicate)) +
			" ELSE " + sqlText(string(OutcomeStale)) + " END, CASE WHEN dup THEN " + sqlText(reasonDuplicate) + " ELSE " + sqlText(reasonStale) +
			" END FROM o WHERE NOT tie)\nSELECT dup, tie FROM o"
	})
	return st.text
}

// pgUnchanged says why a delivery w wrote nothing, as unchanged does, and journals it:
// a group it carries holds this very event (a duplicate), or newer events set all of
// them (stale).
func (s *Store) pgUnchanged(ctx context.Context, ev LifecycleEvent, w *pgWrite) (Result, error) {
	var dup, tie bool
	err := s.sqlDB.QueryRowContext(ctx, pgUnchangedStatement(carriedGroups(ev)), ev.InstanceID, w.version[:versionPrefix],
		ev.RequestID, string(ev.Kind), w.eventCreated, w.now, w.version).Scan(&dup, &tie)
	if err != nil {
		return Result{}, fmt.Errorf("apply %s to instance %s: %w", ev.Kind, ev.InstanceID, translate(err))
	}
	if tie {
		return s.applyInTx(ctx, ev, w.sealed)
	}
	if dup {
		return Result{Outcome: OutcomeDuplicate, Reason: reasonDuplicate}, nil
	}
	return Result{Outcome: OutcomeStale, Reason: reasonStale}, nil
}

// pgWriteOf is the statement that applies and journals an event, with its arguments.
func (s *Store) pgWriteOf(ev LifecycleEvent, sealed string) (*pgWrite, error) {
	now := s.now().UTC()
	var eventCreated *time.Time
	if !ev.CreatedAt.IsZero() {
		t := ev.CreatedAt.UTC()
		eventCreated = &t
	}
	w := &pgWrite{instanceID: ev.InstanceID, sealed: sealed, version: eventVersion(ev), eventCreated: eventCreated, now: now}
	carried := carriedGroups(ev)
	if carried == 0 {
		w.query, w.args = pgIgnoredStatement, []any{ev.RequestID, string(ev.Kind), ev.InstanceID, eventCreated, now,
			string(OutcomeIgnored), reasonNoField}
		return w, nil
	}
	args, err := lifecycleArgs(ev, sealed, carried, w.version, now)
	if err != nil {
		return nil, err
	}
	w.query = pgLifecycleStatement(carried)
	w.args = append(args, ev.RequestID, string(ev.Kind), eventCreated, ev.Kind != EventRemoved)
	w.forgets = carried&tokenGroups != 0
	return w, nil
}

// pgRow is what the lifecycle statement returns.
type pgRow struct {
	none    bool // it wrote nothing: the event is news to no group it carries
	bits    int64
	removed bool
}

// pgResult is the Result of applyLifecycle (and unchanged) for the bits the statement
// returned; the statement's SQL journals the same (pgOutcomeSQL, pgReasonSQL).
func pgResult(ev LifecycleEvent, carried fieldGroup, row pgRow) Result {
	if carried == 0 {
		return Result{Outcome: OutcomeIgnored, Reason: reasonNoField}
	}
	fresh := fieldGroup(row.bits) & allGroups
	var res Result
	switch {
	case fresh == carried:
		res.Outcome = OutcomeApplied
	case fresh != 0:
		res.Outcome = OutcomePartlyApplied
		res.Reason = "applied: " + fresh.words() + "; newer already: " + (carried &^ fresh).words()
	default:
		// Only groups that hold this event already, under another request id.
		return Result{Outcome: OutcomeDuplicate, Reason: reasonDuplicate}
	}
	res.changed = !row.removed || fresh&groupRemoval != 0
	if row.removed && ev.Kind != EventRemoved {
		res.Reason = strings.TrimPrefix(res.Reason+"; "+reasonStaysRemoved, "; ")
	}
	return res
}

// pgForgetStatement deletes the shared token after a lifecycle statement that set the
// secret, the enabled state or the removal: a statement of its own, so that it reads the
// rows committed while the upsert waited for the instance's row.
const pgForgetStatement = `DELETE FROM instance_tokens WHERE instance_id = $1 AND EXISTS (SELECT 1 FROM instances
WHERE id = $1 AND (secret_version = $2 OR enabled_version = $2 OR removal_version = $2))`
