package mstudiotest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/extension-backend/extension-backend/extension/mstudio"
	"github.com/google/uuid"
)

// HaltAfterAttempts is how many failed attempts in a row halt an instance's webhooks:
// the execution turns "halted", and nothing more is sent for that instance until it is
// resumed (POST /internal/executions/{id}/resume) or the instance is removed. The
// platform's policy is UNVERIFIED (it has the state and a resume action); with the
// default backoff, 20 attempts span about two hours.
const HaltAfterAttempts = 20

// maxExecutions bounds the execution log of a long dev or bench run; the oldest
// successful executions are forgotten first.
const maxExecutions = 10000

// maxAnswer bounds how much of a receiver's answer is read and shown.
const maxAnswer = 64 << 10

// userAgent is what deliveries say they are; the platform's own is UNVERIFIED.
const userAgent = "mstudio-simulator/1 (extension-backend)"

// event is what one webhook says, fixed when it is triggered. Each attempt builds the
// body anew around it with a new request id and time.
type event struct {
	kind                       lifecycleKind
	instanceID                 string
	extensionID, contributorID string
	contextKind, contextID     string
	scopes                     []string
	enabled                    bool
	variantKey                 string
	secret                     string
	dryRunUser                 string // set for dry runs: the executing user
}

// execution is an Execution with what the sender needs to run it.
type execution struct {
	rec      Execution
	ev       event
	due      time.Time // wall-clock time of the next attempt (real time: Options.Now may be fake)
	failures int       // failed attempts since the last resume
	dropped  bool      // removal superseded it while an attempt was in flight
	first    chan attemptResult
}

// attemptResult is what one delivery attempt got.
type attemptResult struct {
	status int
	body   string
	err    error // why it failed: never the body or the secret
}

func (r attemptResult) successful() bool { return r.err == nil && r.status >= 200 && r.status <= 299 }

// instanceQueue is one instance's pending executions, oldest first. At most one worker
// goroutine runs it; the next event waits until the one before it succeeded.
type instanceQueue struct {
	id      string
	items   []*execution
	running bool
	wake    chan struct{} // cuts a worker's backoff short: purge, resume
}

// sender delivers lifecycle webhooks with the platform's semantics.
type sender struct {
	s      *Server
	client *http.Client
	ctx    context.Context // ends at close: stops backoffs and attempts in flight
	stop   context.CancelFunc
	wg     sync.WaitGroup
	// trigger serialises a trigger's state change with its enqueueing, so the queue
	// holds events in the order the changes happened.
	trigger sync.Mutex

	mu     sync.Mutex
	closed bool
	queues map[string]*instanceQueue
	log    []*execution
	byID   map[string]*execution
}

func newSender(s *Server) *sender {
	// Redirects are not followed: any answer outside 2xx is a failure (spec 3.5;
	// whether the platform follows them is UNVERIFIED).
	client := *s.opts.HTTPClient
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ctx, stop := context.WithCancel(context.Background())
	return &sender{s: s, client: &client, ctx: ctx, stop: stop, queues: map[string]*instanceQueue{}, byID: map[string]*execution{}}
}

// close stops the workers, cancelling attempts in flight, and waits for them to end.
func (sd *sender) close() {
	sd.mu.Lock()
	sd.closed = true
	sd.mu.Unlock()
	sd.stop()
	sd.wg.Wait()
}

// senderRoutes registers the trigger API and the execution log.
func (s *Server) senderRoutes() {
	s.handle("POST /internal/calls/{call}", s.postCall)
	s.handle("POST /internal/dry-run/{kind}", s.postDryRun)
	s.handle("GET /internal/executions", s.getExecutions)
	s.handle("POST /internal/executions/{id}/resume", s.postResume)
}

// enqueue queues ev behind the instance's pending events. When none is ahead it returns
// a channel that receives the first attempt's result; queued reports whether others are
// ahead. A removal first drops everything pending for the instance.
func (sd *sender) enqueue(ev event) (ex *execution, first <-chan attemptResult, queued bool, err error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.closed {
		return nil, nil, false, ErrClosed
	}
	q := sd.queues[ev.instanceID]
	if q == nil {
		q = &instanceQueue{id: ev.instanceID, wake: make(chan struct{}, 1)}
		sd.queues[ev.instanceID] = q
	}
	if ev.kind.call == CallInstanceRemovedFromContext {
		sd.purgeLocked(q)
	}
	for _, x := range q.items {
		queued = queued || !x.dropped
	}
	ex = &execution{ev: ev, due: time.Now(), rec: Execution{
		ID: uuid.Must(uuid.NewV7()).String(), ExtensionInstanceID: ev.instanceID,
		ExtensionID: ev.extensionID, ContributorID: ev.contributorID, Kind: ev.kind.call,
		State: ExecutionQueued, CreatedAt: sd.s.now().UTC(),
	}}
	if !queued {
		ex.first = make(chan attemptResult, 1)
	}
	q.items = append(q.items, ex)
	sd.rememberLocked(ex)
	sd.kickLocked(q)
	return ex, ex.first, queued, nil
}

// purgeLocked drops what is pending for the instance, as the platform does on removal.
// An attempt in flight cannot be called back: it is marked and not retried.
func (sd *sender) purgeLocked(q *instanceQueue) {
	var kept []*execution
	for _, ex := range q.items {
		if ex.rec.State == ExecutionRunning {
			ex.dropped = true
			kept = append(kept, ex)
			continue
		}
		if ex.first != nil {
			ex.first <- attemptResult{err: errorf("dropped: the instance was removed")}
			ex.first = nil
		}
		sd.forgetLocked(ex)
		sd.s.opts.Logger.Info("simulator: webhook dropped by removal", "execution_id", ex.rec.ID,
			"instance_id", q.id, "event_kind", ex.rec.Kind)
	}
	q.items = kept
}

// kickLocked makes sure a worker runs the queue and looks at its head now.
func (sd *sender) kickLocked(q *instanceQueue) {
	if q.running {
		select {
		case q.wake <- struct{}{}:
		default:
		}
		return
	}
	q.running = true
	sd.wg.Add(1)
	go sd.work(q)
}

// work delivers the queue's head until it succeeds, then the next; it exits when the
// queue is empty or halted, or the sender closes.
func (sd *sender) work(q *instanceQueue) {
	defer sd.wg.Done()
	for {
		sd.mu.Lock()
		if sd.closed || len(q.items) == 0 || q.items[0].rec.State == ExecutionHalted {
			q.running = false
			if len(q.items) == 0 && sd.queues[q.id] == q {
				delete(sd.queues, q.id)
			}
			sd.mu.Unlock()
			return
		}
		ex := q.items[0]
		if wait := time.Until(ex.due); wait > 0 {
			sd.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-q.wake:
			case <-sd.ctx.Done():
			}
			t.Stop()
			continue
		}
		ex.rec.State, ex.rec.NextScheduledExecution = ExecutionRunning, time.Time{}
		ex.rec.Attempts++
		ev := ex.ev
		sd.mu.Unlock()

		res := sd.deliver(sd.ctx, ev)
		if res.successful() && ev.secret != "" {
			// Before the result is reported: once a trigger returns success, the secret
			// counts as delivered.
			sd.s.secretDelivered(ev.instanceID, ev.secret)
		}
		sd.finish(q, ex, res)
	}
}

// finish records an attempt's result and schedules what comes next.
func (sd *sender) finish(q *instanceQueue, ex *execution, res attemptResult) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	log := sd.s.opts.Logger.With("execution_id", ex.rec.ID, "instance_id", q.id,
		"event_kind", ex.rec.Kind, "attempt", ex.rec.Attempts, "status", res.status)
	ex.rec.LastStatusCode, ex.rec.LastError = res.status, ""
	if res.err != nil {
		ex.rec.LastError = res.err.Error()
	}
	if ex.first != nil {
		ex.first <- res
		ex.first = nil
	}
	switch {
	case res.successful():
		ex.rec.State = ExecutionSuccessful
		q.items = q.items[1:]
		log.Info("simulator: webhook delivered")
		return
	case ex.dropped:
		q.items = q.items[1:]
		sd.forgetLocked(ex)
		log.Info("simulator: webhook dropped by removal", "error", ex.rec.LastError)
		return
	}
	ex.failures++
	if ex.failures >= HaltAfterAttempts {
		ex.rec.State = ExecutionHalted
		log.Warn("simulator: webhooks of the instance halted", "error", ex.rec.LastError)
		return
	}
	wait := sd.backoff(ex.failures)
	ex.rec.State = ExecutionFailed
	ex.due = time.Now().Add(wait)
	ex.rec.NextScheduledExecution = sd.s.now().Add(wait).UTC()
	log.Info("simulator: webhook attempt failed", "error", ex.rec.LastError, "retry_in", wait.String())
}

// backoff is the wait after the nth failed attempt in a row: RetryBase doubling up to
// RetryCap (the platform's cap is about 10 minutes; its schedule is UNVERIFIED), less up
// to a tenth of jitter so that many failing instances do not retry in lockstep.
func (sd *sender) backoff(n int) time.Duration {
	d, limit := sd.s.opts.RetryBase, sd.s.opts.RetryCap
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// deliver makes one attempt: the body built anew (new request id and time), signed with
// the current webhook key, posted within the webhook timeout.
func (sd *sender) deliver(ctx context.Context, ev event) attemptResult {
	target := sd.target(ev)
	if target == "" {
		return attemptResult{err: errorf("no webhook URL is set")}
	}
	body, err := BuildPayload(PayloadSpec{
		Kind: ev.kind.payload, InstanceID: ev.instanceID, ExtensionID: ev.extensionID, ContributorID: ev.contributorID,
		ContextKind: ev.contextKind, ContextID: ev.contextID, Scopes: ev.scopes, Enabled: ev.enabled,
		VariantKey: ev.variantKey, Secret: ev.secret, CreatedAt: sd.s.now(), TargetURL: target,
	})
	if err != nil {
		return attemptResult{err: err}
	}
	timeout := sd.s.opts.WebhookTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: errorf("webhook URL is not valid")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	key := sd.s.WebhookKey()
	mstudio.Sign(req.Header, key.Serial, key.Private, body)
	resp, err := sd.client.Do(req)
	if err != nil {
		var ue *url.Error
		switch {
		case sd.ctx.Err() != nil:
			return attemptResult{err: ErrClosed}
		case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ue) && ue.Timeout()):
			return attemptResult{err: fmt.Errorf("no answer within %s", timeout)}
		case errors.As(err, &ue):
			err = ue.Err // without the URL, which says nothing new
		}
		return attemptResult{err: fmt.Errorf("delivery failed: %w", err)}
	}
	defer resp.Body.Close()
	// Success is decided by the status alone; an answer body cut short does not change it.
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	res := attemptResult{status: resp.StatusCode, body: string(answer)}
	if !res.successful() {
		res.err = fmt.Errorf("answered %d", resp.StatusCode) // not the body: it may quote the secret
	}
	return res
}

// target is the URL a delivery goes to: the webhook URL with the platform's
// placeholders filled in (spec 3.1), plus the dry-run parameters for a dry run.
func (sd *sender) target(ev event) string {
	raw := sd.s.webhookURL()
	if raw == "" {
		return ""
	}
	// Longer names first: ":contextId" must not be read as ":context" + "Id".
	raw = strings.NewReplacer(
		":apiVersion", "v1", ":contributorId", ev.contributorID, ":extensionInstanceId", ev.instanceID,
		":extensionId", ev.extensionID, ":contextId", ev.contextID, ":context", ev.contextKind,
	).Replace(raw)
	if ev.dryRunUser == "" {
		return raw
	}
	sep := "?"
	if strings.Contains(raw, "?") {
		sep = "&"
	}
	return raw + sep + "dry-run=true&executing-user-id=" + url.QueryEscape(ev.dryRunUser)
}
