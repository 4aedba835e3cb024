package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

func TestCounted(t *testing.T) {
	ctx := context.Background()
	inner, err := embedded.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	var ops store.Ops
	s := store.Counted(inner, &ops)
	tb, err := s.Table(ctx, "Counted")
	if err != nil {
		t.Fatal(err)
	}
	e := store.Entity{PartitionKey: "p", RowKey: "a"}
	if _, err := tb.Upsert(ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Get(ctx, "p", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Query(ctx, store.Query{PartitionKey: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := tb.Batch(ctx, []store.Op{{Kind: store.OpUpsert, Entity: store.Entity{PartitionKey: "p", RowKey: "b"}}}); err != nil {
		t.Fatal(err)
	}
	if got := ops.Load(); got != 4 {
		t.Errorf("ops = %d after 4 operations", got)
	}
	// The embedded store's multi-batch commit is kept and counts a batch each.
	mb, ok := tb.(interface {
		BatchAll(context.Context, [][]store.Op) []error
	})
	if !ok {
		t.Fatal("BatchAll was hidden by the counting wrapper")
	}
	b := func(rk string) []store.Op {
		return []store.Op{{Kind: store.OpUpsert, Entity: store.Entity{PartitionKey: "p", RowKey: rk}}}
	}
	for _, err := range mb.BatchAll(ctx, [][]store.Op{b("c"), b("d"), b("e")}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := ops.Load(); got != 7 {
		t.Errorf("ops = %d after 3 more batches", got)
	}
}
