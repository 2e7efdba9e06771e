package extension_test

import (
	"cmp"
	"strings"
	"testing"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/extensiontest"
)

// Every set of groups an event can carry has an upsert both databases accept.
func TestUpsertStatementsPrepare(t *testing.T) {
	forEachDialect(t, func(t *testing.T, d extension.Dialect) {
		s := extensiontest.NewStore(t, d)
		n, err := s.PrepareUpserts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n != 126 {
			t.Errorf("prepared %d statements, want 126 (two for every non-empty set of 6 groups)", n)
		}
	})
}

var versionKinds = []extension.EventKind{extension.EventAdded, extension.EventUpdated, extension.EventSecretRotated, extension.EventRemoved}

// The versions, compared as texts (as both databases compare them), order events as
// their time, then their kind's rank, then their request id do; and their first
// VersionPrefix bytes are the time and kind alone.
func FuzzEventVersionOrder(f *testing.F) {
	ns := time.Date(2025, 3, 14, 11, 36, 24, 249313263, time.UTC).UnixNano()
	f.Add(ns, uint8(0), "0192b7e4-3c5a-7d21-8f4e-6a1b2c3d4e01", ns, uint8(3), "0192b7e4-3c5a-7d21-8f4e-6a1b2c3d4e01")
	f.Add(ns, uint8(1), "b", ns+1, uint8(1), "a")
	f.Add(int64(9), uint8(2), "", int64(10), uint8(2), "")
	f.Add(ns, uint8(1), "a", ns, uint8(1), "a\x00")
	f.Fuzz(func(t *testing.T, ns1 int64, k1 uint8, rid1 string, ns2 int64, k2 uint8, rid2 string) {
		// Times the webhook accepts: year 2000 to an hour ahead; the encoding holds for
		// any non-negative Unix nanoseconds.
		if ns1 < 0 || ns2 < 0 {
			t.Skip()
		}
		a := extension.LifecycleEvent{Kind: versionKinds[int(k1)%4], CreatedAt: time.Unix(0, ns1), RequestID: rid1}
		b := extension.LifecycleEvent{Kind: versionKinds[int(k2)%4], CreatedAt: time.Unix(0, ns2), RequestID: rid2}
		va, vb := extension.EventVersion(a), extension.EventVersion(b)
		want := cmp.Or(cmp.Compare(ns1, ns2), cmp.Compare(int(k1)%4, int(k2)%4), strings.Compare(rid1, rid2))
		if got := strings.Compare(va, vb); got != want {
			t.Errorf("versions %q and %q compare %d, want %d", va, vb, got, want)
		}
		if !strings.HasSuffix(va, rid1) || len(va) != extension.VersionPrefix+len(rid1) {
			t.Errorf("version %q: want %d bytes of time and kind, then the request id", va, extension.VersionPrefix)
		}
		samePrefix := va[:extension.VersionPrefix] == vb[:extension.VersionPrefix]
		if samePrefix != (ns1 == ns2 && a.Kind == b.Kind) {
			t.Errorf("versions %q and %q: same prefix %v, want it exactly for the same time and kind", va, vb, samePrefix)
		}
	})
}
