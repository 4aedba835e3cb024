package route

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

func affinityTable(t *testing.T) store.Table {
	t.Helper()
	st, err := embedded.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tb, err := st.Table(context.Background(), AffinityTable)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// runWriter runs a's writer until the test ends.
func runWriter(t *testing.T, a *Affinity) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestAffinityAcrossInstances(t *testing.T) {
	tb := affinityTable(t)
	clk := newFakeClock()
	log := slog.New(slog.DiscardHandler)
	one := NewAffinity(tb, log, AffinityOptions{TTL: time.Hour, Now: clk.Now})
	two := NewAffinity(tb, log, AffinityOptions{TTL: time.Hour, Now: clk.Now})
	runWriter(t, one)
	one.Remember("resp_abc", "sim-b", "key1")
	if got, ok := one.Lookup(context.Background(), "resp_abc"); !ok || got != "sim-b" {
		t.Fatalf("same instance: got %q %v, want sim-b", got, ok)
	}
	// The other instance reads the store once the writer has written.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, owner, ok := two.LookupOwner(context.Background(), "resp_abc")
		if ok && got == "sim-b" {
			if owner != "key1" {
				t.Errorf("other instance: owner %q, want key1 from the store", owner)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other instance: got %q %v, want sim-b from the store", got, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tests := []struct {
		name string
		id   string
		adv  time.Duration
		ok   bool
	}{
		{"unknown id", "resp_nope", 0, false},
		{"id with characters a RowKey cannot hold", "resp/abc", 0, false},
		{"expired after the TTL", "resp_abc", time.Hour + time.Second, false},
	}
	fresh := NewAffinity(tb, log, AffinityOptions{TTL: time.Hour, Now: clk.Now})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Advance(tt.adv)
			if got, ok := fresh.Lookup(context.Background(), tt.id); ok != tt.ok {
				t.Errorf("got %q %v, want ok=%v", got, ok, tt.ok)
			}
		})
	}
}

func TestAffinityFullBufferDrops(t *testing.T) {
	a := NewAffinity(affinityTable(t), slog.New(slog.DiscardHandler), AffinityOptions{WriteBuffer: 2, CacheSize: 3})
	done := make(chan struct{})
	go func() {
		for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
			a.Remember(id, "b", "") // no writer runs: must not block
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Remember blocked on a full buffer")
	}
	if got := a.Dropped(); got != 3 {
		t.Errorf("got %d dropped, want 3", got)
	}
	// The LRU keeps the newest three in memory.
	for id, want := range map[string]bool{"r1": false, "r3": true, "r5": true} {
		if _, ok := a.Lookup(context.Background(), id); ok != want {
			t.Errorf("%s: got in memory %v, want %v", id, ok, want)
		}
	}
}
