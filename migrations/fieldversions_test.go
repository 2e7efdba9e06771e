package migrations_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/migrations"
	"github.com/pressly/goose/v3"
)

// TestFieldVersionsBackfill migrates instances written under 00007 (one last event per
// instance) to field versions (00008) and checks that they behave as before: nothing older
// than the last event changes them, that event again is a duplicate, a newer one applies.
func TestFieldVersionsBackfill(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			kr := extensiontest.Keyring(t)
			url := extensiontest.URL(t, d)
			s, err := extension.Open(ctx, url, extension.Options{Keys: kr})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			gd := goose.DialectSQLite3
			if d == extension.Postgres {
				gd = goose.DialectPostgres
			}
			p, err := goose.NewProvider(gd, s.SQLDB(), os.DirFS(string(d)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.UpTo(ctx, 7); err != nil {
				t.Fatalf("up to 00007: %v", err)
			}

			last := time.Date(2025, 3, 14, 11, 36, 24, 249313263, time.UTC)
			now := time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC)
			rows := []struct {
				id, kind string
				removed  bool
			}{
				{"i-updated", string(extension.EventUpdated), false},
				{"i-rotated", string(extension.EventSecretRotated), false},
				{"i-removed", string(extension.EventRemoved), true},
			}
			for _, r := range rows {
				sealed := ""
				var removedAt *time.Time
				if r.removed {
					removedAt = &now
				} else if sealed, err = kr.Seal(extension.Secret("secret-of-"+r.id), "instance-secret:"+r.id); err != nil {
					t.Fatal(err)
				}
				_, err := s.SQLDB().ExecContext(ctx, s.Dialect().Rebind(`INSERT INTO instances (id, context_kind, context_id,
	consented_scopes, enabled, variant_key, sealed_secret, last_event_kind, last_event_ns, removed_at, created_at, updated_at)
VALUES (?, 'project', 'p-1', '["project:read"]', ?, 'pro', ?, ?, ?, ?, ?, ?)`),
					r.id, !r.removed, sealed, r.kind, last.UnixNano(), removedAt, now, now)
				if err != nil {
					t.Fatalf("insert %s: %v", r.id, err)
				}
			}
			if _, err := migrations.Up(ctx, s.SQLDB(), string(d)); err != nil {
				t.Fatalf("up: %v", err)
			}

			// The versions are the store's encoding: Go's, SQLite's printf and
			// PostgreSQL's lpad must agree on it.
			ns := fmt.Sprintf("%020d", last.UnixNano())
			for _, c := range []struct{ id, column, want string }{
				{"i-updated", "last_event_version", ns + "2"},
				{"i-updated", "enabled_version", ns + "2"},
				{"i-updated", "secret_version", ns + "0"},
				{"i-rotated", "secret_version", ns + "3"},
				{"i-rotated", "scopes_version", ns + "0"},
				{"i-removed", "removal_version", ns + "4"},
				{"i-removed", "variant_version", ns + "0"},
			} {
				var got string
				q := s.Dialect().Rebind("SELECT " + c.column + " FROM instances WHERE id = ?")
				if err := s.SQLDB().QueryRowContext(ctx, q, c.id).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s %s = %q, want %q", c.id, c.column, got, c.want)
				}
			}

			enabled := true
			event := func(kind extension.EventKind, id string, at time.Time) extension.LifecycleEvent {
				ev := extension.LifecycleEvent{Kind: kind, RequestID: fmt.Sprintf("req-%s-%s-%d", kind, id, at.UnixNano()),
					CreatedAt: at, InstanceID: id, ContextKind: "project", ContextID: "p-1"}
				switch kind {
				case extension.EventAdded:
					ev.Scopes, ev.Enabled, ev.VariantKey, ev.Secret = []string{"project:read"}, &enabled, new(string), "new-secret"
				case extension.EventUpdated:
					ev.Scopes, ev.Enabled = []string{"project:read"}, &enabled
				case extension.EventSecretRotated:
					ev.Secret = "new-secret"
				}
				return ev
			}
			// The last event delivered again carries the secret stored with it; one with
			// another secret at the same time is another event, which takes the secret as
			// it takes every other group (its request id sorts after the backfill's none).
			sameSecret := func(ev extension.LifecycleEvent) extension.LifecycleEvent {
				ev.Secret = extension.Secret("secret-of-" + ev.InstanceID)
				return ev
			}
			steps := []struct {
				ev   extension.LifecycleEvent
				want extension.Outcome
			}{
				{event(extension.EventUpdated, "i-updated", last.Add(-1)), extension.OutcomeStale},
				{event(extension.EventAdded, "i-updated", last.Add(-1)), extension.OutcomeStale},
				{event(extension.EventUpdated, "i-updated", last), extension.OutcomeDuplicate}, // the last event again
				{event(extension.EventSecretRotated, "i-updated", last), extension.OutcomeApplied},
				{event(extension.EventUpdated, "i-updated", last.Add(1)), extension.OutcomeApplied},

				{event(extension.EventSecretRotated, "i-rotated", last.Add(-1)), extension.OutcomeStale},
				{sameSecret(event(extension.EventSecretRotated, "i-rotated", last)), extension.OutcomeDuplicate}, // the last event again

				{event(extension.EventAdded, "i-removed", last.Add(-1)), extension.OutcomeStale},
				{event(extension.EventRemoved, "i-removed", last), extension.OutcomeDuplicate},
				{event(extension.EventAdded, "i-removed", last.Add(1)), extension.OutcomeApplied},
			}
			for _, st := range steps {
				res, err := s.ApplyLifecycle(ctx, st.ev)
				if err != nil {
					t.Fatalf("%s %s at %v: %v", st.ev.InstanceID, st.ev.Kind, st.ev.CreatedAt, err)
				}
				if res.Outcome != st.want {
					t.Errorf("%s %s at %+d ns: got %q (%s), want %q", st.ev.InstanceID, st.ev.Kind, st.ev.CreatedAt.Sub(last), res.Outcome, res.Reason, st.want)
				}
			}
			for _, c := range []struct {
				id, secret string
				lastNano   int64
			}{
				{"i-updated", "new-secret", last.Add(1).UnixNano()},
				{"i-rotated", "secret-of-i-rotated", last.UnixNano()},
				{"i-removed", "new-secret", last.Add(1).UnixNano()},
			} {
				in, secret, err := s.InstanceCredentials(ctx, c.id)
				if err != nil {
					t.Errorf("InstanceCredentials(%s): %v", c.id, err)
					continue
				}
				if secret.Reveal() != c.secret {
					t.Errorf("%s: not the secret expected", c.id)
				}
				if in.LastEventNano != c.lastNano {
					t.Errorf("%s: LastEventNano %d, want %d", c.id, in.LastEventNano, c.lastNano)
				}
			}
		})
	}
}
