package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/blob"
)

// appender is the blob store's append interface (internal/blob's Azure and
// Dir have it).
type appender interface {
	AppendAt(ctx context.Context, name string, data []byte, at int64) (blocks int, err error)
}

// Options tune a Writer. Zero values take the defaults.
type Options struct {
	// FlushInterval between appends. Default 1s.
	FlushInterval time.Duration
	// MaxBuffered records may wait in memory for a failing store before
	// they are spooled. Default 2000.
	MaxBuffered int
	// SpoolAfter is the longest records wait in memory for a failing store
	// before they are spooled. Default 5s.
	SpoolAfter time.Duration
	// SpoolPath is the spool file. Empty keeps records in memory until the
	// store is back (tests only).
	SpoolPath string
	// Redact is applied to every record before it is written (nil: none).
	Redact *Redactor
	// Log receives failures and spool activity (never content).
	Log *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Instance names this writer's blobs. Default: random.
	Instance string
	// maxBlocks is the block count at which a blob is rolled, and
	// blockSize the largest append (tests; defaults from internal/blob).
	maxBlocks, blockSize int
}

// Stats are a Writer's counters.
type Stats struct {
	Written   int64 // records appended
	Blocks    int64 // blocks appended
	Landed    int64 // retried blocks found appended already (not written twice)
	Relocated int64 // blocks moved to a new blob after a position conflict
	Failures  int64 // failed flushes
	Spooled   int64 // records moved to the spool
	Replayed  int64 // records appended from the spool
	Buffered  int64 // records in memory now
	Dropped   int64 // records that could not be encoded
}

// block is data for one append: whole records (the last one may continue
// in the next block when a record is larger than blob.MaxAppendBlock).
type block struct {
	Key     string `json:"key"` // day/team
	Name    string `json:"name"`
	At      int64  `json:"at"`
	Data    []byte `json:"data"`
	Records int    `json:"records"` // records that end in this block
	// tried is set once an append was attempted: the block may have
	// landed, so it must keep its exact bytes.
	tried bool
}

// blobState is where the next block of a day/team goes.
type blobState struct {
	seq    int
	name   string
	size   int64 // including queued blocks
	blocks int
}

// Writer appends audit records to day/team append blobs off the request
// path. Record is safe for concurrent use and never blocks on I/O.
type Writer struct {
	st  appender
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	pending []Record
	closed  bool

	flushMu      sync.Mutex // owns what follows
	queue        []block
	blobs        map[string]*blobState
	failingSince time.Time
	backoff      time.Duration
	nextTry      time.Time
	spool        spool
	replayFrom   int64 // spool offset this process replayed up to

	written, blocks, landed, relocated, failures, spooled, replayed, buffered, dropped atomic.Int64
}

// NewWriter returns a writer on the store. It starts nothing.
func NewWriter(st appender, o Options) *Writer {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 2000
	}
	if o.SpoolAfter <= 0 {
		o.SpoolAfter = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Instance == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.Instance = hex.EncodeToString(b[:])
	}
	if o.blockSize <= 0 || o.blockSize > blob.MaxAppendBlock {
		o.blockSize = blob.MaxAppendBlock
	}
	if o.maxBlocks <= 0 {
		o.maxBlocks = blob.MaxAppendBlocks - 10
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{st: st, o: o, log: log, blobs: map[string]*blobState{}, spool: spool{path: o.SpoolPath}}
}

// Record buffers r for the next flush. It never blocks on I/O and never
// drops r; after Close it is spooled at once.
func (w *Writer) Record(ctx context.Context, r Record) {
	w.buffered.Add(1)
	w.mu.Lock()
	if !w.closed {
		w.pending = append(w.pending, r)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.encode([]Record{r})
	w.toSpool(ctx, "record after close")
}

// Run flushes every FlushInterval until ctx ends; call Close after it.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = w.flush(ctx, false)
		}
	}
}

// Flush appends what is buffered now (and replays the spool).
func (w *Writer) Flush(ctx context.Context) error { return w.flush(ctx, false) }

// Close appends everything buffered; what the store does not take before
// ctx ends is spooled. Record after Close spools.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return w.flush(ctx, true)
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Blocks: w.blocks.Load(), Landed: w.landed.Load(), Relocated: w.relocated.Load(),
		Failures: w.failures.Load(), Spooled: w.spooled.Load(), Replayed: w.replayed.Load(), Buffered: w.buffered.Load(),
		Dropped: w.dropped.Load()}
}

func (w *Writer) flush(ctx context.Context, final bool) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	taken := w.pending
	w.pending = nil
	w.mu.Unlock()
	w.encode(taken)

	now := w.o.Now()
	spoolWaiting := w.spool.path != "" && w.spool.size() > 0
	if len(w.queue) == 0 && !spoolWaiting {
		return nil
	}
	if !final && now.Before(w.nextTry) {
		return w.maybeSpool(ctx, now, false)
	}
	err := w.writeQueue(ctx)
	if err == nil && spoolWaiting {
		err = w.replay(ctx)
	}
	if err != nil {
		w.failures.Add(1)
		if w.failingSince.IsZero() {
			w.failingSince = now
		}
		w.backoff = min(max(2*w.backoff, 250*time.Millisecond), 30*time.Second)
		w.nextTry = now.Add(w.backoff)
		w.log.Warn("audit flush failed; will retry", "error", err, "blocks", len(w.queue), "retry_in", w.backoff)
		return errors.Join(err, w.maybeSpool(ctx, now, final))
	}
	w.failingSince, w.backoff, w.nextTry = time.Time{}, 0, time.Time{}
	return nil
}

// encode redacts records and cuts them into positioned blocks.
func (w *Writer) encode(recs []Record) {
	for i := range recs {
		r := &recs[i]
		w.o.Redact.redact(r)
		line, err := r.line()
		if err != nil {
			w.dropped.Add(1)
			w.buffered.Add(-1)
			w.log.Error("audit record not encodable; dropped", "request_id", r.RequestID, "error", err)
			continue
		}
		key := Day(r.Time) + "/" + TeamSegment(r.Team)
		for len(line) > 0 {
			n := min(len(line), w.o.blockSize)
			last := n == len(line)
			// Join a small record to the previous block of its blob when
			// it fits (fewer appends, fewer blocks).
			if q := len(w.queue); q > 0 && w.queue[q-1].Key == key && len(w.queue[q-1].Data)+n <= w.o.blockSize &&
				w.queue[q-1].Records > 0 && !w.queue[q-1].tried && w.blobs[key].name == w.queue[q-1].Name {
				b := &w.queue[q-1]
				b.Data = append(b.Data, line[:n]...)
				w.blobs[key].size += int64(n)
				if last {
					b.Records++
				}
			} else {
				w.queue = append(w.queue, w.place(key, line[:n], last))
			}
			line = line[n:]
		}
	}
}

// place positions data at the end of the key's current blob.
func (w *Writer) place(key string, data []byte, last bool) block {
	st := w.blobs[key]
	if st == nil || st.blocks >= w.o.maxBlocks {
		seq := 0
		if st != nil {
			seq = st.seq + 1
		}
		st = &blobState{seq: seq, name: fmt.Sprintf("%s/%s-%d.jsonl", key, w.o.Instance, seq)}
		w.blobs[key] = st
	}
	b := block{Key: key, Name: st.name, At: st.size, Data: append([]byte(nil), data...)}
	if last {
		b.Records = 1
	}
	st.size += int64(len(data))
	st.blocks++
	return b
}

// roll starts a new blob for the key: later blocks go there.
func (w *Writer) roll(key string) {
	if st := w.blobs[key]; st != nil {
		w.blobs[key] = &blobState{seq: st.seq + 1, name: fmt.Sprintf("%s/%s-%d.jsonl", key, w.o.Instance, st.seq+1)}
	}
}

// writeQueue appends the queued blocks in order; it stops at the first
// failure and keeps the rest.
func (w *Writer) writeQueue(ctx context.Context) error {
	for len(w.queue) > 0 {
		w.queue[0].tried = true
		b := w.queue[0]
		ok, err := w.append(ctx, b)
		if err != nil {
			return err
		}
		if !ok { // the blob is not where we left it: move the block on
			w.relocated.Add(1)
			w.log.Error("audit blob has an unexpected length; moving its blocks to a new blob", "blob", b.Name, "at", b.At)
			moved := []block{}
			rest := w.queue[:0:0]
			for _, q := range w.queue {
				if q.Name == b.Name {
					moved = append(moved, q)
				} else {
					rest = append(rest, q)
				}
			}
			w.roll(b.Key)
			w.queue = rest
			for _, m := range moved {
				nb := w.place(m.Key, m.Data, m.Records > 0)
				nb.Records = m.Records
				w.queue = append(w.queue, nb)
			}
			continue
		}
		w.queue = w.queue[1:]
		w.written.Add(int64(b.Records))
		w.buffered.Add(-int64(b.Records))
	}
	w.queue = nil
	return nil
}

// append writes one block. ok is false when the blob ends before the
// block's position or inside it (a torn write: the caller relocates).
func (w *Writer) append(ctx context.Context, b block) (ok bool, err error) {
	blocks, err := w.st.AppendAt(ctx, b.Name, b.Data, b.At)
	var pe *blob.PositionError
	switch {
	case errors.As(err, &pe) && pe.Size >= b.At+int64(len(b.Data)):
		// An earlier attempt landed (its answer was lost), or a replay of
		// the spool that failed part way wrote it: one writer appends
		// to a blob, in order, so the bytes past the block are later ones.
		w.landed.Add(1)
		return true, nil
	case errors.As(err, &pe) && pe.Size >= 0:
		return false, nil
	case err != nil:
		return false, err
	}
	w.blocks.Add(1)
	if blocks >= w.o.maxBlocks {
		w.roll(b.Key)
	}
	return true, nil
}

// maybeSpool moves the queue to the spool when the store has failed for
// SpoolAfter, when MaxBuffered records wait, or on Close.
func (w *Writer) maybeSpool(ctx context.Context, now time.Time, final bool) error {
	if len(w.queue) == 0 || w.spool.path == "" {
		return nil
	}
	switch {
	case final:
		return w.toSpool(ctx, "close")
	case w.buffered.Load() >= int64(w.o.MaxBuffered):
		return w.toSpool(ctx, "memory bound reached")
	case !w.failingSince.IsZero() && now.Sub(w.failingSince) >= w.o.SpoolAfter:
		return w.toSpool(ctx, "store failing for "+now.Sub(w.failingSince).Round(time.Millisecond).String())
	}
	return nil
}

// toSpool appends the queue (blocks with their blob and position) to the
// spool and starts new blobs for later records.
func (w *Writer) toSpool(ctx context.Context, why string) error {
	if w.spool.path == "" || len(w.queue) == 0 {
		return nil
	}
	if err := w.spool.append(w.queue); err != nil {
		w.log.ErrorContext(ctx, "audit spool write failed; records stay in memory", "error", err, "blocks", len(w.queue))
		return err
	}
	n := 0
	keys := map[string]bool{}
	for _, b := range w.queue {
		n += b.Records
		keys[b.Key] = true
	}
	for k := range keys {
		w.roll(k)
	}
	w.log.WarnContext(ctx, "audit records spooled", "records", n, "reason", why, "path", w.spool.path)
	w.spooled.Add(int64(n))
	w.buffered.Add(-int64(n))
	w.queue = nil
	return nil
}

// replay appends the spooled blocks at their blobs and positions; a block
// whose blob shows it landed is skipped. The file is emptied only when
// every block is in; on an error it is kept whole and replayed again.
func (w *Writer) replay(ctx context.Context) error {
	n, bad, next, err := w.spool.replay(w.replayFrom, func(b block) error {
		ok, err := w.append(ctx, b)
		if err != nil {
			return err
		}
		if !ok {
			// The blob moved on (a torn write): put the block at the end
			// of this writer's blob for its key, now.
			w.relocated.Add(1)
			nb := w.place(b.Key, b.Data, b.Records > 0)
			if ok, err := w.append(ctx, nb); err != nil || !ok {
				return errors.Join(err, fmt.Errorf("audit: relocating a spooled block of %s failed", b.Name))
			}
		}
		return nil
	})
	w.replayFrom = next
	w.replayed.Add(int64(n))
	if bad > 0 {
		w.log.Error("audit spool: skipped lines that do not decode", "path", w.spool.path, "lines", bad)
	}
	if n > 0 && err == nil {
		w.log.Info("audit spool replayed", "records", n)
	}
	return err
}
