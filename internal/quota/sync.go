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
	colSeen     = "Seen"
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
	pk     string
	pushes []pushItem
	reads  []*counter
}

type pushItem struct {
	c                      *counter
	tokens, requests, cost int64
}

// plan snapshots what to push and read, and forgets old counters.
func (l *Limiter) plan(now time.Time, read, readMonths bool) []subjectWork {
	l.mu.Lock()
	defer l.mu.Unlock()
	var work []subjectWork
	for key, st := range l.subjects {
		w := subjectWork{pk: st.pk}
		for _, list := range []*[]*counter{&st.wins, &st.months} {
			kept := (*list)[:0]
			for _, c := range *list {
				if c.tokens != c.pushedTokens || c.requests != c.pushedRequests || c.cost != c.pushedCost {
					w.pushes = append(w.pushes, pushItem{c: c, tokens: c.tokens, requests: c.requests, cost: c.cost})
				}
				current := !now.Before(c.start) && now.Before(c.end)
				if read && current && (!c.month || readMonths) {
					w.reads = append(w.reads, c)
				}
				grace := keepWindows * l.window
				if c.month {
					grace = 0
				}
				done := c.tokens == c.pushedTokens && c.requests == c.pushedRequests && c.cost == c.pushedCost && c.inflight == 0
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

// syncSubject pushes the subject's changed counters in one batch (all rows
// are in the subject's partition, so one entity-group transaction is one
// table operation) and reads the totals of the windows to refresh.
//
// Each instance owns its row of a window (RowKey "<window>|<instance>") and
// writes its cumulative count with an unconditional upsert: writing the
// same value twice changes nothing, so a write that failed on the network
// after the server applied it cannot be counted twice, and instances never
// conflict (no 412 storms). Readers sum the rows of the window.
func (l *Limiter) syncSubject(ctx context.Context, w *subjectWork) error {
	var errs []error
	if len(w.pushes) > 0 {
		for i := 0; i < len(w.pushes); i += store.MaxBatchOps {
			chunk := w.pushes[i:min(i+store.MaxBatchOps, len(w.pushes))]
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
				p.c.pushedTokens, p.c.pushedRequests, p.c.pushedCost = p.tokens, p.requests, p.cost
			}
			l.mu.Unlock()
		}
	}
	for _, c := range w.reads {
		rows, err := l.counters.Query(ctx, store.Query{PartitionKey: w.pk, RowKeyFrom: c.rk + "|", RowKeyTo: c.rk + "}"})
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s %s: %w", w.pk, c.rk, err))
			continue
		}
		var tok, req, cost, writers int64
		for _, r := range rows {
			if strings.HasSuffix(r.RowKey, "|"+l.instance) {
				continue
			}
			t, _ := r.Props[colTokens].(int64)
			q, _ := r.Props[colRequests].(int64)
			k, _ := r.Props[colCost].(int64)
			tok += t
			req += q
			cost += k
			if t != 0 || q != 0 {
				writers++
			}
		}
		l.mu.Lock()
		c.othersTokens, c.othersRequests, c.othersCost = tok, req, cost
		c.atReadTokens, c.atReadRequests = c.tokens, c.requests
		if writers+1 > c.writers {
			c.writers = writers + 1
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
