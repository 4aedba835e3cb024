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
	time.Sleep(1500 * time.Millisecond)
	az.Stop()
	beforeRestart := total.Load()
	time.Sleep(2500 * time.Millisecond) // admissions go on while the table is down
	if total.Load() == beforeRestart {
		t.Fatalf("nothing admitted while the table was down; want local enforcement (fail open)")
	}
	az.Restart()
	time.Sleep(1500 * time.Millisecond)
	stopDrive.Store(true)
	drivers.Wait()
	// Let the loops push the rest, then stop them; Flush catches the tail.
	time.Sleep(500 * time.Millisecond)
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
