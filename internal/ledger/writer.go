package ledger

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// WriterOptions tune a Writer. Zero values take the defaults.
type WriterOptions struct {
	// FlushInterval between writes to the store. Default 1s. It bounds what a
	// hard kill loses.
	FlushInterval time.Duration
	// MaxBuffered events may wait in memory for a failing store before they
	// are spooled. Default 10000.
	MaxBuffered int
	// SpoolAfter is the longest events wait in memory for a failing store
	// before they are spooled. Default 5s.
	SpoolAfter time.Duration
	// SpoolPath is the spool file. Empty disables spooling: events then wait
	// in memory, without bound, until the store is back (tests only).
	SpoolPath string
	// Log receives flush failures and spool activity. Default: discard.
	Log *slog.Logger
	// Now is the clock (dirty-day detection, backoff). Default time.Now.
	Now func() time.Time
}

// Stats are a Writer's counters since it was made.
type Stats struct {
	Written      int64 // events written to UsageEvents (a replayed event counts again)
	Transactions int64 // entity group transactions that succeeded
	IndexWrites  int64 // UsageIndex upserts
	DirtyWrites  int64 // UsageDirty upserts
	Failures     int64 // failed write attempts
	Spooled      int64 // events appended to the spool
	Replayed     int64 // events written back from the spool
	Rejected     int64 // events the store refused as invalid (kept in <spool>.rejected)
	Buffered     int64 // events in memory now
	Duplicates   int64 // events found stored already and not written again
}

// Writer buffers events and writes them to UsageEvents in entity group
// transactions. Record is safe for concurrent use and never blocks on I/O.
// Run flushes every FlushInterval, and as soon as a commit's worth is
// waiting: a batch of 100, or batchesPerCommit batches for a table that
// commits several at once (the embedded store). Close writes or spools
// what is left.
type Writer struct {
	t      Tables
	o      WriterOptions
	log    *slog.Logger
	kick   chan struct{}
	kickAt int // pending events that start a flush early

	mu      sync.Mutex
	pending []Event
	closed  bool

	// Owned by whoever holds flushMu.
	flushMu      sync.Mutex
	held         []Event // failed writes waiting for a retry
	failingSince time.Time
	backoff      time.Duration
	nextTry      time.Time
	indexed      map[string]bool // event partitions whose UsageIndex row exists
	dirty        map[string]bool // past days still to mark in UsageDirty
	spool        spool
	instance     string                   // this Writer's partial rows (partial.go)
	partials     map[string]*partialState // pk\x00rk → what is stored
	partialsFrom string                   // days before it were forgotten

	written, txns, indexWrites, dirtyWrites, failures, spooled, replayed, rejected, buffered, duplicates atomic.Int64
}

// NewWriter returns a Writer on the ledger tables. It starts nothing.
func NewWriter(t Tables, o WriterOptions) *Writer {
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 10000
	}
	if o.SpoolAfter <= 0 {
		o.SpoolAfter = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kickAt := store.MaxBatchOps
	if _, ok := t.Events.(multiBatcher); ok {
		kickAt *= batchesPerCommit
	}
	return &Writer{t: t, o: o, log: log, kick: make(chan struct{}, 1), kickAt: kickAt,
		indexed: map[string]bool{}, dirty: map[string]bool{}, spool: spool{path: o.SpoolPath},
		instance: newInstanceID(), partials: map[string]*partialState{}}
}

// Record buffers e for the next flush. It never blocks on I/O and never
// drops e; after Close it spools e at once.
func (w *Writer) Record(ctx context.Context, e Event) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.flushMu.Lock()
		defer w.flushMu.Unlock()
		w.buffered.Add(1)
		w.held = append(w.held, e)
		w.toSpool(ctx, "record after close")
		return
	}
	w.pending = append(w.pending, e)
	n := len(w.pending)
	w.mu.Unlock()
	w.buffered.Add(1)
	if n%w.kickAt == 0 {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

// Run flushes every FlushInterval, and early when a batch fills, until ctx
// ends. It returns nil then; call Close to write what is left.
func (w *Writer) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.kick:
		}
		w.flush(ctx, false)
	}
}

// Flush writes what is buffered now (tests, the CLI). Failures are kept for
// the next flush or spooled as usual.
func (w *Writer) Flush(ctx context.Context) error {
	return w.flush(ctx, false)
}

// Close writes everything buffered; what the store does not take before ctx
// ends is spooled. It returns the write error when the store did not take
// everything (the events are then in the spool, replayed by the next
// Writer on it), joined with the spool's error when they could not be
// spooled either (they then stay in memory). Record after Close spools.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	return w.flush(ctx, true)
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{Written: w.written.Load(), Transactions: w.txns.Load(), IndexWrites: w.indexWrites.Load(),
		DirtyWrites: w.dirtyWrites.Load(), Failures: w.failures.Load(), Spooled: w.spooled.Load(),
		Replayed: w.replayed.Load(), Rejected: w.rejected.Load(), Buffered: w.buffered.Load(),
		Duplicates: w.duplicates.Load()}
}

func (w *Writer) flush(ctx context.Context, final bool) error {
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	w.mu.Lock()
	taken := w.pending
	w.pending = nil
	w.mu.Unlock()
	w.held = append(w.held, taken...)
	if cap(taken) <= 4*w.kickAt {
		// Hand the buffer back to Record rather than grow a new one from
		// nothing every flush (issue 17).
		clear(taken)
		w.mu.Lock()
		if w.pending == nil {
			w.pending = taken[:0]
		}
		w.mu.Unlock()
	}

	now := w.o.Now()
	spoolWaiting := w.spool.path != "" && w.spool.size() > 0
	if len(w.held) == 0 && len(w.dirty) == 0 && !spoolWaiting {
		return nil
	}
	if !final && now.Before(w.nextTry) {
		return w.maybeSpool(ctx, now, false)
	}
	rest, err := w.write(ctx, w.held)
	if err == nil {
		err = w.markDirty(ctx)
	}
	w.held = rest
	w.buffered.Store(int64(len(w.held)) + w.pendingLen())
	if err != nil {
		w.failures.Add(1)
		if w.failingSince.IsZero() {
			w.failingSince = now
		}
		w.backoff = min(max(2*w.backoff, 250*time.Millisecond), 30*time.Second)
		w.nextTry = now.Add(w.backoff)
		w.log.Warn("usage flush failed; will retry", "error", err, "held", len(w.held), "retry_in", w.backoff)
		return errors.Join(err, w.maybeSpool(ctx, now, final))
	}
	w.failingSince, w.backoff, w.nextTry = time.Time{}, 0, time.Time{}
	if spoolWaiting {
		n, bad, err := w.spool.replay(500, func(evs []Event) error {
			rest, err := w.write(ctx, evs)
			if err == nil {
				err = w.markDirty(ctx)
			}
			_ = rest // the whole spool is replayed again on failure
			return err
		})
		w.replayed.Add(int64(n))
		if bad > 0 {
			w.log.Error("usage spool: skipped lines that do not decode", "path", w.spool.path, "lines", bad)
		}
		if err != nil {
			w.failures.Add(1)
			w.log.Warn("usage spool replay failed; will retry", "error", err, "replayed", n)
			return err
		}
		if n > 0 {
			w.log.Info("usage spool replayed", "events", n)
		}
	}
	return nil
}

func (w *Writer) pendingLen() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(len(w.pending))
}

// maybeSpool moves held events to the spool when the store has been failing
// for SpoolAfter, when MaxBuffered events are held, or on Close.
func (w *Writer) maybeSpool(ctx context.Context, now time.Time, final bool) error {
	if len(w.held) == 0 || w.spool.path == "" {
		return nil
	}
	switch {
	case final:
		return w.toSpool(ctx, "close")
	case len(w.held) >= w.o.MaxBuffered:
		return w.toSpool(ctx, "memory bound reached")
	case !w.failingSince.IsZero() && now.Sub(w.failingSince) >= w.o.SpoolAfter:
		return w.toSpool(ctx, "store failing for "+now.Sub(w.failingSince).Round(time.Millisecond).String())
	}
	return nil
}

func (w *Writer) toSpool(ctx context.Context, why string) error {
	if w.spool.path == "" {
		return nil
	}
	if err := w.spool.append(w.held); err != nil {
		w.log.ErrorContext(ctx, "usage spool write failed; events stay in memory", "error", err, "events", len(w.held))
		return err
	}
	w.log.WarnContext(ctx, "usage events spooled", "events", len(w.held), "reason", why, "path", w.spool.path)
	w.spooled.Add(int64(len(w.held)))
	w.buffered.Add(-int64(len(w.held)))
	w.held = nil
	return nil
}

// multiBatcher is an optional ability of a table (the embedded store has
// it): several batches committed at once, with one error per batch, each
// what Batch would have returned for it. Part of a commit's cost (fsyncs,
// rewritten branch pages) does not depend on its size, so fewer, larger
// commits cost less per row there.
type multiBatcher interface {
	BatchAll(ctx context.Context, batches [][]store.Op) []error
}

// batchesPerCommit is how many entity group transactions go to a
// multiBatcher in one call: up to 200 rows, and the Writer flushes early
// when that many are waiting. With random row keys each row dirties its own
// 4 KiB page, which the commit holds in memory: in BenchmarkBatchUsageRows
// (internal/store/embedded) 2 per commit cost 5-15% less per row than 1,
// and 5 about 20% less, but 5 added ~8 MiB to the gateway's peak RSS under
// loadbench. Issue 17 tried 5 again (the gateway's own request ids are
// time-ordered, so its rows are appended): TestGatewayLedgerRSS, which
// records random ids, the worst case, then peaked 41/52/58 MiB above idle
// over 300,000 events against 29/32/38 MiB with 2, and over 64 MiB at
// 1,000,000; the gain under load was within the harness's noise.
const batchesPerCommit = 2

// errNotTried marks batches left out after an earlier one failed.
var errNotTried = errors.New("not tried after an earlier failure")

// write upserts evs, one partition at a time, in entity group transactions
// of at most 100 rows under the size limit (batchesPerCommit of them per
// call to a multiBatcher). It stops at the first failure and returns the
// events not known to be written.
func (w *Writer) write(ctx context.Context, evs []Event) (rest []Event, err error) {
	parts, order := group(evs)
	today := Day(w.o.Now())
	per := 1
	if _, ok := w.t.Events.(multiBatcher); ok {
		per = batchesPerCommit
	}
	var queued []batch
	var again []Event // events of batches refused for a duplicate, less the duplicates
	defer func() {
		if err != nil {
			rest = append(rest, again...)
		}
	}()
	// commit writes the queued batches; failed ones go to rest.
	commit := func() error {
		if len(queued) == 0 {
			return nil
		}
		var first error
		for i, err := range w.batches(ctx, queued) {
			b := queued[i]
			switch {
			case err == nil:
				w.txns.Add(1)
				w.written.Add(int64(len(b.evs)))
				w.committed(b)
			case errors.Is(err, store.ErrInvalid):
				// Retrying cannot help; keep the rows on disk for a human.
				w.reject(ctx, b.evs, err)
				continue
			case errors.Is(err, store.ErrExists):
				// Some events are stored already (an earlier attempt that
				// committed though it reported a failure, or a spool
				// replay): they are counted in the partial rows that
				// committed with them. Write the others again.
				left, dups, gerr := w.dropStored(ctx, b.evs)
				if gerr == nil && dups > 0 {
					w.duplicates.Add(int64(dups))
					again = append(again, left...)
					continue
				}
				err = errors.Join(err, gerr)
				fallthrough
			default:
				w.uncertain(b)
				rest = append(rest, b.evs...)
				if first == nil {
					first = fmt.Errorf("usage events %s: %w", b.pk, err)
				}
				continue
			}
			if d := Day(b.evs[0].Time); d < today {
				w.dirty[d] = true
			}
		}
		clear(queued) // drop the rows
		queued = queued[:0]
		return first
	}
	for pi, pk := range order {
		pevs := parts[pk]
		if !w.indexed[pk] {
			day, team := pevs[0].indexKeys()
			// Insert: a row an older gateway wrote (without Partials) keeps
			// saying its partition has events not in any partial row, so
			// the rollup reads that partition's events.
			_, err := w.t.Index.Insert(ctx, store.Entity{PartitionKey: day, RowKey: team,
				Props: map[string]any{"Team": pevs[0].Team, "Partials": true}})
			if errors.Is(err, store.ErrExists) {
				err = nil
			}
			if err != nil {
				err = errors.Join(commit(), fmt.Errorf("usage index %s: %w", pk, err))
				for _, p := range order[pi:] {
					rest = append(rest, parts[p]...)
				}
				return rest, err
			}
			w.indexWrites.Add(1)
			w.indexed[pk] = true
		}
		for b := range chunks(pk, pevs) {
			if err := w.addPartials(ctx, &b, len(queued)); err != nil {
				err = errors.Join(commit(), err)
				rest = append(rest, pevs[b.end-len(b.evs):]...)
				for _, p := range order[pi+1:] {
					rest = append(rest, parts[p]...)
				}
				return rest, err
			}
			if queued = append(queued, b); len(queued) < per {
				continue
			}
			if err := commit(); err != nil {
				rest = append(rest, pevs[b.end:]...)
				for _, p := range order[pi+1:] {
					rest = append(rest, parts[p]...)
				}
				return rest, err
			}
		}
	}
	if err := commit(); err != nil {
		return rest, err
	}
	if len(w.indexed) > 10000 {
		clear(w.indexed) // a long-running process: forget old days
	}
	w.forgetOldPartials(Day(w.o.Now().AddDate(0, 0, -2)))
	if len(again) > 0 {
		// Each round drops at least one duplicate, so this ends.
		evs := again
		again = nil
		return w.write(ctx, evs)
	}
	return nil, nil
}

// batches writes bs, in one call when the table is a multiBatcher, and
// returns one error per batch.
func (w *Writer) batches(ctx context.Context, bs []batch) []error {
	all := make([][]store.Op, len(bs))
	for i, b := range bs {
		all[i] = b.ops
	}
	if mb, ok := w.t.Events.(multiBatcher); ok {
		return mb.BatchAll(ctx, all)
	}
	errs := make([]error, len(all))
	for i, ops := range all {
		if errs[i] = w.t.Events.Batch(ctx, ops); errs[i] != nil && !errors.Is(errs[i], store.ErrInvalid) {
			for j := i + 1; j < len(errs); j++ {
				errs[j] = errNotTried
			}
			break
		}
	}
	return errs
}

// reject appends rows the store refuses as invalid to <spool>.rejected.
func (w *Writer) reject(ctx context.Context, evs []Event, err error) {
	w.rejected.Add(int64(len(evs)))
	w.log.ErrorContext(ctx, "usage events refused by the store as invalid; kept in the rejected file", "error", err, "events", len(evs))
	if w.spool.path != "" {
		if err := (spool{path: w.spool.path + ".rejected"}).append(evs); err != nil {
			w.log.ErrorContext(ctx, "usage rejected file write failed", "error", err)
		}
	}
}

// markDirty records past days that received events, for the rollup.
func (w *Writer) markDirty(ctx context.Context) error {
	days := make([]string, 0, len(w.dirty))
	for d := range w.dirty {
		days = append(days, d)
	}
	sort.Strings(days)
	for _, d := range days {
		if _, err := w.t.Dirty.Upsert(ctx, store.Entity{PartitionKey: dirtyPK, RowKey: d,
			Props: map[string]any{"MarkedAt": w.o.Now().UTC()}}); err != nil {
			return fmt.Errorf("usage dirty mark %s: %w", d, err)
		}
		w.dirtyWrites.Add(1)
		delete(w.dirty, d)
	}
	return nil
}

const dirtyPK = "dirty"

// indexKeys are the UsageIndex keys of e's partition.
func (e Event) indexKeys() (day, team string) { return Day(e.Time), EncodeKey(e.Team) }

// group splits evs by partition (sorted keys), keeping the last event of
// each request id.
func group(evs []Event) (map[string][]Event, []string) {
	parts := map[string][]Event{}
	type row struct{ pk, rk string }
	pos := make(map[row]int, len(evs)) // → index in parts[pk]
	var pks partitionKeys
	for _, e := range evs {
		pk := pks.of(e)
		k := row{pk, e.RowKey()}
		if i, ok := pos[k]; ok {
			parts[pk][i] = e
			continue
		}
		pos[k] = len(parts[pk])
		parts[pk] = append(parts[pk], e)
	}
	order := make([]string, 0, len(parts))
	for pk := range parts {
		order = append(order, pk)
	}
	sort.Strings(order)
	return parts, order
}

// partitionKeys gives events their PartitionKey, reusing the last one
// while the day and team stay the same (most of a flush): no string is
// built per event.
type partitionKeys struct {
	y, d int
	m    time.Month
	team string
	pk   string
}

func (p *partitionKeys) of(e Event) string {
	y, m, d := e.Time.UTC().Date()
	if p.pk == "" || y != p.y || m != p.m || d != p.d || e.Team != p.team {
		p.y, p.m, p.d, p.team, p.pk = y, m, d, e.Team, e.PartitionKey()
	}
	return p.pk
}

// groupKeys memoizes groupKey per (app, model, class): one string per
// group rather than per event.
type groupKeys map[struct {
	app, model string
	class      Class
}]string

func (g groupKeys) of(e Event) string {
	k := struct {
		app, model string
		class      Class
	}{e.App, e.Model, e.Class}
	gk, ok := g[k]
	if !ok {
		gk = groupKey(e.App, e.Model, e.Class)
		g[k] = gk
	}
	return gk
}

// batchEnvelope and batchOpOverhead mirror store/rules.Batch's estimate.
const (
	batchEnvelope   = 1024
	batchOpOverhead = 1024
)

// batch is one entity group transaction: consecutive events of partition pk
// (ending before index end of the partition's events) and their rows.
type batch struct {
	pk   string
	evs  []Event
	end  int
	ops  []store.Op
	next map[string]DailyRow // the partial rows written with it (addPartials)
}

// chunks splits one partition's events into transactions of at most
// store.MaxBatchOps rows and under store.MaxBatchBytes. It builds each row
// once, when its transaction is next, so a large flush never holds all its
// rows at once.
func chunks(pk string, evs []Event) iter.Seq[batch] {
	return func(yield func(batch) bool) {
		start, size := 0, batchEnvelope
		groups := map[string]bool{} // partial rows the transaction will carry
		gks, bx := groupKeys{}, boxes{}
		ops := make([]store.Op, 0, min(len(evs), store.MaxBatchOps))
		for i, e := range evs {
			en := e.entityIn(pk, bx)
			n := batchOpOverhead + rules.WireSize(en, true)
			gk := gks.of(e)
			// A partial row: the group's columns plus about 300 bytes.
			pn := batchOpOverhead + 300 + 2*(len(e.Team)+len(e.App)+len(e.Model)+len(e.Class)+len(gk))
			newGroup := !groups[gk]
			rows := i - start + len(groups)
			if newGroup {
				rows, n = rows+1, n+pn
			}
			if i > start && (rows >= store.MaxBatchOps || size+n >= store.MaxBatchBytes) {
				if !yield(batch{pk: pk, evs: evs[start:i], end: i, ops: ops}) {
					return
				}
				start, size = i, batchEnvelope
				if !newGroup {
					n += pn
				}
				clear(groups)
				ops = make([]store.Op, 0, min(len(evs)-i, store.MaxBatchOps))
			}
			groups[gk] = true
			size += n
			ops = append(ops, store.Op{Kind: store.OpInsert, Entity: en})
		}
		if start < len(evs) {
			yield(batch{pk: pk, evs: evs[start:], end: len(evs), ops: ops})
		}
	}
}
