package extension_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
	"github.com/google/go-cmp/cmp"
)

// The property: random valid histories of an instance, delivered in any order and with
// duplicates (the same request again, and retries under a new request id), end in the
// state the history reaches in order.

var orderSeed = flag.Uint64("lifecycle-seed", 0, "seed of TestLifecycleAnyOrder's histories (0: a new one each run)")

// history is the platform's events for one instance, in the order it made them.
type history []extension.LifecycleEvent

// randomHistory makes a valid history: an install; updates (any subset of scopes, state,
// variant and context sent) and rotations; sometimes a removal followed by a re-install
// and more of the same; sometimes a final removal. Times increase by a random step, or
// stay the same when the kinds' ranks keep the platform's order (an update and a rotation
// in the same instant), so that the order of versions is the order of the history.
func randomHistory(r *rand.Rand, id string) history {
	var h history
	created := t0.Add(time.Duration(r.IntN(1000)) * time.Second)
	contexts := [][2]string{{extension.ContextProject, "p-1"}, {extension.ContextProject, "p-2"}, {extension.ContextCustomer, "c-1"}}
	scopeSet := []string{"project:read", "project:write", "user:read", "customer:read"}
	current := contexts[r.IntN(len(contexts))]
	rank := map[extension.EventKind]int{extension.EventAdded: 1, extension.EventUpdated: 2, extension.EventSecretRotated: 3, extension.EventRemoved: 4}
	add := func(ev extension.LifecycleEvent) {
		if len(h) > 0 {
			prev := h[len(h)-1]
			switch {
			case rank[ev.Kind] > rank[prev.Kind] && r.IntN(4) == 0:
				// same instant
			case r.IntN(3) == 0:
				created = created.Add(time.Duration(1 + r.IntN(1000))) // nanoseconds apart
			default:
				created = created.Add(time.Duration(1+r.IntN(3600)) * time.Second)
			}
		}
		ev.CreatedAt, ev.InstanceID, ev.RequestID = created, id, newRequestID()
		h = append(h, ev)
	}
	scopes := func() []string {
		var out []string
		for _, s := range scopeSet {
			if r.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		if out == nil {
			out = []string{}
		}
		return out
	}
	secret := func() extension.Secret {
		return extension.Secret(fmt.Sprintf("secret-%s-%d-%016x", id, len(h), r.Uint64()))
	}
	variant := func() *string { return strp([]string{"", "default", "pro", "team"}[r.IntN(4)]) }
	boolp := func(b bool) *bool { return &b }
	install := func() {
		if r.IntN(3) == 0 {
			current = contexts[r.IntN(len(contexts))]
		}
		add(extension.LifecycleEvent{Kind: extension.EventAdded, ContextKind: current[0], ContextID: current[1],
			Scopes: scopes(), Enabled: boolp(r.IntN(4) != 0), VariantKey: variant(), Secret: secret()})
	}
	// sentContext is the instance's context, or none (a context sent empty keeps its value).
	sentContext := func() (string, string) {
		if r.IntN(3) == 0 {
			return "", ""
		}
		return current[0], current[1]
	}
	// twin sometimes follows the last event with another of the same kind and instant:
	// made, say, by two requests at the platform in one nanosecond, with values of its
	// own. Its request id sorts after the last event's, and after every retry's
	// (newRequestID), so it is the newer of the two in every order (the tie rule).
	twin := func(vary func(ev *extension.LifecycleEvent)) {
		if r.IntN(5) != 0 {
			return
		}
		ev := h[len(h)-1]
		ev.RequestID = twinPrefix + ev.RequestID
		vary(&ev)
		h = append(h, ev)
	}
	update := func() extension.LifecycleEvent {
		ev := extension.LifecycleEvent{Kind: extension.EventUpdated}
		if r.IntN(5) == 0 {
			current = contexts[r.IntN(len(contexts))]
		}
		ev.ContextKind, ev.ContextID = sentContext()
		if r.IntN(3) != 0 {
			ev.Scopes = scopes()
		}
		if r.IntN(3) != 0 {
			ev.Enabled = boolp(r.IntN(2) == 0)
		}
		if r.IntN(3) != 0 {
			ev.VariantKey = variant()
		}
		return ev
	}
	install()
	twin(func(ev *extension.LifecycleEvent) {
		ev.Secret, ev.Enabled, ev.Scopes = secret(), boolp(r.IntN(2) == 0), scopes()
	})
	for round := 0; ; round++ {
		for range 2 + r.IntN(6) {
			if r.IntN(3) == 0 {
				ev := extension.LifecycleEvent{Kind: extension.EventSecretRotated, Secret: secret()}
				ev.ContextKind, ev.ContextID = sentContext()
				add(ev)
				twin(func(ev *extension.LifecycleEvent) { ev.Secret = secret() })
				continue
			}
			add(update())
			twin(func(ev *extension.LifecycleEvent) {
				u := update()
				ev.ContextKind, ev.ContextID, ev.Scopes, ev.Enabled, ev.VariantKey = u.ContextKind, u.ContextID, u.Scopes, u.Enabled, u.VariantKey
			})
		}
		if round == 2 || r.IntN(2) == 0 {
			break
		}
		removal := extension.LifecycleEvent{Kind: extension.EventRemoved, Enabled: boolp(false)}
		removal.ContextKind, removal.ContextID = sentContext()
		if r.IntN(2) == 0 {
			removal.Scopes = scopes()
		}
		add(removal)
		install()
	}
	if r.IntN(3) == 0 {
		add(extension.LifecycleEvent{Kind: extension.EventRemoved, ContextKind: current[0], ContextID: current[1]})
	}
	return h
}

// twinPrefix starts the request id of a twin (see randomHistory): "~" sorts after the
// letters and digits of every other request id.
const twinPrefix = "~twin-"

// modelState is the platform's view of an instance after its history, in order.
type modelState struct {
	ContextKind, ContextID string
	Scopes                 []string
	Enabled                bool
	VariantKey             string
	Secret                 string
	Removed                bool
	LastEventNano          int64
}

// model applies a history in order, as the platform means it.
func model(h history) modelState {
	var m modelState
	for _, ev := range h {
		if ev.ContextID != "" {
			m.ContextKind, m.ContextID = ev.ContextKind, ev.ContextID
		}
		switch ev.Kind {
		case extension.EventAdded:
			m.Scopes, m.Enabled, m.VariantKey = ev.Scopes, *ev.Enabled, *ev.VariantKey
			m.Secret, m.Removed = ev.Secret.Reveal(), false
		case extension.EventUpdated:
			if ev.Scopes == nil && ev.Enabled == nil && ev.VariantKey == nil && ev.ContextID == "" {
				continue // nothing sent: nothing to apply
			}
			if ev.Scopes != nil {
				m.Scopes = ev.Scopes
			}
			if ev.Enabled != nil {
				m.Enabled = *ev.Enabled
			}
			if ev.VariantKey != nil {
				m.VariantKey = *ev.VariantKey
			}
		case extension.EventSecretRotated:
			m.Secret = ev.Secret.Reveal()
		case extension.EventRemoved:
			if ev.Scopes != nil {
				m.Scopes = ev.Scopes
			}
			m.Enabled, m.Secret, m.Removed = false, "", true
		}
		m.LastEventNano = ev.CreatedAt.UnixNano()
	}
	return m
}

// stateOf reads an instance's state, its secret opened whatever the instance's state.
func stateOf(t *testing.T, s *extension.Store, kr *extension.Keyring, id string) modelState {
	t.Helper()
	in, err := s.InstanceByID(context.Background(), id)
	if err != nil {
		t.Fatalf("InstanceByID(%s): %v", id, err)
	}
	st := modelState{ContextKind: in.ContextKind, ContextID: in.ContextID, Scopes: in.ConsentedScopes, Enabled: in.Enabled,
		VariantKey: in.VariantKey, Removed: in.Removed(), LastEventNano: in.LastEventNano}
	if in.SealedSecret != "" {
		sec, err := kr.Open(in.SealedSecret, "instance-secret:"+id)
		if err != nil {
			t.Fatalf("open secret of %s: %v", id, err)
		}
		st.Secret = sec.Reveal()
	}
	return st
}

// scrambled is a history's deliveries in a random order, with duplicates: the same
// request again, and retries under a new request id with the same createdAt. event[i] is
// the index in the history of delivery i.
func scrambled(r *rand.Rand, h history, id string) (deliveries []extension.LifecycleEvent, event []int) {
	for i, ev := range h {
		ev.InstanceID = id
		deliveries, event = append(deliveries, ev), append(event, i)
		for r.IntN(3) == 0 {
			again := ev
			if r.IntN(2) == 0 {
				again.RequestID = newRequestID()
			}
			deliveries, event = append(deliveries, again), append(event, i)
		}
	}
	perm := r.Perm(len(deliveries))
	d2, e2 := make([]extension.LifecycleEvent, len(perm)), make([]int, len(perm))
	for i, p := range perm {
		d2[i], e2[i] = deliveries[p], event[p]
	}
	return d2, e2
}

// changedOnce checks that each event changed the instance at most once, whatever its
// copies: a retry or a duplicate changes nothing.
func changedOnce(t *testing.T, id string, outcomes []extension.Outcome, event []int) {
	t.Helper()
	changed := map[int]int{}
	for i, o := range outcomes {
		if o == extension.OutcomeApplied || o == extension.OutcomePartlyApplied {
			changed[event[i]]++
		}
	}
	for ev, n := range changed {
		if n > 1 {
			t.Errorf("%s: event %d of the history was applied by %d of its deliveries, want at most 1", id, ev, n)
		}
	}
}

func TestLifecycleAnyOrder(t *testing.T) {
	seed := *orderSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (run again with -lifecycle-seed=%d)", seed, seed)
	const (
		histories    = 16
		permutations = 4
	)
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		r := rand.New(rand.NewPCG(seed, uint64(len(d))))
		kr := extensiontest.Keyring(t)
		url := extensiontest.URL(t, d)
		inOrder := extensiontest.Open(t, url, extension.Options{Keys: kr})
		// The scrambled deliveries go to two stores on the same database, as to two
		// replicas: each instance's deliveries are split between them and applied at once.
		replicas := []*extension.Store{inOrder, extensiontest.Open(t, url, extension.Options{Keys: kr})}

		type job struct {
			id         string
			h          history
			deliveries []extension.LifecycleEvent
			event      []int
			split      bool // across both replicas at once, rather than in the scrambled order on one
		}
		var jobs []job
		for i := range histories {
			h := randomHistory(r, fmt.Sprintf("i-any-%02d", i))
			jobs = append(jobs, job{id: h[0].InstanceID, h: h})
			for p := range permutations {
				id := fmt.Sprintf("i-any-%02d-p%d", i, p)
				ds, ev := scrambled(r, h, id)
				jobs = append(jobs, job{id: id, h: h, deliveries: ds, event: ev, split: p%2 == 1})
			}
		}
		ctx := context.Background()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, j := range jobs {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				if j.deliveries == nil { // the history in order, on one store
					for _, ev := range j.h {
						res, err := inOrder.ApplyLifecycle(ctx, ev)
						if err != nil {
							t.Errorf("%s: in order: %v", j.id, err)
							return
						}
						if strings.HasPrefix(ev.RequestID, twinPrefix) {
							// A twin changes what differs from the event before it.
							if res.Outcome == extension.OutcomeStale {
								t.Errorf("%s: in order, a twin %s at %v got %q (%s)", j.id, ev.Kind, ev.CreatedAt, res.Outcome, res.Reason)
							}
							continue
						}
						if res.Outcome != extension.OutcomeApplied && res.Outcome != extension.OutcomeIgnored {
							t.Errorf("%s: in order, %s at %v got %q (%s), want %q", j.id, ev.Kind, ev.CreatedAt, res.Outcome, res.Reason, extension.OutcomeApplied)
						}
					}
					return
				}
				outcomes := make([]extension.Outcome, len(j.deliveries))
				apply := func(s *extension.Store, which func(i int) bool) {
					for i, ev := range j.deliveries {
						if !which(i) {
							continue
						}
						res, err := s.ApplyLifecycle(ctx, ev)
						if err != nil {
							t.Errorf("%s: %s at %v: %v", j.id, ev.Kind, ev.CreatedAt, err)
							return
						}
						outcomes[i] = res.Outcome
					}
				}
				if !j.split {
					apply(replicas[0], func(int) bool { return true })
				} else {
					var both sync.WaitGroup
					for k, s := range replicas {
						both.Go(func() { apply(s, func(i int) bool { return i%2 == k }) })
					}
					both.Wait()
				}
				changedOnce(t, j.id, outcomes, j.event)
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		for i := 0; i < len(jobs); i += permutations + 1 {
			ref := jobs[i]
			want := model(ref.h)
			got := stateOf(t, inOrder, kr, ref.id)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s in order differs from the platform's state (-want +got):\n%s\nhistory:\n%s", ref.id, diff, describe(ref.h))
			}
			for _, j := range jobs[i+1 : i+1+permutations] {
				if diff := cmp.Diff(got, stateOf(t, replicas[1], kr, j.id)); diff != "" {
					t.Errorf("%s (split %v) differs from the in-order state (-in order +scrambled):\n%s\nhistory:\n%s\ndelivered:\n%s",
						j.id, j.split, diff, describe(ref.h), fmt.Sprint(j.event))
				}
				if n := len(deliveriesOf(t, replicas[0], j.id)); n != len(j.deliveries) {
					t.Errorf("%s: %d journal rows, want %d (one per delivery)", j.id, n, len(j.deliveries))
				}
			}
		}
	})
}

func describe(h history) string {
	var out string
	for i, ev := range h {
		out += fmt.Sprintf("  %d %s %d ctx=%q/%q", i, ev.Kind, ev.CreatedAt.UnixNano(), ev.ContextKind, ev.ContextID)
		if ev.Scopes != nil {
			out += fmt.Sprintf(" scopes=%v", ev.Scopes)
		}
		if ev.Enabled != nil {
			out += fmt.Sprintf(" enabled=%v", *ev.Enabled)
		}
		if ev.VariantKey != nil {
			out += fmt.Sprintf(" variant=%q", *ev.VariantKey)
		}
		out += "\n"
	}
	return out
}
