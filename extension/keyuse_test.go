package extension_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// SealingKeys names each key in use, per kind of value, and Missing the ones a keyring
// lacks for what would be lost without them; cached instance tokens are not among those.
func TestSealingKeys(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		url := extensiontest.URL(t, d)
		keyA, keyB, keyC := extensiontest.Key(t), extensiontest.Key(t), extensiontest.Key(t)
		idA, idB, idC := extension.KeyID(keyA), extension.KeyID(keyB), extension.KeyID(keyC)

		withA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyA)})
		if u, err := withA.SealingKeys(ctx); err != nil || !cmp.Equal(u, extension.KeyUsage{}) {
			t.Fatalf("empty database: got %+v, %v; want no keys", u, err)
		}
		mustApply(t, withA, addedEvent("i-a", at(1), "secret-a"), extension.OutcomeApplied)
		mustApply(t, withA, addedEvent("i-a2", at(1), "secret-a2"), extension.OutcomeApplied)
		withBA := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyB, keyA)})
		mustApply(t, withBA, addedEvent("i-b", at(1), "secret-b"), extension.OutcomeApplied)
		if _, err := withBA.PutUserToken(ctx, "u1", "i-a", "tok", "refresh", time.Now().Add(time.Hour), ""); err != nil {
			t.Fatal(err)
		}
		withC := extensiontest.Open(t, url, extension.Options{Keys: newKeyring(t, keyC)})
		if ok, err := withC.LeaseSharedToken(ctx, "i-b", "me", time.Minute); err != nil || !ok {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		if ok, err := withC.PutSharedToken(ctx, "i-b", "me", "instance-token", time.Now().Add(time.Hour)); err != nil || !ok {
			t.Fatalf("put: %v, %v", ok, err)
		}
		mustApply(t, withA, updatedEvent("i-none", at(1), true, ""), extension.OutcomeApplied) // no secret

		u, err := withA.SealingKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := extension.KeyUsage{InstanceSecrets: sorted(idA, idB), UserTokens: []string{idB}, InstanceTokens: []string{idC}}
		if diff := cmp.Diff(want, u); diff != "" {
			t.Errorf("SealingKeys (-want +got):\n%s", diff)
		}
		for _, tt := range []struct {
			keys [][]byte
			want []string
		}{
			{[][]byte{keyA, keyB}, nil},
			{[][]byte{keyB, keyA}, nil}, // C seals only a cached token
			{[][]byte{keyB}, []string{idA}},
			{[][]byte{keyC}, sorted(idA, idB)},
		} {
			if got := u.Missing(newKeyring(t, tt.keys...)); !cmp.Equal(got, tt.want) {
				t.Errorf("Missing with %d keys: got %v, want %v", len(tt.keys), got, tt.want)
			}
		}
	})
}

// A value that is not sealed at all is no key id: its text never comes out.
func TestSealingKeysSkipsWhatIsNotSealed(t *testing.T) {
	s := extensiontest.NewStore(t, extension.SQLite)
	mustApply(t, s, addedEvent("i-plain", at(1), "s"), extension.OutcomeApplied)
	if _, err := s.SQLDB().Exec(`UPDATE instances SET sealed_secret = 'v1.PLAIN-SECRET-VALUE'`); err != nil {
		t.Fatal(err)
	}
	u, err := s.SealingKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(u.InstanceSecrets) != 0 || strings.Contains(strings.Join(u.InstanceSecrets, ""), "PLAIN") {
		t.Errorf("got %v, want no key id", u.InstanceSecrets)
	}
}

func TestSimulatorMark(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		ctx := context.Background()
		s := extensiontest.NewStore(t, d)
		if got, err := s.SimulatorURL(ctx); err != nil || got != "" {
			t.Fatalf("fresh database: got %q, %v; want no mark", got, err)
		}
		for _, url := range []string{"http://127.0.0.1:8081", "http://127.0.0.1:9091"} {
			if err := s.MarkSimulated(ctx, url); err != nil {
				t.Fatal(err)
			}
			if got, err := s.SimulatorURL(ctx); err != nil || got != url {
				t.Errorf("after MarkSimulated(%q): got %q, %v", url, got, err)
			}
		}
	})
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

// BenchmarkSealingKeys is the start-up check's cost on 10,000 instances with secrets:
// one scan of the table (serve, token and rekey run it once at start).
func BenchmarkSealingKeys(b *testing.B) {
	for _, d := range extensiontest.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			s := extensiontest.NewStore(b, d)
			sealed, err := s.Keys().Seal("a-secret-of-usual-length-Qx7mT2vLp9RkW4sNz8", "aad")
			if err != nil {
				b.Fatal(err)
			}
			const n = 10_000
			tx, err := s.SQLDB().Begin()
			if err != nil {
				b.Fatal(err)
			}
			insert := `INSERT INTO instances (id, sealed_secret, created_at, updated_at) VALUES ($1, $2, $3, $3)`
			for i := range n {
				if _, err := tx.Exec(insert, fmt.Sprintf("i-%05d", i), sealed, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if u, err := s.SealingKeys(context.Background()); err != nil || len(u.InstanceSecrets) != 1 {
					b.Fatalf("got %+v, %v", u, err)
				}
			}
		})
	}
}
