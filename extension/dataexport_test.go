package extension_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// columnsOf lists a table's columns, read from the schema.
func columnsOf(t *testing.T, s *extension.Store, table string) []string {
	t.Helper()
	q := `SELECT name FROM pragma_table_info(?) ORDER BY name`
	if s.Dialect() == extension.Postgres {
		q = `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY column_name`
	}
	rows, err := s.SQLDB().Query(q, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// secretLooking reports whether a column's name says it holds something that opens
// something: such a column must be left out of an export.
func secretLooking(column string) bool {
	if strings.HasSuffix(column, "_version") {
		return false // the version of the event that last set a group, such as the secret
	}
	for _, w := range []string{"secret", "hash", "sealed", "token"} {
		if strings.Contains(column, w) {
			return true
		}
	}
	return false
}

// The export holds every row of the instance in every table that has an instance column
// (found in the schema, so that a table added later without export support fails here),
// with every column, the ones that open something shown as left out; and nothing of
// another instance.
func TestExportHasEveryInstanceTable(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		clk := extensiontest.NewClock(ssoStart)
		s := extensiontest.Open(t, extensiontest.URL(t, d), extension.Options{Keys: extensiontest.Keyring(t), Now: clk.Now})
		mine := seedEverything(t, s, "i-mine", "mine.example", at(1))
		seedEverything(t, s, "i-theirs", "theirs.example", at(1))

		doc, err := s.ExportInstance(ctx, "i-mine")
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := doc.WriteJSON(&buf); err != nil {
			t.Fatal(err)
		}
		text := buf.String()
		var got struct {
			Format     string `json:"format"`
			InstanceID string `json:"instance_id"`
			Tables     map[string]struct {
				LeftOut map[string]string `json:"left_out"`
				Rows    []map[string]any  `json:"rows"`
			} `json:"tables"`
		}
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("the export is not JSON: %v", err)
		}
		if got.InstanceID != "i-mine" {
			t.Errorf("instance_id %q, want i-mine", got.InstanceID)
		}

		tables := append([]string{"instances"}, instanceTables(t, s)...)
		for _, table := range tables {
			exported, ok := got.Tables[table]
			if !ok {
				t.Errorf("table %s holds rows of an instance, but the export has no %s: add it to exportTables in dataexport.go", table, table)
				continue
			}
			want := rowsOf(t, s, table, "i-mine")
			if want == 0 {
				t.Errorf("seed made no row of %s: seed it in seedEverything, or the test proves nothing about it", table)
			}
			if len(exported.Rows) != want {
				t.Errorf("%s: %d rows exported, want %d", table, len(exported.Rows), want)
			}
			key := "instance_id"
			if table == "instances" {
				key = "id"
			}
			cols := columnsOf(t, s, table)
			for _, c := range cols {
				if secretLooking(c) && exported.LeftOut[c] == "" {
					t.Errorf("%s.%s looks like a secret, but the export does not leave it out", table, c)
				}
			}
			for c, why := range exported.LeftOut {
				if !slices.Contains(cols, c) || why == "" {
					t.Errorf("%s: left out %q (%q), which is no column of it or has no reason", table, c, why)
				}
			}
			for _, row := range exported.Rows {
				if row[key] != "i-mine" {
					t.Errorf("%s: a row of %v exported", table, row[key])
				}
				for _, c := range cols {
					v, ok := row[c]
					switch {
					case !ok:
						t.Errorf("%s: column %s missing from a row: show it, or show it left out", table, c)
					case exported.LeftOut[c] != "" && v != extension.LeftOut:
						t.Errorf("%s.%s is left out, but a row shows %v", table, c, v)
					}
				}
			}
		}
		for name := range got.Tables {
			if !slices.Contains(tables, name) {
				t.Errorf("the export has a table %s that the schema does not list", name)
			}
		}

		// Nothing of the other instance, and nothing that opens something.
		var sealed []string
		for _, q := range []string{"SELECT sealed_secret FROM instances", "SELECT sealed_token FROM user_tokens",
			"SELECT sealed_refresh FROM user_tokens", "SELECT sealed_token FROM instance_tokens",
			"SELECT sealed_client_secret FROM oidc_providers", "SELECT id_hash FROM sessions", "SELECT handle FROM sessions",
			"SELECT token_hash FROM invitations", "SELECT token_hash FROM password_resets", "SELECT password_hash FROM accounts"} {
			rows, err := s.SQLDB().Query(q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				if v != "" {
					sealed = append(sealed, v)
				}
			}
			rows.Close()
		}
		if len(sealed) < 10 {
			t.Fatalf("found %d stored secrets and hashes, want one per query at least", len(sealed))
		}
		for _, never := range append(sealed, "i-theirs", "theirs.example", realisticSecret, string(testClientSecret),
			"user-token-i-mine", "refresh-i-mine", fakeHash) {
			if strings.Contains(text, never) {
				t.Errorf("the export contains %.24q…, which is of another instance or a secret", never)
			}
		}
		for _, want := range []string{"ada@mine.example", "Owner of i-mine", "subject-of-i-mine", "Customer of i-mine", mine.local.ID} {
			if !strings.Contains(text, want) {
				t.Errorf("the export lacks %q", want)
			}
		}
		// JSON columns are JSON, not JSON in a string.
		if !strings.Contains(text, `"allowed_domains": [`) {
			t.Error("allowed_domains is not shown as a JSON list")
		}

		if _, err := s.ExportInstance(ctx, "i-unknown"); !errors.Is(err, extension.ErrNotFound) {
			t.Errorf("export of an unknown instance: %v, want ErrNotFound", err)
		}
	})
}
