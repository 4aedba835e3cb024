package quota

import (
	"context"
	"os"
	"strconv"
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
// several 2 s windows with a 100 ms sync. It flaked at 106 and 107
// requests on a loaded 2-core machine: instances computed their shares
// from others' counts that missed what the others had admitted on their
// current shares (fixed by the ceilings; TestSlowStoreBound reproduces it
// without load).
//
// Every full window must admit at most the bound of doc.go ("Overshoot
// bound"): limit + n × r + the excess of overlapping renewals, n = 4
// instances, r = one request (100 tokens); the excess is under one request
// here (doc.go), so 100 + 4 + 1 = 105 requests and 8,000 + 400 + 100 =
// 8,500 tokens.
//
// And at least 90% of the limit, when the store keeps up. After the
// initial shares (half the limit), a round in which every instance renews
// adds about 0.31 of what remains (each takes remaining / 8 less the three
// others' reserved shares, 3/8 of it), so 90% takes 5 rounds per window; a
// renewal is a read and a write per subject, so with two subjects 20 calls
// per instance per 2 s window: 10 per second. The count below also holds
// heartbeats, month reads and the first round of each window (which only
// writes the new rows), and rounds straddle windows: the floor is checked
// from 20 calls per second per instance (measured: at 13, 86-102% per
// window; at 27, 95-103%). A slower store only makes the limiter refuse
// more (the safe side), so below that rate the floor is logged, not
// checked: at a load average of 22-28 on 2 cores Azurite answered 4-13
// calls per second per instance and windows ended at 59-102%.
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

	// The bound assumes every instance knows the others (doc.go: the error
	// of the writer estimate is a term of its own, for instances that come
	// and go): wait until each one's heartbeat read counts all four. With
	// Azurite answering 7 calls per second per instance, starting before
	// that admitted 123 requests in the first window, each instance taking
	// the whole remaining as if alone.
	deadline := time.Now().Add(time.Minute)
	for _, s := range stacks {
		for s.l.live.Load() < instances {
			if time.Now().After(deadline) {
				t.Fatalf("instance %s counts %d live instances after a minute, want %d", s.l.InstanceID(), s.l.live.Load(), instances)
			}
			time.Sleep(10 * time.Millisecond)
		}
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

	perSec := float64(ops) / float64(instances) / (window * (measured + 1)).Seconds()
	t.Logf("table operations: %d by %d instances over %v (sync 100 ms): %.1f per second per instance",
		ops, instances, window*(measured+1), perSec)
	floor := perSec >= 20
	if !floor {
		t.Logf("the store answered %.1f calls per second per instance, fewer than the 20 that reaching 90%% of a limit needs: the floor is not checked", perSec)
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
		if maxTok := int64(tpm + instances*tokens + tokens); gotTok > maxTok || floor && gotTok < tpm*90/100 {
			t.Errorf("window %d: %v tokens admitted, want within [%v, %v]", i, gotTok, tpm*90/100, maxTok)
		}
		if maxReq := int64(rpm + instances + 1); gotR > maxReq || floor && gotR < rpm*90/100 {
			t.Errorf("window %d: %v requests admitted, want within [%v, %v]", i, gotR, rpm*90/100, maxReq)
		}
	}
}

// TestSlowStoreBound: the overshoot bound of doc.go with a store slower
// than the sync interval, without Azurite: four limiters on one embedded
// store whose every call takes a random 0-100 ms more, one key driven at
// three times its RPM for three 2 s windows. Without ceilings this
// admitted 104-111 requests of 100 per window; the bound is 100 + 4 + 1.
// Measure other delays with QUOTA_SLOW_MS (for example 150).
func TestSlowStoreBound(t *testing.T) {
	delay := 100 * time.Millisecond
	if v := os.Getenv("QUOTA_SLOW_MS"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("QUOTA_SLOW_MS: %v", err)
		}
		delay = time.Duration(ms) * time.Millisecond
	}
	counters, limits := openTables(t)
	const (
		window    = 2 * time.Second
		instances = 4
		rpm       = 100
		measured  = 3
	)
	subj := Subject{KindKey, "slow"}
	cfg := limitsConfig(func(c *config.LimitsConfig) {
		c.Window = config.Duration(window)
		c.SyncInterval = config.Duration(100 * time.Millisecond)
		c.Defaults.Key = config.Limit{RPM: rpm}
	})
	var ls []*Limiter
	for range instances {
		l := New(&countingTable{Table: counters, latency: delay}, limits, cfg, SystemClock{}, nil)
		l.live.Store(instances) // as the heartbeat would tell
		ls = append(ls, l)
	}
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	var loops sync.WaitGroup
	for _, l := range ls {
		loops.Add(1)
		go func() { defer loops.Done(); _ = l.Run(runCtx) }()
	}
	first := windowStart(time.Now(), window).Add(window) // then a warm-up window
	time.Sleep(time.Until(first))
	end := first.Add(window * (measured + 1))
	var drivers sync.WaitGroup
	for _, l := range ls {
		drivers.Add(1)
		go func() {
			defer drivers.Done()
			tick := time.NewTicker(window * instances / (3 * rpm))
			defer tick.Stop()
			for time.Now().Before(end) {
				<-tick.C
				_, _ = l.Admit(ctx, []Subject{subj}, Estimate{Tokens: 1})
			}
		}()
	}
	drivers.Wait()
	stop()
	loops.Wait()
	for _, l := range ls {
		if err := l.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	for i := 1; i <= measured; i++ {
		_, req := tableTotals(t, counters, subj, windowKey(first.Add(window*time.Duration(i)), window))
		got = append(got, req)
		if req > rpm+instances+1 {
			t.Errorf("window %d: %d requests admitted, want at most %d (doc.go, Overshoot bound)", i, req, rpm+instances+1)
		}
	}
	t.Logf("store 0-%v slower: %v requests per window (limit %d)", delay, got, rpm)
}
