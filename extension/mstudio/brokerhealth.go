package mstudio

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds of a failed mint, as the token health records them and the metric labels them:
// a fixed set of words, never the platform's answer (which could echo what it was sent).
const (
	MintSecretRefused  = "secret_refused"   // 401 or 403: the secret is not (or not yet) accepted
	MintRateLimited    = "rate_limited"     // 429
	MintPlatformError  = "platform_error"   // 5xx
	MintRefused        = "refused"          // any other 4xx
	MintUnreachable    = "unreachable"      // no answer: the network, a timeout
	MintExpiredOnReply = "expired_on_reply" // the token came back already expired: a clock apart
	MintOther          = "other"            // anything else, such as the database failing meanwhile
)

// mintOK labels a successful mint in extension_token_mints_total.
const mintOK = "ok"

// recordTimeout bounds the write of a mint's outcome; a slow database must not hold the
// token up for long.
const recordTimeout = 2 * time.Second

// mintFailureKind sorts a mint's error into one of the kinds above, with the platform's
// status when it answered.
func mintFailureKind(err error) (kind string, status int) {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		switch s := apiErr.Status; {
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return MintSecretRefused, s
		case s == http.StatusTooManyRequests:
			return MintRateLimited, s
		case s >= 500:
			return MintPlatformError, s
		default:
			return MintRefused, s
		}
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) {
		return MintUnreachable, 0
	}
	return MintOther, 0
}

// newMintCounter is extension_token_mints_total, registered with reg (shared when another
// broker registered it first); nil without a registry.
func newMintCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	if reg == nil {
		return nil
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extension_token_mints_total",
		Help: "Instance token mints at the platform by outcome: ok, or the kind of failure.",
	}, []string{"outcome"})
	c, err := register(reg, c)
	if err != nil {
		return nil
	}
	// Every outcome is a series from the start, so a rate over it exists before the
	// first failure and an alert on it can be evaluated.
	for _, k := range []string{mintOK, MintSecretRefused, MintRateLimited, MintPlatformError, MintRefused, MintUnreachable, MintExpiredOnReply, MintOther} {
		c.WithLabelValues(k)
	}
	return c
}

// minted counts a successful mint and records it for the ops console.
func (b *Broker) minted(id string) {
	if b.mints != nil {
		b.mints.WithLabelValues(mintOK).Inc()
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := b.store.RecordMint(ctx, id, b.now()); err != nil {
		b.logger.Warn("instance token: mint not recorded", "instance_id", id, "error", err.Error())
	}
}

// mintFailed counts a failed mint and records its kind for the ops console.
func (b *Broker) mintFailed(id, kind string, status int) {
	if b.mints != nil {
		b.mints.WithLabelValues(kind).Inc()
	}
	ctx, cancel := context.WithTimeout(context.Background(), recordTimeout)
	defer cancel()
	if err := b.store.RecordMintFailure(ctx, id, kind, status, b.now()); err != nil {
		b.logger.Warn("instance token: failed mint not recorded", "instance_id", id, "error", err.Error())
	}
}
