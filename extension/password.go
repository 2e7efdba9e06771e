package extension

// Passwords of local users: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane),
// stored as PHC strings, verified in constant time, and a PasswordHasher that bounds how
// many hashes run at once, so that a flood of sign-ins can neither exhaust memory nor
// starve the rest of the process (the webhook path above all) of CPU.

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

var (
	// ErrBusy is returned when as many hashes as allowed run and the queue is full: the
	// page answers "try again" (429).
	ErrBusy = errors.New("extension: too many sign-ins at once, try again")
	// ErrMalformedPasswordHash is returned for a stored hash that is not a PHC string we accept.
	ErrMalformedPasswordHash = errors.New("extension: malformed password hash")
	// ErrPasswordTooShort and ErrPasswordTooLong are returned by CheckPassword for a new password.
	ErrPasswordTooShort = fmt.Errorf("extension: password shorter than %d characters", MinPasswordLength)
	ErrPasswordTooLong  = fmt.Errorf("extension: password longer than %d bytes", MaxPasswordLength)
)

// Limits of a new password. NIST SP 800-63B asks for at least 8 characters and no
// composition rules; 12 is our floor for a password that is the only factor. The upper
// bound keeps the hash's input small, not the user's choice.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 1024
)

// CheckPassword reports whether a new password is acceptable: its length in characters, nothing
// else.
func CheckPassword(plain string) error {
	switch {
	case len(plain) > MaxPasswordLength:
		return ErrPasswordTooLong
	case utf8.RuneCountInString(plain) < MinPasswordLength:
		return ErrPasswordTooShort
	}
	return nil
}

// PasswordParams are argon2id's cost parameters and sizes.
type PasswordParams struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8  // lanes
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// PasswordOWASP are the parameters of the OWASP Password Storage Cheat Sheet's first
// argon2id choice: m=19 MiB, t=2, p=1; 128-bit salt, 256-bit key.
var PasswordOWASP = PasswordParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds of the parameters a stored hash may ask for: a hash from the database must not
// make one verification take a gigabyte or a minute.
const (
	argonMaxMemory  = 256 * 1024
	argonMaxTime    = 16
	argonMaxThreads = 16
	argonMinSalt    = 8
	argonMaxSalt    = 64
	argonMinKey     = 16
	argonMaxKey     = 64
)

// PasswordHashParts is a parsed PHC string.
type PasswordHashParts struct {
	PasswordParams
	Salt []byte
	Key  []byte
}

// Encode writes the PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$key, salt and key in
// unpadded standard base64.
func (d PasswordHashParts) Encode() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, d.Memory, d.Time, d.Threads,
		b64.EncodeToString(d.Salt), b64.EncodeToString(d.Key))
}

// ParsePasswordHash reads a PHC string of argon2id, version 19, with parameters within bounds. It
// accepts only the canonical form Encode writes.
func ParsePasswordHash(phc string) (PasswordHashParts, error) {
	if len(phc) > 512 {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	parts := strings.Split(phc, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	var d PasswordHashParts
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	m, err1 := phcParam(params[0], "m=", argonMaxMemory)
	t, err2 := phcParam(params[1], "t=", argonMaxTime)
	p, err3 := phcParam(params[2], "p=", argonMaxThreads)
	if err := errors.Join(err1, err2, err3); err != nil {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	d.Memory, d.Time, d.Threads = m, t, uint8(p)
	if d.Memory < 8*uint32(d.Threads) { // argon2's own minimum
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	b64 := base64.RawStdEncoding.Strict()
	var err error
	if d.Salt, err = b64.DecodeString(parts[4]); err != nil || len(d.Salt) < argonMinSalt || len(d.Salt) > argonMaxSalt {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	if d.Key, err = b64.DecodeString(parts[5]); err != nil || len(d.Key) < argonMinKey || len(d.Key) > argonMaxKey {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	d.SaltLen, d.KeyLen = uint32(len(d.Salt)), uint32(len(d.Key))
	// The decoder skips line breaks and accepts some non-canonical tails: only the one
	// spelling of each hash is ours.
	if d.Encode() != phc {
		return PasswordHashParts{}, ErrMalformedPasswordHash
	}
	return d, nil
}

// param reads "name=N" with 1 <= N <= limit, in decimal without sign or leading zero.
func phcParam(s, name string, limit uint64) (uint32, error) {
	v, ok := strings.CutPrefix(s, name)
	if !ok || v == "" || len(v) > 10 || (len(v) > 1 && v[0] == '0') {
		return 0, ErrMalformedPasswordHash
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > limit {
		return 0, ErrMalformedPasswordHash
	}
	return uint32(n), nil
}

// HashPassword hashes a password with the parameters and a fresh random salt, and returns the PHC
// string. It does the work at once: use a PasswordHasher where requests arrive.
func HashPassword(plain string, p PasswordParams) (string, error) {
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(plain), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return PasswordHashParts{PasswordParams: p, Salt: salt, Key: key}.Encode(), nil
}

// VerifyPassword reports whether a password matches a PHC string, comparing in constant time. A
// malformed hash is ErrMalformedPasswordHash, never a match.
func VerifyPassword(plain, phc string) (bool, error) {
	d, err := ParsePasswordHash(phc)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(plain), d.Salt, d.Time, d.Memory, d.Threads, d.KeyLen)
	return subtle.ConstantTimeCompare(key, d.Key) == 1, nil
}

// PasswordNeedsRehash reports whether a stored hash was made with other parameters than p (or is
// malformed): the sign-in then stores a new hash of the password it just verified.
func PasswordNeedsRehash(phc string, p PasswordParams) bool {
	d, err := ParsePasswordHash(phc)
	return err != nil || d.Memory != p.Memory || d.Time != p.Time || d.Threads != p.Threads || d.KeyLen != p.KeyLen || d.SaltLen != p.SaltLen
}

// PasswordHasher runs hashes and verifications with a bound: at most its concurrency at once
// (default GOMAXPROCS), and a short queue more waiting; beyond that it answers ErrBusy at
// once. Each running hash holds about PasswordParams.Memory, so the hashes' memory stays
// under concurrency × Memory, and the webhook path keeps its CPU share while sign-ins queue.
type PasswordHasher struct {
	params      PasswordParams
	concurrency int
	admit       chan struct{} // running or waiting: capacity concurrency + queue
	run         chan struct{} // running: capacity concurrency
	// maxWait, when positive, bounds the queue by time instead: a caller is admitted only
	// while the work ahead of it, at the recent duration of one hash, takes less.
	maxWait time.Duration
	avgNano atomic.Int64  // moving average of a hash's duration, in nanoseconds
	dummy   func() string // a hash of a random password, made once on first use
}

// Bounds of the default queue: the work ahead of a caller at most defaultMaxWait, and never
// more than maxQueuePerCPU callers per running place whatever the hashes' speed.
const (
	defaultMaxWait = 3 * time.Second
	maxQueuePerCPU = 256
)

// NewPasswordHasher returns a PasswordHasher with the parameters; concurrency <= 0 means
// GOMAXPROCS. queue >= 0 is a fixed number of waiting places; queue < 0 means a queue
// bounded by time: callers wait while the hashes ahead of them take at most about three
// seconds. A waiting sign-in costs a goroutine, not a hash's memory, so a burst of
// sign-ins waits briefly and keeps the CPUs busy, where a short fixed queue would turn most
// of it away to come back later.
func NewPasswordHasher(p PasswordParams, concurrency, queue int) *PasswordHasher {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
	}
	var maxWait time.Duration
	if queue < 0 {
		queue, maxWait = maxQueuePerCPU*concurrency, defaultMaxWait
	}
	h := &PasswordHasher{params: p, concurrency: concurrency, maxWait: maxWait,
		admit: make(chan struct{}, concurrency+queue), run: make(chan struct{}, concurrency)}
	h.dummy = sync.OnceValue(func() string {
		random := make([]byte, 32)
		_, _ = rand.Read(random) // never fails (crypto/rand panics rather than return an error)
		phc, _ := HashPassword(string(random), p)
		return phc
	})
	return h
}

// Params returns the parameters new hashes get.
func (h *PasswordHasher) Params() PasswordParams { return h.params }

// acquire takes a place to run, waiting in the queue if it has room; ErrBusy without,
// the context's error if it ends while waiting. release records how long the work took.
func (h *PasswordHasher) acquire(ctx context.Context) (release func(), err error) {
	if h.maxWait > 0 {
		if avg := time.Duration(h.avgNano.Load()); avg > 0 {
			ahead := len(h.admit) - h.concurrency + 1 // waiting callers, this one included
			if ahead > 0 && time.Duration(ahead)*avg/time.Duration(h.concurrency) > h.maxWait {
				return nil, ErrBusy
			}
		}
	}
	select {
	case h.admit <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	select {
	case h.run <- struct{}{}:
		start := time.Now()
		return func() {
			h.record(time.Since(start))
			<-h.run
			<-h.admit
		}, nil
	case <-ctx.Done():
		<-h.admit
		return nil, ctx.Err()
	}
}

// record folds a hash's duration into the moving average (weight 1/8); a lost update
// between two racing callers only delays the average a little.
func (h *PasswordHasher) record(d time.Duration) {
	old := h.avgNano.Load()
	if old == 0 {
		h.avgNano.Store(int64(d))
		return
	}
	h.avgNano.Store(old + (int64(d)-old)/8)
}

// Hash hashes a new password within the bound.
func (h *PasswordHasher) Hash(ctx context.Context, plain string) (string, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return HashPassword(plain, h.params)
}

// Verify checks a password against a stored hash within the bound.
func (h *PasswordHasher) Verify(ctx context.Context, plain, phc string) (bool, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	return VerifyPassword(plain, phc)
}

// VerifyDummy does the work of a verification against a hash that matches nothing, for a
// sign-in with an unknown address: it then costs what a wrong password costs, so the time
// of the answer does not tell which addresses have accounts. It reports only ErrBusy or
// the context's error.
func (h *PasswordHasher) VerifyDummy(ctx context.Context, plain string) error {
	dummy := h.dummy() // outside the bound: made once, on the first call
	release, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	_, _ = VerifyPassword(plain, dummy)
	return nil
}
