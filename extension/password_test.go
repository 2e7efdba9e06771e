package extension_test

import (
	"context"
	"errors"
	"github.com/extension-backend/extension-backend/extension"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fastParams are cheap parameters for tests that hash often; extension.PasswordOWASP is checked on its own.
var fastParams = extension.PasswordParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestHashPasswordOWASP(t *testing.T) {
	phc, err := extension.HashPassword("correct horse battery staple", extension.PasswordOWASP)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(phc) {
		t.Errorf("hash %q is not the PHC string of argon2id with extension.PasswordOWASP's parameters", phc)
	}
	if ok, err := extension.VerifyPassword("correct horse battery staple", phc); !ok || err != nil {
		t.Errorf("extension.VerifyPassword(right password) = %v, %v", ok, err)
	}
	if ok, err := extension.VerifyPassword("correct horse battery stapler", phc); ok || err != nil {
		t.Errorf("extension.VerifyPassword(wrong password) = %v, %v", ok, err)
	}
	again, _ := extension.HashPassword("correct horse battery staple", extension.PasswordOWASP)
	if again == phc {
		t.Error("two hashes of one password are equal: the salt is not fresh")
	}
	if extension.PasswordNeedsRehash(phc, extension.PasswordOWASP) || !extension.PasswordNeedsRehash(phc, fastParams) || !extension.PasswordNeedsRehash("garbage", extension.PasswordOWASP) {
		t.Error("NeedsRehash: want false for the same parameters, true for others or garbage")
	}
}

// TestVerifyKnownVector checks against a hash made by the reference implementation
// (argon2-cffi / PHC winner's argon2 CLI: password "password", salt "somesalt").
func TestVerifyPasswordKnownVector(t *testing.T) {
	const phc = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	if ok, err := extension.VerifyPassword("password", phc); !ok || err != nil {
		t.Errorf("extension.VerifyPassword(reference vector) = %v, %v", ok, err)
	}
}

func TestParsePasswordHashRefuses(t *testing.T) {
	good, _ := extension.HashPassword("pw", fastParams)
	if _, err := extension.ParsePasswordHash(good); err != nil {
		t.Fatalf("extension.ParsePasswordHash(own hash): %v", err)
	}
	salt, key := "c2FsdHNhbHRzYWx0c2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	for _, tc := range []struct{ name, phc string }{
		{"empty", ""},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"no version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key},
		{"parameters reordered", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key},
		{"leading zero", "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + key},
		{"signed", "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key},
		{"zero passes", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key},
		{"memory beyond the bound", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key},
		{"passes beyond the bound", "$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key},
		{"memory below 8 per lane", "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key},
		{"padded base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$aGFzaA"},
		{"line break in base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt[:10] + "\n" + salt[10:] + "$" + key},
		{"extra field", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$"},
		{"huge", strings.Repeat("$", 1000)},
	} {
		if _, err := extension.ParsePasswordHash(tc.phc); !errors.Is(err, extension.ErrMalformedPasswordHash) {
			t.Errorf("%s: Parse = %v, want extension.ErrMalformedPasswordHash", tc.name, err)
		}
		if ok, err := extension.VerifyPassword("pw", tc.phc); ok || !errors.Is(err, extension.ErrMalformedPasswordHash) {
			t.Errorf("%s: Verify = %v, %v; want false, extension.ErrMalformedPasswordHash", tc.name, ok, err)
		}
	}
}

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"short", extension.ErrPasswordTooShort},
		{"elevenchars", extension.ErrPasswordTooShort},
		{"twelve chars", nil},
		{"ääääääääääää", nil}, // characters, not bytes
		{strings.Repeat("x", extension.MaxPasswordLength), nil},
		{strings.Repeat("x", extension.MaxPasswordLength+1), extension.ErrPasswordTooLong},
	} {
		if err := extension.CheckPassword(tc.in); !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("extension.CheckPassword(%d bytes) = %v, want %v", len(tc.in), err, tc.want)
		}
	}
}

func TestPasswordHasherBound(t *testing.T) {
	ctx := context.Background()
	h := extension.NewPasswordHasher(fastParams, 2, 1)
	var releases []func()
	for range 2 {
		r, err := h.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	// Both run places taken: one more waits in the queue...
	waited := make(chan error, 1)
	go func() {
		_, err := h.Hash(ctx, "queued")
		waited <- err
	}()
	for h.Admitted() < 3 {
		time.Sleep(time.Millisecond)
	}
	// ...and beyond the queue the answer is extension.ErrBusy, at once.
	if _, err := h.Verify(ctx, "pw", "x"); !errors.Is(err, extension.ErrBusy) {
		t.Errorf("Verify beyond the queue: %v, want extension.ErrBusy", err)
	}
	if err := h.VerifyDummy(ctx, "pw"); !errors.Is(err, extension.ErrBusy) {
		t.Errorf("VerifyDummy beyond the queue: %v, want extension.ErrBusy", err)
	}
	// A waiter whose context ends leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	releases[0]()
	releases = releases[1:]
	if err := <-waited; err != nil {
		t.Errorf("queued hash: %v", err)
	}
	r, err := h.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	releases = append(releases, r)
	cancel()
	if _, err := h.Hash(cctx, "pw"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with an ended context while full: %v, want context.Canceled", err)
	}
	for _, r := range releases {
		r()
	}
	if h.Admitted() != 0 || h.Running() != 0 {
		t.Errorf("places still taken: %d admitted, %d running", h.Admitted(), h.Running())
	}
}

func TestPasswordHasherConcurrent(t *testing.T) {
	ctx := context.Background()
	h := extension.NewPasswordHasher(fastParams, 0, 1000)
	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if i%2 == 0 {
				if ok, err := h.Verify(ctx, "correct horse battery staple", phc); !ok || err != nil {
					t.Errorf("Verify = %v, %v", ok, err)
				}
			} else if err := h.VerifyDummy(ctx, "correct horse battery staple"); err != nil {
				t.Errorf("VerifyDummy = %v", err)
			}
		})
	}
	wg.Wait()
	if ok, _ := extension.VerifyPassword("correct horse battery staple", h.DummyHash()); ok {
		t.Error("the dummy hash matched a password")
	}
}

// FuzzParsePasswordHash: any string is refused with extension.ErrMalformedPasswordHash or parses to bounded parameters and
// encodes back to itself.
func FuzzParsePasswordHash(f *testing.F) {
	good, _ := extension.HashPassword("pw", fastParams)
	for _, s := range []string{good, "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "", "$$$$$", "$argon2id$v=19$m=1,t=1,p=1$$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, phc string) {
		d, err := extension.ParsePasswordHash(phc)
		if err != nil {
			if !errors.Is(err, extension.ErrMalformedPasswordHash) {
				t.Fatalf("extension.ParsePasswordHash(%q): %v is not extension.ErrMalformedPasswordHash", phc, err)
			}
			return
		}
		if d.Memory > extension.ArgonMaxMemory || d.Time > extension.ArgonMaxTime || d.Threads > extension.ArgonMaxThreads || len(d.Salt) < extension.ArgonMinSalt || len(d.Key) < extension.ArgonMinKey {
			t.Fatalf("extension.ParsePasswordHash(%q) = %+v: beyond the bounds", phc, d.PasswordParams)
		}
		if d.Encode() != phc {
			t.Fatalf("extension.ParsePasswordHash(%q) encodes to %q", phc, d.Encode())
		}
	})
}

// BenchmarkHashPasswordOWASP is the baseline of bare argon2id hashes per second on this machine,
// one at a time per core.
func BenchmarkHashPasswordOWASP(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := extension.HashPassword("correct horse battery staple", extension.PasswordOWASP); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPasswordHasherVerify runs verifications through a PasswordHasher from many goroutines at once
// (4 per core): what sign-ins do under load. Requests beyond the bound get extension.ErrBusy and
// are counted.
func BenchmarkPasswordHasherVerify(b *testing.B) {
	ctx := context.Background()
	h := extension.NewPasswordHasher(extension.PasswordOWASP, 0, -1)
	phc, err := h.Hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	var busy atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ok, err := h.Verify(ctx, "correct horse battery staple", phc)
			if errors.Is(err, extension.ErrBusy) {
				busy.Add(1)
				continue
			}
			if !ok || err != nil {
				b.Fatalf("Verify = %v, %v", ok, err)
			}
		}
	})
	b.ReportMetric(float64(busy.Load())/float64(b.N), "busy/op")
}
