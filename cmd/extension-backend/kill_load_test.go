package main

// The load of TestKill9KeepsAcknowledgedDeliveries: the platform's side, which signs
// lifecycle deliveries with the simulator's key, remembers what each delivery said and
// which ones were acknowledged, and checks the store against that afterwards.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/apptest"
	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/uuid"
)

// killEvent is one lifecycle event as the platform sent it.
type killEvent struct {
	kind      extension.EventKind
	requestID string
	createdAt time.Time
	enabled   bool
	scopes    []string
	variant   string // sent when not empty
	secret    string // installs and rotations
	retry     bool   // the platform's retry, after the restart, of a delivery that got no answer
}

// killState is what an instance looks like after a run of events.
type killState struct {
	removed, enabled bool
	scopes           []string
	variant, secret  string
}

// apply is the platform's meaning of an event, which the backend must end up with when
// the events come in order.
func (s killState) apply(ev killEvent) killState {
	switch ev.kind {
	case extension.EventAdded:
		return killState{enabled: ev.enabled, scopes: ev.scopes, variant: ev.variant, secret: ev.secret}
	case extension.EventUpdated:
		s.enabled, s.scopes, s.variant = ev.enabled, ev.scopes, ev.variant
	case extension.EventSecretRotated:
		s.secret = ev.secret
	case extension.EventRemoved:
		s.removed, s.secret = true, ""
	}
	return s
}

// killInstance is one instance: only its sender touches it while the load runs.
type killInstance struct {
	id, contextID string
	acked         []killEvent // answered 2xx, in the order sent
	state         killState   // after acked
	unanswered    *killEvent  // sent, but the process died before it answered
	retried       bool        // unanswered was sent again after the restart and acknowledged
	events        int         // events built so far: the next one's time
}

// killLoad sends signed deliveries the way the platform does: an instance's events one
// after the other, in order, many instances at once.
type killLoad struct {
	platform      *apptest.Platform
	client        *http.Client
	contributorID string
	epoch         time.Time // events are dated epoch plus a microsecond per event of their instance
	instances     []*killInstance
	flight        atomic.Int64 // requests sent and not answered yet
}

func newKillLoad(t *testing.T, p *apptest.Platform, instances int) *killLoad {
	tr := &http.Transport{MaxIdleConnsPerHost: killSenders, MaxConnsPerHost: killSenders}
	t.Cleanup(tr.CloseIdleConnections)
	l := &killLoad{
		platform:      p,
		client:        &http.Client{Timeout: 6 * time.Second, Transport: tr}, // the platform waits 6 s
		contributorID: uuid.NewString(),
		epoch:         time.Now(),
	}
	for range instances {
		l.instances = append(l.instances, &killInstance{id: uuid.NewString(), contextID: uuid.NewString()})
	}
	return l
}

// owned returns the instances sender w sends for.
func (l *killLoad) owned(w int) []*killInstance {
	var own []*killInstance
	for i := w; i < len(l.instances); i += killSenders {
		own = append(own, l.instances[i])
	}
	return own
}

var killScopeSets = [][]string{
	{"project:read"},
	{"project:read", "customer:read"},
	{"customer:read", "project:read", "project:write"},
}

// next builds the instance's next event: an install first (and after a removal), then
// updates (some disabling), rotations and now and then a removal. A last event enables
// the instance, so that its secret can be read back.
func (l *killLoad) next(in *killInstance, last bool) killEvent {
	in.events++
	ev := killEvent{
		requestID: uuid.Must(uuid.NewV7()).String(),
		createdAt: l.epoch.Add(time.Duration(in.events) * time.Microsecond),
		scopes:    killScopeSets[rand.IntN(len(killScopeSets))],
	}
	variant := fmt.Sprintf("variant-%d", in.events)
	switch r := rand.IntN(100); {
	case len(in.acked) == 0 || in.state.removed:
		ev.kind, ev.enabled, ev.variant, ev.secret = extension.EventAdded, true, variant, "secret-"+uuid.NewString()
	case last || r < 60:
		ev.kind, ev.enabled, ev.variant = extension.EventUpdated, last || rand.IntN(5) > 0, variant
	case r < 90:
		ev.kind, ev.secret = extension.EventSecretRotated, "secret-"+uuid.NewString()
	default:
		ev.kind, ev.scopes = extension.EventRemoved, in.state.scopes
	}
	return ev
}

// send signs the event with the platform's webhook key and posts it; err is set when no
// answer came.
func (l *killLoad) send(base string, in *killInstance, ev killEvent) (int, error) {
	body, err := mstudiotest.BuildPayload(mstudiotest.PayloadSpec{
		Kind: string(ev.kind), InstanceID: in.id, ExtensionID: testExtensionID, ContributorID: l.contributorID,
		ContextKind: extension.ContextProject, ContextID: in.contextID, Scopes: ev.scopes, Enabled: ev.enabled,
		VariantKey: ev.variant, Secret: ev.secret, RequestID: ev.requestID, CreatedAt: ev.createdAt,
		TargetURL: base + "/mstudio/webhooks",
	})
	if err != nil {
		panic(err) // the load's own events: a bug in this test
	}
	req, err := http.NewRequest(http.MethodPost, base+"/mstudio/webhooks", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	k := l.platform.Sim.WebhookKey()
	mstudio.Sign(req.Header, k.Serial, k.Private, body)
	l.flight.Add(1)
	resp, err := l.client.Do(req)
	l.flight.Add(-1)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err // the status came, the answer did not: not acknowledged
	}
	return resp.StatusCode, nil
}

// acknowledge records an event answered with 2xx.
func (in *killInstance) acknowledge(ev killEvent) {
	in.acked = append(in.acked, ev)
	in.state = in.state.apply(ev)
}

// warmUp installs the first instance before the load: the backend fetches the
// platform's webhook keys in the background after it starts, and the first deliveries
// must not wait for them all at once.
func (l *killLoad) warmUp(t *testing.T, base string) {
	t.Helper()
	in := l.instances[0]
	ev := l.next(in, false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, err := l.send(base, in, ev)
		if err == nil && status/100 == 2 {
			in.acknowledge(ev)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first delivery got no 2xx within 30 s: %d, %v", status, err)
		}
		time.Sleep(100 * time.Millisecond)
		ev.requestID = uuid.Must(uuid.NewV7()).String()
	}
}

// killStats is what the load saw of the process it killed.
type killStats struct {
	acked, unanswered, inFlightAtKill int
	rejected                          map[int]int // non-2xx answers by status
	earlyErrors                       int         // no answer before the kill
	firstEarlyError                   error
}

// run sends from every sender for loadFor, then calls kill, which ends the process and
// says how many requests were in flight just before; every sender stops at the first
// delivery that gets no answer. A non-2xx answer is retried (with a new request id, as
// the platform retries) until it is acknowledged or unanswered.
func (l *killLoad) run(base string, loadFor time.Duration, kill func() int) killStats {
	var (
		acked, unanswered atomic.Int64
		killed            atomic.Bool
		mu                sync.Mutex
		st                = killStats{rejected: map[int]int{}}
		wg                sync.WaitGroup
	)
	for w := range killSenders {
		wg.Go(func() {
			own := l.owned(w)
			for n := 0; ; n++ {
				in := own[n%len(own)]
				ev := l.next(in, false)
				for {
					status, err := l.send(base, in, ev)
					if err != nil {
						in.unanswered = &ev
						unanswered.Add(1)
						if !killed.Load() {
							mu.Lock()
							if st.earlyErrors++; st.firstEarlyError == nil {
								st.firstEarlyError = err
							}
							mu.Unlock()
						}
						return
					}
					if status/100 == 2 {
						in.acknowledge(ev)
						acked.Add(1)
						break
					}
					mu.Lock()
					st.rejected[status]++
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					ev.requestID = uuid.Must(uuid.NewV7()).String()
				}
			}
		})
	}
	time.Sleep(loadFor)
	killed.Store(true)
	st.inFlightAtKill = kill()
	wg.Wait()
	st.acked, st.unanswered = int(acked.Load()), int(unanswered.Load())
	return st
}

// inFlight says how many deliveries are sent and not answered yet.
func (l *killLoad) inFlight() int { return int(l.flight.Load()) }

// resume is the platform after the restart: it retries each delivery that got no answer
// (a new request id and time, the same content) and then sends one more event per
// instance, enabling it. It returns how many deliveries were acknowledged.
func (l *killLoad) resume(t *testing.T, base string) int {
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range killSenders {
		wg.Go(func() {
			for _, in := range l.owned(w) {
				if u := in.unanswered; u != nil {
					ev := *u
					in.events++
					ev.requestID, ev.createdAt, ev.retry = uuid.Must(uuid.NewV7()).String(), l.epoch.Add(time.Duration(in.events)*time.Microsecond), true
					if !l.deliver(t, base, in, ev) {
						return
					}
					in.retried = true
					n.Add(1)
				}
				if !l.deliver(t, base, in, l.next(in, true)) {
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// deliver sends ev until it is acknowledged, a few times at most; it reports an error and
// false when it is not.
func (l *killLoad) deliver(t *testing.T, base string, in *killInstance, ev killEvent) bool {
	var status int
	var err error
	for range killResumeAttempts {
		if status, err = l.send(base, in, ev); err == nil && status/100 == 2 {
			in.acknowledge(ev)
			return true
		}
		time.Sleep(killResumeRetryInterval)
		ev.requestID = uuid.Must(uuid.NewV7()).String()
	}
	t.Errorf("instance %s: %s was not acknowledged by the restarted process after %d attempts: last %d, %v",
		in.id, ev.kind, killResumeAttempts, status, err)
	return false
}

// check compares the store with what the platform was told: every acknowledged delivery
// is in the journal as applied and its instance shows it; a delivery that got no answer
// is either in the journal and the state, or in neither. It returns how many of those
// unanswered were committed.
func (l *killLoad) check(t *testing.T, store *extension.Store, when string) int {
	t.Helper()
	ctx := context.Background()
	rows, err := store.Deliveries(ctx, "", 1<<30)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	journal := make(map[string]extension.Delivery, len(rows))
	for _, r := range rows {
		journal[r.RequestID] = r
	}
	committed, problems := 0, 0
	report := func(format string, args ...any) {
		t.Helper()
		if problems++; problems <= 20 {
			t.Errorf(when+": "+format, args...)
		}
	}
	for _, in := range l.instances {
		events := slices.Clone(in.acked)
		uCommitted := false
		if u := in.unanswered; u != nil {
			if row, ok := journal[u.requestID]; ok {
				uCommitted = true
				committed++
				if row.Outcome != extension.OutcomeApplied {
					report("instance %s: the unanswered %s (request %s) is journaled %s (%s), want %s",
						in.id, u.kind, u.requestID, row.Outcome, row.Reason, extension.OutcomeApplied)
				}
				if !in.retried {
					events = append(events, *u)
				}
			}
		}
		for _, ev := range in.acked {
			row, ok := journal[ev.requestID]
			switch {
			case !ok:
				report("instance %s: %s (request %s) was acknowledged with 2xx, but it is not in the journal", in.id, ev.kind, ev.requestID)
			case row.InstanceID != in.id || row.Kind != string(ev.kind):
				report("instance %s: request %s is journaled as %s of instance %s, want %s of %s", in.id, ev.requestID, row.Kind, row.InstanceID, ev.kind, in.id)
			case row.Outcome == extension.OutcomeApplied:
			case ev.retry && uCommitted && row.Outcome != extension.OutcomeRefused:
				// The retry of a delivery that was committed without an answer may find
				// nothing left to do (a removal of a removed instance).
			default:
				report("instance %s: the acknowledged %s (request %s) is journaled %s (%s), want %s",
					in.id, ev.kind, ev.requestID, row.Outcome, row.Reason, extension.OutcomeApplied)
			}
		}
		var want killState
		for _, ev := range events {
			want = want.apply(ev)
		}
		l.checkState(ctx, store, in, want, events, report)
	}
	if problems > 20 {
		t.Errorf("%s: %d problems in all (the first 20 shown)", when, problems)
	}
	return committed
}

// checkState compares the stored instance with want, the state after events.
func (l *killLoad) checkState(ctx context.Context, store *extension.Store, in *killInstance, want killState, events []killEvent, report func(string, ...any)) {
	if len(events) == 0 {
		return // nothing acknowledged: whether the record exists says nothing
	}
	last := events[len(events)-1]
	after := fmt.Sprintf("after its %s (request %s)", last.kind, last.requestID)
	got, err := store.InstanceByID(ctx, in.id)
	if err != nil {
		report("instance %s %s: %v", in.id, after, err)
		return
	}
	if want.removed {
		if !got.Removed() || got.HasSecret() {
			report("instance %s %s: removed %t, secret kept %t; want removed without a secret", in.id, after, got.Removed(), got.HasSecret())
		}
		return
	}
	gotScopes, wantScopes := slices.Sorted(slices.Values(got.ConsentedScopes)), slices.Sorted(slices.Values(want.scopes))
	switch {
	case got.Removed():
		report("instance %s %s: removed, want installed", in.id, after)
	case got.Enabled != want.enabled || got.VariantKey != want.variant || !slices.Equal(gotScopes, wantScopes) || got.ContextID != in.contextID:
		report("instance %s %s: enabled %t, variant %q, scopes %v, context %s; want %t, %q, %v, %s",
			in.id, after, got.Enabled, got.VariantKey, gotScopes, got.ContextID, want.enabled, want.variant, wantScopes, in.contextID)
	case !want.enabled:
		if !got.HasSecret() {
			report("instance %s %s: no secret stored", in.id, after)
		}
	default:
		if _, secret, err := store.InstanceCredentials(ctx, in.id); err != nil {
			report("instance %s %s: credentials: %v", in.id, after, err)
		} else if secret.Reveal() != want.secret {
			report("instance %s %s: the stored secret is not the one of its last install or rotation", in.id, after)
		}
	}
}
