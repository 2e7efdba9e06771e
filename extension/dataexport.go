package extension

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
)

// The data export: everything the backend keeps of one instance, as JSON, for its owners
// to download (frontend, GET /app/{instanceId}/export). Each table that holds rows of an
// instance is read whole for that instance; the values that open something (secrets,
// password hashes, token and session hashes, sealed values) are replaced by LeftOut, and
// the table says which columns and why, so that a reader sees a column was left out
// rather than missing.

// LeftOut is the value an export shows in place of a column it leaves out.
const LeftOut = "[left out]"

// ExportFormat names the export's format; a change that readers must know of changes it.
const ExportFormat = "extension-backend instance export, version 1"

// exportTable is one table of the export.
type exportTable struct {
	name     string
	instance string            // the column that names the instance
	order    string            // the order of its rows
	leftOut  map[string]string // column → why it is left out
	json     []string          // text columns that hold JSON, shown as JSON
}

// exportTables are the tables of the export: every table with an instance_id column, and
// the instance itself (TestExportHasEveryInstanceTable reads the schema to hold us to it).
var exportTables = []exportTable{
	{name: "instances", instance: "id", order: "id",
		leftOut: map[string]string{"sealed_secret": "the instance secret, sealed: it authenticates the extension at the platform"},
		json:    []string{"consented_scopes"}},
	{name: "instance_settings", instance: "instance_id", order: "instance_id", json: []string{"allowed_domains"}},
	{name: "instance_tokens", instance: "instance_id", order: "instance_id",
		leftOut: map[string]string{"sealed_token": "the instance's access token at the platform, sealed"}},
	{name: "accounts", instance: "instance_id", order: "created_at, id",
		leftOut: map[string]string{"password_hash": "the hash of the account's password"}},
	{name: "user_tokens", instance: "instance_id", order: "platform_user_id",
		leftOut: map[string]string{"sealed_token": "the user's access token at the platform, sealed",
			"sealed_refresh": "the user's refresh token at the platform, sealed"}},
	{name: "sessions", instance: "instance_id", order: "created_at, account_id",
		leftOut: map[string]string{"id_hash": "the hash of the session's cookie",
			"handle": "the session's reference in the sign-out form of the account page"}},
	{name: "invitations", instance: "instance_id", order: "created_at, id",
		leftOut: map[string]string{"token_hash": "the hash of the invitation link's token"}},
	{name: "password_resets", instance: "instance_id", order: "created_at, account_id",
		leftOut: map[string]string{"token_hash": "the hash of the reset link's token"}},
	{name: "oidc_providers", instance: "instance_id", order: "created_at, id",
		leftOut: map[string]string{"sealed_client_secret": "the provider's client secret, sealed"},
		json:    []string{"scopes", "allowed_domains", "required_values", "role_map", "endpoints"}},
	{name: "oidc_identities", instance: "instance_id", order: "created_at, id"},
	{name: "actions", instance: "instance_id", order: "created_at, id"},
	{name: "audit_events", instance: "instance_id", order: "id", json: []string{"detail"}},
	{name: "webhook_deliveries", instance: "instance_id", order: "id"},
	{name: "instance_token_health", instance: "instance_id", order: "instance_id"},
	{name: "webhook_captures", instance: "instance_id", order: "received_at, id",
		leftOut: map[string]string{"sealed": "the captured delivery's URL, headers and body, sealed: they carry the instance secret and the platform's signature"}},
	{name: "reconcile_findings", instance: "instance_id", order: "kind"},
}

// Export is the document an export writes.
type Export struct {
	Format     string                 `json:"format"`
	InstanceID string                 `json:"instance_id"`
	ExportedAt time.Time              `json:"exported_at"`
	Note       string                 `json:"note"`
	Tables     map[string]ExportTable `json:"tables"`
}

// ExportTable is one table of an Export: the columns left out and why, and its rows of
// the instance, each a column → value map.
type ExportTable struct {
	LeftOut map[string]string `json:"left_out,omitempty"`
	Rows    []map[string]any  `json:"rows"`
}

// exportNote explains the document to whoever opens it.
const exportNote = "Everything this extension keeps of the instance, one table at a time. Values shown as " +
	LeftOut + " are secrets, password hashes and token or session hashes: they would open something, so they never leave " +
	"the backend; each table lists those columns under left_out with the reason. Times are UTC."

// ExportInstance reads everything kept of an instance, tombstone included, in one read
// transaction (a consistent snapshot on PostgreSQL), and returns it with the values that
// open something left out. An unknown instance is ErrNotFound.
func (s *Store) ExportInstance(ctx context.Context, instanceID string) (*Export, error) {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.dialect == Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	} else {
		opts = nil // the read pool refuses writes already; go-sqlite3 begins deferred
	}
	tx, err := s.reads.BeginTx(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("export instance %s: %w", instanceID, err)
	}
	defer tx.Rollback() //nolint:errcheck // read-only
	doc := &Export{Format: ExportFormat, InstanceID: instanceID, ExportedAt: s.now().UTC().Truncate(time.Second),
		Note: exportNote, Tables: map[string]ExportTable{}}
	for _, t := range exportTables {
		rows, err := exportRows(ctx, tx, s.dialect, t, instanceID)
		if err != nil {
			return nil, fmt.Errorf("export instance %s: %s: %w", instanceID, t.name, err)
		}
		if t.name == "instances" && len(rows) == 0 {
			return nil, ErrNotFound
		}
		doc.Tables[t.name] = ExportTable{LeftOut: t.leftOut, Rows: rows}
	}
	return doc, nil
}

// WriteJSON writes the export as indented JSON.
func (e *Export) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(e)
}

// exportRows reads a table's rows of the instance, every column, with the left-out ones
// replaced and the JSON ones decoded.
func exportRows(ctx context.Context, tx *sql.Tx, d Dialect, t exportTable, instanceID string) ([]map[string]any, error) {
	rows, err := tx.QueryContext(ctx, d.Rebind("SELECT * FROM "+t.name+" WHERE "+t.instance+" = ? ORDER BY "+t.order), instanceID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		row := make(map[string]any, len(cols))
		for i, c := range cols {
			if _, ok := t.leftOut[c]; ok {
				row[c] = LeftOut
				continue
			}
			row[c] = exportValue(vals[i], slices.Contains(t.json, c))
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// exportValue is a column's value as the export shows it: text as text (JSON as JSON when
// the column holds it), times in UTC, numbers and booleans as they are.
func exportValue(v any, isJSON bool) any {
	switch x := v.(type) {
	case []byte:
		v = string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	if s, ok := v.(string); ok && isJSON && json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return v
}

// AuditDataExported is the audit kind of an owner's download of the instance's data.
const AuditDataExported = "data.exported"

// CanExportData reports whether a role may download the instance's data: owners only, as
// the export holds every member's e-mail address and the whole audit log.
func CanExportData(role string) bool { return role == RoleOwner }
