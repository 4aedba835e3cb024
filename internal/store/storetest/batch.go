package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/foundry-gateway/gateway/internal/store"
)

func ent(pk, rk string, props map[string]any) store.Entity {
	return store.Entity{PartitionKey: pk, RowKey: rk, Props: props}
}

func testBatchMixed(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	mustInsert(t, tbl, ent("p", "del", nil))
	mergeETag := mustInsert(t, tbl, ent("p", "merge", map[string]any{"a": int64(1), "b": "x"}))
	repETag := mustInsert(t, tbl, ent("p", "rep", map[string]any{"a": int64(1)}))
	mustInsert(t, tbl, ent("q", "other", nil))

	err := tbl.Batch(ctx, []store.Op{
		{Kind: store.OpInsert, Entity: ent("p", "new", map[string]any{"n": int64(1)})},
		{Kind: store.OpUpsert, Entity: ent("p", "rep", map[string]any{"z": true})},
		{Kind: store.OpMerge, Entity: ent("p", "merge", map[string]any{"b": "y", "c": 2.5})},
		{Kind: store.OpMerge, Entity: ent("p", "mnew", map[string]any{"m": int64(1)})},
		{Kind: store.OpUpsert, Entity: ent("p", "unew", map[string]any{"u": 1.0})},
		{Kind: store.OpDelete, Entity: ent("p", "del", map[string]any{"ignored": true})},
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	want := map[string]map[string]any{
		"merge": {"a": int64(1), "b": "y", "c": 2.5},
		"mnew":  {"m": int64(1)},
		"new":   {"n": int64(1)},
		"rep":   {"z": true},
		"unew":  {"u": 1.0},
	}
	es := mustQuery(t, tbl, store.Query{PartitionKey: "p"})
	if got, wantKeys := keysOf(es), []string{"p/merge", "p/mnew", "p/new", "p/rep", "p/unew"}; !slices.Equal(got, wantKeys) {
		t.Fatalf("rows after Batch: got %v, want %v", got, wantKeys)
	}
	for _, e := range es {
		checkProps(t, "after Batch, row "+e.RowKey, e.Props, want[e.RowKey])
		if e.RowKey == "merge" && e.ETag == mergeETag || e.RowKey == "rep" && e.ETag == repETag {
			t.Errorf("row %s: ETag %q unchanged by Batch", e.RowKey, e.ETag)
		}
	}
	if err := tbl.Batch(ctx, nil); err != nil {
		t.Errorf("empty Batch: got %v, want nil", err)
	}
}

// testBatchFailureWritesNothing: when one op fails, no op of the batch is
// applied, and the error says why.
func testBatchFailureWritesNothing(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	mustInsert(t, tbl, ent("p", "exists", map[string]any{"v": "orig"}))
	mustInsert(t, tbl, ent("p", "keep", map[string]any{"v": "orig"}))
	before := mustQuery(t, tbl, store.Query{AllPartitions: true})

	writes := []store.Op{
		{Kind: store.OpInsert, Entity: ent("p", "a", nil)},
		{Kind: store.OpUpsert, Entity: ent("p", "keep", map[string]any{"v": "changed"})},
		{Kind: store.OpMerge, Entity: ent("p", "b", map[string]any{"v": "new"})},
		{Kind: store.OpDelete, Entity: ent("p", "exists", nil)},
	}
	tests := []struct {
		name string
		ops  []store.Op
		want error
	}{
		{"insert of an existing row last", append(slices.Clone(writes[:3]), store.Op{Kind: store.OpInsert, Entity: ent("p", "exists", nil)}), store.ErrExists},
		{"insert of an existing row first", append([]store.Op{{Kind: store.OpInsert, Entity: ent("p", "exists", nil)}}, writes[:3]...), store.ErrExists},
		{"delete of a missing row", append(slices.Clone(writes), store.Op{Kind: store.OpDelete, Entity: ent("p", "missing", nil)}), store.ErrNotFound},
		{"two partitions", append(slices.Clone(writes), store.Op{Kind: store.OpInsert, Entity: ent("q", "x", nil)}), store.ErrInvalid},
		{"row twice", append(slices.Clone(writes), store.Op{Kind: store.OpUpsert, Entity: ent("p", "a", nil)}), store.ErrInvalid},
		{"bad entity", append(slices.Clone(writes), store.Op{Kind: store.OpUpsert, Entity: ent("p", "c", map[string]any{"v": 1})}), store.ErrInvalid},
		{"bad key", append(slices.Clone(writes), store.Op{Kind: store.OpUpsert, Entity: ent("p", "c/d", nil)}), store.ErrInvalid},
		{"unknown kind", append(slices.Clone(writes), store.Op{Kind: store.OpKind(99), Entity: ent("p", "c", nil)}), store.ErrInvalid},
		{"too many ops", append(slices.Clone(writes), rows("p", "n", store.MaxBatchOps-len(writes)+1)...), store.ErrInvalid},
	}
	for _, tt := range tests {
		wantErr(t, tt.name, tbl.Batch(ctx, tt.ops), tt.want)
		after := mustQuery(t, tbl, store.Query{AllPartitions: true})
		if !slices.Equal(keysOf(after), keysOf(before)) {
			t.Fatalf("%s: rows after failed Batch: got %v, want %v", tt.name, keysOf(after), keysOf(before))
		}
		for i, e := range after {
			if e.ETag != before[i].ETag {
				t.Errorf("%s: row %s changed by failed Batch", tt.name, e.RowKey)
			}
			checkProps(t, tt.name+" row "+e.RowKey, e.Props, before[i].Props)
		}
	}
}

// rows returns n upserts in partition pk with RowKeys prefix000...
func rows(pk, prefix string, n int) []store.Op {
	ops := make([]store.Op, n)
	for i := range ops {
		ops[i] = store.Op{Kind: store.OpUpsert, Entity: ent(pk, fmt.Sprintf("%s%03d", prefix, i), map[string]any{"i": int64(i)})}
	}
	return ops
}

func testBatchRules(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	if err := tbl.Batch(ctx, rows("p", "r", store.MaxBatchOps)); err != nil {
		t.Fatalf("Batch of %d ops: %v", store.MaxBatchOps, err)
	}
	if es := mustQuery(t, tbl, store.Query{PartitionKey: "p"}); len(es) != store.MaxBatchOps {
		t.Errorf("rows after full Batch: got %d, want %d", len(es), store.MaxBatchOps)
	}
	wantErr(t, "Batch over the op limit", tbl.Batch(ctx, rows("q", "r", store.MaxBatchOps+1)), store.ErrInvalid)
	wantNotFound(t, tbl, "q", "r000")

	// Delete and merge of the same row are still the same row twice.
	err := tbl.Batch(ctx, []store.Op{
		{Kind: store.OpMerge, Entity: ent("p", "r001", nil)},
		{Kind: store.OpDelete, Entity: ent("p", "r001", nil)},
	})
	wantErr(t, "Batch naming a row twice", err, store.ErrInvalid)
	mustGet(t, tbl, "p", "r001")

	// The same RowKey in two partitions is two rows, but two partitions are
	// never one batch.
	err = tbl.Batch(ctx, []store.Op{
		{Kind: store.OpUpsert, Entity: ent("a", "r", nil)},
		{Kind: store.OpUpsert, Entity: ent("b", "r", nil)},
	})
	wantErr(t, "Batch over two partitions", err, store.ErrInvalid)
	wantNotFound(t, tbl, "a", "r")
	wantNotFound(t, tbl, "b", "r")
}

func testBatchSize(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	big := func(pk string, n int) []store.Op {
		ops := make([]store.Op, n)
		for i := range ops {
			ops[i] = store.Op{Kind: store.OpUpsert, Entity: ent(pk, fmt.Sprintf("r%03d", i), map[string]any{"b": patterned(64 << 10)})}
		}
		return ops
	}
	// 40 rows of 64 KiB: about 3.5 MB on the wire, under the limit.
	if err := tbl.Batch(ctx, big("ok", 40)); err != nil {
		t.Fatalf("Batch of about 3.5 MB: %v", err)
	}
	if es := mustQuery(t, tbl, store.Query{PartitionKey: "ok"}); len(es) != 40 {
		t.Errorf("rows after big Batch: got %d, want 40", len(es))
	}
	// 50 rows of 64 KiB: about 4.4 MB, over the limit although every entity
	// is fine on its own.
	wantErr(t, "Batch over 4 MiB", tbl.Batch(ctx, big("over", 50)), store.ErrInvalid)
	if es := mustQuery(t, tbl, store.Query{PartitionKey: "over"}); len(es) != 0 {
		t.Errorf("rows written by refused Batch: %d", len(es))
	}
}

// testBatchQuotedKeys runs every batch op on keys with single quotes, which
// must be escaped in the URLs of batch sub-requests.
func testBatchQuotedKeys(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	const pk = "o'brien's"
	mustInsert(t, tbl, ent(pk, "del'", nil))
	mustInsert(t, tbl, ent(pk, "merge'", map[string]any{"a": int64(1)}))
	err := tbl.Batch(ctx, []store.Op{
		{Kind: store.OpInsert, Entity: ent(pk, "ins'", map[string]any{"v": "i"})},
		{Kind: store.OpUpsert, Entity: ent(pk, "'up'", map[string]any{"v": "u"})},
		{Kind: store.OpMerge, Entity: ent(pk, "merge'", map[string]any{"b": int64(2)})},
		{Kind: store.OpDelete, Entity: ent(pk, "del'", nil)},
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	es := mustQuery(t, tbl, store.Query{AllPartitions: true})
	if got, want := keysOf(es), []string{pk + "/'up'", pk + "/ins'", pk + "/merge'"}; !slices.Equal(got, want) {
		t.Fatalf("rows: got %q, want %q", got, want)
	}
	checkProps(t, "merged row", es[2].Props, map[string]any{"a": int64(1), "b": int64(2)})
}
