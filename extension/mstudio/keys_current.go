package mstudio

import (
	"context"
	"time"
)

// Waits between attempts while the current key cannot be fetched.
const (
	currentRetryMin = 2 * time.Second
	currentRetryMax = 5 * time.Minute
)

// KeepCurrent keeps the key the platform signs with now cached: it fetches it at once
// and then every RefreshPeriod, until ctx ends. A key announced in advance is cached
// before it signs, so the platform's deliveries and tokens never wait on the budget of
// serials not cached. A failed fetch is logged as a warning and tried again with backoff;
// the cache keeps serving what it has and fetches serials on demand meanwhile. A miss
// refused for budget brings the next fetch forward, to RecheckAfter after the last.
// Run it in a goroutine of its own.
func (kc *KeyCache) KeepCurrent(ctx context.Context) {
	retry := currentRetryMin
	for {
		wait := kc.refresh
		if err := kc.fetchCurrent(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			kc.logger.WarnContext(ctx, "platform key: the current key could not be fetched; trying again",
				"purpose", string(kc.purpose), "retry_in", retry.String(), "error", err.Error())
			wait, retry = retry, min(2*retry, currentRetryMax)
		} else {
			retry = currentRetryMin
		}
		if !kc.sleep(ctx, wait) {
			return
		}
	}
}

// sleep waits d, or less when askRecheck asks (but RecheckAfter at least); false when
// ctx ended first.
func (kc *KeyCache) sleep(ctx context.Context, d time.Duration) bool {
	start := time.Now()
	deadline := start.Add(d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-kc.recheckNow:
			if early := start.Add(kc.recheck); early.Before(deadline) {
				deadline = early
				t.Reset(time.Until(deadline))
			}
		}
	}
}

// askRecheck asks KeepCurrent, if it runs, to look for a new current key soon.
func (kc *KeyCache) askRecheck() {
	select {
	case kc.recheckNow <- struct{}{}:
	default: // asked already
	}
}

// fetchCurrent fetches the current key and caches it.
func (kc *KeyCache) fetchCurrent(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	serial, key, err := kc.fetchLatest(ctx)
	if err != nil {
		return err
	}
	kc.mu.Lock()
	if _, ok := kc.keys[serial]; !ok { // a key never changes under its serial
		kc.keys[serial] = key
	}
	delete(kc.unknown, serial)
	changed := kc.current != serial
	kc.current = serial
	kc.mu.Unlock()
	if changed {
		kc.logger.InfoContext(ctx, "platform key: current key cached", "purpose", string(kc.purpose), "serial", serial)
	}
	return nil
}
