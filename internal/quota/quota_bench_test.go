package quota

import (
	"context"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
)

// BenchmarkAdmit is the added cost of admission on the request path: Admit
// and Settle for a key, app and team that all have limits. No table call.
func BenchmarkAdmit(b *testing.B) {
	counters, limits := openTables(b)
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
		lim := config.Limit{RPM: 1e12, TPM: 1e15, MonthlyTokens: 1e18}
		c.Defaults = config.LimitDefaults{Key: lim, App: lim, Team: lim}
	}), SystemClock{}, nil)
	subjects := []Subject{key1, app1, teamR}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tk, err := l.Admit(ctx, subjects, Estimate{Tokens: 1100})
		if err != nil {
			b.Fatal(err)
		}
		tk.Settle(300, true)
	}
}

// BenchmarkAdmitParallel is BenchmarkAdmit from GOMAXPROCS goroutines.
func BenchmarkAdmitParallel(b *testing.B) {
	counters, limits := openTables(b)
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
		lim := config.Limit{RPM: 1e12, TPM: 1e15, MonthlyTokens: 1e18}
		c.Defaults = config.LimitDefaults{Key: lim, App: lim, Team: lim}
	}), SystemClock{}, nil)
	subjects := []Subject{key1, app1, teamR}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := l.Admit(ctx, subjects, Estimate{Tokens: 1100})
			if err != nil {
				b.Error(err)
				return
			}
			tk.Settle(300, true)
		}
	})
}

// TestTableOpsPer1000 counts the table operations of one instance serving
// one key (with its app and team, all limited) at a steady rate, with the
// default sync settings (1 s windows sync, 10 s month sync, heartbeat every
// 10 s), over two simulated minutes. The cost is per subject and second,
// not per request, so it falls as the rate grows: the target is under 50
// per 1,000 requests.
func TestTableOpsPer1000(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		rps     int
		wantMax float64 // 0: reported only
	}{
		{100, 0},
		{200, 50},
		{1000, 50},
		{5000, 50},
	}
	for _, tt := range tests {
		counters, limits := openTables(t)
		ct := &countingTable{Table: counters}
		clock := newFakeClock(t0)
		lim := config.Limit{RPM: 1e9, TPM: 1e12, MonthlyTokens: 1e15}
		cfg := limitsConfig(func(c *config.LimitsConfig) { c.Defaults = config.LimitDefaults{Key: lim, App: lim, Team: lim} })
		l := New(ct, limits, cfg, clock, nil)
		subjects := []Subject{key1, app1, teamR}
		const seconds = 120
		admitted := 0
		for s := range seconds {
			for range tt.rps {
				tk, err := l.Admit(ctx, subjects, Estimate{Tokens: 1100})
				if err != nil {
					t.Fatal(err)
				}
				tk.Settle(300, true)
				admitted++
			}
			clock.Add(time.Second)
			// What Run does each second.
			if err := l.Sync(ctx, s%10 == 0); err != nil {
				t.Fatal(err)
			}
			if s%10 == 0 {
				l.heartbeat(ctx)
			}
		}
		per1000 := float64(ct.ops.Load()) * 1000 / float64(admitted)
		t.Logf("%5d req/s: %d table operations for %d requests = %.1f per 1,000 (%.2f per second)",
			tt.rps, ct.ops.Load(), admitted, per1000, float64(ct.ops.Load())/seconds)
		if tt.wantMax > 0 && per1000 >= tt.wantMax {
			t.Errorf("%d req/s: %.1f table operations per 1,000 requests, want under %v", tt.rps, per1000, tt.wantMax)
		}
	}
}
