package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/foundry-gateway/gateway/internal/store"
)

func testQuery(t *testing.T, h *harness) {
	tbl := h.table(t)
	// "pbx" shares a prefix with "pb"; "ba" sorts between "b" and "c".
	pks := []string{"pa", "pb", "pbx"}
	rks := []string{"a", "b", "ba", "c", "d"}
	var all []string
	for _, pk := range pks {
		for _, rk := range rks {
			all = append(all, pk+"/"+rk)
		}
	}
	order := rand.Perm(len(all)) // insertion order must not matter
	for _, i := range order {
		pk, rk := pks[i/len(rks)], rks[i%len(rks)]
		mustInsert(t, tbl, store.Entity{PartitionKey: pk, RowKey: rk, Props: map[string]any{"id": pk + "/" + rk}})
	}

	tests := []struct {
		name string
		q    store.Query
		want []string
	}{
		{"partition", store.Query{PartitionKey: "pb"}, []string{"pb/a", "pb/b", "pb/ba", "pb/c", "pb/d"}},
		{"from", store.Query{PartitionKey: "pb", RowKeyFrom: "b"}, []string{"pb/b", "pb/ba", "pb/c", "pb/d"}},
		{"from_between", store.Query{PartitionKey: "pb", RowKeyFrom: "bb"}, []string{"pb/c", "pb/d"}},
		{"to_exclusive", store.Query{PartitionKey: "pb", RowKeyTo: "c"}, []string{"pb/a", "pb/b", "pb/ba"}},
		{"range", store.Query{PartitionKey: "pb", RowKeyFrom: "b", RowKeyTo: "c"}, []string{"pb/b", "pb/ba"}},
		{"range_empty", store.Query{PartitionKey: "pb", RowKeyFrom: "b", RowKeyTo: "b"}, nil},
		{"range_reversed", store.Query{PartitionKey: "pb", RowKeyFrom: "d", RowKeyTo: "b"}, nil},
		{"limit", store.Query{PartitionKey: "pb", Limit: 2}, []string{"pb/a", "pb/b"}},
		{"from_limit", store.Query{PartitionKey: "pb", RowKeyFrom: "ba", Limit: 2}, []string{"pb/ba", "pb/c"}},
		{"limit_above_count", store.Query{PartitionKey: "pb", Limit: 10}, []string{"pb/a", "pb/b", "pb/ba", "pb/c", "pb/d"}},
		{"missing_partition", store.Query{PartitionKey: "p"}, nil},
		{"all", store.Query{AllPartitions: true}, all},
		{"all_from", store.Query{AllPartitions: true, RowKeyFrom: "c"}, []string{"pa/c", "pa/d", "pb/c", "pb/d", "pbx/c", "pbx/d"}},
		{"all_to_limit", store.Query{AllPartitions: true, RowKeyTo: "b", Limit: 2}, []string{"pa/a", "pb/a"}},
		{"all_limit", store.Query{AllPartitions: true, Limit: 7}, all[:7]},
	}
	for _, tt := range tests {
		got := mustQuery(t, tbl, tt.q)
		if !slices.Equal(keysOf(got), tt.want) {
			t.Errorf("%s: Query(%+v): got %v, want %v", tt.name, tt.q, keysOf(got), tt.want)
		}
		for _, e := range got {
			if e.ETag == "" || e.Timestamp.IsZero() {
				t.Errorf("%s: row %s/%s has no ETag or Timestamp", tt.name, e.PartitionKey, e.RowKey)
			}
			checkProps(t, tt.name+" props", e.Props, map[string]any{"id": e.PartitionKey + "/" + e.RowKey})
		}
	}
}

// testQueryPaging crosses Azure's 1000-rows-per-page boundary.
func testQueryPaging(t *testing.T, h *harness) {
	tbl := h.table(t)
	const n = 1050
	for start := 0; start < n; start += store.MaxBatchOps {
		var ops []store.Op
		for i := start; i < min(start+store.MaxBatchOps, n); i++ {
			ops = append(ops, store.Op{Kind: store.OpInsert, Entity: store.Entity{
				PartitionKey: "p", RowKey: fmt.Sprintf("%05d", i), Props: map[string]any{"i": int64(i)},
			}})
		}
		if err := tbl.Batch(t.Context(), ops); err != nil {
			t.Fatalf("Batch at %d: %v", start, err)
		}
	}
	check := func(name string, q store.Query, from, count int) {
		t.Helper()
		got := mustQuery(t, tbl, q)
		if len(got) != count {
			t.Fatalf("%s: got %d rows, want %d", name, len(got), count)
		}
		for j, e := range got {
			if want := fmt.Sprintf("%05d", from+j); e.RowKey != want {
				t.Fatalf("%s: row %d: got %q, want %q", name, j, e.RowKey, want)
			}
			checkProps(t, name, e.Props, map[string]any{"i": int64(from + j)})
		}
	}
	check("all", store.Query{PartitionKey: "p"}, 0, n)
	check("all partitions", store.Query{AllPartitions: true}, 0, n)
	check("limit past one page", store.Query{PartitionKey: "p", Limit: 1001}, 0, 1001)
	check("limit exactly one page", store.Query{PartitionKey: "p", Limit: 1000}, 0, 1000)
	check("from", store.Query{PartitionKey: "p", RowKeyFrom: "00040"}, 40, n-40)
	check("range", store.Query{PartitionKey: "p", RowKeyFrom: "00010", RowKeyTo: "01020"}, 10, 1010)
}

func testQueryInvalid(t *testing.T, h *harness) {
	tbl := h.table(t)
	tests := []struct {
		name string
		q    store.Query
	}{
		{"no partition", store.Query{}},
		{"no partition with range", store.Query{RowKeyFrom: "a", RowKeyTo: "b"}},
		{"both partition and all", store.Query{PartitionKey: "p", AllPartitions: true}},
		{"negative limit", store.Query{PartitionKey: "p", Limit: -1}},
		{"bad partition key", store.Query{PartitionKey: "a/b"}},
	}
	for _, tt := range tests {
		_, err := tbl.Query(t.Context(), tt.q)
		wantErr(t, tt.name, err, store.ErrInvalid)
	}
}
