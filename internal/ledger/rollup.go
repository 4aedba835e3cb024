package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/store"
)

// DailyRow is one UsageDaily row: a date × team × app × model × class.
type DailyRow struct {
	Date  string
	Team  string
	App   string
	Model string
	Class Class

	Requests          int64 // every recorded call, failed ones included
	Errors            int64 // calls with status 0 or ≥ 400
	EstimatedRequests int64 // calls whose tokens were estimated
	PromptTokens      int64
	CachedTokens      int64
	CompletionTokens  int64
	ReasoningTokens   int64
	TotalTokens       int64
	Cost              money.Nanos
	Currency          string
	UpdatedAt         time.Time
	// CacheHits are the calls the response cache answered; SavedTokens and
	// SavedCost what they did not spend.
	CacheHits   int64
	SavedTokens int64
	SavedCost   money.Nanos
}

func (r DailyRow) partitionKey() string { return r.Date[:7] }

func (r DailyRow) rowKey() string {
	return r.Date + "|" + EncodeKey(r.Team) + "|" + EncodeKey(r.App) + "|" + EncodeKey(r.Model) + "|" + EncodeKey(string(r.Class))
}

func (r DailyRow) entity() store.Entity {
	return store.Entity{PartitionKey: r.partitionKey(), RowKey: r.rowKey(), Props: map[string]any{
		"Date": r.Date, "Team": r.Team, "App": r.App, "Model": r.Model, "Class": string(r.Class),
		"Requests": r.Requests, "Errors": r.Errors, "EstimatedRequests": r.EstimatedRequests,
		"PromptTokens": r.PromptTokens, "CachedTokens": r.CachedTokens, "CompletionTokens": r.CompletionTokens,
		"ReasoningTokens": r.ReasoningTokens, "TotalTokens": r.TotalTokens, "Cost": r.Cost.Float(), "CostNanos": int64(r.Cost),
		"Currency": r.Currency, "UpdatedAt": r.UpdatedAt.UTC(),
		"CacheHits": r.CacheHits, "SavedTokens": r.SavedTokens, "SavedCostNanos": int64(r.SavedCost),
	}}
}

func dailyFrom(en store.Entity) DailyRow {
	p := props(en.Props)
	return DailyRow{Date: p.str("Date"), Team: p.str("Team"), App: p.str("App"), Model: p.str("Model"),
		Class: Class(p.str("Class")), Requests: p.i64("Requests"), Errors: p.i64("Errors"),
		EstimatedRequests: p.i64("EstimatedRequests"), PromptTokens: p.i64("PromptTokens"),
		CachedTokens: p.i64("CachedTokens"), CompletionTokens: p.i64("CompletionTokens"),
		ReasoningTokens: p.i64("ReasoningTokens"), TotalTokens: p.i64("TotalTokens"), Cost: p.cost(),
		Currency: p.str("Currency"), UpdatedAt: p.time("UpdatedAt"),
		CacheHits: p.i64("CacheHits"), SavedTokens: p.i64("SavedTokens"), SavedCost: money.Nanos(p.i64("SavedCostNanos"))}
}

// sameCounts compares everything but UpdatedAt.
func sameCounts(a, b DailyRow) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return a == b
}

// add counts e into r.
func (r *DailyRow) add(e Event) {
	r.Requests++
	if e.Status == 0 || e.Status >= 400 {
		r.Errors++
	}
	if e.UsageSource == SourceEstimated {
		r.EstimatedRequests++
	}
	r.PromptTokens += e.PromptTokens
	r.CachedTokens += e.CachedTokens
	r.CompletionTokens += e.CompletionTokens
	r.ReasoningTokens += e.ReasoningTokens
	r.TotalTokens += e.TotalTokens
	r.Cost += e.Cost
	if e.UsageSource == SourceCache {
		r.CacheHits++
	}
	r.SavedTokens += e.SavedTokens
	r.SavedCost += e.SavedCost
	if e.Currency != "" {
		r.Currency = e.Currency
	}
}

// Daily computes, stores and reads the UsageDaily rollup.
type Daily struct {
	t   Tables
	now func() time.Time
}

// NewDaily returns a Daily on the ledger tables; now nil means time.Now.
func NewDaily(t Tables, now func() time.Time) *Daily {
	if now == nil {
		now = time.Now
	}
	return &Daily{t: t, now: now}
}

// RollupResult says what a Rollup did.
type RollupResult struct {
	Days    []string // the dates recomputed
	Rows    int      // UsageDaily rows of those dates
	Written int      // rows inserted or changed
	Deleted int      // rows removed (no events left for them)
}

// Rollup recomputes the UsageDaily rows of days (UTC dates) from
// UsageEvents and writes the rows that changed, so running it twice leaves
// the same rows (UpdatedAt included). With no days it does today, yesterday
// and every day marked dirty by a late event, and clears those marks.
func (d *Daily) Rollup(ctx context.Context, days ...time.Time) (RollupResult, error) {
	var res RollupResult
	want := map[string]string{} // day → dirty mark ETag ("" when not marked)
	if len(days) == 0 {
		now := d.now().UTC()
		want[Day(now)] = ""
		want[Day(now.AddDate(0, 0, -1))] = ""
		marks, err := d.t.Dirty.Query(ctx, store.Query{PartitionKey: dirtyPK})
		if err != nil {
			return res, fmt.Errorf("rollup: read dirty days: %w", err)
		}
		for _, m := range marks {
			want[m.RowKey] = m.ETag
		}
	}
	for _, t := range days {
		want[Day(t)] = ""
	}
	for day := range want {
		res.Days = append(res.Days, day)
	}
	sort.Strings(res.Days)
	var errs []error
	for _, day := range res.Days {
		n, w, del, err := d.rollupDay(ctx, day)
		res.Rows, res.Written, res.Deleted = res.Rows+n, res.Written+w, res.Deleted+del
		if err != nil {
			errs = append(errs, fmt.Errorf("rollup %s: %w", day, err))
			continue
		}
		if etag := want[day]; etag != "" {
			// If-Match: a mark re-written by a later flush survives, so
			// events that arrived during this rollup are picked up next time.
			err := d.t.Dirty.Delete(ctx, dirtyPK, day, etag)
			if err != nil && !errors.Is(err, store.ErrPrecondition) && !errors.Is(err, store.ErrNotFound) {
				errs = append(errs, fmt.Errorf("rollup %s: clear dirty mark: %w", day, err))
			}
		}
	}
	return res, errors.Join(errs...)
}

// Timer adapts Rollup to a timer function (POST /rollup).
func (d *Daily) Timer() func(ctx context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		start := time.Now()
		r, err := d.Rollup(ctx)
		line := fmt.Sprintf("rollup: days %s: %d rows, %d written, %d deleted in %s",
			strings.Join(r.Days, ","), r.Rows, r.Written, r.Deleted, time.Since(start).Round(time.Millisecond))
		return []string{line}, err
	}
}

func (d *Daily) rollupDay(ctx context.Context, day string) (rows, written, deleted int, err error) {
	computed, err := d.compute(ctx, day)
	if err != nil {
		return 0, 0, 0, err
	}
	pk := day[:7]
	existing, err := d.t.Daily.Query(ctx, store.Query{PartitionKey: pk, RowKeyFrom: day + "|", RowKeyTo: day + "}"})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read UsageDaily: %w", err)
	}
	old := map[string]DailyRow{}
	for _, en := range existing {
		old[en.RowKey] = dailyFrom(en)
	}
	now := d.now().UTC().Truncate(time.Millisecond)
	var ops []store.Op
	for _, r := range computed {
		rk := r.rowKey()
		if o, ok := old[rk]; ok && sameCounts(o, r) {
			delete(old, rk)
			continue
		}
		delete(old, rk)
		r.UpdatedAt = now
		ops = append(ops, store.Op{Kind: store.OpUpsert, Entity: r.entity()})
		written++
	}
	for rk := range old {
		ops = append(ops, store.Op{Kind: store.OpDelete, Entity: store.Entity{PartitionKey: pk, RowKey: rk}})
		deleted++
	}
	for len(ops) > 0 {
		n := min(len(ops), store.MaxBatchOps)
		if err := d.t.Daily.Batch(ctx, ops[:n]); err != nil {
			return len(computed), 0, 0, fmt.Errorf("write UsageDaily: %w", err)
		}
		ops = ops[n:]
	}
	return len(computed), written, deleted, nil
}

// compute sums a day's partial rows into UsageDaily rows (sorted by
// RowKey): O(groups × writer instances) rows read, whatever the number of
// events. A partition an older gateway wrote (its UsageIndex row lacks
// Partials) is summed from its events instead.
func (d *Daily) compute(ctx context.Context, day string) ([]DailyRow, error) {
	by := map[string]*DailyRow{}
	add := func(g DailyRow) *DailyRow {
		g.Date = day
		k := g.rowKey()
		if by[k] == nil {
			r := DailyRow{Date: day, Team: g.Team, App: g.App, Model: g.Model, Class: g.Class}
			by[k] = &r
		}
		return by[k]
	}
	teams, err := d.t.Index.Query(ctx, store.Query{PartitionKey: day})
	if err != nil {
		return nil, fmt.Errorf("read UsageIndex: %w", err)
	}
	for _, tm := range teams {
		pk := day + "|" + tm.RowKey
		if !props(tm.Props).bool("Partials") {
			if err := d.partitionEvents(ctx, pk, func(e Event) { add(groupOf(e)).add(e) }); err != nil {
				return nil, err
			}
			continue
		}
		parts, err := d.partials(ctx, pk)
		if err != nil {
			return nil, err
		}
		for _, p := range parts {
			add(p.row).merge(p.row)
		}
	}
	keys := make([]string, 0, len(by))
	for k, r := range by {
		if r.Requests != 0 { // rebuild corrections can cancel a group out
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]DailyRow, len(keys))
	for i, k := range keys {
		out[i] = *by[k]
	}
	return out, nil
}

// storedPartial is one partial row as read back.
type storedPartial struct {
	rk, instance string
	row          DailyRow
}

// partials reads the partial rows of event partition pk (one range query).
func (d *Daily) partials(ctx context.Context, pk string) ([]storedPartial, error) {
	ents, err := d.t.Events.Query(ctx, store.Query{PartitionKey: pk, RowKeyFrom: partialPrefix, RowKeyTo: partialEnd})
	if err != nil {
		return nil, fmt.Errorf("read partial sums: %w", err)
	}
	out := make([]storedPartial, len(ents))
	for i, en := range ents {
		out[i] = storedPartial{rk: en.RowKey, instance: props(en.Props).str("Instance"), row: dailyFrom(en)}
	}
	return out, nil
}

// eventPage is how many UsageEvents rows a stream reads at a time.
const eventPage = 1000

// partitionEvents calls fn for each event of partition pk, reading
// eventPage rows at a time, so memory stays bounded whatever the count.
func (d *Daily) partitionEvents(ctx context.Context, pk string, fn func(Event)) error {
	from := ""
	for {
		ents, err := d.t.Events.Query(ctx, store.Query{PartitionKey: pk, RowKeyFrom: from, Limit: eventPage})
		if err != nil {
			return fmt.Errorf("read UsageEvents: %w", err)
		}
		for _, en := range ents {
			if !isPartialKey(en.RowKey) {
				fn(eventFrom(en))
			}
		}
		if len(ents) < eventPage {
			return nil
		}
		// Keys never hold characters below space (EncodeKey), so the next
		// key after k is at least k+" ".
		from = ents[len(ents)-1].RowKey + " "
	}
}

// dayEvents calls fn for each event of day, partition by partition in key
// order.
func (d *Daily) dayEvents(ctx context.Context, day string, fn func(Event)) error {
	teams, err := d.t.Index.Query(ctx, store.Query{PartitionKey: day})
	if err != nil {
		return fmt.Errorf("read UsageIndex: %w", err)
	}
	for _, tm := range teams {
		if err := d.partitionEvents(ctx, day+"|"+tm.RowKey, fn); err != nil {
			return err
		}
	}
	return nil
}

// merge adds the counts of o to r.
func (r *DailyRow) merge(o DailyRow) {
	r.Requests += o.Requests
	r.Errors += o.Errors
	r.EstimatedRequests += o.EstimatedRequests
	r.PromptTokens += o.PromptTokens
	r.CachedTokens += o.CachedTokens
	r.CompletionTokens += o.CompletionTokens
	r.ReasoningTokens += o.ReasoningTokens
	r.TotalTokens += o.TotalTokens
	r.Cost += o.Cost
	r.CacheHits += o.CacheHits
	r.SavedTokens += o.SavedTokens
	r.SavedCost += o.SavedCost
	if o.Currency != "" {
		r.Currency = o.Currency
	}
}

// zero reports whether r has no counts.
func (r DailyRow) zero() bool {
	return r.Requests == 0 && r.Errors == 0 && r.EstimatedRequests == 0 && r.PromptTokens == 0 &&
		r.CachedTokens == 0 && r.CompletionTokens == 0 && r.ReasoningTokens == 0 && r.TotalTokens == 0 && r.Cost == 0 &&
		r.CacheHits == 0 && r.SavedTokens == 0 && r.SavedCost == 0
}

// minus is r less the counts of o.
func (r DailyRow) minus(o DailyRow) DailyRow {
	r.Requests -= o.Requests
	r.Errors -= o.Errors
	r.EstimatedRequests -= o.EstimatedRequests
	r.PromptTokens -= o.PromptTokens
	r.CachedTokens -= o.CachedTokens
	r.CompletionTokens -= o.CompletionTokens
	r.ReasoningTokens -= o.ReasoningTokens
	r.TotalTokens -= o.TotalTokens
	r.Cost -= o.Cost
	r.CacheHits -= o.CacheHits
	r.SavedTokens -= o.SavedTokens
	r.SavedCost -= o.SavedCost
	return r
}

// RebuildResult says what a Rebuild did.
type RebuildResult struct {
	Events      int64 // events read
	Partitions  int   // team partitions of the day
	Corrections int   // correction rows written
	Rollup      RollupResult
}

// ErrBusy: a rebuild saw partial sums change while it read the events (a
// gateway is still writing that day); run it again.
var ErrBusy = errors.New("ledger: the day's sums changed during the rebuild; run it again")

// Rebuild recomputes a day from UsageEvents, the exact record: for each
// team partition it streams the events (eventPage rows at a time; memory is
// O(groups)), compares their sums with the partial rows, and writes the
// difference as correction rows (instance "rebuild"), so the partial rows
// sum to the events again; then it rolls the day up into UsageDaily.
// Running it twice writes nothing new. The partial rows are read before and
// after the events: if they changed (a gateway wrote that day meanwhile)
// the partition is retried, up to three times, then ErrBusy.
func (d *Daily) Rebuild(ctx context.Context, day time.Time) (RebuildResult, error) {
	var res RebuildResult
	ds := Day(day)
	teams, err := d.t.Index.Query(ctx, store.Query{PartitionKey: ds})
	if err != nil {
		return res, fmt.Errorf("rebuild %s: read UsageIndex: %w", ds, err)
	}
	for _, tm := range teams {
		res.Partitions++
		pk := ds + "|" + tm.RowKey
		var done bool
		for attempt := 0; attempt < 3 && !done; attempt++ {
			n, c, ok, err := d.rebuildPartition(ctx, ds, pk)
			if err != nil {
				return res, fmt.Errorf("rebuild %s: %w", pk, err)
			}
			res.Events += n
			res.Corrections += c
			done = ok
		}
		if !done {
			return res, fmt.Errorf("rebuild %s: %w", pk, ErrBusy)
		}
		if !props(tm.Props).bool("Partials") {
			if _, err := d.t.Index.Upsert(ctx, store.Entity{PartitionKey: ds, RowKey: tm.RowKey,
				Props: map[string]any{"Team": props(tm.Props).str("Team"), "Partials": true}}); err != nil {
				return res, fmt.Errorf("rebuild %s: mark UsageIndex: %w", pk, err)
			}
		}
	}
	r, err := d.Rollup(ctx, day)
	res.Rollup = r
	return res, err
}

// rebuildPartition makes the partial rows of pk sum to its events. ok is
// false when the partial rows changed while the events were read.
func (d *Daily) rebuildPartition(ctx context.Context, day, pk string) (events int64, corrections int, ok bool, err error) {
	before, err := d.partials(ctx, pk)
	if err != nil {
		return 0, 0, false, err
	}
	evSum := map[string]*DailyRow{}
	err = d.partitionEvents(ctx, pk, func(e Event) {
		events++
		g := groupOf(e)
		gk := groupKey(g.App, g.Model, g.Class)
		if evSum[gk] == nil {
			evSum[gk] = &g
		}
		evSum[gk].add(e)
	})
	if err != nil {
		return 0, 0, false, err
	}
	after, err := d.partials(ctx, pk)
	if err != nil {
		return 0, 0, false, err
	}
	if !samePartials(before, after) {
		return events, 0, false, nil
	}
	others := map[string]*DailyRow{} // by group, rows of writers
	fixes := map[string]DailyRow{}   // by group, existing correction rows
	groups := map[string]DailyRow{}  // group → its dimensions
	for _, p := range after {
		gk := groupKey(p.row.App, p.row.Model, p.row.Class)
		groups[gk] = p.row
		if p.instance == rebuildInstance {
			fixes[gk] = p.row
			continue
		}
		if others[gk] == nil {
			r := p.row
			others[gk] = &DailyRow{Date: r.Date, Team: r.Team, App: r.App, Model: r.Model, Class: r.Class}
		}
		others[gk].merge(p.row)
	}
	for gk, r := range evSum {
		groups[gk] = *r
	}
	keys := make([]string, 0, len(groups))
	for gk := range groups {
		keys = append(keys, gk)
	}
	sort.Strings(keys)
	var ops []store.Op
	for _, gk := range keys {
		g := groups[gk]
		want := DailyRow{Date: day, Team: g.Team, App: g.App, Model: g.Model, Class: g.Class, Currency: g.Currency}
		if e := evSum[gk]; e != nil {
			want = *e
		}
		if o := others[gk]; o != nil {
			want = want.minus(*o)
		}
		if want.Currency == "" {
			want.Currency = g.Currency
		}
		old, had := fixes[gk]
		if (!had && want.zero()) || (had && sameCounts(old, want)) {
			continue
		}
		ops = append(ops, store.Op{Kind: store.OpUpsert,
			Entity: partialEntity(pk, partialRowKey(rebuildInstance, 0, gk), rebuildInstance, want)})
	}
	for len(ops) > 0 {
		n := min(len(ops), store.MaxBatchOps)
		if err := d.t.Events.Batch(ctx, ops[:n]); err != nil {
			return events, corrections, false, fmt.Errorf("write corrections: %w", err)
		}
		corrections += n
		ops = ops[n:]
	}
	return events, corrections, true, nil
}

// samePartials reports whether two reads of a partition's partial rows
// hold the same rows with the same counts.
func samePartials(a, b []storedPartial) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].rk != b[i].rk || !sameCounts(a[i].row, b[i].row) {
			return false
		}
	}
	return true
}
