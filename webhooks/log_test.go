package webhooks_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/uuid"
)

// No log line, of the handler or of the request log, carries a secret or a signature:
// not for applied deliveries, nor for refused, stale, ignored or dry-run ones.
func TestLogsCarryNoSecrets(t *testing.T) {
	env := newTestEnv(t, extension.SQLite, withContributor)
	var secrets, signatures []string
	send := func(req *http.Request, body []byte, secret string) int {
		t.Helper()
		if secret != "" {
			secrets = append(secrets, secret)
		}
		if s := req.Header.Get(mstudio.HeaderSignature); s != "" {
			signatures = append(signatures, s)
		}
		rec := env.serve(req)
		for _, s := range append(append([]string{}, secrets...), signatures...) {
			if strings.Contains(rec.Body.String(), s) {
				t.Errorf("answer %d contains a secret or signature: %s", rec.Code, rec.Body)
			}
		}
		return rec.Code
	}
	deliver := func(p testPayload, query string) int {
		body := p.JSON()
		return send(signedRequest(webhookPath+query, env.Key, body), body, p.Secret)
	}

	id := uuid.NewString()
	// The whole life of an instance, with a replay, a stale event and a dry run.
	add := newPayload(extension.EventAdded, id, at(0))
	deliver(add, "")
	deliver(add, "")
	upd := newPayload(extension.EventUpdated, id, at(10))
	deliver(upd, "")
	rot := newPayload(extension.EventSecretRotated, id, at(20))
	deliver(rot, "")
	deliver(newPayload(extension.EventSecretRotated, id, at(15)), "")
	deliver(newPayload(extension.EventSecretRotated, id, at(30)), "?dry-run=true&executing-user-id="+uuid.NewString())
	unknown := newPayload(extension.EventAdded, id, at(25))
	unknown.Kind = "InstanceSuspended"
	deliver(unknown, "")
	deliver(newPayload(extension.EventRemoved, id, at(40)), "")

	// Refused after verification: they carry a secret in a body we do not accept.
	foreign := newPayload(extension.EventAdded, uuid.NewString(), at(0))
	foreign.ExtensionID = uuid.NewString()
	deliver(foreign, "")
	otherContributor := newPayload(extension.EventSecretRotated, id, at(50))
	otherContributor.ContributorID = uuid.NewString()
	deliver(otherContributor, "")
	broken := newPayload(extension.EventAdded, uuid.NewString(), at(0))
	brokenBody := bytes.TrimSuffix(broken.JSON(), []byte("}"))
	send(signedRequest(webhookPath, env.Key, brokenBody), brokenBody, broken.Secret)
	badTime := newPayload(extension.EventAdded, uuid.NewString(), at(0))
	badTime.CreatedAtRaw = "not a time"
	deliver(badTime, "")
	// Refused before verification: a signature that does not match, by another key.
	tampered := newPayload(extension.EventAdded, uuid.NewString(), at(0))
	req := signedRequest(webhookPath, env.Key, tampered.JSON())
	other := newTestKey(t)
	mstudio.Sign(req.Header, env.Key.Serial, other.Private, tampered.JSON())
	send(req, tampered.JSON(), tampered.Secret)
	unknownSerial := newPayload(extension.EventAdded, uuid.NewString(), at(0))
	send(signedRequest(webhookPath, other, unknownSerial.JSON()), unknownSerial.JSON(), unknownSerial.Secret)

	sealed := ""
	for _, in := range instances(t, env.Store) {
		sealed += in.SealedSecret
	}
	logs := env.Logs.String()
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
		line := sc.Text()
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line contains an instance secret: %s", line)
			}
		}
		for _, s := range signatures {
			if strings.Contains(line, s) || strings.Contains(line, s[:20]) {
				t.Errorf("log line contains a signature: %s", line)
			}
		}
	}
	if sealed != "" && strings.Contains(logs, sealed) {
		t.Error("a sealed secret reached the log")
	}
	// The check is only worth something if the log was written, with the fixed keys.
	if lines < 15 {
		t.Errorf("only %d log lines; want one per request", lines)
	}
	for _, key := range []string{`"` + webhooks.LogKeyInstanceID + `":"` + id + `"`, `"` + webhooks.LogKeyOutcome + `":"refused"`, `"` + webhooks.LogKeyOutcome + `":"applied"`} {
		if !strings.Contains(logs, key) {
			t.Errorf("log has no %s", key)
		}
	}
	if len(secrets) < 8 || len(signatures) < 14 {
		t.Errorf("checked %d secrets and %d signatures; the test lost its deliveries", len(secrets), len(signatures))
	}
}
