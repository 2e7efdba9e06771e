package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/extension-backend/extension-backend/extension"
)

// maxRetention bounds EXT_CAPTURE_DELIVERIES: captures hold instance secrets, and the
// journal itself is kept no longer.
const maxRetention = extension.DeliveryRetention

// parseLongDuration reads a positive duration: Go's form (90m, 24h) or whole days (7d).
func parseLongDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "+-") {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("%q: want a whole number of days from 1 to 3650, such as 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a duration such as 24h, 90m or 7d", s)
	}
	return d, nil
}

// parseCaptureRetention reads EXT_CAPTURE_DELIVERIES: how long captured deliveries are kept,
// from one minute to the journal's 30 days.
func parseCaptureRetention(s string) (time.Duration, error) {
	d, err := parseLongDuration(s)
	if err != nil {
		return 0, err
	}
	if d < time.Minute || d > maxRetention {
		return 0, fmt.Errorf("%q: want a retention from 1m to %s, such as 24h", s, "30d")
	}
	return d, nil
}

// parseSince reads --since: a duration back from now (24h, 7d) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d, err := parseLongDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration such as 24h or 7d, or an RFC 3339 time such as 2026-12-01T08:00:00Z", s)
	}
	return now.Add(-d).UTC(), nil
}

// deliveryJSON is the stable shape of `deliveries --json`.
type deliveryJSON struct {
	ID             int64      `json:"id"`
	ReceivedAt     time.Time  `json:"receivedAt"`
	InstanceID     string     `json:"instanceId"`
	Kind           string     `json:"kind"`
	RequestID      string     `json:"requestId"`
	EventCreatedAt *time.Time `json:"eventCreatedAt"`
	Outcome        string     `json:"outcome"`
	Reason         string     `json:"reason"`
	CaptureID      string     `json:"captureId"` // "" when the delivery was not captured
}

func runDeliveries(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deliveries", flag.ContinueOnError)
	fs.SetOutput(stderr)
	instanceID := fs.String("instance", "", "only this instance's deliveries")
	outcome := fs.String("outcome", "", "only deliveries with this outcome: "+outcomeNames())
	since := fs.String("since", "", "only deliveries received since then: a duration back from now (24h, 7d) or an RFC 3339 time")
	limit := fs.Int("limit", 1000, "at most this many, the newest")
	asJSON := fs.Bool("json", false, "print JSON (the values exactly as stored)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("deliveries takes no arguments, got %q", printable(fs.Arg(0)))
	}
	f := extension.DeliveryFilter{InstanceID: strings.ToLower(*instanceID), Limit: *limit}
	if *limit < 1 {
		return usagef("--limit must be 1 or more")
	}
	if *outcome != "" {
		o, err := extension.ParseOutcome(*outcome)
		if err != nil {
			return usagef("--outcome %s", printable(err.Error()))
		}
		f.Outcome = o
	}
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			return usageError{errors.New(printable(err.Error()))}
		}
		f.Since = t
	}
	_, store, err := openMigratedStore(ctx, getenv, needs{}, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	list, err := store.ListDeliveries(ctx, f)
	if err != nil {
		return err
	}
	captures, err := capturesByDelivery(ctx, store, list)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]deliveryJSON, len(list))
		for i, d := range list {
			out[i] = deliveryJSON{ID: d.ID, ReceivedAt: d.ReceivedAt, InstanceID: d.InstanceID, Kind: d.Kind, RequestID: d.RequestID,
				EventCreatedAt: d.EventCreatedAt, Outcome: string(d.Outcome), Reason: d.Reason, CaptureID: captures[d.ID]}
		}
		return printJSON(stdout, out)
	}
	if len(list) == 0 {
		_, err := fmt.Fprintln(stdout, "no deliveries")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tINSTANCE\tKIND\tOUTCOME\tCAPTURE\tWHAT IT DID")
	for _, d := range list {
		capture := captures[d.ID]
		if capture == "" {
			capture = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ReceivedAt.Format(time.RFC3339), orDash(printable(d.InstanceID)), orDash(printable(d.Kind)),
			d.Outcome, capture, printable(what(d)))
	}
	return tw.Flush()
}

// what says in words what a delivery did: its reason, or for a delivery applied whole
// that it set every field it carried.
func what(d extension.Delivery) string {
	if d.Reason != "" {
		return d.Reason
	}
	switch d.Outcome {
	case extension.OutcomeApplied:
		return "set every field it carried"
	case extension.OutcomeDryRun:
		return "verified and validated; nothing changed"
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func outcomeNames() string {
	var names []string
	for _, o := range extension.Outcomes() {
		names = append(names, string(o))
	}
	return strings.Join(names, ", ")
}

// capturesByDelivery finds the capture of each journaled delivery: the capture of the same
// request id received closest to it (a request id repeats only when the
// platform retries the very same delivery).
func capturesByDelivery(ctx context.Context, store *extension.Store, list []extension.Delivery) (map[int64]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, d := range list {
		if d.RequestID != "" && !seen[d.RequestID] {
			seen[d.RequestID] = true
			ids = append(ids, d.RequestID)
		}
	}
	refs, err := store.CapturesOf(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := map[int64]string{}
	for _, d := range list {
		var best time.Duration = -1
		for _, r := range refs {
			if r.RequestID != d.RequestID {
				continue
			}
			gap := r.ReceivedAt.Sub(d.ReceivedAt).Abs()
			if best < 0 || gap < best {
				best, out[d.ID] = gap, r.ID
			}
		}
	}
	return out, nil
}
