package extension

import (
	"slices"
	"strconv"
	"strings"
	"sync"
)

// fieldGroup is a set of the instance's field groups: the fields that events set
// together. Each group remembers the version of the event that last set it, and an event
// changes a group only if it is newer than that. So the state is a pure function of the
// set of events received, whatever their order: each group holds the value of the newest
// event that carries it.
type fieldGroup uint8

// The field groups.
const (
	groupEnabled fieldGroup = 1 << iota // enabled
	groupScopes                         // consented_scopes
	groupVariant                        // variant_key
	groupContext                        // context_kind, context_id
	groupSecret                         // sealed_secret
	groupRemoval                        // removed_at: whether the newest install or removal is a removal

	allGroups = groupEnabled | groupScopes | groupVariant | groupContext | groupSecret | groupRemoval
)

// groupColumns describes each group in the order of the bits: the plain word the journal
// uses for it, and the column that keeps its version.
var groupColumns = []struct {
	group   fieldGroup
	word    string
	version string
}{
	{groupEnabled, "enabled state", "enabled_version"},
	{groupScopes, "scopes", "scopes_version"},
	{groupVariant, "variant", "variant_version"},
	{groupContext, "context", "context_version"},
	{groupSecret, "secret", "secret_version"},
	{groupRemoval, "installation state", "removal_version"},
}

// words lists the groups of a set in plain words.
func (g fieldGroup) words() string {
	var w []string
	for _, c := range groupColumns {
		if g&c.group != 0 {
			w = append(w, c.word)
		}
	}
	return strings.Join(w, ", ")
}

// carriedGroups is what an event sets. An install sets every group (and so lifts a
// removal); an update what it sends; a rotation the secret; a removal the removal, the
// enabled state (off) and the secret (destroyed), and the scopes when it sends them. A
// context is set by any event that sends one: one sent empty keeps the stored value.
func carriedGroups(ev LifecycleEvent) fieldGroup {
	var g fieldGroup
	if ev.ContextID != "" {
		g |= groupContext
	}
	switch ev.Kind {
	case EventAdded:
		g |= groupEnabled | groupScopes | groupVariant | groupSecret | groupRemoval
	case EventUpdated:
		if ev.Scopes != nil {
			g |= groupScopes
		}
		if ev.Enabled != nil {
			g |= groupEnabled
		}
		if ev.VariantKey != nil {
			g |= groupVariant
		}
	case EventSecretRotated:
		g |= groupSecret
	case EventRemoved:
		g |= groupRemoval | groupEnabled | groupSecret
		if ev.Scopes != nil {
			g |= groupScopes
		}
	}
	return g
}

// kindRank orders events of different kinds with the same createdAt. It follows the order
// in which the platform makes them (an install before the update or rotation that follows
// it), and a removal ranks last: an install and a removal with the same createdAt leave the
// instance removed, whichever arrives first and however often they are replayed.
var kindRank = map[EventKind]byte{EventAdded: '1', EventUpdated: '2', EventSecretRotated: '3', EventRemoved: '4'}

// versionPrefix is the length of a version's time and kind: two events whose versions
// share it are the same event delivered again (a retry under a new request id).
const versionPrefix = 21

// eventVersion is the event's version as a text that sorts as the versions do: request
// createdAt in Unix nanoseconds, 20 digits with leading zeros; the kind's rank; the
// request id. The request id only breaks ties between different events with the same time
// and kind, so that every replica and every order picks the same one. Nanoseconds are kept
// in the text because PostgreSQL's timestamps keep only microseconds.
func eventVersion(ev LifecycleEvent) string {
	digits := strconv.FormatInt(eventNano(ev), 10)
	var b strings.Builder
	b.Grow(versionPrefix + len(ev.RequestID))
	for range 20 - len(digits) {
		b.WriteByte('0')
	}
	b.WriteString(digits)
	b.WriteByte(kindRank[ev.Kind])
	b.WriteString(ev.RequestID)
	return b.String()
}

// eventNano is the event's createdAt in Unix nanoseconds; 0 for none (the webhook
// refuses a delivery without one, or before the year 2000).
func eventNano(ev LifecycleEvent) int64 {
	if ns := ev.CreatedAt.UnixNano(); !ev.CreatedAt.IsZero() && ns > 0 {
		return ns
	}
	return 0
}

// Bits of last_write_groups, which the upsert writes from the row's versions before the
// write (RETURNING sees only the row after it): the groups the event set as news (low
// byte), the groups whose version it took (next byte: those and the ones it took on a
// tie, from an event with the same createdAt and kind and a lower request id), whether it
// inserted the row, and the groups it took on a tie whose values it changed (the secret
// is left out: sealing is randomised, so only the plaintexts tell, see settleSecretTie).
const (
	wonShift     = 8
	insertedBit  = 1 << 16
	tieDiffShift = 17
)

// upsertHead inserts the instance if it is new. The conflict branch is built per set of
// carried groups by upsertStatement.
const upsertHead = `INSERT INTO instances (id, context_kind, context_id, consented_scopes, enabled, variant_key,
	sealed_secret, removed_at, last_event_ns, last_event_kind, last_event_version, enabled_version, scopes_version,
	variant_version, context_version, secret_version, removal_version, last_write_groups, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET `

var upsertStatements [2][allGroups + 1]struct {
	once sync.Once
	text string
}

// upsertStatement writes an event that carries the groups g in one statement. Each group
// takes the event's values only if the event's version is newer than the group's, and the
// row is written only if that holds for at least one group; the condition sits in the
// statement, so two replicas racing on one instance need no lock and no retry (PostgreSQL
// evaluates it again against the row the other committed). Every expression of a SET
// reads the row as it was before the statement, which is what lets last_write_groups say
// what the event changed; RETURNING hands it back.
//
// The fast variant (SQLite) writes only if the event is news to every group it carries,
// and the instance is live (a removal: any; an install: new or removed), and returns
// nothing: then the outcome is known without reading anything back. SQLite runs RETURNING
// through a trigger into a temporary table, which made the statement cost twice as much;
// a delivery the fast variant does not write takes the full one after it.
func upsertStatement(g fieldGroup, fast bool) string {
	u := &upsertStatements[0][g]
	if fast {
		u = &upsertStatements[1][g]
	}
	u.once.Do(func() { u.text = buildUpsert(g, fast) })
	return u.text
}

func buildUpsert(g fieldGroup, fast bool) string {
	var b strings.Builder
	b.WriteString(upsertHead)
	var won, fresh, diffs []string
	for _, c := range groupColumns {
		if g&c.group == 0 {
			continue
		}
		// won: the event's version is newer than the group's; every group, the secret
		// too, takes the values of the event with the newest version, so any order of
		// the same events ends in the same state. fresh: the group's version is older
		// than the event's time and kind, so the event is news to it; a group won but not
		// fresh was set by an event with the same time and kind (a retry under another
		// request id, or another event at the same instant), and changes only if the
		// values differ (diff).
		w := "excluded." + c.version + " > instances." + c.version
		f := "instances." + c.version + " < substr(excluded.last_event_version, 1, " + strconv.Itoa(versionPrefix) + ")"
		won, fresh = append(won, w), append(fresh, f)
		diff := ""
		set := func(col, cond string) {
			b.WriteString(col + " = CASE WHEN " + cond + " THEN excluded." + col + " ELSE instances." + col + " END,\n\t")
		}
		switch c.group {
		case groupEnabled:
			set("enabled", w)
			diff = "excluded.enabled <> instances.enabled"
		case groupScopes:
			set("consented_scopes", w)
			diff = "excluded.consented_scopes <> instances.consented_scopes"
		case groupVariant:
			set("variant_key", w)
			diff = "excluded.variant_key <> instances.variant_key"
		case groupContext:
			set("context_kind", w)
			set("context_id", w)
			diff = "(excluded.context_kind <> instances.context_kind OR excluded.context_id <> instances.context_id)"
		case groupSecret:
			// Sealing is randomised, so a retry would store other bytes for the same
			// secret: the statement replaces it only with news, and on a tie the store
			// compares the plaintexts after it (settleSecretTie).
			set("sealed_secret", f)
		case groupRemoval:
			// An install clears it; a removal keeps the time of the first removal.
			b.WriteString("removed_at = CASE WHEN " + w + " THEN CASE WHEN excluded.removed_at IS NULL THEN NULL ELSE COALESCE(instances.removed_at, excluded.removed_at) END ELSE instances.removed_at END,\n\t")
			diff = "(excluded.removed_at IS NULL) <> (instances.removed_at IS NULL)"
		}
		set(c.version, w)
		diffs = append(diffs, diff)
	}
	newest := "excluded.last_event_version > instances.last_event_version"
	for _, col := range []string{"last_event_ns", "last_event_kind", "last_event_version"} {
		b.WriteString(col + " = CASE WHEN " + newest + " THEN excluded." + col + " ELSE instances." + col + " END,\n\t")
	}
	changed := slices.Clone(fresh) // news, or values of a tie it wins that differ
	for i, d := range diffs {
		if d != "" && !fast { // the fast variant writes news only
			changed[i] = "(" + fresh[i] + " OR (" + won[i] + " AND " + d + "))"
		}
	}
	b.WriteString("updated_at = CASE WHEN " + strings.Join(changed, " OR ") + " THEN excluded.updated_at ELSE instances.updated_at END,\n\t")
	b.WriteString("last_write_groups = 0")
	i := 0
	for _, c := range groupColumns {
		if g&c.group == 0 {
			continue
		}
		b.WriteString(" + CASE WHEN " + fresh[i] + " THEN " + strconv.Itoa(int(c.group)) + " ELSE 0 END")
		b.WriteString(" + CASE WHEN " + won[i] + " THEN " + strconv.Itoa(int(c.group)<<wonShift) + " ELSE 0 END")
		if diffs[i] != "" && !fast {
			b.WriteString(" + CASE WHEN " + won[i] + " AND NOT (" + fresh[i] + ") AND " + diffs[i] + " THEN " + strconv.Itoa(int(c.group)<<tieDiffShift) + " ELSE 0 END")
		}
		i++
	}
	if fast {
		b.WriteString("\nWHERE " + strings.Join(fresh, " AND "))
		if g&groupRemoval != 0 {
			b.WriteString(" AND (excluded.removed_at IS NOT NULL OR instances.removed_at IS NOT NULL)")
		} else {
			b.WriteString(" AND instances.removed_at IS NULL")
		}
		return b.String()
	}
	b.WriteString("\nWHERE " + strings.Join(won, " OR "))
	b.WriteString("\nRETURNING last_write_groups, enabled, removed_at IS NOT NULL")
	return b.String()
}
