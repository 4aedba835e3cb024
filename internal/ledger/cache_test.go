package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// TestCacheHitEvent: a cache hit has no backend tokens; it is charged the
// configured fraction of the original cost and the rest is saved; the
// rollup and the report count hits and savings.
func TestCacheHitEvent(t *testing.T) {
	price := Price{Input: money.FromFloat(1), CachedInput: money.FromFloat(0.5), Output: money.FromFloat(4), Currency: "USD"}
	saved := usage.Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000, TotalTokens: 1_500_000, Reported: true}
	for _, tt := range []struct {
		fraction        float64
		cost, savedCost string
	}{{0, "0.000000", "3.000000"}, {0.1, "0.300000", "2.700000"}, {1, "3.000000", "0.000000"}} {
		p := NewPricing(map[string]Price{"gpt": price}, 0, nil).WithCacheFraction(tt.fraction)
		e := p.Event(Call{Time: day1, RequestID: "r", Team: "t", Model: "gpt", Op: "chat/completions", Status: 200,
			Usage: usage.Usage{Reported: true}, Cache: "semantic", Saved: saved})
		if e.UsageSource != SourceCache || e.Cache != "semantic" || e.TotalTokens != 0 || e.PromptTokens != 0 {
			t.Errorf("fraction %v: event %+v", tt.fraction, e)
		}
		if e.Cost.String() != tt.cost || e.SavedCost.String() != tt.savedCost || e.SavedTokens != 1_500_000 || e.Currency != "USD" {
			t.Errorf("fraction %v: cost %s saved %s (%d tokens), want %s and %s", tt.fraction, e.Cost, e.SavedCost, e.SavedTokens, tt.cost, tt.savedCost)
		}
		// What the quota charges a hit against cost budgets is what its row costs.
		if c, cur := p.HitCostOf("gpt", "", "", saved); c != e.Cost || (tt.fraction > 0 && cur != "USD") {
			t.Errorf("fraction %v: HitCostOf %s %s, want the row's %s", tt.fraction, c, cur, e.Cost)
		}
		if back := eventFrom(e.entity()); back != e {
			t.Errorf("round trip: got %+v, want %+v", back, e)
		}
	}

	tb := embeddedTables(t)
	w := NewWriter(tb, WriterOptions{FlushInterval: time.Hour})
	p := NewPricing(map[string]Price{"gpt": price}, 0, nil)
	w.Record(context.Background(), p.Event(Call{Time: day1, RequestID: "a", Team: "t", Model: "gpt", Op: "chat/completions", Status: 200,
		Usage: saved}))
	w.Record(context.Background(), p.Event(Call{Time: day1.Add(time.Minute), RequestID: "b", Team: "t", Model: "gpt", Op: "chat/completions",
		Status: 200, Usage: usage.Usage{Reported: true}, Cache: "exact", Saved: saved}))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := NewDaily(tb, func() time.Time { return day1.AddDate(0, 0, 5) })
	if _, err := d.Rollup(context.Background(), day1); err != nil {
		t.Fatal(err)
	}
	rows, err := d.Report(context.Background(), Query{From: day1, To: day1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("rows %+v", rows)
	}
	r := rows[0]
	if r.Requests != 2 || r.CacheHits != 1 || r.SavedTokens != 1_500_000 || r.SavedCost.String() != "3.000000" ||
		r.TotalTokens != 1_500_000 || r.Cost.String() != "3.000000" {
		t.Errorf("report row %+v", r)
	}
}
