package ledger

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// dailyRows reads every UsageDaily row of a month.
func dailyRows(t *testing.T, tb Tables, month string) []store.Entity {
	t.Helper()
	rows, err := tb.Daily.Query(context.Background(), store.Query{PartitionKey: month})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestRollupIdempotentAndLateEvents(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tb := open(t)
			clk := &clock{t: day1.Add(2 * time.Hour)}
			w := NewWriter(tb, WriterOptions{Now: clk.Now})
			d := NewDaily(tb, clk.Now)
			var in []Event
			for _, tm := range []string{"research", "sales"} {
				for i, m := range []string{"gpt-4o-mini", "o4-mini", "gpt-4o-mini"} {
					e := evs(tm, day1, 10, "")
					for j := range e {
						e[j].Model, e[j].App = m, "app"+string(rune('a'+i))
						e[j].RequestID += m + e[j].App
					}
					in = append(in, e...)
				}
			}
			for _, e := range in {
				w.Record(ctx, e)
			}
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			r1, err := d.Rollup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			first := dailyRows(t, tb, "2026-03")
			if len(first) != 6 || r1.Written != 6 {
				t.Fatalf("got %v rows (%v written), want 6", len(first), r1.Written)
			}
			r2, err := d.Rollup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			second := dailyRows(t, tb, "2026-03")
			if r2.Written != 0 || len(second) != len(first) {
				t.Errorf("second run: got %v written, %v rows, want 0 written, %v rows", r2.Written, len(second), len(first))
			}
			for i := range first {
				a, b := dailyFrom(first[i]), dailyFrom(second[i])
				if a != b {
					t.Errorf("row %d changed: got %+v, want %+v", i, b, a)
				}
			}
			assertDailyMatches(t, tb, "2026-03", in)

			// Three days later an event of day1 arrives (a spool replay):
			// day1 is no longer today or yesterday, only the dirty mark finds it.
			clk.Set(day1.AddDate(0, 0, 3))
			late := ev("research", "appa", "gpt-4o-mini", day1.Add(time.Hour), 999)
			w.Record(ctx, late)
			if err := w.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			r3, err := d.Rollup(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r3.Written != 1 {
				t.Errorf("late event: got %v rows written, want 1", r3.Written)
			}
			assertDailyMatches(t, tb, "2026-03", append(in, late))
			marks, _ := tb.Dirty.Query(ctx, store.Query{PartitionKey: dirtyPK})
			if len(marks) != 0 {
				t.Errorf("got %v dirty marks after rollup, want 0", len(marks))
			}
		})
	}
}

// assertDailyMatches compares UsageDaily with the events, per team and model.
func assertDailyMatches(t *testing.T, tb Tables, month string, in []Event) {
	t.Helper()
	type k struct{ team, model string }
	want, got := map[k]sums{}, map[k]sums{}
	for _, e := range in {
		s := want[k{e.Team, e.Model}]
		s.Events++
		s.Prompt += e.PromptTokens
		s.Completion += e.CompletionTokens
		want[k{e.Team, e.Model}] = s
	}
	for _, en := range dailyRows(t, tb, month) {
		r := dailyFrom(en)
		s := got[k{r.Team, r.Model}]
		s.Events += int(r.Requests)
		s.Prompt += r.PromptTokens
		s.Completion += r.CompletionTokens
		got[k{r.Team, r.Model}] = s
	}
	if len(got) != len(want) {
		t.Errorf("got %v groups, want %v", got, want)
	}
	for key, w := range want {
		if got[key] != w {
			t.Errorf("%v: got %+v, want %+v", key, got[key], w)
		}
	}
}

func TestReportTotalsEqualEvents(t *testing.T) {
	ctx := context.Background()
	tb := embeddedTables(t)
	now := day1.AddDate(0, 0, 5)
	w := NewWriter(tb, WriterOptions{Now: func() time.Time { return now }})
	d := NewDaily(tb, func() time.Time { return now })
	var in []Event
	for i := 0; i <= 5; i++ { // day1 .. today
		for _, tm := range []string{"research", "sales", "ops"} {
			in = append(in, evs(tm, day1.AddDate(0, 0, i), 7+i, "")...)
		}
	}
	for _, e := range in {
		w.Record(ctx, e)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Roll up the past days, then clear the marks so they are read from UsageDaily.
	var days []time.Time
	for i := 0; i < 5; i++ {
		days = append(days, day1.AddDate(0, 0, i))
	}
	if _, err := d.Rollup(ctx, days...); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Rollup(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    Query
		keep func(Event) bool
		rows int
	}{
		{"all, no grouping", Query{From: day1, To: now}, func(Event) bool { return true }, 1},
		{"by team", Query{From: day1, To: now, By: []string{"team"}}, func(Event) bool { return true }, 3},
		{"by date,team", Query{From: day1, To: now, By: []string{"date", "team"}}, func(Event) bool { return true }, 18},
		{"team-scoped", Query{From: day1, To: now, By: []string{"date"}, Team: "sales"}, func(e Event) bool { return e.Team == "sales" }, 6},
		{"two middle days", Query{From: day1.AddDate(0, 0, 1), To: day1.AddDate(0, 0, 2)}, func(e Event) bool {
			return Day(e.Time) == "2026-03-11" || Day(e.Time) == "2026-03-12"
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := d.Report(ctx, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tt.rows {
				t.Errorf("got %v rows, want %v", len(rows), tt.rows)
			}
			var want Row
			for _, e := range in {
				if tt.keep(e) {
					want.Requests++
					want.PromptTokens += e.PromptTokens
					want.CompletionTokens += e.CompletionTokens
					want.Cost += e.Cost
				}
			}
			tot := Totals(rows)
			if len(tot) != 1 {
				t.Fatalf("got %v currencies, want 1", len(tot))
			}
			got := tot[0]
			if got.Requests != want.Requests || got.PromptTokens != want.PromptTokens || got.CompletionTokens != want.CompletionTokens || got.Cost != want.Cost {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestWriteFormats(t *testing.T) {
	q := Query{From: day1, To: day1, By: []string{"team", "model"}}
	rows := []Row{{Team: "research", Model: "gpt-4o-mini", Requests: 2, PromptTokens: 10, CompletionTokens: 4, TotalTokens: 14, Cost: 12_300, Currency: "USD"}}
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{"csv", func(t *testing.T, out string) {
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Join(recs[0], ","), "Team,Model,Requests,Errors,EstimatedRequests,PromptTokens,CachedTokens,CompletionTokens,ReasoningTokens,TotalTokens,CostNanos,Cost,Currency,CacheHits,SavedTokens,SavedCost"; got != want {
				t.Errorf("got header %v, want %v", got, want)
			}
			if got, want := recs[1][10]+" "+recs[1][11], "12300 0.000012"; got != want {
				t.Errorf("got cost %v, want %v", got, want)
			}
		}},
		{"json", func(t *testing.T, out string) {
			var r Report
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Rows) != 1 || r.Totals[0].TotalTokens != 14 || r.From != "2026-03-10" {
				t.Errorf("got %+v, want one row, total 14 tokens, from 2026-03-10", r)
			}
		}},
		{"table", func(t *testing.T, out string) {
			if !strings.Contains(out, "TOTAL") || !strings.Contains(out, "research") {
				t.Errorf("got %q, want a research line and a TOTAL line", out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, tt.format, q, rows); err != nil {
				t.Fatal(err)
			}
			tt.check(t, b.String())
		})
	}
	if err := Write(&bytes.Buffer{}, "xml", q, rows); err == nil {
		t.Error("got nil error for format xml, want one")
	}
}
