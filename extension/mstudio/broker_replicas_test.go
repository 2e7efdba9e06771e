package mstudio_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/extension-backend/extension-backend/extension/mstudio/mstudiotest"
)

// TestBrokerReplicasMintOnce: two replicas, each with its own store on one database, and
// many callers on each: one mint in all, and everybody gets the same token.
func TestBrokerReplicasMintOnce(t *testing.T) {
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		env := newBrokerEnv(t, brokerOptions{Dialect: d, Replicas: 2})
		id := env.install(t)
		const callers = 1000
		tokens := make([]mstudio.InstanceToken, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				tok, err := env.Brokers[i%2].Token(context.Background(), id)
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
				t.Fatalf("caller %d (replica %d) got another token than caller 0", i, i%2)
			}
		}
	})
}

// TestBrokerReusesOtherReplicasToken: while another replica holds the lease, the broker
// waits for the token that replica stores and uses it, minting nothing itself.
func TestBrokerReusesOtherReplicasToken(t *testing.T) {
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		env := newBrokerEnv(t, brokerOptions{Dialect: d})
		id := env.install(t)
		ctx := context.Background()
		if ok, err := env.Stores[0].LeaseSharedToken(ctx, id, "other-replica", 10*time.Second); !ok || err != nil {
			t.Fatalf("lease: %v, %v", ok, err)
		}
		theirs := mstudio.InstanceToken{Token: "token-of-the-other-replica", Expiry: time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)}
		go func() {
			time.Sleep(150 * time.Millisecond)
			if ok, err := env.Stores[0].PutSharedToken(ctx, id, "other-replica", theirs.Token, theirs.Expiry); !ok || err != nil {
				t.Errorf("store: %v, %v", ok, err)
			}
		}()
		start := time.Now()
		got := brokerToken(t, env.Brokers[0], id)
		if took := time.Since(start); took < 150*time.Millisecond {
			t.Errorf("returned after %v, before the other replica stored its token", took)
		}
		if got.Token != theirs.Token || !got.Expiry.Equal(theirs.Expiry) {
			t.Errorf("got a token expiring %v, want the other replica's (%v)", got.Expiry, theirs.Expiry)
		}
		if n := len(env.mints()); n != 0 {
			t.Errorf("%d mints, want none", n)
		}
	})
}

// TestBrokerTakesOverStaleLease: a replica that died holding the lease delays the mint
// only until its lease runs out.
func TestBrokerTakesOverStaleLease(t *testing.T) {
	env := newBrokerEnv(t, brokerOptions{})
	id := env.install(t)
	const ttl = 300 * time.Millisecond
	if ok, err := env.Stores[0].LeaseSharedToken(context.Background(), id, "crashed-replica", ttl); !ok || err != nil {
		t.Fatalf("lease: %v, %v", ok, err)
	}
	start := time.Now()
	tok := brokerToken(t, env.Brokers[0], id)
	if took := time.Since(start); took < ttl-50*time.Millisecond || took > ttl+5*time.Second {
		t.Errorf("took %v, want about the %v the dead lease had left", took, ttl)
	}
	if n := len(env.mints()); n != 1 || !env.accepted(t, id, tok) {
		t.Errorf("%d mints, want one accepted token", n)
	}
}

// TestBrokerForgetReachesOtherReplicas: Forget runs on the replica that got the webhook;
// another replica serves its cached copy until it next checks the shared row (30 s), then
// mints with the new secret or refuses a disabled instance.
func TestBrokerForgetReachesOtherReplicas(t *testing.T) {
	brokerForEachDialect(t, func(t *testing.T, d extension.Dialect) {
		env := newBrokerEnv(t, brokerOptions{Dialect: d, Replicas: 2, Standing: true})
		a, b := env.Brokers[0], env.Brokers[1]
		id := env.install(t)
		first := brokerToken(t, a, id)
		if got := brokerToken(t, b, id); got != first || len(env.mints()) != 1 {
			t.Fatalf("replica b: %d mints, want a's token", len(env.mints()))
		}

		env.trigger(t, mstudiotest.CallSecretRotated, mstudiotest.CallRequest{ExtensionInstanceID: id})
		if got := brokerToken(t, b, id); got != first {
			t.Error("replica b dropped its copy at once; it cannot know of the rotation yet")
		}
		env.Clock.Advance(31 * time.Second)
		second := brokerToken(t, b, id)
		mints := env.mints()
		if second == first || len(mints) != 2 {
			t.Fatalf("replica b after the row check: %d mints, want a new token", len(mints))
		}
		if rotated, _ := env.Sim.Instance(id); mints[1].Secret != rotated.Secret {
			t.Error("the new token was minted with another secret than the rotated one")
		}
		if got := brokerToken(t, a, id); got != second || len(env.mints()) != 2 {
			t.Errorf("replica a: %d mints, want b's new token from the shared row", len(env.mints()))
		}

		env.setDisabled(t, id, true)
		env.Clock.Advance(31 * time.Second)
		if _, err := b.Token(context.Background(), id); !errors.Is(err, extension.ErrDisabled) {
			t.Errorf("replica b after the disable: %v, want ErrDisabled", err)
		}
		if n := len(env.mints()); n != 2 {
			t.Errorf("%d mints, want no new one for a disabled instance", n)
		}
	})
}
