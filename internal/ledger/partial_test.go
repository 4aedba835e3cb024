package ledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// partialSums sums the UsageDaily rows compute derives from the partial
// rows of day, in the shape sumOf gives events.
func partialSums(t *testing.T, tb Tables, day string) sums {
	t.Helper()
	rows, err := NewDaily(tb, nil).compute(context.Background(), day)
	if err != nil {
		t.Fatal(err)
	}
	var s sums
	for _, r := range rows {
		s.Events += int(r.Requests)
		s.Prompt += r.PromptTokens
		s.Completion += r.CompletionTokens
		s.Cost += int64(r.Cost)
	}
	return s
}

// lyingTable commits every batch but reports the next fail of them as
// failed: a timeout after the commit, the ambiguous failure of a remote
// store.
type lyingTable struct {
	store.Table
	fail atomic.Int32
}

var errLost = fmt.Errorf("response lost after the commit (test)")

func (l *lyingTable) Batch(ctx context.Context, ops []store.Op) error {
	if err := l.Table.Batch(ctx, ops); err != nil {
		return err
	}
	if l.fail.Add(-1) >= 0 {
		return errLost
	}
	return nil
}

// lyingMulti is lyingTable for a table that commits several batches at
// once: in its first call, the batch at position at commits but is
// reported failed.
type lyingMulti struct {
	store.Table
	at    int
	calls int
}

func (l *lyingMulti) BatchAll(ctx context.Context, bs [][]store.Op) []error {
	errs := l.Table.(multiBatcher).BatchAll(ctx, bs)
	if l.calls++; l.calls == 1 && l.at < len(errs) && errs[l.at] == nil {
		errs[l.at] = errLost
	}
	return errs
}

// TestPartialsSurviveAmbiguousFailures: transactions that commit but report
// a failure are retried; the retry finds the events stored, drops them, and
// the partial rows still equal the events exactly (no double count).
func TestPartialsSurviveAmbiguousFailures(t *testing.T) {
	for _, tt := range []struct {
		name string
		wrap func(store.Table) store.Table
	}{
		{"one batch per call", func(tb store.Table) store.Table { l := &lyingTable{Table: tb}; l.fail.Store(2); return l }},
		{"several batches per call, first reported failed", func(tb store.Table) store.Table { return &lyingMulti{Table: tb, at: 0} }},
		{"several batches per call, second reported failed", func(tb store.Table) store.Table { return &lyingMulti{Table: tb, at: 1} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := embeddedTables(t)
			tb := base
			tb.Events = tt.wrap(base.Events)
			clk := &clock{t: day1}
			w := NewWriter(tb, WriterOptions{Now: clk.Now})
			ctx := context.Background()
			var in []Event
			for _, team := range []string{"research", "sales"} {
				for i, e := range evs(team, day1, 450, "") {
					e.App = []string{"a", "b", "c"}[i%3]
					in = append(in, e)
				}
			}
			for _, e := range in {
				w.Record(ctx, e)
			}
			if err := w.Flush(ctx); err == nil {
				t.Fatal("first flush: got nil, want the reported failure")
			}
			for try := 1; ; try++ {
				clk.Set(day1.Add(time.Duration(try) * time.Minute)) // past the backoff
				err := w.Flush(ctx)
				if err == nil {
					break
				}
				if try == 5 {
					t.Fatal(err)
				}
			}
			s := w.Stats()
			if s.Duplicates == 0 || s.Buffered != 0 {
				t.Errorf("got %+v, want some duplicates dropped and nothing buffered", s)
			}
			want := sumOf(in)
			if got := sumOf(allEvents(t, base, "2026-03-10")); got != want {
				t.Errorf("events: got %+v, want %+v", got, want)
			}
			if got := partialSums(t, base, "2026-03-10"); got != want {
				t.Errorf("partial sums: got %+v, want %+v", got, want)
			}
		})
	}
}

// countingTable counts the operations and the rows read from a table.
type countingTable struct {
	store.Table
	ops, rows atomic.Int64
}

func (c *countingTable) Query(ctx context.Context, q store.Query) ([]store.Entity, error) {
	out, err := c.Table.Query(ctx, q)
	c.ops.Add(1)
	c.rows.Add(int64(len(out)))
	return out, err
}

func (c *countingTable) Get(ctx context.Context, pk, rk string) (store.Entity, error) {
	c.ops.Add(1)
	c.rows.Add(1)
	return c.Table.Get(ctx, pk, rk)
}

// TestRollupReadsGrowWithGroups: a rollup and a report read the same number
// of rows for 1,000 events as for 10,000 of the same groups, and more rows for
// more groups.
func TestRollupReadsGrowWithGroups(t *testing.T) {
	read := func(t *testing.T, events, apps int) (ops, rows int64) {
		base := embeddedTables(t)
		w := NewWriter(base, WriterOptions{Now: func() time.Time { return day1 }})
		ctx := context.Background()
		for _, team := range []string{"research", "sales"} {
			for i, e := range evs(team, day1, events/2, "") {
				e.App = fmt.Sprintf("app%d", i%apps)
				w.Record(ctx, e)
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var c [4]*countingTable
		tb := base
		for i, p := range []*store.Table{&tb.Events, &tb.Daily, &tb.Index, &tb.Dirty} {
			c[i] = &countingTable{Table: *p}
			*p = c[i]
		}
		d := NewDaily(tb, func() time.Time { return day1 })
		if _, err := d.Rollup(ctx); err != nil {
			t.Fatal(err)
		}
		rep, err := d.Report(ctx, Query{From: day1, To: day1, By: []string{ByTeam, ByApp}})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range rep {
			n += r.Requests
		}
		if n != int64(events) {
			t.Fatalf("report: got %d requests, want %d", n, events)
		}
		for _, x := range c {
			ops, rows = ops+x.ops.Load(), rows+x.rows.Load()
		}
		return ops, rows
	}
	// 1,000 events are 6 batches per team: enough to use every one of a
	// commit's batchesPerCommit partial-row slots, as 10,000 do.
	ops1, rows1 := read(t, 1000, 4)
	ops2, rows2 := read(t, 10000, 4)
	ops3, rows3 := read(t, 10000, 16)
	t.Logf("1,000 events, 8 groups: %d ops, %d rows; 10,000 events: %d ops, %d rows; 10,000 events, 32 groups: %d ops, %d rows",
		ops1, rows1, ops2, rows2, ops3, rows3)
	if ops1 != ops2 || rows1 != rows2 {
		t.Errorf("10x the events: got %d ops %d rows, want the same as %d ops %d rows", ops2, rows2, ops1, rows1)
	}
	if rows3 <= rows2 || rows3 > 5*rows2 {
		t.Errorf("4x the groups: got %d rows, want more than %d and at most 5x", rows3, rows2)
	}
}

// TestRebuild: a day written by an older gateway (no partial rows) is
// summed from its events; rebuild writes correction rows (also fixing a
// damaged partial row), after which the partial rows equal the events, and
// a second rebuild writes nothing.
func TestRebuild(t *testing.T) {
	ctx := context.Background()
	tb := embeddedTables(t)
	clk := &clock{t: day1.AddDate(0, 0, 5)}
	// Legacy: events and an index row without Partials.
	legacy := evs("legacy", day1, 250, "")
	for _, e := range legacy {
		if _, err := tb.Events.Upsert(ctx, e.entity()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Index.Upsert(ctx, store.Entity{PartitionKey: "2026-03-10", RowKey: "legacy",
		Props: map[string]any{"Team": "legacy"}}); err != nil {
		t.Fatal(err)
	}
	w := NewWriter(tb, WriterOptions{Now: clk.Now})
	fresh := evs("research", day1, 300, "")
	for _, e := range fresh {
		w.Record(ctx, e)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	all := append(append([]Event{}, legacy...), fresh...)
	if got, want := partialSums(t, tb, "2026-03-10"), sumOf(all); got != want {
		t.Errorf("before rebuild: got %+v, want %+v", got, want)
	}
	// Damage a partial row of research.
	parts, err := NewDaily(tb, nil).partials(ctx, "2026-03-10|research")
	if err != nil || len(parts) == 0 {
		t.Fatalf("got %d partial rows, %v", len(parts), err)
	}
	bad := parts[0].row
	bad.Requests += 7
	bad.PromptTokens += 1000
	if _, err := tb.Events.Upsert(ctx, partialEntity("2026-03-10|research", parts[0].rk, parts[0].instance, bad)); err != nil {
		t.Fatal(err)
	}
	d := NewDaily(tb, clk.Now)
	res, err := d.Rebuild(ctx, day1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 550 || res.Partitions != 2 || res.Corrections != 2 {
		t.Errorf("got %+v, want 550 events, 2 partitions, 2 corrections", res)
	}
	if got, want := partialSums(t, tb, "2026-03-10"), sumOf(all); got != want {
		t.Errorf("after rebuild: got %+v, want %+v", got, want)
	}
	assertDailyMatches(t, tb, "2026-03", all)
	idx, err := tb.Index.Get(ctx, "2026-03-10", "legacy")
	if err != nil || !props(idx.Props).bool("Partials") {
		t.Errorf("legacy index row: got %v %v, want Partials set", idx.Props, err)
	}
	res, err = d.Rebuild(ctx, day1)
	if err != nil || res.Corrections != 0 {
		t.Errorf("second rebuild: got %+v %v, want no corrections", res, err)
	}
}
