package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

// TestWriterAzuriteOutage: Azurite is stopped while events stream in and
// restarted later. Every event ends up in UsageEvents exactly once (counts
// and token sums match), through retries, the spool and its replay.
//
// The phases wait for what they are about (a write before the outage, a
// failed flush and a spool during it, a write after it), not for fixed
// times. Close gets a shutdown budget like serve's; what it cannot write in
// it must be spooled, never left in memory only: that, not the time the
// writes take, is what Close promises. A loaded 2-core machine (Azurite
// committing a few batches per second) cannot write the thousands of held
// and spooled events within a fixed budget, so the replay runs afterwards
// as a restarted gateway would, until the spool is empty.
func TestWriterAzuriteOutage(t *testing.T) {
	inst := azurite.Start(t)
	st, err := tables.NewFromConnectionString(inst.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tb := openTables(t, st)
	now := time.Now().UTC()
	spoolPath := filepath.Join(t.TempDir(), "spool.jsonl")
	w := NewWriter(tb, WriterOptions{FlushInterval: 100 * time.Millisecond, SpoolAfter: 300 * time.Millisecond,
		MaxBuffered: 500, SpoolPath: spoolPath})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	var (
		mu sync.Mutex
		in []Event
		wg sync.WaitGroup
	)
	// Three clients record an event every 2 ms while the phase's budget
	// lasts: the phases take as long as the machine needs (an Azurite
	// restart took 26 s at a load of 24 on 2 cores), and events recorded per
	// second of it would make the writes after it take longer still.
	stop := make(chan struct{})
	var budget atomic.Int64
	for g, team := range []string{"research", "sales", "ops"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if budget.Add(-1) < 0 {
					budget.Add(1)
					continue
				}
				i++
				e := ev(team, "app", "gpt-4o-mini", now, i)
				e.RequestID = fmt.Sprintf("%s-%d-%d", team, g, i)
				w.Record(ctx, e)
				mu.Lock()
				in = append(in, e)
				mu.Unlock()
			}
		}()
	}
	// waitFor polls the writer's counters until cond holds; the bound only
	// turns a hang into a failure.
	waitFor := func(what string, cond func(Stats) bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond(w.Stats()) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 2 minutes for %s; stats %+v", what, w.Stats())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	recorded := func() int { mu.Lock(); defer mu.Unlock(); return len(in) }
	began := time.Now()
	budget.Store(500)
	waitFor("a write before the outage", func(s Stats) bool { return s.Transactions > 0 })
	inst.Stop()
	// More than MaxBuffered (500) events during the outage: they are spooled
	// by the memory bound if SpoolAfter has not spooled them already.
	before := w.Stats()
	budget.Store(600)
	waitFor("a failed flush and a spool during the outage", func(s Stats) bool {
		return s.Failures > before.Failures && s.Spooled > 0
	})
	budget.Store(0)
	outage := time.Now()
	inst.Restart()
	t.Logf("outage seen after %v; Azurite restarted in %v", outage.Sub(began).Round(time.Millisecond), time.Since(outage).Round(time.Millisecond))
	// Events recorded after the restart, beside the retry and the replay.
	want := recorded() + 300
	budget.Store(300)
	waitFor("300 events recorded after the restart", func(Stats) bool { return recorded() >= want })
	close(stop)
	wg.Wait()
	cancel()
	<-done

	// Shutdown: Close writes what it can in its budget and spools the rest.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = w.Close(cctx)
	ccancel()
	if s := w.Stats(); s.Buffered != 0 {
		t.Fatalf("after Close: %d events only in memory (Close: %v); want every event written or spooled", s.Buffered, err)
	}
	if err != nil {
		t.Logf("Close spooled what it could not write in its budget: %v", err)
	}
	s := w.Stats()
	t.Logf("events %d, stats %+v", len(in), s)
	if s.Failures == 0 {
		t.Error("got no failed flush, want some: the outage was not seen")
	}
	// A restarted gateway (a new Writer on the same spool) replays it.
	w2 := NewWriter(tb, WriterOptions{SpoolPath: spoolPath})
	rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer rcancel()
	replayStart := time.Now()
	for (spool{path: spoolPath}).size() > 0 {
		if err := w2.Flush(rctx); err != nil {
			if rctx.Err() != nil {
				t.Fatalf("spool not replayed within 3 minutes: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("replayed %d spooled events in %v", w2.Stats().Replayed, time.Since(replayStart).Round(time.Millisecond))
	if got, want := sumOf(allEvents(t, tb, Day(now))), sumOf(in); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// The partial sums went through the same faults and still equal the events.
	if got, want := partialSums(t, tb, Day(now)), sumOf(in); got != want {
		t.Errorf("partial sums: got %+v, want %+v", got, want)
	}
}

// TestWriterThroughputAzurite measures batched writes to Azurite: events
// per second and table operations per 1,000 events.
func TestWriterThroughputAzurite(t *testing.T) {
	st, err := tables.NewFromConnectionString(az.Start(t).ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tb := openTables(t, st)
	now := time.Now().UTC()
	w := NewWriter(tb, WriterOptions{})
	const n = 5000
	var in []Event
	for i := 0; i < n; i++ {
		team := []string{"research", "sales", "ops"}[i%3]
		e := ev(team, "app", "gpt-4o-mini", now, i)
		e.RequestID = fmt.Sprintf("tp-%d", i)
		in = append(in, e)
		w.Record(context.Background(), e)
	}
	start := time.Now()
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	s := w.Stats()
	ops := s.Transactions + s.IndexWrites + s.DirtyWrites
	t.Logf("Azurite: %d events in %v = %.0f events/s; %d table operations = %.1f per 1,000 events",
		n, el.Round(time.Millisecond), float64(n)/el.Seconds(), ops, float64(ops)*1000/n)
	if got, want := sumOf(allEvents(t, tb, Day(now))), sumOf(in); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if ops > 40*n/1000 {
		t.Errorf("got %v operations, want at most %v", ops, 40*n/1000)
	}
}
