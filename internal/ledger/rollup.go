package ledger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

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
	Cost              float64
	Currency          string
	UpdatedAt         time.Time
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
		"ReasoningTokens": r.ReasoningTokens, "TotalTokens": r.TotalTokens, "Cost": r.Cost,
		"Currency": r.Currency, "UpdatedAt": r.UpdatedAt.UTC(),
	}}
}

func dailyFrom(en store.Entity) DailyRow {
	p := props(en.Props)
	return DailyRow{Date: p.str("Date"), Team: p.str("Team"), App: p.str("App"), Model: p.str("Model"),
		Class: Class(p.str("Class")), Requests: p.i64("Requests"), Errors: p.i64("Errors"),
		EstimatedRequests: p.i64("EstimatedRequests"), PromptTokens: p.i64("PromptTokens"),
		CachedTokens: p.i64("CachedTokens"), CompletionTokens: p.i64("CompletionTokens"),
		ReasoningTokens: p.i64("ReasoningTokens"), TotalTokens: p.i64("TotalTokens"), Cost: p.f64("Cost"),
		Currency: p.str("Currency"), UpdatedAt: p.time("UpdatedAt")}
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

// compute aggregates a day's events into UsageDaily rows (sorted by RowKey).
func (d *Daily) compute(ctx context.Context, day string) ([]DailyRow, error) {
	by := map[string]*DailyRow{}
	err := d.dayEvents(ctx, day, func(e Event) {
		r := DailyRow{Date: day, Team: e.Team, App: e.App, Model: e.Model, Class: e.Class}
		k := r.rowKey()
		if by[k] == nil {
			by[k] = &r
		}
		by[k].add(e)
	})
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]DailyRow, len(keys))
	for i, k := range keys {
		out[i] = *by[k]
	}
	return out, nil
}

// dayEvents calls fn for each event of day, partition by partition in key
// order (so float sums are the same every time).
func (d *Daily) dayEvents(ctx context.Context, day string, fn func(Event)) error {
	teams, err := d.t.Index.Query(ctx, store.Query{PartitionKey: day})
	if err != nil {
		return fmt.Errorf("read UsageIndex: %w", err)
	}
	for _, tm := range teams {
		evs, err := d.t.Events.Query(ctx, store.Query{PartitionKey: day + "|" + tm.RowKey})
		if err != nil {
			return fmt.Errorf("read UsageEvents: %w", err)
		}
		for _, en := range evs {
			fn(eventFrom(en))
		}
	}
	return nil
}
