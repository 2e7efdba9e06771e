package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/extension-backend/extension-backend/webhooks"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// How a history's deliveries are spread over the replicas.
const (
	sendAlternating = iota // each to the other replica than the one before
	sendToBoth             // each to both at once: a retry racing its first attempt
	sendModes
)

// testDeliveries: many instances, each with a history of installs, updates, secret
// rotations, removals and re-installs, sent in order per instance and all instances at
// once, each delivery to the other replica than the one before, or to both at once. Every
// delivery is acknowledged and journaled, and every instance ends exactly as the same
// history leaves its twin (another instance id) when applied in order by a single store,
// in every column but the times of writing (the secret compared opened).
func (tr *twoReplicas) testDeliveries(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, seed>>1))
	const instances = 24
	type history struct {
		mode       int
		id, twin   string
		sent, ref  [][]byte // the deliveries, and the same for the twin
		refResults []extension.Result
	}
	hs := make([]*history, instances)
	start := time.Now().Add(-time.Hour)
	for i := range hs {
		h := &history{mode: i % sendModes, id: uuid.NewString(), twin: uuid.NewString()}
		for _, spec := range tr.history(rng, start) {
			h.sent = append(h.sent, tr.payload(t, spec, h.id))
			h.ref = append(h.ref, tr.payload(t, spec, h.twin))
		}
		hs[i] = h
	}

	single := tr.r[0].b.store
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			for n, body := range h.sent {
				switch h.mode {
				case sendAlternating:
					tr.deliver(t, tr.r[(i+n)%2], body)
				case sendToBoth:
					var both sync.WaitGroup
					for _, r := range tr.r {
						both.Go(func() { tr.deliver(t, r, body) })
					}
					both.Wait()
				}
			}
			for _, body := range h.ref {
				res, err := single.ApplyLifecycle(context.Background(), decodeEvent(t, body))
				if err != nil {
					t.Error(err)
				}
				h.refResults = append(h.refResults, res)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	rows := tr.instanceRows(t, single.SQLDB())
	journaled := journal(t, tr.r[1].b.store.SQLDB())
	for _, h := range hs {
		want, got := rows[h.twin], rows[h.id]
		if want != nil {
			want["id"] = h.id
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("instance %s after the deliveries over two replicas (+) differs from the in-order state (-):\n%s", h.id, diff)
		}
		for n, body := range h.sent {
			ev := decodeEvent(t, body)
			outcomes := journaled[ev.RequestID]
			slices.Sort(outcomes)
			want := []extension.Outcome{h.refResults[n].Outcome}
			if h.mode == sendToBoth {
				// One of the two applied it; the other found it applied.
				want = append(want, extension.OutcomeDuplicate)
				slices.Sort(want)
			}
			if !slices.Equal(outcomes, want) {
				t.Errorf("instance %s, %s delivered: journal says %v, want %v", ev.InstanceID, ev.Kind, outcomes, want)
			}
		}
	}
}

// history returns the deliveries of one instance, oldest first, as the platform builds
// them: an install, then updates (scopes, enabled, variant), secret rotations, and perhaps
// a removal, after which it either stops or is installed again.
func (tr *twoReplicas) history(rng *mrand.Rand, start time.Time) []mstudiotest.PayloadSpec {
	contextKind := []string{extension.ContextProject, extension.ContextCustomer}[rng.IntN(2)]
	contextID := uuid.NewString()
	scopeSets := [][]string{{"project:read"}, {"project:read", "project:write"}, {"customer:read"}, {}}
	variants := []string{"", "basic", "pro"}
	at := start.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
	event := func(kind string) mstudiotest.PayloadSpec {
		// Platform times carry nanoseconds; a few events may fall in one millisecond.
		at = at.Add(time.Duration(1+rng.IntN(3_000_000)) * time.Nanosecond)
		return mstudiotest.PayloadSpec{
			Kind: kind, ExtensionID: testExtensionID, ContributorID: "7c9d2e41-5a3b-4f86-b1e2-9e0f3a6d8c17",
			ContextKind: contextKind, ContextID: contextID, Scopes: scopeSets[rng.IntN(len(scopeSets))],
			Enabled: rng.IntN(3) > 0, VariantKey: variants[rng.IntN(len(variants))], Secret: rand.Text(),
			CreatedAt: at, TargetURL: tr.public + "/mstudio/webhooks",
		}
	}
	install := func() mstudiotest.PayloadSpec { return event("ExtensionAddedToContext") }
	h := []mstudiotest.PayloadSpec{install()}
	for steps := 2 + rng.IntN(6); steps > 0; steps-- {
		switch r := rng.IntN(10); {
		case r < 5:
			h = append(h, event("InstanceUpdated"))
		case r < 8:
			h = append(h, event("SecretRotated"))
		default:
			h = append(h, event("InstanceRemovedFromContext"))
			if rng.IntN(2) == 0 {
				return h
			}
			h = append(h, install())
		}
	}
	return h
}

// payload is the body of the delivery to the instance, with a request id of its own.
func (tr *twoReplicas) payload(t *testing.T, spec mstudiotest.PayloadSpec, instanceID string) []byte {
	t.Helper()
	spec.InstanceID = instanceID
	body, err := mstudiotest.BuildPayload(spec)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// deliver signs body with the simulator's webhook key and posts it to replica r, which
// must acknowledge it.
func (tr *twoReplicas) deliver(t *testing.T, r *replica, body []byte) {
	req, err := http.NewRequest(http.MethodPost, r.url+"/mstudio/webhooks", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	k := tr.sim.Sim.WebhookKey()
	mstudio.Sign(req.Header, k.Serial, k.Private, body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Errorf("replica %s answered a delivery with %d: %s", r.name, resp.StatusCode, answer)
	}
}

// decodeEvent is the event of a delivery, read as the webhook handler reads it.
func decodeEvent(t *testing.T, body []byte) extension.LifecycleEvent {
	t.Helper()
	p, err := webhooks.Decode(body)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Event()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// instanceRows reads the instances by id, every column but those that say when
// the row was written (created_at, updated_at, and removed_at, which is read as whether
// it is set) and those the jobs write (the context's name). The sealed secret is opened
// and compared by its digest.
// versionPrefix is the length of a field group version's time (20 digits) and kind rank
// (one digit), which come before the request id.
const versionPrefix = 21

func (tr *twoReplicas) instanceRows(t *testing.T, db *sql.DB) map[string]map[string]any {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT * FROM instances`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]any{}
		for i, c := range cols {
			v := vals[i]
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			row[c] = v
		}
		id := fmt.Sprint(row["id"])
		row["removed_at"] = row["removed_at"] != nil
		row["sealed_secret"] = tr.secretDigest(t, id, fmt.Sprint(row["sealed_secret"]))
		for _, c := range []string{"created_at", "updated_at", "context_name", "context_name_at"} {
			delete(row, c)
		}
		// A field group's version ends in the request id of the event that set it, and the
		// twin's events carry request ids of their own: compare the time and kind before it.
		for c, v := range row {
			if s, ok := v.(string); ok && strings.HasSuffix(c, "_version") && len(s) > versionPrefix {
				row[c] = s[:versionPrefix]
			}
		}
		out[id] = row
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// secretDigest opens a sealed instance secret and returns a digest of it ("" for none).
func (tr *twoReplicas) secretDigest(t *testing.T, instanceID, sealed string) string {
	t.Helper()
	if sealed == "" {
		return ""
	}
	secret, err := tr.keys.Open(sealed, "instance-secret:"+instanceID) // the store's binding of a secret to its row
	if err != nil {
		t.Fatalf("open the secret of instance %s: %v", instanceID, err)
	}
	sum := sha256.Sum256([]byte(secret.Reveal()))
	return hex.EncodeToString(sum[:8])
}

// journal returns the outcomes journaled for each request id.
func journal(t *testing.T, db *sql.DB) map[string][]extension.Outcome {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT request_id, outcome FROM webhook_deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]extension.Outcome{}
	for rows.Next() {
		var id string
		var o extension.Outcome
		if err := rows.Scan(&id, &o); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], o)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
