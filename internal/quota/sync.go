package quota

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Counters table columns.
const (
	colTokens   = "Tokens"
	colCost     = "CostNanos" // monthly rows: cost in limits.currency, 10⁻⁹ units
	colRequests = "Requests"
	colStart    = "WindowStart"
	// Rate window rows: the count this instance may reach before its next
	// read (its count at its last read plus its share); see syncSubject.
	colCeilTokens   = "CeilTokens"
	colCeilRequests = "CeilRequests"
	colSeen         = "Seen"
)

// instancesPK is the Counters partition of the instance heartbeat rows.
// Subject partitions always contain ':' after their kind, so it cannot clash.
const instancesPK = "instances"

// syncWorkers bounds the subjects synced in parallel (each is one or two
// table round trips of 1-20 ms).
const syncWorkers = 8

// keepWindows is how many ended windows a fully pushed counter is kept for
// (late settlements of long streams land in the window they were admitted in).
const keepWindows = 2

// heartbeatEvery returns the period of the instance heartbeat.
func (l *Limiter) heartbeatEvery() time.Duration { return 10 * l.cfg.SyncInterval.D() }

// Run syncs this instance's counts with the Counters table every
// limits.syncInterval, reloads overrides every limits.overrideTTL and
// keeps the instance heartbeat, until ctx is cancelled. It returns nil on
// cancellation; call Flush afterwards to push what is left.
func (l *Limiter) Run(ctx context.Context) error {
	if err := l.LoadOverrides(ctx); err != nil {
		l.log.WarnContext(ctx, "quota: overrides not loaded; using configured limits", "err", err)
	}
	l.heartbeat(ctx)
	tick := time.NewTicker(l.cfg.SyncInterval.D())
	defer tick.Stop()
	var lastOverrides, lastBeat, lastMonth time.Time
	lastOverrides, lastBeat = l.clock.Now(), l.clock.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := l.clock.Now()
		readMonths := now.Sub(lastMonth) >= l.cfg.MonthSyncInterval.D()
		if readMonths {
			lastMonth = now
		}
		l.sync(ctx, readMonths)
		if now.Sub(lastBeat) >= l.heartbeatEvery() {
			lastBeat = now
			l.heartbeat(ctx)
		}
		if now.Sub(lastOverrides) >= l.cfg.OverrideTTL.D() {
			lastOverrides = now
			if err := l.LoadOverrides(ctx); err != nil {
				l.log.WarnContext(ctx, "quota: overrides not reloaded", "err", err)
			}
		}
	}
}

// LoadOverrides reads the Limits table into the cache now (Run also does it
// every overrideTTL). Call it before serving so the first requests see them.
func (l *Limiter) LoadOverrides(ctx context.Context) error {
	list, err := l.ovTable.List(ctx)
	if err != nil {
		return err
	}
	m := make(map[Subject]Override, len(list))
	for _, so := range list {
		m[so.Subject] = so.Override
	}
	l.overrides.Store(&m)
	return nil
}

// Flush pushes every count not yet in the table (on shutdown, after Run
// returned). It reads nothing.
func (l *Limiter) Flush(ctx context.Context) error {
	work := l.plan(l.clock.Now(), false, false)
	return l.do(ctx, work)
}

// Sync runs one sync round now: push changed counts, read the totals of the
// current windows (and months when readMonths). Run calls it; tests too.
func (l *Limiter) Sync(ctx context.Context, readMonths bool) error {
	return l.sync(ctx, readMonths)
}

// subjectWork is one subject's share of a sync round.
type subjectWork struct {
	subject Subject
	pk      string
	pushes  []*counter // counts changed since the last push
	reads   []*counter
	// release: publish ceilings equal to the counts (Flush: this instance
	// admits no more).
	release bool
}

// pushItem is one row to write: a snapshot of a counter.
type pushItem struct {
	c                        *counter
	tokens, requests, cost   int64
	ceilTokens, ceilRequests int64
	// activates is the read whose share this row publishes: it comes in
	// force once the row is written.
	activates *readView
}

// readView is what one read of a window's rows found.
type readView struct {
	othersTokens, othersRequests, othersCost int64
	othersCeilTokens, othersCeilRequests     int64
	atReadTokens, atReadRequests             int64
	writers                                  int64 // rows with a count, ours included
}

// seen takes in what a read tells at once: the others' counts (the global
// check only gets more exact) and the writer count (a larger one only
// shrinks the share). l.mu must be held.
func (c *counter) seen(v *readView) {
	c.othersTokens, c.othersRequests, c.othersCost = v.othersTokens, v.othersRequests, v.othersCost
	if v.writers > c.writers {
		c.writers = v.writers
	}
}

// apply puts v's share in force. l.mu must be held.
func (c *counter) apply(v *readView) {
	c.othersCeilTokens, c.othersCeilRequests = v.othersCeilTokens, v.othersCeilRequests
	c.atReadTokens, c.atReadRequests = v.atReadTokens, v.atReadRequests
	if c.pending == v {
		c.pending = nil
	}
}

// hasRow reports whether this instance ever wrote a row for c or counted
// anything in it. l.mu must be held.
func (c *counter) hasRow() bool {
	return c.tokens != 0 || c.requests != 0 || c.cost != 0 || c.pushedTokens != 0 || c.pushedRequests != 0 ||
		c.pushedCost != 0 || c.pubCeilTokens != 0 || c.pubCeilRequests != 0
}

// plan snapshots what to push and read, and forgets old counters.
func (l *Limiter) plan(now time.Time, read, readMonths bool) []subjectWork {
	l.mu.Lock()
	defer l.mu.Unlock()
	var work []subjectWork
	for key, st := range l.subjects {
		w := subjectWork{subject: st.subject, pk: st.pk, release: !read}
		for _, list := range []*[]*counter{&st.wins, &st.months} {
			kept := (*list)[:0]
			for _, c := range *list {
				if c.tokens != c.pushedTokens || c.requests != c.pushedRequests || c.cost != c.pushedCost {
					w.pushes = append(w.pushes, c)
				}
				current := !now.Before(c.start) && now.Before(c.end)
				if !current {
					c.pending = nil // a share of a window that is over
				}
				if read && current && (!c.month || readMonths) {
					w.reads = append(w.reads, c)
				}
				grace := keepWindows * l.window
				if c.month {
					grace = 0
				}
				done := c.tokens == c.pushedTokens && c.requests == c.pushedRequests && c.cost == c.pushedCost && c.inflight == 0 && c.pending == nil
				if done && !now.Before(c.end.Add(grace)) {
					continue // expired and fully in the table
				}
				kept = append(kept, c)
			}
			clear((*list)[len(kept):])
			*list = kept
		}
		if len(st.wins) == 0 && len(st.months) == 0 {
			delete(l.subjects, key)
		}
		if len(w.pushes) > 0 || len(w.reads) > 0 {
			work = append(work, w)
		}
	}
	return work
}

func (l *Limiter) sync(ctx context.Context, readMonths bool) error {
	work := l.plan(l.clock.Now(), true, readMonths)
	err := l.do(ctx, work)
	l.health(ctx, err)
	return err
}

// do runs the work with a few workers and returns the errors joined.
func (l *Limiter) do(ctx context.Context, work []subjectWork) error {
	if len(work) == 0 {
		return nil
	}
	var mu sync.Mutex
	var errs []error
	ch := make(chan *subjectWork)
	var wg sync.WaitGroup
	for range min(syncWorkers, len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range ch {
				if err := l.syncSubject(ctx, w); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range work {
		ch <- &work[i]
	}
	close(ch)
	wg.Wait()
	return errors.Join(errs...)
}

// syncSubject reads the totals of the windows to refresh, then pushes the
// subject's changed rows in one batch (all rows are in the subject's
// partition, so one entity-group transaction is one table operation).
//
// Each instance owns its row of a window (RowKey "<window>|<instance>") and
// writes its cumulative count with an unconditional upsert: writing the
// same value twice changes nothing, so a write that failed on the network
// after the server applied it cannot be counted twice, and instances never
// conflict (no 412 storms). Readers sum the rows of the window.
//
// A rate window row also holds the instance's ceiling: its count at its
// last read plus the share that read grants (fits). Readers count each
// other row as the larger of its count and its ceiling, so what another
// instance may still admit on its current share is never unseen. A read's
// share comes in force only once the row holding its ceiling is written
// (until then the previous share applies), so an instance never admits
// beyond the ceiling the others can read, save the one request after a read
// that fits allows beyond the share. Overshoot bound: doc.go.
func (l *Limiter) syncSubject(ctx context.Context, w *subjectWork) error {
	var errs []error
	fresh := map[*counter]bool{}
	for _, c := range w.reads {
		rows, err := l.counters.Query(ctx, store.Query{PartitionKey: w.pk, RowKeyFrom: c.rk + "|", RowKeyTo: c.rk + "}"})
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s %s: %w", w.pk, c.rk, err))
			continue
		}
		v := &readView{writers: 1}
		for _, r := range rows {
			if strings.HasSuffix(r.RowKey, "|"+l.instance) {
				continue
			}
			t, _ := r.Props[colTokens].(int64)
			q, _ := r.Props[colRequests].(int64)
			k, _ := r.Props[colCost].(int64)
			if t != 0 || q != 0 {
				v.writers++
			}
			ct, _ := r.Props[colCeilTokens].(int64)
			cq, _ := r.Props[colCeilRequests].(int64)
			v.othersTokens += t
			v.othersRequests += q
			v.othersCeilTokens += max(t, ct)
			v.othersCeilRequests += max(q, cq)
			v.othersCost += k
		}
		l.mu.Lock()
		v.atReadTokens, v.atReadRequests = c.tokens, c.requests
		c.seen(v)
		if c.month || !c.hasRow() {
			// Months have no share; an instance without a row has admitted
			// nothing here, and its first share is bounded like the one it
			// starts the window with.
			c.apply(v)
		} else {
			c.pending = v
			fresh[c] = true
		}
		l.mu.Unlock()
	}

	// What to write: changed counts, and the ceilings of new reads.
	lim := l.Limits(w.subject)
	var pushes []pushItem
	l.mu.Lock()
	seen := map[*counter]bool{}
	for _, list := range [][]*counter{w.pushes, w.reads} {
		for _, c := range list {
			if seen[c] {
				continue
			}
			seen[c] = true
			if !c.hasRow() {
				continue // nothing counted here: no row, no reservation
			}
			p := pushItem{c: c, tokens: c.tokens, requests: c.requests, cost: c.cost}
			if !c.month {
				p.ceilTokens, p.ceilRequests = c.tokens, c.requests
				if !w.release {
					// Until the new read is in force the current share
					// applies: publish the larger of the two.
					p.ceilTokens = max(p.ceilTokens, ceiling(lim.TPM, c.othersCeilTokens, c.atReadTokens, c.writers))
					p.ceilRequests = max(p.ceilRequests, ceiling(lim.RPM, c.othersCeilRequests, c.atReadRequests, c.writers))
					if v := c.pending; v != nil && fresh[c] {
						p.activates = v
						p.ceilTokens = max(p.ceilTokens, ceiling(lim.TPM, v.othersCeilTokens, v.atReadTokens, c.writers))
						p.ceilRequests = max(p.ceilRequests, ceiling(lim.RPM, v.othersCeilRequests, v.atReadRequests, c.writers))
					}
				}
			}
			if p.tokens == c.pushedTokens && p.requests == c.pushedRequests && p.cost == c.pushedCost &&
				p.ceilTokens == c.pubCeilTokens && p.ceilRequests == c.pubCeilRequests {
				// The row already says it all.
				if p.activates != nil {
					c.apply(p.activates)
				}
				continue
			}
			pushes = append(pushes, p)
		}
	}
	l.mu.Unlock()

	for i := 0; i < len(pushes); i += store.MaxBatchOps {
		chunk := pushes[i:min(i+store.MaxBatchOps, len(pushes))]
		var err error
		if len(chunk) == 1 {
			_, err = l.counters.Upsert(ctx, l.row(w.pk, chunk[0]))
		} else {
			ops := make([]store.Op, len(chunk))
			for j, p := range chunk {
				ops[j] = store.Op{Kind: store.OpUpsert, Entity: l.row(w.pk, p)}
			}
			err = l.counters.Batch(ctx, ops)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("push %s: %w", w.pk, err))
			continue
		}
		l.mu.Lock()
		for _, p := range chunk {
			// Later pushes only ever carry newer cumulative counts, and
			// pushes of one counter never run concurrently (Run is the
			// only caller besides Flush, which runs after it).
			c := p.c
			c.pushedTokens, c.pushedRequests, c.pushedCost = p.tokens, p.requests, p.cost
			c.pubCeilTokens, c.pubCeilRequests = p.ceilTokens, p.ceilRequests
			if p.activates != nil && c.pending == p.activates {
				c.apply(p.activates)
			}
		}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (l *Limiter) row(pk string, p pushItem) store.Entity {
	e := store.Entity{
		PartitionKey: pk,
		RowKey:       p.c.rk + "|" + l.instance,
		Props: map[string]any{
			colTokens:   p.tokens,
			colRequests: p.requests,
			colStart:    p.c.start,
		},
	}
	if p.c.month {
		e.Props[colCost] = p.cost
	} else {
		e.Props[colCeilTokens] = p.ceilTokens
		e.Props[colCeilRequests] = p.ceilRequests
	}
	return e
}

// health records whether the table answered, logging the change once and,
// while it stays down, once per window.
func (l *Limiter) health(ctx context.Context, err error) {
	l.healthMu.Lock()
	defer l.healthMu.Unlock()
	now := l.clock.Now()
	if err == nil {
		if l.down.Swap(false) {
			l.log.InfoContext(ctx, "quota: counters table reachable again; counts resynced", "downFor", now.Sub(l.downSince).Round(time.Millisecond))
		}
		return
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return
	}
	if !l.down.Swap(true) {
		l.downSince, l.lastDownLog = now, now
		l.log.WarnContext(ctx, "quota: counters table unreachable; enforcing limits locally and keeping counts to push later",
			"failMode", string(l.cfg.FailMode), "err", err)
		return
	}
	if now.Sub(l.lastDownLog) >= l.window {
		l.lastDownLog = now
		l.log.WarnContext(ctx, "quota: counters table still unreachable", "for", now.Sub(l.downSince).Round(time.Second), "err", err)
	}
}

// heartbeat writes this instance's row in the instances partition and
// counts the instances seen within three heartbeats: the share divisor for
// subjects this instance has no history of.
func (l *Limiter) heartbeat(ctx context.Context) {
	now := l.clock.Now()
	_, err := l.counters.Upsert(ctx, store.Entity{PartitionKey: instancesPK, RowKey: l.instance, Props: map[string]any{colSeen: now.UTC()}})
	if err != nil {
		return // sync reports the outage
	}
	rows, err := l.counters.Query(ctx, store.Query{PartitionKey: instancesPK})
	if err != nil {
		return
	}
	var live int64
	for _, r := range rows {
		if seen, ok := r.Props[colSeen].(time.Time); ok && now.Sub(seen) < 3*l.heartbeatEvery() {
			live++
		}
	}
	l.live.Store(max(live, 1))
}

// Cleanup deletes counter rows of windows that started before before (rate
// windows and months alike) and heartbeat rows not refreshed since then.
// Rows are never read again once their window is over, so this only saves
// storage; run it daily (for example from the rollup timer) with
// before = the start of the previous month to keep last month for finance.
// It returns the number of rows deleted.
func (l *Limiter) Cleanup(ctx context.Context, before time.Time) (int, error) {
	rows, err := l.counters.Query(ctx, store.Query{AllPartitions: true})
	if err != nil {
		return 0, err
	}
	byPK := map[string][]store.Op{}
	for _, r := range rows {
		var t time.Time
		if r.PartitionKey == instancesPK {
			t, _ = r.Props[colSeen].(time.Time)
		} else {
			t, _ = r.Props[colStart].(time.Time)
		}
		if t.IsZero() || !t.Before(before) {
			continue
		}
		byPK[r.PartitionKey] = append(byPK[r.PartitionKey], store.Op{Kind: store.OpDelete, Entity: store.Entity{PartitionKey: r.PartitionKey, RowKey: r.RowKey}})
	}
	n := 0
	for _, ops := range byPK {
		for i := 0; i < len(ops); i += store.MaxBatchOps {
			chunk := ops[i:min(i+store.MaxBatchOps, len(ops))]
			if err := l.counters.Batch(ctx, chunk); err != nil {
				return n, err
			}
			n += len(chunk)
		}
	}
	return n, nil
}
