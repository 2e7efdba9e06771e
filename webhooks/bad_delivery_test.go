package webhooks_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// badDelivery is a delivery the handler must refuse without changing any instance.
type badDelivery struct {
	name string
	// payload changes the default delivery: an update of the installed instance that
	// would change it if it were accepted.
	payload func(p *testPayload)
	// body replaces the payload's JSON (it is signed all the same).
	body func(p testPayload) []byte
	// header changes the signature headers after signing; tamper changes the body after.
	header func(h http.Header, env *testEnv, body []byte)
	tamper func(body []byte) []byte
	// chunked sends the body without a Content-Length.
	chunked bool
	want    int
	// refused: the signature was good, so the refusal is journaled with a reason;
	// otherwise nothing at all may be written.
	refused bool
	// noFetch: the key server must not be asked.
	noFetch bool
}

func badDeliveries() []badDelivery {
	sigOf := func(h http.Header) []byte {
		b, _ := base64.StdEncoding.DecodeString(h.Get(mstudio.HeaderSignature))
		return b
	}
	return []badDelivery{
		{name: "serial header missing", header: func(h http.Header, _ *testEnv, _ []byte) { h.Del(mstudio.HeaderSerial) }, want: 401, noFetch: true},
		{name: "algorithm header missing", header: func(h http.Header, _ *testEnv, _ []byte) { h.Del(mstudio.HeaderAlgorithm) }, want: 401, noFetch: true},
		{name: "signature header missing", header: func(h http.Header, _ *testEnv, _ []byte) { h.Del(mstudio.HeaderSignature) }, want: 401, noFetch: true},
		{name: "all headers missing", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Del(mstudio.HeaderSerial)
			h.Del(mstudio.HeaderAlgorithm)
			h.Del(mstudio.HeaderSignature)
		}, want: 401, noFetch: true},
		{name: "serial header empty", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSerial, "") }, want: 401, noFetch: true},
		{name: "algorithm header empty", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderAlgorithm, "") }, want: 401, noFetch: true},
		{name: "signature header empty", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSignature, "") }, want: 401, noFetch: true},
		{name: "signature header blank", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSignature, "   ") }, want: 401, noFetch: true},
		{name: "algorithm RSA", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderAlgorithm, "RSA") }, want: 401, noFetch: true},
		{name: "algorithm none", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderAlgorithm, "none") }, want: 401, noFetch: true},
		{name: "algorithm Ed448", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderAlgorithm, "Ed448") }, want: 401, noFetch: true},
		{name: "signature not base64", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSignature, "!!not*base64!!") }, want: 401, noFetch: true},
		{name: "signature hex instead of base64", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSignature, strings.Repeat("ab", ed25519.SignatureSize))
		}, want: 401, noFetch: true},
		{name: "signature of 63 bytes", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(sigOf(h)[:63]))
		}, want: 401, noFetch: true},
		{name: "signature of 65 bytes", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(append(sigOf(h), 0)))
		}, want: 401, noFetch: true},
		{name: "signature all zero", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(make([]byte, ed25519.SignatureSize)))
		}, want: 401},
		{name: "signature by another key under the known serial", header: func(h http.Header, _ *testEnv, body []byte) {
			_, other, _ := ed25519.GenerateKey(nil)
			h.Set(mstudio.HeaderSignature, base64.StdEncoding.EncodeToString(ed25519.Sign(other, body)))
		}, want: 401},
		{name: "body tampered after signing", tamper: func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"enabled":false`), []byte(`"enabled":true `), 1)
		}, want: 401},
		{name: "body with a byte appended after signing", tamper: func(b []byte) []byte { return append(b, ' ') }, want: 401},
		{name: "serial not a UUID", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSerial, "not-a-uuid") }, want: 401, noFetch: true},
		{name: "serial with a path in it", header: func(h http.Header, _ *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSerial, "../../v2/users/self?purpose=webhook")
		}, want: 401, noFetch: true},
		{name: "serial UUID without hyphens", header: func(h http.Header, env *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSerial, strings.ReplaceAll(env.Key.Serial, "-", ""))
		}, want: 401, noFetch: true},
		{name: "serial UUID in braces", header: func(h http.Header, env *testEnv, _ []byte) {
			h.Set(mstudio.HeaderSerial, "{"+env.Key.Serial+"}")
		}, want: 401, noFetch: true},
		{name: "serial unknown", header: func(h http.Header, _ *testEnv, _ []byte) { h.Set(mstudio.HeaderSerial, uuid.NewString()) }, want: 401},
		{name: "body over 64 KiB with Content-Length", payload: func(p *testPayload) {
			p.Extra = map[string]any{"padding": strings.Repeat("x", webhooks.MaxBodyBytes)}
		}, want: 413, noFetch: true},
		{name: "body over 64 KiB chunked", payload: func(p *testPayload) {
			p.Extra = map[string]any{"padding": strings.Repeat("x", webhooks.MaxBodyBytes)}
		}, chunked: true, want: 413, noFetch: true},
		{name: "body one byte over 64 KiB chunked", body: func(testPayload) []byte { return bytes.Repeat([]byte(" "), webhooks.MaxBodyBytes+1) },
			chunked: true, want: 413, noFetch: true},
		{name: "invalid JSON", body: func(p testPayload) []byte { return bytes.TrimSuffix(p.JSON(), []byte("}")) }, want: 400, refused: true},
		{name: "JSON array", body: func(testPayload) []byte { return []byte(`[{"kind":"InstanceUpdated"}]`) }, want: 400, refused: true},
		{name: "JSON null", body: func(testPayload) []byte { return []byte(`null`) }, want: 400, refused: true},
		{name: "empty body", body: func(testPayload) []byte { return []byte{} }, want: 400, refused: true},
		{name: "scopes of the wrong type", body: func(p testPayload) []byte {
			return bytes.Replace(p.JSON(), []byte(`"consentedScopes":[`), []byte(`"consentedScopes":"x","ignored":[`), 1)
		}, want: 400, refused: true},
		{name: "apiVersion v2", body: func(p testPayload) []byte {
			return bytes.Replace(p.JSON(), []byte(`"apiVersion":"v1"`), []byte(`"apiVersion":"v2"`), 1)
		}, want: 400, refused: true},
		{name: "id missing", payload: func(p *testPayload) { p.InstanceID = "" }, want: 400, refused: true},
		{name: "id not a UUID", payload: func(p *testPayload) { p.InstanceID = "instance-1" }, want: 400, refused: true},
		{name: "kind missing", payload: func(p *testPayload) { p.Kind = "" }, want: 400, refused: true},
		{name: "request.id missing", payload: func(p *testPayload) { p.RequestID = "" }, want: 400, refused: true},
		{name: "createdAt missing", payload: func(p *testPayload) { p.CreatedAtRaw, p.CreatedAt = "", time.Time{} }, want: 400, refused: true},
		{name: "createdAt not a time", payload: func(p *testPayload) { p.CreatedAtRaw = "yesterday" }, want: 400, refused: true},
		{name: "createdAt without zone", payload: func(p *testPayload) { p.CreatedAtRaw = "2025-03-14T11:36:30.5" }, want: 400, refused: true},
		{name: "createdAt as a date", payload: func(p *testPayload) { p.CreatedAtRaw = "2025-03-15" }, want: 400, refused: true},
		{name: "createdAt with a space", payload: func(p *testPayload) { p.CreatedAtRaw = "2025-03-14 11:36:30Z" }, want: 400, refused: true},
		{name: "added without secret", payload: func(p *testPayload) {
			*p = newPayload(extension.EventAdded, uuid.NewString(), at(5))
			p.Secret = ""
		}, want: 400, refused: true},
		{name: "added without context", payload: func(p *testPayload) {
			*p = newPayload(extension.EventAdded, uuid.NewString(), at(5))
			p.ContextID, p.ContextKind = "", ""
		}, want: 400, refused: true},
		{name: "rotation without secret", payload: func(p *testPayload) {
			*p = newPayload(extension.EventSecretRotated, installedID, at(5))
			p.Secret = ""
		}, want: 400, refused: true},
		{name: "foreign extension id", payload: func(p *testPayload) { p.ExtensionID = uuid.NewString() }, want: 403, refused: true},
		{name: "extension id missing", payload: func(p *testPayload) { p.ExtensionID = "" }, want: 400, refused: true},
		{name: "foreign extension id on an install", payload: func(p *testPayload) {
			*p = newPayload(extension.EventAdded, uuid.NewString(), at(5))
			p.ExtensionID = uuid.NewString()
		}, want: 403, refused: true},
		{name: "foreign contributor id", payload: func(p *testPayload) { p.ContributorID = uuid.NewString() }, want: 403, refused: true},
		{name: "contributor id missing", payload: func(p *testPayload) { p.ContributorID = "" }, want: 403, refused: true},
	}
}

// installedID is the instance the bad deliveries try to change.
const installedID = "9d0c7a4e-58e1-4c1b-9f6e-2b7d3a1c0e55"

func TestBadDeliveries(t *testing.T) {
	for _, d := range extensiontest.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			env := newTestEnv(t, d, withContributor)
			install := newPayload(extension.EventAdded, installedID, at(0))
			env.mustDeliver(t, install, http.StatusNoContent)

			for _, tc := range badDeliveries() {
				t.Run(tc.name, func(t *testing.T) {
					// The default: a newer update that would disable the instance and change
					// its scopes and variant.
					p := newPayload(extension.EventUpdated, installedID, at(10))
					p.Enabled, p.Scopes, p.VariantKey = false, []string{"project:read"}, "pro"
					if tc.payload != nil {
						tc.payload(&p)
					}
					body := p.JSON()
					if tc.body != nil {
						body = tc.body(p)
					}
					req := signedRequest(webhookPath, env.Key, body)
					signature := req.Header.Get(mstudio.HeaderSignature)
					if tc.header != nil {
						tc.header(req.Header, env, body)
					}
					if tc.tamper != nil {
						body = tc.tamper(append([]byte(nil), body...))
						req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
					}
					if tc.chunked {
						// No length known in advance, as with Transfer-Encoding: chunked.
						req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body)))
						req.ContentLength = -1
						req.TransferEncoding = []string{"chunked"}
					}

					beforeInstances, beforeJournal := instances(t, env.Store), deliveries(t, env.Store)
					beforeFetches := env.KeyFetches.Load()
					rec := env.serve(req)

					if rec.Code != tc.want {
						t.Errorf("status = %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
					}
					if diff := cmp.Diff(beforeInstances, instances(t, env.Store)); diff != "" {
						t.Errorf("instances changed (-before +after):\n%s", diff)
					}
					afterJournal := deliveries(t, env.Store)
					if tc.refused {
						if len(afterJournal) != len(beforeJournal)+1 {
							t.Errorf("journal grew by %d rows, want 1", len(afterJournal)-len(beforeJournal))
						} else {
							if diff := cmp.Diff(beforeJournal, afterJournal[1:]); diff != "" {
								t.Errorf("older journal rows changed (-before +after):\n%s", diff)
							}
							if row := afterJournal[0]; row.Outcome != extension.OutcomeRefused || row.Reason == "" {
								t.Errorf("journal row: outcome %q, reason %q; want %q with a reason", row.Outcome, row.Reason, extension.OutcomeRefused)
							}
						}
					} else if diff := cmp.Diff(beforeJournal, afterJournal); diff != "" {
						t.Errorf("an unverified delivery was journaled (-before +after):\n%s", diff)
					}
					if tc.noFetch {
						if got := env.KeyFetches.Load() - beforeFetches; got != 0 {
							t.Errorf("key server asked %d times, want 0", got)
						}
					}
					answer := rec.Body.String()
					if signature != "" && strings.Contains(answer, signature) {
						t.Errorf("answer contains the signature: %s", answer)
					}
					if p.Secret != "" && strings.Contains(answer, p.Secret) {
						t.Errorf("answer contains the secret: %s", answer)
					}
				})
			}

			// After all of that, the instance still works with its first secret.
			_, secret, err := env.Store.InstanceCredentials(t.Context(), installedID)
			if err != nil || secret.Reveal() != install.Secret {
				t.Errorf("InstanceCredentials after bad deliveries: secret matches %v, err %v", secret.Reveal() == install.Secret, err)
			}

			// The control: the default delivery, untouched, is accepted and takes effect, so
			// every refusal above is owed to the one thing each case changed.
			p := newPayload(extension.EventUpdated, installedID, at(10))
			p.Enabled, p.Scopes, p.VariantKey = false, []string{"project:read"}, "pro"
			env.mustDeliver(t, p, http.StatusNoContent)
			if in := instance(t, env.Store, installedID); in.Enabled || in.VariantKey != "pro" {
				t.Errorf("control update not applied: enabled %v, variant %q", in.Enabled, in.VariantKey)
			}
		})
	}
}

// TestBodyLimitOverTheWire sends bodies over a real connection: one of exactly 64 KiB is
// accepted, one a byte longer is refused, with a Content-Length and chunked.
func TestBodyLimitOverTheWire(t *testing.T) {
	env := newTestEnv(t, extension.SQLite)
	srv := httptest.NewServer(env.Front)
	t.Cleanup(srv.Close)

	sized := func(n int) []byte {
		p := newPayload(extension.EventAdded, uuid.NewString(), at(0))
		p.Extra = map[string]any{"padding": ""}
		base := len(p.JSON())
		p.Extra["padding"] = strings.Repeat("x", n-base)
		body := p.JSON()
		if len(body) != n {
			t.Fatalf("built a body of %d bytes, want %d", len(body), n)
		}
		return body
	}
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		want    int
	}{
		{"64 KiB with Content-Length", webhooks.MaxBodyBytes, false, http.StatusNoContent},
		{"64 KiB chunked", webhooks.MaxBodyBytes, true, http.StatusNoContent},
		{"64 KiB + 1 with Content-Length", webhooks.MaxBodyBytes + 1, false, http.StatusRequestEntityTooLarge},
		{"64 KiB + 1 chunked", webhooks.MaxBodyBytes + 1, true, http.StatusRequestEntityTooLarge},
		{"1 MiB chunked", 1 << 20, true, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := sized(tc.size)
			var r io.Reader = bytes.NewReader(body)
			if tc.chunked {
				r = io.MultiReader(r) // an unknown length: the client sends it chunked
			}
			req, err := http.NewRequest(http.MethodPost, srv.URL+webhookPath, r)
			if err != nil {
				t.Fatal(err)
			}
			mstudio.Sign(req.Header, env.Key.Serial, env.Key.Private, body)
			before := len(instances(t, env.Store))
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			wantInstances := before
			if tc.want == http.StatusNoContent {
				wantInstances++
			}
			if got := len(instances(t, env.Store)); got != wantInstances {
				t.Errorf("instances = %d, want %d", got, wantInstances)
			}
		})
	}
}
