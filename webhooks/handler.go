// Package webhooks receives the platform's lifecycle webhooks: it verifies the Ed25519
// signature over the raw body, decodes the payload tolerantly, checks that it is meant
// for this extension, and has the extension.Store apply it in one transaction before it
// answers.
package webhooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/extension-backend/extension-backend/extension"
	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxBodyBytes bounds a delivery's body; a larger one is refused with 413.
const MaxBodyBytes = 64 << 10

// applyTimeout keeps the answer well inside the platform's 6 s limit: past it the
// platform counts a failure anyway, so the transaction is better given up.
const applyTimeout = 5 * time.Second

// Keys under which the handler leaves what it learnt in the Echo context, for the
// request log line.
const (
	LogKeyInstanceID = "instance_id"
	LogKeyEventKind  = "event_kind"
	LogKeyRequestID  = "request_id"
	LogKeyOutcome    = "outcome"
)

// Config is what the handler needs.
type Config struct {
	Store         *extension.Store
	Keys          mstudio.KeySource // the platform's webhook keys by serial
	ExtensionID   string            // deliveries for another extension are refused
	ContributorID string            // checked when set
	Logger        *slog.Logger
	Registerer    prometheus.Registerer // nil: no metrics
	// Applied, when set, is told of every event that changed the instance (applied wholly
	// or in part: extension.Result.Changed), after its commit and before the answer: the
	// place for follow-up work such as forgetting a cached token or enqueueing a job. It
	// must be quick and must not fail the delivery: the event is committed.
	Applied func(ctx context.Context, ev extension.LifecycleEvent)
	// Captures, when set, is given every delivery whose body was read (URL, headers, body
	// and what became of it), to keep for replay: dev always, serve when
	// EXT_CAPTURE_DELIVERIES is set. The recorder writes in the background and never makes
	// a delivery wait.
	Captures *extension.CaptureRecorder
	// CaptureUnverified also captures deliveries whose signature did not verify. Off, a
	// sender without the platform's key cannot make us store anything; dev turns it on to
	// show what a hand-made delivery looked like.
	CaptureUnverified bool
}

// Handler serves POST /mstudio/webhooks.
type Handler struct {
	cfg             Config
	deliveries      *prometheus.CounterVec
	unverifiedCount *prometheus.CounterVec // refused before verification, by status
	// cpu admits as many signature checks at once as there are processors. Without it,
	// a burst of deliveries makes dozens of goroutines runnable at once and the SQLite
	// writer, which every delivery waits for, queues behind all of them for a CPU.
	cpu chan struct{}
	// refusals logs deliveries refused before verification at a bounded rate: a flood
	// of forgeries must not write a line each.
	refusals *mstudio.RefusalLog
}

// New returns a handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, cpu: make(chan struct{}, runtime.GOMAXPROCS(0)), deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extension_webhook_deliveries_total",
		Help: "Lifecycle webhook deliveries by event kind and outcome.",
	}, []string{"kind", "outcome"}), unverifiedCount: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extension_webhook_unverified_total",
		Help: "Lifecycle webhook deliveries refused before their signature was verified, by the HTTP status answered.",
	}, []string{"status"})}
	// The statuses a refusal before verification answers are series from the start, so
	// an alert's rate over them exists before the first refusal.
	for _, st := range unverifiedStatuses {
		h.unverifiedCount.WithLabelValues(st)
	}
	h.refusals = mstudio.NewRefusalLog(cfg.Logger, "webhook refused", slog.LevelWarn, time.Minute)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(h.deliveries, h.unverifiedCount)
	}
	return h
}

// Receive serves POST /mstudio/webhooks (cmd's route table registers it).
func (h *Handler) Receive(c echo.Context) error {
	if h.cfg.Captures == nil {
		return h.receive(c, nil)
	}
	var got received
	err := h.receive(c, &got)
	h.capture(c, &got, err)
	return err
}

// received is what receive learnt of a delivery, for its capture.
type received struct {
	read     bool // the body was read whole and within the bound
	body     []byte
	verified bool
}

// capture hands the delivery to the recorder: its URL, headers, body, and the answer.
func (h *Handler) capture(c echo.Context, got *received, err error) {
	if !got.read || (!got.verified && !h.cfg.CaptureUnverified) {
		return
	}
	req := c.Request()
	status := c.Response().Status
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		status = he.Code
	case err != nil:
		status = http.StatusInternalServerError
	}
	cd := extension.CapturedDelivery{
		ID: extension.NewCaptureID(), ReceivedAt: time.Now(), Verified: got.verified, Status: status,
		Outcome: extension.CaptureUnverified, Size: len(got.body), URL: requestURL(c), Body: got.body,
	}
	cd.Header, cd.HeadersTruncated = extension.CaptureHeader(req.Header)
	if got.verified {
		cd.InstanceID, cd.RequestID, cd.Kind = contextString(c, LogKeyInstanceID), contextString(c, LogKeyRequestID), contextString(c, LogKeyEventKind)
		cd.Outcome = contextString(c, LogKeyOutcome)
		if cd.Outcome == "" {
			cd.Outcome = extension.CaptureFailed
		}
	}
	h.cfg.Captures.Record(cd)
}

// contextString is a string the handler left in the Echo context, clipped as the journal
// clips it.
func contextString(c echo.Context, key string) string {
	s, _ := c.Get(key).(string)
	return clip(s)
}

// requestURL is the URL the delivery was posted to, as this backend saw it: the scheme a
// proxy in front reports, the Host header, the path and query.
func requestURL(c echo.Context) string {
	req := c.Request()
	return c.Scheme() + "://" + req.Host + req.URL.RequestURI()
}

func (h *Handler) receive(c echo.Context, got *received) error {
	req := c.Request()
	if req.ContentLength > MaxBodyBytes {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
	}
	body, err := readBody(req)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body could not be read")
	}
	if len(body) > MaxBodyBytes {
		return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBodyBytes))
	}
	if got != nil {
		got.read, got.body = true, body
	}
	ctx, cancel := context.WithTimeout(req.Context(), applyTimeout)
	defer cancel()

	sig, err := mstudio.ParseSignature(req.Header)
	if err != nil {
		return h.unverified(c, err)
	}
	// The key lookup may wait on the platform, so it happens outside the CPU slots:
	// requests with made-up serials must not keep deliveries with a cached key waiting.
	// Lookups of serials not cached are budgeted per client address.
	key, err := h.cfg.Keys.Key(mstudio.WithClientAddress(ctx, c.RealIP()), sig.Serial)
	if err != nil {
		return h.unverified(c, err)
	}
	select {
	case h.cpu <- struct{}{}:
	case <-ctx.Done():
		return &echo.HTTPError{Code: http.StatusServiceUnavailable, Message: "overloaded", Internal: ctx.Err()}
	}
	err = sig.Check(key, body)
	<-h.cpu
	if err != nil {
		return h.unverified(c, err)
	}
	if got != nil {
		got.verified = true
	}
	// From here on the body is the platform's: what it says may be journaled.
	p, err := Decode(body)
	if err != nil {
		return h.refuse(ctx, c, p, http.StatusBadRequest, err.Error())
	}
	c.Set(LogKeyInstanceID, p.ID)
	c.Set(LogKeyEventKind, p.Kind)
	c.Set(LogKeyRequestID, p.Request.ID)
	// Ids are UUIDs: compared without regard to case.
	if !strings.EqualFold(p.Meta.ExtensionID, h.cfg.ExtensionID) {
		return h.refuse(ctx, c, p, http.StatusForbidden, "meta.extensionId is not this extension's id")
	}
	if h.cfg.ContributorID != "" && !strings.EqualFold(p.Meta.ContributorID, h.cfg.ContributorID) {
		return h.refuse(ctx, c, p, http.StatusForbidden, "meta.contributorId is not this extension's contributor")
	}
	if _, known := ParseKind(p.Kind); !known {
		h.cfg.Logger.InfoContext(ctx, "webhook kind ignored", LogKeyEventKind, clip(p.Kind), LogKeyInstanceID, p.ID)
		res := extension.Result{Outcome: extension.OutcomeIgnored, Reason: "unknown kind"}
		if err := h.record(ctx, c, p, res); err != nil {
			return err
		}
		return c.JSON(http.StatusAccepted, map[string]string{"outcome": string(res.Outcome), "reason": res.Reason})
	}
	ev, err := p.Event()
	if err != nil {
		return h.refuse(ctx, c, p, http.StatusBadRequest, err.Error())
	}
	// The query is not signed, so the signed target URL counts too: a captured dry run
	// replayed without its query must not be applied for real.
	if req.URL.Query().Get("dry-run") == "true" || p.isDryRun() {
		res := extension.Result{Outcome: extension.OutcomeDryRun}
		if err := h.record(ctx, c, p, res); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]string{"outcome": string(res.Outcome), "kind": string(ev.Kind), "instanceId": ev.InstanceID})
	}
	res, err := h.cfg.Store.ApplyLifecycle(ctx, ev)
	if err != nil {
		// 500 makes the platform retry; the event was not applied.
		return fmt.Errorf("webhook %s: %w", ev.Kind, err)
	}
	h.observe(c, p.Kind, res)
	if res.Changed() && h.cfg.Applied != nil {
		h.cfg.Applied(ctx, ev)
	}
	return c.NoContent(http.StatusNoContent)
}

// readBody reads the body: one of an announced length into a buffer of that length
// (io.ReadAll starts at 512 bytes and grows by copying: three allocations for a
// delivery's 1–2 KB), one of unknown length up to MaxBodyBytes+1 bytes. The server's
// body reader ends at the announced length, so nothing more can follow.
func readBody(req *http.Request) ([]byte, error) {
	if n := req.ContentLength; n >= 0 && n <= MaxBodyBytes {
		buf := make([]byte, n)
		if _, err := io.ReadFull(req.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
}

// refuse journals a verified delivery that is refused and answers status.
func (h *Handler) refuse(ctx context.Context, c echo.Context, p *Payload, status int, reason string) error {
	if err := h.record(ctx, c, p, extension.Result{Outcome: extension.OutcomeRefused, Reason: reason}); err != nil {
		return err
	}
	return echo.NewHTTPError(status, reason)
}

func (h *Handler) record(ctx context.Context, c echo.Context, p *Payload, res extension.Result) error {
	var ev extension.LifecycleEvent
	if p != nil {
		ev = extension.LifecycleEvent{Kind: extension.EventKind(clip(p.Kind)), RequestID: clip(p.Request.ID), InstanceID: clip(p.ID)}
		ev.CreatedAt, _ = p.CreatedAt()
	}
	if err := h.cfg.Store.RecordDelivery(ctx, ev, res); err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	kind := "unknown"
	if p != nil {
		kind = p.Kind
	}
	h.observe(c, kind, res)
	return nil
}

func (h *Handler) observe(c echo.Context, kind string, res extension.Result) {
	c.Set(LogKeyOutcome, string(res.Outcome))
	if k, ok := ParseKind(kind); ok {
		kind = string(k)
	} else {
		kind = "unknown" // bounded label values: never a string from the body
	}
	h.deliveries.WithLabelValues(kind, string(res.Outcome)).Inc()
}

// unverified answers a delivery that failed verification. A failure of the sender's
// making (4xx) is logged at a bounded rate; one of ours goes to the error handler.
func (h *Handler) unverified(c echo.Context, err error) error {
	err = verifyError(err)
	var he *echo.HTTPError
	if errors.As(err, &he) && he.Code < http.StatusInternalServerError {
		h.unverifiedCount.WithLabelValues(unverifiedStatus(he.Code)).Inc()
		h.refusals.Refused(c.Request().Context(), fmt.Sprint(he.Message), c.RealIP())
	}
	return err
}

// verifyError maps a verification failure to its answer: the sender's fault is 401, too
// many lookups of serials we do not have from the sender's address is 429, and a key we
// cannot fetch right now is 503 so the platform retries.
func verifyError(err error) error {
	switch {
	case errors.Is(err, mstudio.ErrSignatureMissing):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature headers missing")
	case errors.Is(err, mstudio.ErrAlgorithm):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature algorithm must be Ed25519")
	case errors.Is(err, mstudio.ErrSignatureMalformed):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature is not base64 of 64 bytes")
	case errors.Is(err, mstudio.ErrSignatureInvalid):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature does not match the body")
	case errors.Is(err, mstudio.ErrBadSerial):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature serial is not a UUID")
	case errors.Is(err, mstudio.ErrUnknownKey):
		return echo.NewHTTPError(http.StatusUnauthorized, "signature serial is unknown")
	case errors.Is(err, mstudio.ErrTooManyLookups):
		return echo.NewHTTPError(http.StatusTooManyRequests, "too many signature serials that are not known here; try again later")
	case errors.Is(err, mstudio.ErrKeyUnavailable):
		return &echo.HTTPError{Code: http.StatusServiceUnavailable, Message: "signing key cannot be fetched right now", Internal: err}
	}
	return fmt.Errorf("webhook: verify: %w", err)
}

// unverifiedStatuses label extension_webhook_unverified_total: what verification answers
// (400 a malformed signature header, 401 a signature or key that does not verify, 429 too
// many key lookups), and "other" for any other 4xx.
var unverifiedStatuses = []string{"400", "401", "429", "other"}

func unverifiedStatus(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusTooManyRequests:
		return strconv.Itoa(code)
	}
	return "other"
}
