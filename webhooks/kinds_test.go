package webhooks_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// The long ExtensionInstance… spellings (and the docs' ExtensionsInstance… typo) act like
// the short kinds, and are journaled under the short kind.
func TestLongKindAliases(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		env.mustDeliver(t, newPayload(extension.EventAdded, id, at(0)), http.StatusNoContent)

		upd := newPayload(extension.EventUpdated, id, at(10))
		upd.Kind, upd.Scopes, upd.VariantKey = "ExtensionInstanceUpdated", []string{"alias:scope"}, "alias"
		env.mustDeliver(t, upd, http.StatusNoContent)
		if in := instance(t, env.Store, id); !cmp.Equal(in.ConsentedScopes, upd.Scopes) || in.VariantKey != "alias" {
			t.Errorf("after ExtensionInstanceUpdated: scopes %v, variant %q", in.ConsentedScopes, in.VariantKey)
		}

		for i, kind := range []string{"ExtensionInstanceSecretRotated", "ExtensionsInstanceSecretRotated"} {
			rot := newPayload(extension.EventSecretRotated, id, at(20+i))
			rot.Kind = kind
			env.mustDeliver(t, rot, http.StatusNoContent)
			checkSecret(t, env.Store, id, rot.Secret)
		}

		rem := newPayload(extension.EventRemoved, id, at(30))
		rem.Kind = "ExtensionInstanceRemovedFromContext"
		env.mustDeliver(t, rem, http.StatusNoContent)
		checkCredentialsErr(t, env.Store, id, extension.ErrRemoved)

		var kinds []string
		for _, d := range deliveries(t, env.Store) {
			if d.Outcome != extension.OutcomeApplied {
				t.Errorf("journal row %+v, want applied", d)
			}
			kinds = append([]string{d.Kind}, kinds...)
		}
		want := []string{"ExtensionAddedToContext", "InstanceUpdated", "SecretRotated", "SecretRotated", "InstanceRemovedFromContext"}
		if diff := cmp.Diff(want, kinds); diff != "" {
			t.Errorf("journal kinds (-want +got):\n%s", diff)
		}
	})
}

// A validly signed delivery of a kind we do not know is acknowledged with 202 and
// journaled as ignored; nothing else changes.
func TestUnknownKind(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		env.mustDeliver(t, newPayload(extension.EventAdded, id, at(0)), http.StatusNoContent)

		for _, p := range []testPayload{
			func() testPayload {
				p := newPayload(extension.EventUpdated, id, at(10))
				p.Kind = "InstanceSuspended"
				return p
			}(),
			func() testPayload {
				p := newPayload(extension.EventAdded, uuid.NewString(), at(10))
				p.Kind = "extensionAddedToContext" // the execution-log spelling is not a payload kind
				return p
			}(),
			func() testPayload {
				p := newPayload(extension.EventRemoved, id, at(10))
				p.Kind = strings.Repeat("K", 10000)
				return p
			}(),
		} {
			beforeInstances, beforeJournal := instances(t, env.Store), deliveries(t, env.Store)
			rec := env.deliver(t, p)
			if rec.Code != http.StatusAccepted {
				t.Errorf("kind %.40q: status = %d (%s), want 202", p.Kind, rec.Code, rec.Body)
			}
			if diff := cmp.Diff(beforeInstances, instances(t, env.Store)); diff != "" {
				t.Errorf("kind %.40q changed instances (-before +after):\n%s", p.Kind, diff)
			}
			after := deliveries(t, env.Store)
			if len(after) != len(beforeJournal)+1 || after[0].Outcome != extension.OutcomeIgnored {
				t.Errorf("kind %.40q: journal grew by %d, newest %+v; want one ignored row", p.Kind, len(after)-len(beforeJournal), after[0])
			}
			if len(after[0].Kind) > 100 {
				t.Errorf("journal keeps an unbounded kind of %d bytes", len(after[0].Kind))
			}
		}
	})
}

// A dry run is verified and validated like a delivery, answers 200 with JSON, and
// changes nothing but the journal.
func TestDryRun(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		add := newPayload(extension.EventAdded, id, at(0))
		env.mustDeliver(t, add, http.StatusNoContent)
		target := webhookPath + "?dry-run=true&executing-user-id=" + uuid.NewString()

		newID := uuid.NewString()
		for _, p := range []testPayload{
			func() testPayload {
				p := newPayload(extension.EventUpdated, id, at(10))
				p.Enabled, p.Scopes = false, []string{"dry:run"}
				return p
			}(),
			newPayload(extension.EventSecretRotated, id, at(10)),
			newPayload(extension.EventRemoved, id, at(10)),
			newPayload(extension.EventAdded, newID, at(10)),
		} {
			beforeInstances, beforeJournal := instances(t, env.Store), deliveries(t, env.Store)
			rec := env.serve(signedRequest(target, env.Key, p.JSON()))
			if rec.Code != http.StatusOK {
				t.Errorf("dry-run %s: status = %d (%s), want 200", p.Kind, rec.Code, rec.Body)
			}
			var answer map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Errorf("dry-run %s: answer %q is not a JSON object: %v", p.Kind, rec.Body, err)
			}
			if answer["outcome"] != string(extension.OutcomeDryRun) || answer["instanceId"] != p.InstanceID {
				t.Errorf("dry-run %s: answer = %v", p.Kind, answer)
			}
			if strings.Contains(rec.Body.String(), p.Secret) && p.Secret != "" {
				t.Errorf("dry-run %s: the answer contains the secret", p.Kind)
			}
			if diff := cmp.Diff(beforeInstances, instances(t, env.Store)); diff != "" {
				t.Errorf("dry-run %s changed instances (-before +after):\n%s", p.Kind, diff)
			}
			after := deliveries(t, env.Store)
			if len(after) != len(beforeJournal)+1 || after[0].Outcome != extension.OutcomeDryRun {
				t.Errorf("dry-run %s: journal grew by %d, newest %+v; want one dry-run row", p.Kind, len(after)-len(beforeJournal), after[0])
			}
		}
		checkSecret(t, env.Store, id, add.Secret)

		// A dry run is still verified and validated.
		unsigned := signedRequest(target, env.Key, newPayload(extension.EventUpdated, id, at(10)).JSON())
		unsigned.Header.Del("X-Marketplace-Signature")
		if rec := env.serve(unsigned); rec.Code != http.StatusUnauthorized {
			t.Errorf("unsigned dry run: status = %d, want 401", rec.Code)
		}
		noSecret := newPayload(extension.EventAdded, uuid.NewString(), at(10))
		noSecret.Secret = ""
		if rec := env.serve(signedRequest(target, env.Key, noSecret.JSON())); rec.Code != http.StatusBadRequest {
			t.Errorf("dry run of an install without secret: status = %d, want 400", rec.Code)
		}
		// A dry run does not use up its request id: the real delivery is applied.
		p := newPayload(extension.EventUpdated, id, at(20))
		if rec := env.serve(signedRequest(target, env.Key, p.JSON())); rec.Code != http.StatusOK {
			t.Fatalf("dry run: status = %d", rec.Code)
		}
		env.mustDeliver(t, p, http.StatusNoContent)
		checkOutcome(t, env.Store, extension.OutcomeApplied)
	})
}

// Decoding is tolerant: fields we do not know, anywhere, and nulls for optional fields.
func TestTolerantDecoding(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		for _, tc := range []struct {
			name   string
			change func([]byte) []byte
		}{
			{"unknown top-level fields", func(b []byte) []byte {
				return bytes.Replace(b, []byte(`{"apiVersion"`), []byte(`{"futureField":{"nested":[1,2,{"x":null}]},"flag":true,"apiVersion"`), 1)
			}},
			{"unknown nested fields", func(b []byte) []byte {
				b = bytes.Replace(b, []byte(`"state":{`), []byte(`"state":{"paused":false,"reason":"none",`), 1)
				b = bytes.Replace(b, []byte(`"context":{`), []byte(`"context":{"name":"Project X",`), 1)
				b = bytes.Replace(b, []byte(`"meta":{`), []byte(`"meta":{"plan":{"id":1},`), 1)
				return bytes.Replace(b, []byte(`"target":{`), []byte(`"target":{"headers":{},`), 1)
			}},
			{"variantKey null", func(b []byte) []byte {
				return bytes.Replace(b, []byte(`"secret":`), []byte(`"variantKey":null,"secret":`), 1)
			}},
			{"pretty-printed", func(b []byte) []byte {
				var out bytes.Buffer
				json.Indent(&out, b, "", "  ")
				return out.Bytes()
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id := uuid.NewString()
				p := newPayload(extension.EventAdded, id, at(0))
				body := tc.change(p.JSON())
				if bytes.Equal(body, p.JSON()) {
					t.Fatal("the change changed nothing")
				}
				if rec := env.serve(signedRequest(webhookPath, env.Key, body)); rec.Code != http.StatusNoContent {
					t.Fatalf("status = %d (%s), want 204", rec.Code, rec.Body)
				}
				checkInstance(t, env.Store, extension.Instance{
					ID: id, ContextKind: extension.ContextProject, ContextID: testContextID,
					ConsentedScopes: p.Scopes, Enabled: true, LastEventNano: at(0).UnixNano(),
				})
				checkSecret(t, env.Store, id, p.Secret)
			})
		}
	})
}

// request.createdAt is accepted with and without fractional seconds and in any offset;
// events are ordered by the instant, not by the text.
func TestCreatedAtFormats(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		id := uuid.NewString()
		steps := []struct {
			createdAt string
			outcome   extension.Outcome
		}{
			{"2025-03-14T11:36:24Z", extension.OutcomeApplied},
			{"2025-03-14T11:36:24.5Z", extension.OutcomeApplied},
			{"2025-03-14T13:36:25+02:00", extension.OutcomeApplied}, // 11:36:25Z
			{"2025-03-14T11:36:24.9+00:00", extension.OutcomeStale},
			{"2025-03-14T11:36:25.000000001Z", extension.OutcomeApplied},
			{"2025-03-14T06:36:26-05:00", extension.OutcomeApplied}, // 11:36:26Z
		}
		var last time.Time
		for i, s := range steps {
			kind := extension.EventUpdated
			if i == 0 {
				kind = extension.EventAdded
			}
			p := newPayload(kind, id, time.Time{})
			p.CreatedAtRaw = s.createdAt
			env.mustDeliver(t, p, http.StatusNoContent)
			checkOutcome(t, env.Store, s.outcome)
			if s.outcome == extension.OutcomeApplied {
				var err error
				if last, err = time.Parse(time.RFC3339Nano, s.createdAt); err != nil {
					t.Fatal(err)
				}
			}
			if got := instance(t, env.Store, id).LastEventNano; got != last.UnixNano() {
				t.Errorf("after %s: last event %v, want %v", s.createdAt, time.Unix(0, got).UTC(), last.UTC())
			}
		}
	})
}

// A database that fails answers 500, so the platform retries; the answer says nothing
// about the delivery.
func TestDatabaseFailureAnswers500(t *testing.T) {
	forEachDialect(t, func(t *testing.T, env *testEnv) {
		p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		req := signedRequest(webhookPath, env.Key, p.JSON())
		env.Store.Close()
		rec := env.serve(req)
		if rec.Code != http.StatusInternalServerError {
			t.Errorf("status = %d (%s), want 500", rec.Code, rec.Body)
		}
		for _, leak := range []string{p.Secret, req.Header.Get("X-Marketplace-Signature"), p.InstanceID} {
			if strings.Contains(rec.Body.String(), leak) {
				t.Errorf("the 500 answer %q contains %q", rec.Body, leak)
			}
		}
	})
}
