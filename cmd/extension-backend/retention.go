package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// maxRetentionDays bounds EXT_RETENTION_AFTER_REMOVAL: ten years is longer than anybody
// means to keep a removed customer's data, so more is a typo.
const maxRetentionDays = 3650

// parseRetention reads a retention: whole days such as "30d", or a Go duration such as
// "720h" or "90m", or "0" for none (erased at the next clean-up after the removal). It
// refuses a negative one and one of more than maxRetentionDays days.
func parseRetention(raw string) (time.Duration, error) {
	raw = strings.TrimSpace(raw)
	bad := fmt.Errorf("%q: want whole days such as 30d, a duration such as 720h, or 0; at most %dd", raw, maxRetentionDays)
	if raw == "" {
		return 0, bad
	}
	if days, ok := strings.CutSuffix(raw, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > maxRetentionDays || days != strconv.Itoa(n) {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > maxRetentionDays*24*time.Hour {
		return 0, bad
	}
	return d, nil
}

// retention reads EXT_RETENTION_AFTER_REMOVAL (parseRetention), 30 days when unset.
func (r *envReader) retention(name string) time.Duration {
	raw := r.str(name, "")
	if raw == "" {
		return extension.DefaultRetentionAfterRemoval
	}
	d, err := parseRetention(raw)
	if err != nil {
		r.fail(name, "%v", err)
	}
	return d
}

// eraseInterval is how often serve looks for removed instances past their grace period.
const eraseInterval = time.Hour

// eraseRemoved erases the data of instances removed longer than after ago, now and then
// every eraseInterval until ctx ends. Every replica runs it; the store erases each
// instance once. Each erasure is logged with its instance id and the rows deleted per
// table: counts, never a value.
func eraseRemoved(ctx context.Context, store *extension.Store, logger *slog.Logger, after time.Duration) {
	t := time.NewTicker(eraseInterval)
	defer t.Stop()
	for {
		erased, err := store.EraseRemovedInstances(ctx, time.Now().Add(-after))
		for _, e := range erased {
			logErasure(logger, e)
		}
		if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
			logger.Warn("erase removed instances", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// logErasure logs one erasure: the instance, when it was removed, and the rows deleted.
func logErasure(logger *slog.Logger, e extension.Erasure) {
	attrs := []any{"instance_id", e.InstanceID, "removed_at", e.RemovedAt.Format(time.RFC3339)}
	var total int64
	rows := make([]any, 0, len(e.Rows))
	for _, table := range extension.ErasedTables() {
		rows = append(rows, slog.Int64(table, e.Rows[table]))
		total += e.Rows[table]
	}
	attrs = append(attrs, "rows", total, slog.Group("rows_by_table", rows...))
	logger.Info("erased removed instance's data", attrs...)
}
