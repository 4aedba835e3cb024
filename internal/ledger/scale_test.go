package ledger

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
)

// heapPeak samples the Go heap (runtime/metrics, no stop-the-world) every
// millisecond while fn runs and returns its peak above the heap just
// before fn, after a GC: the memory fn itself needs.
func heapPeak(fn func()) (peak uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	runtime.GC()
	base := read()
	var max atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v := read(); v > max.Load() {
				max.Store(v)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	if v := read(); v > max.Load() {
		max.Store(v)
	}
	if m := max.Load(); m > base {
		return m - base
	}
	return 0
}

// rssAnon is the process's anonymous resident memory (VmRSS less the file
// pages, such as the embedded store's memory map), in bytes.
func rssAnon(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var kb uint64
	for _, line := range splitLines(string(b)) {
		if _, err := fmt.Sscanf(line, "RssAnon: %d kB", &kb); err == nil {
			return kb << 10
		}
	}
	return 0
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i < len(s) {
			i++
		}
		s = s[i:]
	}
	return out
}

// TestLedgerMemoryAtScale records FGW_LEDGER_EVENTS events (default
// 20,000; `make ledger-scale` runs 1,000,000) for one day, 4 teams × 5
// apps × 3 models × 2 classes, straight into a Writer on the embedded
// store, then rolls the day up, reports it and rebuilds it. The Go heap
// each phase needs above the heap before it (in-process, runtime/metrics;
// the RSS of a child process would also count the store's memory map) stays
// under 64 MiB, and the report equals what was recorded. Skipped in -short
// mode.
func TestLedgerMemoryAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 20_000
	if v := os.Getenv("FGW_LEDGER_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	const bound = 64 << 20
	ctx := context.Background()
	tb := embeddedTables(t)
	clk := func() time.Time { return day1 }
	w := NewWriter(tb, WriterOptions{Now: clk})
	idle := rssAnon(t)
	teams := []string{"research", "sales", "ops", "finance"}
	var want sums
	record := heapPeak(func() {
		for i := 0; i < n; i++ {
			e := Event{Time: day1.Add(time.Duration(i) * time.Millisecond), RequestID: fmt.Sprintf("%016x", uint64(i)*0x9E3779B97F4A7C15), // random order, as the gateway's ids
				KeyID: "k1", Team: teams[i%4], App: "app" + strconv.Itoa(i%5), Model: []string{"gpt-4o", "gpt-4o-mini", "o4-mini"}[i%3],
				Class: []Class{ClassInteractive, ClassBatch}[i/7%2], Status: 200, PromptTokens: int64(10 + i%7),
				CompletionTokens: int64(5 + i%11), Currency: "USD", UsageSource: SourceReported}
			e.TotalTokens = e.PromptTokens + e.CompletionTokens
			e.Cost = money.Nanos(e.TotalTokens) * 1000
			want.Events++
			want.Prompt += e.PromptTokens
			want.Completion += e.CompletionTokens
			want.Cost += int64(e.Cost)
			w.Record(ctx, e)
			if i%10_000 == 9_999 { // the Writer's Run flushes on its own; a test flushes as often
				if err := w.Flush(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}
		if err := w.Flush(ctx); err != nil {
			t.Error(err)
		}
	})
	d := NewDaily(tb, clk)
	var rollup RollupResult
	var rerr error
	rollupPeak := heapPeak(func() { rollup, rerr = d.Rollup(ctx) })
	if rerr != nil {
		t.Fatal(rerr)
	}
	var rows []Row
	reportPeak := heapPeak(func() {
		rows, rerr = d.Report(ctx, Query{From: day1, To: day1, By: []string{ByTeam, ByApp, ByModel, ByClass}})
	})
	if rerr != nil {
		t.Fatal(rerr)
	}
	var rebuild RebuildResult
	rebuildPeak := heapPeak(func() { rebuild, rerr = d.Rebuild(ctx, day1) })
	if rerr != nil {
		t.Fatal(rerr)
	}
	after := rssAnon(t)
	var got sums
	for _, r := range rows {
		got.Events += int(r.Requests)
		got.Prompt += r.PromptTokens
		got.Completion += r.CompletionTokens
		got.Cost += int64(r.Cost)
	}
	t.Logf("%d events: heap above baseline: record %.1f MiB, rollup %.1f MiB (%d rows), report %.1f MiB (%d rows), rebuild %.1f MiB (%d events, %d corrections); RssAnon %.1f -> %.1f MiB",
		n, mib(record), mib(rollupPeak), rollup.Rows, mib(reportPeak), len(rows), mib(rebuildPeak), rebuild.Events, rebuild.Corrections,
		mib(idle), mib(after))
	if got != want {
		t.Errorf("report: got %+v, want %+v", got, want)
	}
	if rebuild.Events != int64(n) || rebuild.Corrections != 0 {
		t.Errorf("rebuild: got %+v, want %d events and no correction", rebuild, n)
	}
	for name, v := range map[string]uint64{"record": record, "rollup": rollupPeak, "report": reportPeak, "rebuild": rebuildPeak} {
		if v > bound {
			t.Errorf("%s: %.1f MiB of heap above the baseline, want under 64 MiB", name, mib(v))
		}
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
