package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/blob"
)

// flaky fails appends on purpose: down refuses everything; otherwise a
// seeded share of appends fail before writing, and a share write and then
// report a failure (an answer lost on the way back).
type flaky struct {
	*blob.Dir
	mu        sync.Mutex
	rnd       *rand.Rand
	down      bool
	failShare float64
	lostShare float64
}

func (f *flaky) AppendAt(ctx context.Context, name string, data []byte, at int64) (int, error) {
	f.mu.Lock()
	down, x := f.down, f.rnd.Float64()
	f.mu.Unlock()
	switch {
	case down || x < f.failShare:
		return 0, errors.New("injected: store unavailable")
	case x < f.failShare+f.lostShare:
		if _, err := f.Dir.AppendAt(ctx, name, data, at); err != nil {
			return 0, err
		}
		return 0, errors.New("injected: answer lost")
	}
	return f.Dir.AppendAt(ctx, name, data, at)
}

func (f *flaky) setDown(v bool) { f.mu.Lock(); f.down = v; f.mu.Unlock() }

func newDir(t *testing.T) *blob.Dir {
	t.Helper()
	d, err := blob.OpenDir(t.TempDir(), "audit")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var day = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func rec(i int) Record {
	r := Record{Time: day.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprintf("req-%05d", i), KeyID: "k1",
		Team: []string{"research", "finance", "odd team/ü"}[i%3], App: "app", Model: "gpt-4o-mini", Op: "chat/completions", Status: 200}
	r.SetBodies([]byte(fmt.Sprintf(`{"messages":[{"role":"user","content":"question %d"}]}`, i)),
		[]byte(fmt.Sprintf("data: {\"n\":%d}\n\ndata: [DONE]\n\n", i)))
	return r
}

// exactlyOnce reads every record back and checks each of want appears
// once, with its bodies intact.
func exactlyOnce(t *testing.T, d *blob.Dir, want int) {
	t.Helper()
	seen := map[string]int{}
	bad, err := Scan(context.Background(), d, "", func(_ string, r Record) {
		seen[r.RequestID]++
		i := 0
		fmt.Sscanf(r.RequestID, "req-%d", &i)
		w := rec(i)
		if r.Request != w.Request || r.Response != w.Response || r.Team != w.Team {
			t.Errorf("%s: bodies or team differ: %+v", r.RequestID, r)
		}
	})
	if err != nil || bad != 0 {
		t.Fatalf("Scan: %v, %d bad lines", err, bad)
	}
	for i := range want {
		if n := seen[rec(i).RequestID]; n != 1 {
			t.Errorf("%s: %d copies, want 1", rec(i).RequestID, n)
		}
	}
	if len(seen) != want {
		t.Errorf("%d records, want %d", len(seen), want)
	}
}

// TestWriterExactlyOnce: appends that fail, and appends that land but
// report failure, still leave every record exactly once.
func TestWriterExactlyOnce(t *testing.T) {
	d := newDir(t)
	f := &flaky{Dir: d, rnd: rand.New(rand.NewPCG(1, 2)), failShare: 0.2, lostShare: 0.2}
	now := day
	clock := func() time.Time { now = now.Add(2 * time.Second); return now }
	spool := filepath.Join(t.TempDir(), "spool.jsonl")
	w := NewWriter(f, Options{SpoolPath: spool, SpoolAfter: 5 * time.Second, Now: clock, maxBlocks: 7})
	ctx := context.Background()
	for i := range 300 {
		w.Record(ctx, rec(i))
		if i%13 == 0 {
			_ = w.Flush(ctx)
		}
	}
	for i := 0; i < 5000 && (w.Stats().Buffered > 0 || w.spool.size() > 0); i++ {
		_ = w.Flush(ctx)
	}
	st := w.Stats()
	if st.Landed == 0 || st.Failures == 0 || st.Spooled == 0 || st.Replayed == 0 || st.Buffered != 0 || w.spool.size() != 0 {
		t.Fatalf("the faults did not happen, or the writer did not finish: %+v", st)
	}
	f.failShare, f.lostShare = 0, 0
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(t, d, 300)
	names, _ := d.List(ctx, "")
	if len(names) < 3*2 {
		t.Errorf("blobs %v: want them rolled after 7 blocks", names)
	}
}

// TestWriterOutage: a store down past SpoolAfter spools, a Close while it
// is down spools the rest, and the next writer replays it all.
func TestWriterOutage(t *testing.T) {
	d := newDir(t)
	f := &flaky{Dir: d, rnd: rand.New(rand.NewPCG(3, 4))}
	now := day
	clock := func() time.Time { return now }
	spool := filepath.Join(t.TempDir(), "spool.jsonl")
	ctx := context.Background()
	w := NewWriter(f, Options{SpoolPath: spool, SpoolAfter: time.Second, Now: clock})
	for i := range 100 {
		w.Record(ctx, rec(i))
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	f.setDown(true)
	for i := 100; i < 200; i++ {
		w.Record(ctx, rec(i))
	}
	_ = w.Flush(ctx)
	now = now.Add(2 * time.Second)
	_ = w.Flush(ctx)
	if st := w.Stats(); st.Spooled != 100 || st.Buffered != 0 {
		t.Fatalf("after SpoolAfter: %+v, want 100 spooled", st)
	}
	for i := 200; i < 250; i++ {
		w.Record(ctx, rec(i))
	}
	_ = w.Close(ctx)
	w.Record(ctx, rec(250)) // after Close: spooled at once
	if st := w.Stats(); st.Spooled != 151 {
		t.Fatalf("after Close: %+v, want 151 spooled", st)
	}
	f.setDown(false)
	w2 := NewWriter(f, Options{SpoolPath: spool})
	if err := w2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w2.Stats(); st.Replayed != 151 {
		t.Errorf("replayed %d, want 151", st.Replayed)
	}
	exactlyOnce(t, d, 251)
}

// TestWriterLargeRecord: a record above the block limit (4 MiB; 64 KiB
// here) spans blocks and reads back whole.
func TestWriterLargeRecord(t *testing.T) {
	d := newDir(t)
	w := NewWriter(d, Options{blockSize: 64 << 10})
	r := rec(0)
	big := bytes.Repeat([]byte("x"), 150<<10)
	r.SetBodies(big, []byte{0xff, 0x00, 0xfe}) // a binary response: base64
	w.Record(context.Background(), r)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := Lookup(context.Background(), d, "req-00000", "")
	if err == nil {
		t.Fatalf("Lookup of a non gateway id: got %+v", got)
	}
	n := 0
	_, err = Scan(context.Background(), d, "", func(_ string, g Record) {
		n++
		req, resp := g.Bodies()
		if !bytes.Equal(req, big) || !bytes.Equal(resp, []byte{0xff, 0x00, 0xfe}) {
			t.Errorf("bodies differ: %d bytes, %x", len(req), resp)
		}
	})
	if err != nil || n != 1 {
		t.Fatalf("Scan: %v, %d records", err, n)
	}
}

func TestLookup(t *testing.T) {
	d := newDir(t)
	w := NewWriter(d, Options{})
	ctx := context.Background()
	ids := []string{"019aef1c2d3e0000000000000000000a", "019aef1c2d3e0000000000000000000b"}
	for i, id := range ids {
		r := rec(i)
		r.RequestID = id
		r.Time, _ = IDTime(id)
		w.Record(ctx, r)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		r, err := Lookup(ctx, d, id, "")
		if err != nil || r.RequestID != id || r.Team != rec(i).Team {
			t.Errorf("Lookup %s: %+v %v", id, r, err)
		}
		if _, err := Lookup(ctx, d, id, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup %s in another team: %v, want ErrNotFound", id, err)
		}
	}
	if _, err := Lookup(ctx, d, "019aef1c2d3e0000000000000000000c", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing id: %v", err)
	}
}

func TestRedactor(t *testing.T) {
	r, err := NewRedactor(true, []string{`secret-[0-9]+`})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{`mail ann.lee+x@example.co.uk now`, `mail [REDACTED] now`},
		{`call +1 415-555-0100 or (030) 1234 5678`, `call [REDACTED] or [REDACTED]`},
		{`card 4111 1111 1111 1111 ok`, `card [REDACTED] ok`},
		{`not a card 4111 1111 1111 1112`, `not a card 4111 1111 1111 1112`},
		{`{"created":1733389999,"id":"chatcmpl-019aef1c2d3e","total_tokens":1234}`, `{"created":1733389999,"id":"chatcmpl-019aef1c2d3e","total_tokens":1234}`},
		{`code secret-42`, `code [REDACTED]`},
		{`[0.0123456789012345,-0.4111111111111111,1.2345678901234567e-05]`, `[0.0123456789012345,-0.4111111111111111,1.2345678901234567e-05]`},
		{`"4111111111111111"`, `"[REDACTED]"`},
	}
	for _, tt := range tests {
		if got, _ := r.Apply(tt.in); got != tt.want {
			t.Errorf("Apply(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := NewRedactor(false, []string{"("}); err == nil || !strings.Contains(err.Error(), "redaction rule") {
		t.Errorf("bad rule: %v", err)
	}
}
