package extension

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A captured delivery is what reached the webhook handler, byte for byte: the URL it was
// posted to, its headers and its body, kept for a developer to look at and replay. Its
// body and headers carry the instance secret and the platform's signature, so they are
// sealed at rest like every other secret, bound to the capture's id and instance; the
// plain columns say only which delivery it was and what became of it.

// CaptureMaxHeaderBytes bounds the headers kept of one delivery (names and values). A
// delivery's own are well under 2 KiB; anything past the bound is dropped, and the
// capture says so.
const CaptureMaxHeaderBytes = 16 << 10

// CapturedDelivery is one delivery as it reached the webhook handler.
type CapturedDelivery struct {
	ID         string // random, hex; the name `webhook replay` takes
	InstanceID string // '' when the signature did not verify
	RequestID  string
	Kind       string
	ReceivedAt time.Time
	Verified   bool   // the signature verified: the body is the platform's
	Status     int    // the HTTP status answered
	Outcome    string // the journal's outcome, or "unverified", "failed"
	Size       int    // of the body, in bytes

	// What the sealed column holds.
	URL              string      // the URL it was posted to, as this backend saw it
	Header           http.Header // every header, up to CaptureMaxHeaderBytes
	HeadersTruncated bool        // some headers were dropped to keep within the bound
	Body             []byte
}

// Capture outcomes beside the journal's.
const (
	CaptureUnverified = "unverified" // the signature did not verify; nothing was journaled
	CaptureFailed     = "failed"     // the handler failed (5xx); the platform retries
)

// captureRow is the table's row.
type captureRow struct {
	ID         string `gorm:"primaryKey"`
	InstanceID string
	RequestID  string
	Kind       string
	ReceivedAt time.Time
	Verified   bool
	Status     int
	Outcome    string
	Size       int
	Sealed     string
}

func (captureRow) TableName() string { return "webhook_captures" }

// The sealed part is the URL, the headers and the body in a compact binary form
// (appendCapture): without JSON, the body needs no base64 and no escaping before it is
// sealed, which keeps the capture's cost off a busy webhook path small.
const captureFormat = "c1"

// appendCapture appends the sealed part of c to buf: the format, then the URL, a flags
// byte, the headers (count, then each name with its values) and the body, every string
// after its length as a uvarint.
func appendCapture(buf []byte, c *CapturedDelivery) []byte {
	str := func(s string) {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = append(buf, captureFormat...)
	str(c.URL)
	var flags byte
	if c.HeadersTruncated {
		flags |= 1
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(len(c.Header)))
	for name, values := range c.Header {
		str(name)
		buf = binary.AppendUvarint(buf, uint64(len(values)))
		for _, v := range values {
			str(v)
		}
	}
	return append(buf, c.Body...)
}

// readCapture reads what appendCapture wrote into c.
func readCapture(data []byte, c *CapturedDelivery) error {
	bad := ErrUnsealable
	rest, ok := bytes.CutPrefix(data, []byte(captureFormat))
	if !ok {
		return bad
	}
	uvarint := func() (uint64, bool) {
		n, size := binary.Uvarint(rest)
		if size <= 0 {
			return 0, false
		}
		rest = rest[size:]
		return n, true
	}
	str := func() (string, bool) {
		n, ok := uvarint()
		if !ok || n > uint64(len(rest)) {
			return "", false
		}
		s := string(rest[:n])
		rest = rest[n:]
		return s, true
	}
	if c.URL, ok = str(); !ok || len(rest) == 0 {
		return bad
	}
	c.HeadersTruncated, rest = rest[0]&1 != 0, rest[1:]
	names, ok := uvarint()
	if !ok || names > uint64(len(rest)) {
		return bad
	}
	c.Header = make(http.Header, names)
	for range names {
		name, ok := str()
		if !ok {
			return bad
		}
		count, ok := uvarint()
		if !ok || count > uint64(len(rest)) {
			return bad
		}
		values := make([]string, 0, count)
		for range count {
			v, ok := str()
			if !ok {
				return bad
			}
			values = append(values, v)
		}
		c.Header[name] = values
	}
	c.Body = bytes.Clone(rest)
	return nil
}

// captureAAD binds a sealed capture to its row: a copy onto another row (or another
// instance's, which its erasure would miss) does not open.
func captureAAD(id, instanceID string) string { return "webhook-capture:" + id + ":" + instanceID }

// NewCaptureID returns a new random capture id.
func NewCaptureID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// CaptureHeader copies h, dropping what does not fit within CaptureMaxHeaderBytes (in
// the order of the names, so the same headers are kept each time); it reports whether it
// dropped any.
func CaptureHeader(h http.Header) (http.Header, bool) {
	out := make(http.Header, len(h))
	used, truncated := 0, false
	for name, values := range h {
		for _, v := range values {
			if used+len(name)+len(v) > CaptureMaxHeaderBytes {
				truncated = true
				continue
			}
			used += len(name) + len(v)
			out[name] = append(out[name], v)
		}
	}
	return out, truncated
}

// sealCapture seals what a capture holds, bound to its row.
func (s *Store) sealCapture(c *CapturedDelivery) (captureRow, error) {
	plain := appendCapture(make([]byte, 0, len(c.Body)+len(c.URL)+512), c)
	sealed, err := s.keys.Seal(Secret(plain), captureAAD(c.ID, c.InstanceID))
	if err != nil {
		return captureRow{}, err
	}
	return captureRow{
		ID: c.ID, InstanceID: c.InstanceID, RequestID: c.RequestID, Kind: c.Kind, ReceivedAt: c.ReceivedAt.UTC(),
		Verified: c.Verified, Status: c.Status, Outcome: c.Outcome, Size: c.Size, Sealed: sealed,
	}, nil
}

// SaveCaptures stores captured deliveries, in one statement. A capture without an id gets
// a new one.
func (s *Store) SaveCaptures(ctx context.Context, captures []CapturedDelivery) error {
	if len(captures) == 0 {
		return nil
	}
	rows := make([]captureRow, len(captures))
	for i := range captures {
		if captures[i].ID == "" {
			captures[i].ID = NewCaptureID()
		}
		if captures[i].ReceivedAt.IsZero() {
			captures[i].ReceivedAt = s.now()
		}
		var err error
		if rows[i], err = s.sealCapture(&captures[i]); err != nil {
			return fmt.Errorf("seal captured delivery: %w", err)
		}
	}
	if err := s.db.WithContext(ctx).Create(&rows).Error; err != nil {
		return fmt.Errorf("store captured deliveries: %w", translate(err))
	}
	return nil
}

// CapturedDelivery opens one captured delivery; ErrNotFound when there is none with the id.
func (s *Store) CapturedDelivery(ctx context.Context, id string) (*CapturedDelivery, error) {
	var row captureRow
	if err := s.db.WithContext(ctx).Take(&row, "id = ?", id).Error; err != nil {
		if err = translate(err); errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("load captured delivery: %w", err)
	}
	plain, err := s.keys.Open(row.Sealed, captureAAD(row.ID, row.InstanceID))
	if err != nil {
		return nil, fmt.Errorf("open captured delivery %s: %w", row.ID, err)
	}
	c := &CapturedDelivery{
		ID: row.ID, InstanceID: row.InstanceID, RequestID: row.RequestID, Kind: row.Kind, ReceivedAt: row.ReceivedAt.UTC(),
		Verified: row.Verified, Status: row.Status, Outcome: row.Outcome, Size: row.Size,
	}
	if err := readCapture([]byte(plain.Reveal()), c); err != nil {
		return nil, fmt.Errorf("open captured delivery %s: %w", row.ID, err)
	}
	return c, nil
}

// CaptureRef names the capture of a journaled delivery.
type CaptureRef struct {
	ID         string
	InstanceID string
	RequestID  string
	ReceivedAt time.Time
}

// CapturesOf lists the captures of the deliveries with the given request ids (of
// verified deliveries only: only those are journaled), without opening them.
func (s *Store) CapturesOf(ctx context.Context, requestIDs []string) ([]CaptureRef, error) {
	var out []CaptureRef
	for start := 0; start < len(requestIDs); start += 500 {
		var rows []captureRow
		err := s.db.WithContext(ctx).Select("id", "instance_id", "request_id", "received_at").
			Where("verified AND request_id IN ?", requestIDs[start:min(start+500, len(requestIDs))]).Find(&rows).Error
		if err != nil {
			return nil, fmt.Errorf("list captured deliveries: %w", translate(err))
		}
		for _, r := range rows {
			out = append(out, CaptureRef{ID: r.ID, InstanceID: r.InstanceID, RequestID: r.RequestID, ReceivedAt: r.ReceivedAt.UTC()})
		}
	}
	return out, nil
}

// PruneCaptures deletes captured deliveries received before the cutoff and says how many.
func (s *Store) PruneCaptures(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.pruneReceivedBefore(ctx, &captureRow{}, before, pruneChunk/10)
	if err != nil {
		return n, fmt.Errorf("prune captured deliveries: %w", err)
	}
	return n, nil
}

// rekeyCaptures seals captured deliveries again with the first key, swapping a value only
// while it is still the one read.
func (s *Store) rekeyCaptures(ctx context.Context, stats *RekeyStats, first bool) error {
	lastID := ""
	for {
		var batch []captureRow
		err := s.db.WithContext(ctx).Select("id", "instance_id", "sealed").
			Where("id > ?", lastID).Order("id").Limit(200).Find(&batch).Error
		if err != nil {
			return fmt.Errorf("rekey: list captured deliveries: %w", translate(err))
		}
		if len(batch) == 0 {
			return nil
		}
		for _, c := range batch {
			lastID = c.ID
			if s.keys.SealedWithCurrentKey(c.Sealed) {
				if first {
					stats.Current++
				}
				continue
			}
			aad := captureAAD(c.ID, c.InstanceID)
			plain, err := s.keys.Open(c.Sealed, aad)
			if err != nil {
				return fmt.Errorf("rekey: captured delivery %s: %w", c.ID, err)
			}
			sealed, err := s.keys.Seal(plain, aad)
			if err != nil {
				return fmt.Errorf("rekey: captured delivery %s: %w", c.ID, err)
			}
			res := s.db.WithContext(ctx).Model(&captureRow{}).Where("id = ? AND sealed = ?", c.ID, c.Sealed).UpdateColumn("sealed", sealed)
			if res.Error != nil {
				return fmt.Errorf("rekey: captured delivery %s: %w", c.ID, translate(res.Error))
			}
			if res.RowsAffected == 1 {
				stats.Resealed++
			}
			// 0: pruned meanwhile; captures are never rewritten otherwise.
		}
	}
}

// CaptureQueue bounds the captures waiting to be written: a recorder that falls behind
// drops new ones rather than hold the webhook path or grow without end.
const CaptureQueue = 1024

// CaptureQueueBytes bounds the bytes of bodies and headers waiting to be written, so that
// a queue of large deliveries holds at most this much memory.
const CaptureQueueBytes = 8 << 20

// capturePause is how long the recorder rests after each write, as a multiple of the
// time the write took: sealing and writing captures then takes at most a tenth of one
// processor and of the database's write time, however many deliveries arrive. Under a
// burst the queue fills and captures are dropped; the deliveries themselves never wait.
const capturePause = 9

// captureBatch bounds the captures written in one statement.
const captureBatch = 256

// CaptureRecorder writes captured deliveries in the background, in batches, so that
// capturing costs a delivery only a copy of its headers and a channel send: the sealing
// and the write happen off the webhook path. When its queue is full (CaptureQueue
// captures or CaptureQueueBytes) it drops captures, and counts them, instead of waiting.
type CaptureRecorder struct {
	store   *Store
	logger  *slog.Logger
	queue   chan captureItem
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
	queued  atomic.Int64 // bytes of the captures queued (captureBytes)
}

// captureBytes is what a capture holds in memory, roughly: its body and headers.
func captureBytes(c *CapturedDelivery) int64 {
	n := len(c.Body) + len(c.URL)
	for name, values := range c.Header {
		for _, v := range values {
			n += len(name) + len(v)
		}
	}
	return int64(n)
}

// captureItem is a capture to write, or (flushed set) a request to say when everything
// queued before it is written.
type captureItem struct {
	capture CapturedDelivery
	flushed chan struct{}
}

// NewCaptureRecorder starts a recorder on the store; Close stops it.
func (s *Store) NewCaptureRecorder(logger *slog.Logger) *CaptureRecorder {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &CaptureRecorder{store: s, logger: logger, queue: make(chan captureItem, CaptureQueue), done: make(chan struct{})}
	go r.run()
	return r
}

// Record queues a capture and reports whether it was queued. It never waits.
func (r *CaptureRecorder) Record(c CapturedDelivery) bool {
	size := captureBytes(&c)
	if r.queued.Add(size) > CaptureQueueBytes {
		r.queued.Add(-size)
		r.drop()
		return false
	}
	select {
	case r.queue <- captureItem{capture: c}:
		return true
	default:
		r.queued.Add(-size)
		r.drop()
		return false
	}
}

// drop counts a capture dropped, and says so in the log the first time.
func (r *CaptureRecorder) drop() {
	if r.dropped.Add(1) == 1 {
		r.logger.Warn("captured deliveries dropped: the recorder falls behind")
	}
}

// Dropped says how many captures were dropped because the queue was full.
func (r *CaptureRecorder) Dropped() int64 { return r.dropped.Load() }

// Flush waits until every capture queued before it is written (or ctx ends).
func (r *CaptureRecorder) Flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case r.queue <- captureItem{flushed: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close writes what is queued and stops the recorder. Record must not be called after.
func (r *CaptureRecorder) Close() {
	r.once.Do(func() { close(r.queue) })
	<-r.done
}

func (r *CaptureRecorder) run() {
	defer close(r.done)
	batch := make([]CapturedDelivery, 0, captureBatch)
	var waiting []chan struct{}
	write := func() {
		if len(batch) > 0 {
			start := time.Now()
			defer func() { time.Sleep(capturePause * time.Since(start)) }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := r.store.SaveCaptures(ctx, batch); err != nil {
				r.logger.Warn("store captured deliveries", "count", len(batch), "error", err.Error())
			}
			cancel()
			for i := range batch {
				r.queued.Add(-captureBytes(&batch[i]))
			}
			batch = batch[:0]
		}
		for _, w := range waiting {
			close(w)
		}
		waiting = waiting[:0]
	}
	for item := range r.queue {
		r.take(item, &batch, &waiting)
		// Whatever else is queued already goes in the same statement.
	more:
		for len(batch) < captureBatch {
			select {
			case next, ok := <-r.queue:
				if !ok {
					break more
				}
				r.take(next, &batch, &waiting)
			default:
				break more
			}
		}
		write()
	}
	write()
}

func (r *CaptureRecorder) take(item captureItem, batch *[]CapturedDelivery, waiting *[]chan struct{}) {
	if item.flushed != nil {
		*waiting = append(*waiting, item.flushed)
		return
	}
	*batch = append(*batch, item.capture)
}
