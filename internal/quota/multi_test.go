package quota

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

// stack is one gateway instance's limiter: its own Table Storage client,
// its own tables and its own sync loop.
type stack struct {
	l        *Limiter
	counters *countingTable
}

func newStack(t *testing.T, cs string, cfg config.LimitsConfig) *stack {
	t.Helper()
	s, err := tables.NewFromConnectionString(cs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := s.Table(ctx, "Counters")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := s.Table(ctx, "Limits")
	if err != nil {
		t.Fatal(err)
	}
	ct := &countingTable{Table: c}
	return &stack{l: New(ct, lim, cfg, SystemClock{}, nil), counters: ct}
}

// TestMultiInstance: four separate stacks share one Azurite; clients drive
// one key at three times its TPM and another at three times its RPM for
// several 2 s windows with a 100 ms sync. Every full window must admit
// within +5% and at least 90% of the limit.
func TestMultiInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Azurite")
	}
	az := azurite.Start(t)
	const (
		window    = 2 * time.Second
		instances = 4
		tpm       = 8000 // tokens per window for keyT
		rpm       = 100  // requests per window for keyR
		tokens    = 100  // per request
		measured  = 4    // full windows measured after a warm-up window
	)
	keyT, keyR := Subject{KindKey, "tpm-key"}, Subject{KindKey, "rpm-key"}
	cfg := limitsConfig(func(c *config.LimitsConfig) {
		c.Window = config.Duration(window)
		c.SyncInterval = config.Duration(100 * time.Millisecond)
		c.MonthSyncInterval = config.Duration(time.Second)
	})
	var stacks []*stack
	for range instances {
		stacks = append(stacks, newStack(t, az.ConnectionString(), cfg))
	}
	ctx := context.Background()
	ov := stacks[0].l.Overrides()
	if err := ov.Set(ctx, keyT, Override{TPM: ptr(tpm)}); err != nil {
		t.Fatal(err)
	}
	if err := ov.Set(ctx, keyR, Override{RPM: ptr(rpm)}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var loops sync.WaitGroup
	for _, s := range stacks {
		if err := s.l.LoadOverrides(ctx); err != nil {
			t.Fatal(err)
		}
		loops.Add(1)
		go func() { defer loops.Done(); _ = s.l.Run(runCtx) }()
	}

	// Start at a window boundary; the first window is warm-up.
	first := windowStart(time.Now(), window).Add(window)
	time.Sleep(time.Until(first))
	end := first.Add(window * (measured + 1))

	// 3x the limit, spread evenly over the instances.
	attemptEvery := func(perWindow int) time.Duration {
		return window * instances / time.Duration(3*perWindow)
	}
	var drivers sync.WaitGroup
	drive := func(s *stack, subj Subject, every time.Duration) {
		defer drivers.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for time.Now().Before(end) {
			<-tick.C
			if tk, err := s.l.Admit(ctx, []Subject{subj}, Estimate{Tokens: tokens}); err == nil {
				tk.Settle(tokens, true)
			}
		}
	}
	for _, s := range stacks {
		drivers.Add(2)
		go drive(s, keyT, attemptEvery(tpm/tokens))
		go drive(s, keyR, attemptEvery(rpm))
	}
	drivers.Wait()
	stop()
	loops.Wait()
	var ops int64
	for _, s := range stacks {
		if err := s.l.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		ops += s.counters.ops.Load()
	}

	var admitted int64
	for i := 1; i <= measured; i++ {
		start := first.Add(window * time.Duration(i))
		rk := windowKey(start, window)
		gotTok, gotReq := tableTotals(t, stacks[0].counters.Table, keyT, rk)
		_, gotR := tableTotals(t, stacks[0].counters.Table, keyR, rk)
		admitted += gotReq + gotR
		t.Logf("window %d: tpm-key %d tokens (%.1f%% of %d), rpm-key %d requests (%.1f%% of %d)",
			i, gotTok, 100*float64(gotTok)/tpm, tpm, gotR, 100*float64(gotR)/rpm, rpm)
		if gotTok > tpm*105/100 || gotTok < tpm*90/100 {
			t.Errorf("window %d: %v tokens admitted, want within [%v, %v]", i, gotTok, tpm*90/100, tpm*105/100)
		}
		if gotR > rpm*105/100 || gotR < rpm*90/100 {
			t.Errorf("window %d: %v requests admitted, want within [%v, %v]", i, gotR, rpm*90/100, rpm*105/100)
		}
	}
	t.Logf("table operations: %d by %d instances over %v (sync 100 ms): %.1f per second per instance",
		ops, instances, window*(measured+1), float64(ops)/float64(instances)/(window*(measured+1)).Seconds())
}
