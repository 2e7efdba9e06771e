package main

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// Sizes of the load: the platform's deliveries come from many senders at once, each
// instance's in order. Thirty-two senders keep the single SQLite writer's group commit
// busy; sixteen instances each give every sender installs, updates, rotations, removals
// and re-installs to mix.
const (
	killSenders             = 32
	killInstancesPerSender  = 16
	killMinLoad             = time.Second // then SIGKILL within another second
	killMinAcknowledged     = killSenders // below this the kill proves nothing
	killResumeAttempts      = 5
	killResumeRetryInterval = 200 * time.Millisecond
)

// TestKill9KeepsAcknowledgedDeliveries runs the real binary, sends it signed lifecycle
// deliveries from many senders at once, kills it with SIGKILL in the middle of them,
// starts it again on the same database and checks that every delivery it acknowledged
// with a 2xx is in the journal and shows in its instance's state, that a delivery that
// got no answer is either wholly applied or not at all, and that the restarted process
// takes deliveries again (the platform's retries of the unanswered ones, then one more
// event per instance) up to the state the platform's order gives.
func TestKill9KeepsAcknowledgedDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary: not in -short")
	}
	bin := buildServeBinary(t)
	for _, d := range []extension.Dialect{extension.SQLite, extension.Postgres} {
		t.Run(string(d), func(t *testing.T) { testKill9(t, bin, d) })
	}
}

func testKill9(t *testing.T, bin string, d extension.Dialect) {
	databaseURL := extensiontest.URL(t, d) // PostgreSQL: a schema of its own, through search_path
	p := newPlatform(t)
	key := extensiontest.Key(t)
	vars := map[string]string{
		"EXT_DATABASE_URL":    databaseURL,
		"EXT_ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(key),
		"EXT_EXTENSION_ID":    testExtensionID,
		"EXT_MSTUDIO_API_URL": p.SimURL, // the binary fetches the webhook keys from the simulator
		"EXT_LOG_LEVEL":       "info",
	}
	l := newKillLoad(t, p, killSenders*killInstancesPerSender)

	first := startServeProcess(t, bin, "first", vars)
	l.warmUp(t, first.URL)
	loadFor := killMinLoad + rand.N(killMinLoad)
	st := l.run(first.URL, loadFor, func() int {
		if first.exited() {
			t.Errorf("the first process ended before the kill")
		}
		inFlight := l.inFlight()
		first.kill()
		return inFlight
	})
	t.Logf("%s: %d deliveries acknowledged in %s before SIGKILL, %d requests in flight at the kill, %d without an answer",
		d, st.acked, loadFor.Round(time.Millisecond), st.inFlightAtKill, st.unanswered)
	if st.earlyErrors > 0 {
		t.Errorf("%d deliveries got no answer before the kill (first: %v)", st.earlyErrors, st.firstEarlyError)
	}
	if len(st.rejected) > 0 {
		t.Errorf("non-2xx answers during the load, by status: %v", st.rejected)
	}
	if st.acked < killMinAcknowledged {
		t.Fatalf("only %d deliveries acknowledged in %s before the kill: too few to tell anything", st.acked, loadFor)
	}

	second := startServeProcess(t, bin, "restarted", vars)
	kr, err := extension.NewKeyring([][]byte{key})
	if err != nil {
		t.Fatal(err)
	}
	store, err := extension.Open(context.Background(), databaseURL, extension.Options{Keys: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	committed := l.check(t, store, "after the restart")
	t.Logf("%s: of the %d deliveries without an answer, %d were committed all the same", d, st.unanswered, committed)

	// The platform retries what got no answer and goes on; the restarted process takes it.
	resumed := l.resume(t, second.URL)
	l.check(t, store, "after the retries and one more event per instance")
	t.Logf("%s: after the restart, %d deliveries acknowledged", d, resumed)
}
