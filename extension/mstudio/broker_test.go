package mstudio_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

const brokerTokenRoute = "POST /v2/extension-instances/{id}/tokens"

func TestBrokerConcurrentCallsMintOnce(t *testing.T) {
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		env := newBrokerEnv(t, brokerOptions{Dialect: d})
		id := env.install(t)
		const callers = 1000
		tokens := make([]mstudio.InstanceToken, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				tok, err := env.Brokers[0].Token(context.Background(), id)
				if err != nil {
					t.Errorf("caller %d: %v", i, err)
				}
				tokens[i] = tok
			})
		}
		wg.Wait()
		if got := len(env.mints()); got != 1 {
			t.Errorf("got %d mints at the simulator, want 1", got)
		}
		for i, tok := range tokens {
			if tok != tokens[0] {
				t.Fatalf("caller %d got another token than caller 0", i)
			}
		}
		if !tokens[0].Expiry.After(time.Now()) || !env.accepted(t, id, tokens[0]) {
			t.Errorf("the token (expiry %v) is not accepted by the simulator", tokens[0].Expiry)
		}
	})
}

// TestBrokerNeverHandsOutExpiredToken: tokens living 2 s, two replicas, many callers for
// a while: every token handed out is unexpired and works, and the replicas share mints.
func TestBrokerNeverHandsOutExpiredToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		const ttl, run = 2 * time.Second, 4 * time.Second
		env := newBrokerEnv(t, brokerOptions{Dialect: d, Replicas: 2, TokenTTL: ttl})
		id := env.install(t)
		deadline := time.Now().Add(run)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			distinct = map[mstudio.InstanceToken]bool{}
		)
		for g := range 8 {
			wg.Go(func() {
				for n := 0; time.Now().Before(deadline); n++ {
					tok, err := env.Brokers[g%2].Token(context.Background(), id)
					if err != nil {
						t.Errorf("caller %d: %v", g, err)
						return
					}
					if now := time.Now(); !tok.Expiry.After(now) {
						t.Errorf("caller %d got a token that expired at %v, now %v", g, tok.Expiry, now)
						return
					}
					if g == 0 && n%50 == 0 && !env.accepted(t, id, tok) {
						t.Errorf("the simulator refused a token expiring at %v", tok.Expiry)
					}
					mu.Lock()
					distinct[tok] = true
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			})
		}
		wg.Wait()
		// A 2 s token is refreshed after 0.8 to 1 s: one mint per refresh for both
		// replicas, and the first.
		mints := len(env.mints())
		if most := int(run/(ttl*4/10)) + 1; mints < 3 || mints > most {
			t.Errorf("got %d mints in %v, want 3 to %d", mints, run, most)
		}
		if len(distinct) != mints {
			t.Errorf("callers saw %d distinct tokens, want one per mint (%d)", len(distinct), mints)
		}
	})
}

// TestBrokerRefreshSchedule moves a fake clock: a token is served from the cache until
// its refresh point (80 % of its life or 60 s before expiry, whichever is first, but not
// before half its life; up to a tenth of its life earlier at random), then replaced.
func TestBrokerRefreshSchedule(t *testing.T) {
	tests := []struct {
		ttl         time.Duration
		quiet, due  time.Duration // still cached at quiet; replaced at due
		name        string
		wantRefresh string
	}{
		{time.Hour, 42*time.Minute - time.Second, 48*time.Minute + time.Second, "1h", "at 80 % of its life"},
		{10 * time.Minute, 7*time.Minute - time.Second, 8*time.Minute + time.Second, "10m", "at 80 %"},
		{2 * time.Minute, 48*time.Second - time.Millisecond, time.Minute + time.Millisecond, "2m", "60 s before expiry"},
		{2 * time.Second, 800*time.Millisecond - time.Millisecond, time.Second + time.Millisecond, "2s", "at half its life"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newBrokerEnv(t, brokerOptions{TokenTTL: tt.ttl, Standing: true})
			id := env.install(t)
			issued := env.Clock.Now()
			first := brokerToken(t, env.Brokers[0], id)
			if want := issued.Add(tt.ttl); !first.Expiry.Equal(want) {
				t.Fatalf("expiry %v, want %v", first.Expiry, want)
			}
			env.Clock.Advance(tt.quiet)
			if got := brokerToken(t, env.Brokers[0], id); got != first || len(env.mints()) != 1 {
				t.Errorf("at %v of %v: a new token (%d mints), want the cached one", tt.quiet, tt.ttl, len(env.mints()))
			}
			env.Clock.Advance(tt.due - tt.quiet)
			got := brokerToken(t, env.Brokers[0], id)
			if got == first || len(env.mints()) != 2 {
				t.Errorf("at %v of %v: %d mints, want a refresh %s", tt.due, tt.ttl, len(env.mints()), tt.wantRefresh)
			}
			if !got.Expiry.After(env.Clock.Now()) {
				t.Errorf("refreshed token expires %v, before now %v", got.Expiry, env.Clock.Now())
			}
		})
	}
}

// TestBrokerRotation: after SecretRotated (delivered through the webhook handler, which
// makes the broker forget), the next mint uses the new secret; the platform refuses it
// during its activation delay, and the broker retries within the grace window.
func TestBrokerRotation(t *testing.T) {
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		// Long enough that the first mint surely falls within it even on a loaded machine
		// (a 300 ms delay was once over before the broker asked), short enough for a test.
		const activation = 1500 * time.Millisecond
		env := newBrokerEnv(t, brokerOptions{Dialect: d, Activation: activation})
		id := env.install(t)
		installed, _ := env.Sim.Instance(id)

		// Right after the install the secret is not active yet either.
		first := brokerToken(t, env.Brokers[0], id)
		mints := env.mints()
		if len(mints) < 2 || mints[0].Status != http.StatusForbidden || mints[len(mints)-1].Status != http.StatusCreated {
			t.Errorf("mints after install: %+v, want refusals and then one success", brokerStatuses(mints))
		}

		env.trigger(t, mstudiotest.CallSecretRotated, mstudiotest.CallRequest{ExtensionInstanceID: id})
		rotated, _ := env.Sim.Instance(id)
		if rotated.Secret == installed.Secret {
			t.Fatal("the simulator did not rotate the secret")
		}
		second := brokerToken(t, env.Brokers[0], id)
		if second == first {
			t.Fatal("after the rotation the cached token was served, want a new mint")
		}
		after := env.mints()[len(mints):]
		if len(after) < 2 || after[0].Status != http.StatusForbidden || after[len(after)-1].Status != http.StatusCreated {
			t.Errorf("mints after rotation: %v, want refusals (activation delay) and then one success", brokerStatuses(after))
		}
		for i, m := range after {
			if m.Secret != rotated.Secret {
				t.Errorf("mint %d after rotation used another secret than the rotated one", i)
			}
		}
		if !env.accepted(t, id, second) {
			t.Error("the simulator refuses the token minted after the rotation")
		}
	})
}

func brokerStatuses(mints []brokerMint) []int {
	var out []int
	for _, m := range mints {
		out = append(out, m.Status)
	}
	return out
}

// TestBrokerGraceEnds: a secret still refused once the grace window is over fails the
// call, with the platform's error and without the secret in its text.
func TestBrokerGraceEnds(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{Activation: 5 * time.Second, Grace: 300 * time.Millisecond})
	id := env.install(t)
	// The secret activates only after 5 s: a 403 proves the broker gave up at the end of
	// its 300 ms grace instead of waiting for the activation.
	_, err := env.Brokers[0].Token(context.Background(), id)
	var apiErr *mstudio.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden {
		t.Fatalf("Token: %v, want the platform's 403", err)
	}
	if n := len(env.mints()); n < 2 {
		t.Errorf("%d mint attempts, want retries within the grace window", n)
	}
	in, _ := env.Sim.Instance(id)
	if strings.Contains(err.Error(), in.Secret) {
		t.Errorf("the error text holds the secret: %q", err)
	}
	if !strings.Contains(err.Error(), id) {
		t.Errorf("the error %q does not name the instance", err)
	}
}

// TestBrokerRefusesUnusableInstances: an instance that cannot have a token fails at once,
// with the store's sentinel and without any call to the platform, a cached token or not.
func TestBrokerRefusesUnusableInstances(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, env *brokerEnv) string
		want  error
	}{
		{"unknown", func(*testing.T, *brokerEnv) string { return uuid.NewString() }, extension.ErrNotFound},
		{"not a UUID", func(*testing.T, *brokerEnv) string { return "../../v2/users" }, extension.ErrNotFound},
		{"no secret", func(t *testing.T, env *brokerEnv) string {
			id, enabled := uuid.NewString(), true
			_, err := env.Stores[0].ApplyLifecycle(context.Background(), extension.LifecycleEvent{
				Kind: extension.EventUpdated, RequestID: uuid.NewString(), CreatedAt: time.Now(), InstanceID: id,
				ContextKind: extension.ContextProject, ContextID: uuid.NewString(), Scopes: []string{"project:read"}, Enabled: &enabled,
			})
			if err != nil {
				t.Fatal(err)
			}
			return id
		}, extension.ErrNoSecret},
		{"installed disabled", func(t *testing.T, env *brokerEnv) string {
			disabled := true
			return env.trigger(t, mstudiotest.CallExtensionAddedToContext, mstudiotest.CallRequest{ExtensionInstanceDisabled: &disabled})
		}, extension.ErrDisabled},
		{"disabled after a token was cached", func(t *testing.T, env *brokerEnv) string {
			id := env.install(t)
			brokerToken(t, env.Brokers[0], id)
			env.setDisabled(t, id, true)
			return id
		}, extension.ErrDisabled},
		{"removed after a token was cached", func(t *testing.T, env *brokerEnv) string {
			id := env.install(t)
			brokerToken(t, env.Brokers[0], id)
			env.trigger(t, mstudiotest.CallInstanceRemovedFromContext, mstudiotest.CallRequest{ExtensionInstanceID: id})
			return id
		}, extension.ErrRemoved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newBrokerEnv(t, brokerOptions{})
			id := tt.setup(t, env)
			before := len(env.mints())
			tok, err := env.Brokers[0].Token(context.Background(), id)
			if !errors.Is(err, tt.want) {
				t.Errorf("Token = %v, %v; want an error wrapping %v", tok.Expiry, err, tt.want)
			}
			if got := len(env.mints()) - before; got != 0 {
				t.Errorf("%d calls to the token endpoint, want none", got)
			}
			if tok != (mstudio.InstanceToken{}) {
				t.Error("a token came with the error")
			}
		})
	}
}

// TestBrokerReenabled: disable revokes the platform's tokens; once enabled again the
// broker mints a new one instead of serving the dead one.
func TestBrokerReenabled(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{})
	id := env.install(t)
	first := brokerToken(t, env.Brokers[0], id)
	env.setDisabled(t, id, true)
	env.setDisabled(t, id, false)
	second := brokerToken(t, env.Brokers[0], id)
	if second == first || len(env.mints()) != 2 {
		t.Errorf("after disable and enable: %d mints, want a new token", len(env.mints()))
	}
	if env.accepted(t, id, first) || !env.accepted(t, id, second) {
		t.Error("the simulator should refuse the old token and accept the new one")
	}
}

// TestBrokerDetachedFromCaller: a caller that gives up does not cancel the mint; the next
// caller gets its token without another mint.
func TestBrokerDetachedFromCaller(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{})
	id := env.install(t)
	// The mint takes 3 s; a caller with a 50 ms deadline returns well before it (the
	// bound is loose on purpose: a loaded machine may schedule late, never 3 s late).
	env.Sim.InjectFault(brokerTokenRoute, mstudiotest.Fault{Latency: 3 * time.Second, Times: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := env.Brokers[0].Token(ctx, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Token with a short deadline: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the impatient caller waited %v for the shared mint, want its own 50 ms", took)
	}
	tok := brokerToken(t, env.Brokers[0], id)
	if n := len(env.mints()); n != 1 {
		t.Errorf("got %d mints, want the one the first caller started", n)
	}
	if !env.accepted(t, id, tok) {
		t.Error("the simulator refuses the token")
	}
}

// TestBrokerFailedMintReleasesLease: a mint the platform fails is not cached, gives the
// lease back for other replicas, and the next call mints again.
func TestBrokerFailedMintReleasesLease(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{})
	id := env.install(t)
	env.Sim.InjectFault(brokerTokenRoute, mstudiotest.Fault{Status: http.StatusServiceUnavailable, Times: 2})
	_, err := env.Brokers[0].Token(context.Background(), id)
	var apiErr *mstudio.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable {
		t.Fatalf("Token: %v, want the platform's 503", err)
	}
	row, err := env.Stores[0].SharedToken(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(extension.SharedToken{StoredAt: row.StoredAt}, row); diff != "" {
		t.Errorf("shared row after a failed mint (-want +got):\n%s", diff)
	}
	if tok := brokerToken(t, env.Brokers[0], id); !env.accepted(t, id, tok) {
		t.Error("the simulator refuses the token minted after the failure")
	}
}

// TestBrokerAppliedDropsWhatEventsMakeStale: after a rotation, an update or a removal the
// next Token does not come from this replica's cache; after an install it does. The
// shared row is deleted first, as the event's transaction does, so a dropped cache shows
// as a new mint.
func TestBrokerAppliedDropsWhatEventsMakeStale(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{})
	id := env.install(t)
	b := env.Brokers[0]
	for _, tt := range []struct {
		kind     extension.EventKind
		wantMint bool
	}{
		{extension.EventAdded, false},
		{extension.EventSecretRotated, true},
		{extension.EventUpdated, true},
		{extension.EventRemoved, true},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			brokerToken(t, b, id) // cached now
			if err := env.Stores[0].DeleteSharedToken(context.Background(), id); err != nil {
				t.Fatal(err)
			}
			before := len(env.mints())
			b.Applied(context.Background(), extension.LifecycleEvent{Kind: tt.kind, InstanceID: id})
			brokerToken(t, b, id)
			if minted := len(env.mints()) > before; minted != tt.wantMint {
				t.Errorf("after %s: minted %v, want %v", tt.kind, minted, tt.wantMint)
			}
		})
	}
}
