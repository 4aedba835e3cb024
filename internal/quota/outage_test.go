package quota

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/store"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOutage stops Azurite while two instances keep admitting (fail open),
// restarts it, and checks that the Counters table converges to the true
// totals: the sum of the settled usage, in every window and in the month.
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Azurite")
	}
	az := azurite.Start(t)
	const window = 2 * time.Second
	subj := Subject{KindTeam, "research"}
	cfg := limitsConfig(func(c *config.LimitsConfig) {
		c.Window = config.Duration(window)
		c.SyncInterval = config.Duration(100 * time.Millisecond)
		c.MonthSyncInterval = config.Duration(500 * time.Millisecond)
		c.Teams = map[string]config.Limit{"research": {RPM: 1e6, TPM: 1e9, MonthlyTokens: 1e12}}
	})
	logs := &syncBuffer{}
	var stacks []*stack
	for range 2 {
		s := newStack(t, az.ConnectionString(), cfg)
		s.l.log = slog.New(slog.NewTextHandler(logs, nil))
		stacks = append(stacks, s)
	}
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	var loops sync.WaitGroup
	for _, s := range stacks {
		loops.Add(1)
		go func() { defer loops.Done(); _ = s.l.Run(runCtx) }()
	}

	var mu sync.Mutex
	truth := map[string]int64{} // window row key -> settled tokens
	var total, refused atomic.Int64
	var stopDrive atomic.Bool
	var drivers sync.WaitGroup
	for _, s := range stacks {
		drivers.Add(1)
		go func() {
			defer drivers.Done()
			for !stopDrive.Load() {
				tk, err := s.l.Admit(ctx, []Subject{subj}, Estimate{Tokens: 500})
				if err != nil {
					refused.Add(1)
					continue
				}
				// The ticket is charged to the window of its admission.
				rk := tk.charges[0].win.rk
				actual := rand.Int64N(900) // above and below the estimate
				tk.Settle(actual, true)
				mu.Lock()
				truth[rk] += actual
				mu.Unlock()
				total.Add(actual)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	// The phases wait for what they are about, not for fixed times; the
	// bound only turns a hang into a failure.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited a minute for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	logged := func(s string) func() bool { return func() bool { return strings.Count(logs.String(), s) == 2 } }
	// Both instances have rows: the window crossed in between is then
	// synced before, during and after the outage.
	waitFor("both instances' rows", func() bool {
		rows, err := stacks[0].counters.Table.Query(ctx, store.Query{PartitionKey: subj.partitionKey()})
		ids := map[string]bool{}
		for _, r := range rows {
			ids[r.RowKey[strings.LastIndexByte(r.RowKey, '|')+1:]] = true
		}
		return err == nil && ids[stacks[0].l.InstanceID()] && ids[stacks[1].l.InstanceID()]
	})
	az.Stop()
	waitFor("both instances to see the outage", logged("counters table unreachable"))
	beforeRestart := total.Load()
	// Admissions go on while the table is down (fail open): some, then a
	// window boundary, so that a window is counted only while down.
	down := windowStart(time.Now(), window).Add(window)
	waitFor("admissions during the outage, across a window boundary", func() bool {
		return total.Load() > beforeRestart && time.Now().After(down)
	})
	az.Restart()
	waitFor("both instances to see the table again", logged("reachable again"))
	stopDrive.Store(true)
	drivers.Wait()
	// Stop the loops; Flush pushes the tail.
	stop()
	loops.Wait()
	for _, s := range stacks {
		if err := s.l.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	if refused.Load() != 0 {
		t.Errorf("%v requests refused, want 0 (limits are far away, fail open)", refused.Load())
	}

	tbl := stacks[0].counters.Table
	mu.Lock()
	defer mu.Unlock()
	for rk, want := range truth {
		got, _ := tableTotals(t, tbl, subj, rk)
		if got != want {
			t.Errorf("window %s: table holds %v tokens, want %v", rk, got, want)
		}
	}
	got, _ := tableTotals(t, tbl, subj, monthKey(monthStart(time.Now())))
	t.Logf("settled %d tokens over %d windows, %d of them from the stop on; month row holds %d",
		total.Load(), len(truth), total.Load()-beforeRestart, got)
	if got != total.Load() {
		t.Errorf("month: table holds %v tokens, want %v", got, total.Load())
	}
	out := logs.String()
	if n := strings.Count(out, "counters table unreachable"); n != 2 {
		t.Errorf("%d 'unreachable' log lines, want 2 (one per instance)", n)
	}
	if n := strings.Count(out, "reachable again"); n != 2 {
		t.Errorf("%d 'reachable again' log lines, want 2", n)
	}
}
