package ledger

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

var day1 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

func TestWriterBatching(t *testing.T) {
	big := strings.Repeat("x", 16<<10) // four such columns: 100 rows are over 4 MiB
	tests := []struct {
		name     string
		make     func() []Event
		wantTxns int64
		days     []string
	}{
		{"one partition, 99 rows and a partial row: one transaction", func() []Event { return evs("research", day1, 99, "") }, 1, []string{"2026-03-10"}},
		{"250 rows: split into 99+99+52", func() []Event { return evs("research", day1, 250, "") }, 3, []string{"2026-03-10"}},
		{"three teams, two days: one transaction per partition", func() []Event {
			var out []Event
			for _, tm := range []string{"research", "sales", "ops/eu"} {
				out = append(out, evs(tm, day1, 30, "")...)
				out = append(out, evs(tm, day1.AddDate(0, 0, 1), 20, "")...)
			}
			return out
		}, 6, []string{"2026-03-10", "2026-03-11"}},
		{"large rows: split by size", func() []Event { return evs("research", day1, 100, big) }, 2, []string{"2026-03-10"}},
	}
	for name, open := range backends(t) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				tb := open(t)
				w := NewWriter(tb, WriterOptions{Now: func() time.Time { return day1 }})
				in := tt.make()
				for _, e := range in {
					w.Record(context.Background(), e)
				}
				if err := w.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
				if got := w.Stats().Transactions; got != tt.wantTxns {
					t.Errorf("got %v transactions, want %v", got, tt.wantTxns)
				}
				if got, want := sumOf(allEvents(t, tb, tt.days...)), sumOf(in); got != want {
					t.Errorf("got %+v, want %+v", got, want)
				}
				// Every row sits in its event's partition.
				for _, e := range in[:1] {
					got, err := tb.Events.Get(context.Background(), Day(e.Time)+"|"+EncodeKey(e.Team), e.RequestID)
					if err != nil {
						t.Fatal(err)
					}
					if g := eventFrom(got); g != e {
						t.Errorf("got %+v, want %+v", g, e)
					}
				}
			})
		}
	}
}

func evs(team string, at time.Time, n int, deployment string) []Event {
	out := make([]Event, n)
	for i := range out {
		out[i] = ev(team, "app1", "gpt-4o-mini", at.Add(time.Duration(i)*time.Millisecond), i)
		out[i].Deployment = deployment
		if deployment != "" {
			out[i].Backend, out[i].Region, out[i].App = deployment, deployment, deployment
		}
	}
	return out
}

func TestChunksRespectLimits(t *testing.T) {
	tests := []struct {
		name string
		n    int
		size int
		want []int
	}{
		{"empty", 0, 0, nil},
		// One group: each transaction carries its partial row too.
		{"99", 99, 0, []int{99}},
		{"100", 100, 0, []int{99, 1}},
		{"199", 199, 0, []int{99, 99, 1}},
		// The partial row carries the 250 KiB app name as well.
		{"big rows", 10, 250 << 10, []int{3, 3, 3, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			in := evs("t", day1, tt.n, strings.Repeat("y", tt.size))
			end := 0
			for c := range chunks("pk", in) {
				if len(c.ops) != len(c.evs) || c.end != end+len(c.evs) || &c.evs[0] != &in[end] {
					t.Fatalf("chunk %d: %d rows for %d events ending at %d, after %d", len(got), len(c.ops), len(c.evs), c.end, end)
				}
				for i, op := range c.ops {
					if op.Kind != store.OpInsert || op.Entity.RowKey != c.evs[i].RowKey() {
						t.Fatalf("chunk %d op %d: %v %q, want an insert of %q", len(got), i, op.Kind, op.Entity.RowKey, c.evs[i].RowKey())
					}
				}
				end = c.end
				got = append(got, len(c.evs))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestWriterIdempotent(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			tb := open(t)
			w := NewWriter(tb, WriterOptions{Now: func() time.Time { return day1 }})
			in := append(evs("research", day1, 120, ""), evs("sales", day1, 30, "")...)
			for round := 0; round < 2; round++ {
				for _, e := range in {
					w.Record(context.Background(), e)
				}
				// The same request twice in one flush is written once too.
				w.Record(context.Background(), in[0])
				if err := w.Flush(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if got, want := sumOf(allEvents(t, tb, "2026-03-10")), sumOf(in); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if got, want := partialSums(t, tb, "2026-03-10"), sumOf(in); got != want {
				t.Errorf("partial sums: got %+v, want %+v", got, want)
			}
		})
	}
}

func TestWriterCloseFlushes(t *testing.T) {
	tb := embeddedTables(t)
	w := NewWriter(tb, WriterOptions{FlushInterval: time.Hour, Now: func() time.Time { return day1 }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	in := evs("research", day1, 42, "")
	for _, e := range in {
		w.Record(ctx, e)
	}
	cancel()
	<-done
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := sumOf(allEvents(t, tb, "2026-03-10")), sumOf(in); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// TestWriterSpool: with the store down, events wait in memory up to
// MaxBuffered, then go to the spool file; when the store is back the spool
// is replayed and emptied, and nothing is counted twice.
func TestWriterSpool(t *testing.T) {
	var down atomic.Bool
	base := embeddedTables(t)
	tb := withDown(base, &down)
	path := filepath.Join(t.TempDir(), "spool.jsonl")
	clk := &clock{t: day1}
	w := NewWriter(tb, WriterOptions{MaxBuffered: 150, SpoolAfter: time.Hour, SpoolPath: path, Now: clk.Now})
	ctx := context.Background()
	down.Store(true)
	in := evs("research", day1, 400, "")
	for i, e := range in[:100] {
		w.Record(ctx, e)
		_ = i
	}
	if err := w.Flush(ctx); err == nil {
		t.Fatal("got nil error from a flush to a down store, want one")
	}
	if got := w.Stats().Spooled; got != 0 {
		t.Errorf("below the bound: got %v spooled, want 0", got)
	}
	for _, e := range in[100:300] {
		w.Record(ctx, e)
	}
	clk.Set(day1.Add(time.Minute)) // past the backoff
	_ = w.Flush(ctx)
	if got := w.Stats().Spooled; got != 300 {
		t.Errorf("bound reached: got %v spooled, want 300", got)
	}
	if got := lines(t, path); got != 300 {
		t.Errorf("got %v spool lines, want 300", got)
	}
	// Close with the store still down spools the rest.
	for _, e := range in[300:] {
		w.Record(ctx, e)
	}
	if err := w.Close(ctx); err == nil {
		t.Fatal("got nil error from Close on a down store, want the write error")
	}
	if got := lines(t, path); got != 400 {
		t.Errorf("after Close: got %v spool lines, want 400", got)
	}
	// A new process (same spool) with the store back replays it.
	down.Store(false)
	w2 := NewWriter(tb, WriterOptions{SpoolPath: path, Now: clk.Now})
	w2.Record(ctx, in[0]) // also in the spool: must not count twice
	if err := w2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w2.Stats().Replayed; got != 400 {
		t.Errorf("got %v replayed, want 400", got)
	}
	if got := lines(t, path); got != 0 {
		t.Errorf("got %v spool lines after replay, want 0", got)
	}
	if got, want := sumOf(allEvents(t, base, "2026-03-10")), sumOf(in); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got, want := partialSums(t, base, "2026-03-10"), sumOf(in); got != want {
		t.Errorf("partial sums: got %+v, want %+v", got, want)
	}
}

func TestSpoolTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.jsonl")
	s := spool{path: path}
	if err := s.append(evs("a", day1, 3, "")); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-03-10T09:00:00Z","requestId":"torn`)
	f.Close()
	var got int
	n, bad, err := s.replay(2, func(e []Event) error { got += len(e); return nil })
	if err != nil || n != 3 || bad != 1 || got != 3 {
		t.Errorf("got replayed %v bad %v written %v err %v, want 3 1 3 nil", n, bad, got, err)
	}
}

func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// TestWriterDirtyDays: events flushed after their day ended mark the day.
func TestWriterDirtyDays(t *testing.T) {
	tb := embeddedTables(t)
	w := NewWriter(tb, WriterOptions{Now: func() time.Time { return day1.AddDate(0, 0, 3) }})
	w.Record(context.Background(), ev("research", "a", "m", day1, 1))
	w.Record(context.Background(), ev("research", "a", "m", day1.AddDate(0, 0, 3), 2))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	marks, err := tb.Dirty.Query(context.Background(), store.Query{PartitionKey: dirtyPK})
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].RowKey != "2026-03-10" {
		t.Errorf("got %v marks, want one for 2026-03-10", len(marks))
	}
}

// flakyMulti wraps a table that commits several batches at once (the
// embedded store) and, in its first call only, fails the batches at the
// positions in fail with a transient error.
type flakyMulti struct {
	store.Table
	fail  map[int]bool
	calls []int // batches per call
}

func (f *flakyMulti) BatchAll(ctx context.Context, bs [][]store.Op) []error {
	f.calls = append(f.calls, len(bs))
	inner := f.Table.(multiBatcher)
	if len(f.calls) > 1 {
		return inner.BatchAll(ctx, bs)
	}
	errs := make([]error, len(bs))
	var pass [][]store.Op
	var at []int
	for i, ops := range bs {
		if f.fail[i] {
			errs[i] = errDown
			continue
		}
		pass, at = append(pass, ops), append(at, i)
	}
	for j, err := range inner.BatchAll(ctx, pass) {
		errs[at[j]] = err
	}
	return errs
}

// TestWriterGroupedCommits: a table that commits several batches at once
// gets up to batchesPerCommit per call; a batch that fails is retried by
// the next flush, one the store refuses as invalid is rejected, and every
// other event is written exactly once.
func TestWriterGroupedCommits(t *testing.T) {
	tests := []struct {
		name         string
		fail         map[int]bool
		invalidAt    int // event made invalid, or -1
		wantErr      bool
		wantWritten  int64 // after the first flush
		wantRejected int64
		wantCalls    []int
	}{
		{"all good: 13 batches in 7 calls", nil, -1, false, 1250, 0, []int{2, 2, 2, 2, 2, 2, 1}},
		{"batch 1 fails once: the flush stops after its call", map[int]bool{1: true}, -1, true, 99, 0, []int{2, 2, 2, 2, 2, 2, 2}},
		{"batch 4 is invalid", nil, 450, false, 1151, 99, []int{2, 2, 2, 2, 2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := embeddedTables(t)
			f := &flakyMulti{Table: base.Events, fail: tt.fail}
			tb := base
			tb.Events = f
			clk := &clock{t: day1}
			w := NewWriter(tb, WriterOptions{Now: clk.Now})
			if w.kickAt != store.MaxBatchOps*batchesPerCommit {
				t.Errorf("kickAt %d, want %d", w.kickAt, store.MaxBatchOps*batchesPerCommit)
			}
			in := evs("research", day1, 1250, "")
			if tt.invalidAt >= 0 {
				in[tt.invalidAt].Deployment = strings.Repeat("z", 40000) // over Azure's 64 KiB string limit
			}
			for _, e := range in {
				w.Record(context.Background(), e)
			}
			err := w.Flush(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("first flush: got %v, want error %v", err, tt.wantErr)
			}
			if s := w.Stats(); s.Written != tt.wantWritten || s.Rejected != tt.wantRejected {
				t.Errorf("after the first flush: written %d rejected %d, want %d %d", s.Written, s.Rejected, tt.wantWritten, tt.wantRejected)
			}
			clk.Set(day1.Add(time.Minute)) // past the backoff
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if s := w.Stats(); s.Written+s.Rejected != 1250 || s.Buffered != 0 {
				t.Errorf("after the retry: %+v, want 1250 written or rejected, none buffered", s)
			}
			want := in
			if tt.invalidAt >= 0 {
				want = append(append([]Event{}, in[:396]...), in[495:]...) // 99 events and a partial row per batch
			}
			if got, want := sumOf(allEvents(t, base, "2026-03-10")), sumOf(want); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if got, want := partialSums(t, base, "2026-03-10"), sumOf(want); got != want {
				t.Errorf("partial sums: got %+v, want %+v", got, want)
			}
			if !slices.Equal(f.calls, tt.wantCalls) {
				t.Errorf("got batches per call %v, want %v", f.calls, tt.wantCalls)
			}
		})
	}
}
