package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

// TestWriterAzuriteOutage: Azurite is stopped while events stream in and
// restarted later. Every event ends up in UsageEvents exactly once (counts
// and token sums match), through retries, the spool and its replay.
func TestWriterAzuriteOutage(t *testing.T) {
	inst := azurite.Start(t)
	st, err := tables.NewFromConnectionString(inst.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tb := openTables(t, st)
	now := time.Now().UTC()
	w := NewWriter(tb, WriterOptions{FlushInterval: 100 * time.Millisecond, SpoolAfter: 300 * time.Millisecond,
		MaxBuffered: 500, SpoolPath: filepath.Join(t.TempDir(), "spool.jsonl")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()

	var (
		mu sync.Mutex
		in []Event
		wg sync.WaitGroup
	)
	stop := make(chan struct{})
	for g, team := range []string{"research", "sales", "ops"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				e := ev(team, "app", "gpt-4o-mini", now, i)
				e.RequestID = fmt.Sprintf("%s-%d-%d", team, g, i)
				w.Record(ctx, e)
				mu.Lock()
				in = append(in, e)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	inst.Stop()
	time.Sleep(1500 * time.Millisecond)
	inst.Restart()
	time.Sleep(700 * time.Millisecond)
	close(stop)
	wg.Wait()
	cancel()
	<-done
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	if err := w.Close(cctx); err != nil {
		t.Fatal(err)
	}
	// Whatever Close could not write is spooled; a restart replays it.
	if err := w.Flush(cctx); err != nil {
		t.Fatal(err)
	}
	s := w.Stats()
	t.Logf("events %d, stats %+v", len(in), s)
	if s.Failures == 0 {
		t.Error("got no failed flush, want some: the outage was not seen")
	}
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
