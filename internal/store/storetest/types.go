package storetest

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

func testPropertyTypes(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	ms := time.Date(2024, 2, 29, 23, 59, 58, 123_000_000, time.UTC)
	tests := []struct {
		name string
		in   any
		want any // nil means in
	}{
		{"string", "hello", nil},
		{"string_empty", "", nil},
		{"string_unicode", "héllo wörld ✓ 😀 日本", nil},
		{"string_json_specials", `quote" back\slash 'single' <a href="x">&amp;</a>`, nil},
		{"string_controls", "line1\nline2\ttab\r\x00nul\x7f", nil},
		{"string_32k_ascii", strings.Repeat("a", 32<<10), nil},
		{"int64_zero", int64(0), nil},
		{"int64_negative", int64(-1), nil},
		{"int64_above_int32", int64(1) << 31, nil},
		{"int64_2pow53_plus1", int64(1)<<53 + 1, nil},
		{"int64_max", int64(math.MaxInt64), nil},
		{"int64_min", int64(math.MinInt64), nil},
		{"float64_whole", 3.0, nil},
		{"float64_zero", 0.0, nil},
		{"float64_negative_whole", -42.0, nil},
		{"float64_big_whole", float64(1 << 60), nil},
		{"float64_fraction", 0.1, nil},
		{"float64_negative", -2.5, nil},
		{"float64_huge", 1e300, nil},
		{"float64_tiny", 5e-324, nil},
		{"float64_max", math.MaxFloat64, nil},
		{"bool_true", true, nil},
		{"bool_false", false, nil},
		{"time_ms", ms, nil},
		{"time_whole_second", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"time_other_zone", ms.In(time.FixedZone("UTC+5", 5*3600)), ms},
		{"time_sub_ms_truncated", ms.Add(456_789 * time.Nanosecond), ms},
		{"time_before_1970", time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC), nil},
		{"time_min", time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), nil},
		{"time_max", time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC), nil},
		{"bytes", []byte{0, 1, 2, 0x7f, 0x80, 0xfe, 0xff}, nil},
		{"bytes_empty", []byte{}, nil},
		{"bytes_64k", patterned(64 << 10), nil},
	}
	for _, tt := range tests {
		want := tt.want
		if want == nil {
			want = tt.in
		}
		props := map[string]any{"v": tt.in}
		mustInsert(t, tbl, store.Entity{PartitionKey: "insert", RowKey: tt.name, Props: props})
		err := tbl.Batch(ctx, []store.Op{{Kind: store.OpUpsert, Entity: store.Entity{PartitionKey: "batch", RowKey: tt.name, Props: props}}})
		if err != nil {
			t.Fatalf("%s: Batch: %v", tt.name, err)
		}
		if _, err := tbl.Update(ctx, store.Entity{PartitionKey: "batch", RowKey: tt.name, Props: props}, "*"); err != nil {
			t.Fatalf("%s: Update: %v", tt.name, err)
		}
		for _, pk := range []string{"insert", "batch"} {
			got := mustGet(t, tbl, pk, tt.name)
			checkProps(t, fmt.Sprintf("%s via %s, Get", tt.name, pk), got.Props, map[string]any{"v": want})
		}
	}
	// The same values read by Query (a different decoding path in some
	// implementations).
	for _, pk := range []string{"insert", "batch"} {
		es := mustQuery(t, tbl, store.Query{PartitionKey: pk})
		if len(es) != len(tests) {
			t.Fatalf("Query %s: got %d rows, want %d", pk, len(es), len(tests))
		}
		byName := map[string]store.Entity{}
		for _, e := range es {
			byName[e.RowKey] = e
		}
		for _, tt := range tests {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			e := byName[tt.name]
			checkProps(t, fmt.Sprintf("%s via %s, Query", tt.name, pk), e.Props, map[string]any{"v": want})
			if get := mustGet(t, tbl, pk, tt.name); e.ETag != get.ETag || !e.Timestamp.Equal(get.Timestamp) {
				t.Errorf("%s: Query ETag/Timestamp %q/%v, want Get's %q/%v", tt.name, e.ETag, e.Timestamp, get.ETag, get.Timestamp)
			}
		}
	}

	// All types together in one entity, and names that differ only in case.
	all := map[string]any{"Name": "x", "name": "y", "Count": int64(1) << 60, "Ratio": 7.0, "On": false, "At": ms, "Blob": []byte("z")}
	mustInsert(t, tbl, store.Entity{PartitionKey: "all", RowKey: "r", Props: all})
	checkProps(t, "all types", mustGet(t, tbl, "all", "r").Props, all)
}

// patterned returns n bytes covering every byte value.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}
