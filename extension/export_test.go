package extension

import (
	"context"
	"time"
)

// What the external tests need to see of a PasswordHasher's bound and the hash parser's
// limits.

// Acquire takes a place to run, as a hash would, and returns its release.
func (h *PasswordHasher) Acquire(ctx context.Context) (func(), error) { return h.acquire(ctx) }

// Admitted counts the hashes running or waiting.
func (h *PasswordHasher) Admitted() int { return len(h.admit) }

// Running counts the hashes running.
func (h *PasswordHasher) Running() int { return len(h.run) }

// DummyHash is the hash VerifyDummy verifies against.
func (h *PasswordHasher) DummyHash() string { return h.dummy() }

// The bounds ParsePasswordHash enforces.
const (
	ArgonMaxMemory  = argonMaxMemory
	ArgonMaxTime    = argonMaxTime
	ArgonMaxThreads = argonMaxThreads
	ArgonMinSalt    = argonMinSalt
	ArgonMinKey     = argonMinKey
)

// WithCheckpoints returns opts with the SQLite store's background checkpoints every
// interval and the log started over past restartFrames pages.
func WithCheckpoints(opts Options, interval time.Duration, restartFrames int) Options {
	opts.checkpoint = checkpointSettings{interval: interval, restartFrames: restartFrames}
	return opts
}
