package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/storetest"
)

func open(t *testing.T) store.Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, open)
}

func TestBatchAll(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	defer s.Close()
	tb, err := s.Table(ctx, "BatchAll")
	if err != nil {
		t.Fatal(err)
	}
	row := func(pk, rk string) store.Entity {
		return store.Entity{PartitionKey: pk, RowKey: rk, Props: map[string]any{"N": int64(len(rk))}}
	}
	if _, err := tb.Insert(ctx, row("b", "taken")); err != nil {
		t.Fatal(err)
	}
	batches := [][]store.Op{
		{{Kind: store.OpUpsert, Entity: row("a", "1")}, {Kind: store.OpUpsert, Entity: row("a", "2")}},
		{{Kind: store.OpInsert, Entity: row("b", "new")}, {Kind: store.OpInsert, Entity: row("b", "taken")}}, // fails: exists
		{{Kind: store.OpUpsert, Entity: row("c", "1")}, {Kind: store.OpUpsert, Entity: row("d", "1")}},       // invalid: two partitions
		nil,
		{{Kind: store.OpDelete, Entity: row("b", "missing")}}, // fails: not found
		{{Kind: store.OpMerge, Entity: row("e", "1")}},
	}
	errs := tb.(*table).BatchAll(ctx, batches)
	want := []error{nil, store.ErrExists, store.ErrInvalid, nil, store.ErrNotFound, nil}
	for i := range want {
		if want[i] == nil && errs[i] != nil || want[i] != nil && !errors.Is(errs[i], want[i]) {
			t.Errorf("batch %d: got %v, want %v", i, errs[i], want[i])
		}
	}
	for _, k := range [][2]string{{"a", "1"}, {"a", "2"}, {"e", "1"}, {"b", "taken"}} {
		if _, err := tb.Get(ctx, k[0], k[1]); err != nil {
			t.Errorf("row %v: %v", k, err)
		}
	}
	for _, k := range [][2]string{{"b", "new"}, {"c", "1"}, {"d", "1"}} {
		if _, err := tb.Get(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("row %v of a failed batch: got %v, want not found", k, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for i, err := range tb.(*table).BatchAll(cctx, batches[:1]) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled: batch %d: got %v", i, err)
		}
	}
}
