package mstudio

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// maxRefusalReasons bounds the reasons a RefusalLog counts apart. Callers pass fixed
// texts of their own, so this is a safety net: past it, new reasons count as "other".
const maxRefusalReasons = 64

// RefusalLog logs requests refused through their sender's own doing (a bad signature,
// an unknown key serial, too many lookups) at a bounded rate: the first refusal for a
// reason at once, then, while more follow, one line per interval that counts them. A
// flood of forged requests writes a line per reason and interval, not one per request,
// and still shows how many there were. It is safe for concurrent use.
type RefusalLog struct {
	logger   *slog.Logger
	msg      string
	level    slog.Level
	interval time.Duration

	mu      sync.Mutex
	reasons map[string]*refusalWindow
}

// refusalWindow is what a reason's refusals since its last line add up to.
type refusalWindow struct {
	open     bool // a line was written less than an interval ago; a timer is pending
	repeated int  // refusals since that line, not logged yet
	client   string
}

// NewRefusalLog returns a log that writes msg at level, for each reason at most once
// per interval (0: a minute).
func NewRefusalLog(logger *slog.Logger, msg string, level slog.Level, interval time.Duration) *RefusalLog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = time.Minute
	}
	return &RefusalLog{logger: logger, msg: msg, level: level, interval: interval, reasons: map[string]*refusalWindow{}}
}

// Refused records one refusal for reason, a fixed text (never one quoted from the
// request), of a request from the client address.
func (l *RefusalLog) Refused(ctx context.Context, reason, client string) {
	client = printableAddress(client)
	l.mu.Lock()
	w, ok := l.reasons[reason]
	if !ok && len(l.reasons) >= maxRefusalReasons {
		reason = "other"
		w, ok = l.reasons[reason]
	}
	if !ok {
		w = &refusalWindow{}
		l.reasons[reason] = w
	}
	if w.open {
		w.repeated++
		w.client = client
		l.mu.Unlock()
		return
	}
	w.open = true
	time.AfterFunc(l.interval, func() { l.summarize(reason) })
	l.mu.Unlock()
	l.logger.Log(ctx, l.level, l.msg, "reason", reason, "client", client)
}

// summarize ends an interval of the reason: it logs how many refusals the interval had
// beyond its first line, and keeps the window open while there were any.
func (l *RefusalLog) summarize(reason string) {
	l.mu.Lock()
	w := l.reasons[reason]
	n, client := w.repeated, w.client
	w.repeated = 0
	w.open = n > 0
	if w.open {
		time.AfterFunc(l.interval, func() { l.summarize(reason) })
	}
	l.mu.Unlock()
	if n > 0 {
		l.logger.Log(context.Background(), l.level, l.msg, "reason", reason, "repeated", n,
			"last_client", client, "within", l.interval.String())
	}
}

// printableAddress is the address as logged: an IP address as such, anything else (a
// header's text where no IP extractor is set) not at all.
func printableAddress(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return unparsedAddress
	}
	return ip.WithZone("").String() // a zone is text of the sender's choosing
}
