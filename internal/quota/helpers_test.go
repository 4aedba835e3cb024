package quota

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// openTables returns the Counters and Limits tables of a fresh embedded store.
func openTables(t testing.TB) (counters, limits store.Table) {
	t.Helper()
	s, err := embedded.Open(filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	counters, err = s.Table(ctx, "Counters")
	if err != nil {
		t.Fatal(err)
	}
	limits, err = s.Table(ctx, "Limits")
	if err != nil {
		t.Fatal(err)
	}
	return counters, limits
}

func limitsConfig(mod func(*config.LimitsConfig)) config.LimitsConfig {
	var c config.LimitsConfig
	if mod != nil {
		mod(&c)
	}
	c.ApplyDefaults()
	return c
}

// countingTable counts the operations that reach the table and can fail
// them: down makes every call fail before it reaches the table; lostReply
// applies writes and then reports a network error, the case that makes a
// read-modify-write count twice.
type countingTable struct {
	store.Table
	ops       atomic.Int64
	down      atomic.Bool
	lostReply atomic.Bool
	// latency, when set, delays every call by a random time up to it: a
	// slow store, whatever the machine's load.
	latency time.Duration
}

var errNetwork = errors.New("dial tcp: connection refused")

func (c *countingTable) before() error {
	if c.down.Load() {
		return errNetwork
	}
	c.ops.Add(1)
	if c.latency > 0 {
		time.Sleep(rand.N(c.latency))
	}
	return nil
}

func (c *countingTable) after(err error) error {
	if err == nil && c.lostReply.Load() {
		return errNetwork
	}
	return err
}

func (c *countingTable) Get(ctx context.Context, pk, rk string) (store.Entity, error) {
	if err := c.before(); err != nil {
		return store.Entity{}, err
	}
	return c.Table.Get(ctx, pk, rk)
}

func (c *countingTable) Upsert(ctx context.Context, e store.Entity) (string, error) {
	if err := c.before(); err != nil {
		return "", err
	}
	et, err := c.Table.Upsert(ctx, e)
	return et, c.after(err)
}

func (c *countingTable) Update(ctx context.Context, e store.Entity, ifMatch string) (string, error) {
	if err := c.before(); err != nil {
		return "", err
	}
	et, err := c.Table.Update(ctx, e, ifMatch)
	return et, c.after(err)
}

func (c *countingTable) Query(ctx context.Context, q store.Query) ([]store.Entity, error) {
	if err := c.before(); err != nil {
		return nil, err
	}
	return c.Table.Query(ctx, q)
}

func (c *countingTable) Batch(ctx context.Context, ops []store.Op) error {
	if err := c.before(); err != nil {
		return err
	}
	return c.after(c.Table.Batch(ctx, ops))
}

// tableTotals sums every instance's row of subject s in window rk.
func tableTotals(t *testing.T, tbl store.Table, s Subject, rk string) (tokens, requests int64) {
	t.Helper()
	rows, err := tbl.Query(context.Background(), store.Query{PartitionKey: s.partitionKey(), RowKeyFrom: rk + "|", RowKeyTo: rk + "}"})
	if err != nil {
		t.Fatalf("query %s %s: %v", s, rk, err)
	}
	for _, r := range rows {
		tk, _ := r.Props[colTokens].(int64)
		rq, _ := r.Props[colRequests].(int64)
		tokens += tk
		requests += rq
	}
	return tokens, requests
}

func ptr(v int64) *int64 { return &v }

func storeAll() store.Query { return store.Query{AllPartitions: true} }
