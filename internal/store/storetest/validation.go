package storetest

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/foundry-gateway/gateway/internal/store"
)

// testKeyCharacters writes and reads keys that need escaping somewhere:
// quotes (OData literals), URL specials, non-ASCII, the longest key.
func testKeyCharacters(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	keys := []string{
		"o'brien", "'", "''", "it''s", "end'",
		"a b", "100%", "%41", "a+b&c=d", "semi;colon,comma", "(paren)", "star*bang!", "at@dollar$", "tilde~", "\"dq\"",
		"ümlaut", "日本語", "emoji😀", "<tag>&amp;",
		strings.Repeat("k", maxKeyChars),
		strings.Repeat("😀", maxKeyChars/2), // two UTF-16 units each
	}
	for _, k := range keys {
		name := fmt.Sprintf("%.20q", k)
		e := store.Entity{PartitionKey: k, RowKey: k, Props: map[string]any{"k": k}}
		etag := mustInsert(t, tbl, e)
		got := mustGet(t, tbl, k, k)
		if got.PartitionKey != k || got.RowKey != k {
			t.Errorf("%s: Get keys: got %q/%q", name, got.PartitionKey, got.RowKey)
		}
		checkProps(t, name+" Get", got.Props, map[string]any{"k": k})

		es := mustQuery(t, tbl, store.Query{PartitionKey: k})
		if len(es) != 1 || es[0].RowKey != k {
			t.Errorf("%s: Query partition: got %v, want the one row", name, keysOf(es))
		}
		es = mustQuery(t, tbl, store.Query{PartitionKey: k, RowKeyFrom: k, RowKeyTo: k + "~"})
		if len(es) != 1 {
			t.Errorf("%s: Query range: got %v, want the one row", name, keysOf(es))
		}
		etag, err := tbl.Update(ctx, store.Entity{PartitionKey: k, RowKey: k, Props: map[string]any{"k": "updated"}}, etag)
		if err != nil {
			t.Errorf("%s: Update: %v", name, err)
		}
		if _, err := tbl.Upsert(ctx, store.Entity{PartitionKey: k, RowKey: sibling(k)}); err != nil {
			t.Errorf("%s: Upsert: %v", name, err)
		}
		if err := tbl.Delete(ctx, k, k, etag); err != nil {
			t.Errorf("%s: Delete: %v", name, err)
		}
		wantNotFound(t, tbl, k, k)
	}
	// Only the sibling rows are left; AllPartitions sees them in key order.
	es := mustQuery(t, tbl, store.Query{AllPartitions: true})
	slices.Sort(keys)
	var want []string
	for _, k := range keys {
		want = append(want, k+"/"+sibling(k))
	}
	if got := keysOf(es); !slices.Equal(got, want) {
		t.Errorf("AllPartitions after deletes: got %q, want %q", got, want)
	}
}

// maxKeyChars is the longest key in ASCII: store.MaxKeyLen counts UTF-16
// bytes (1 KiB), as Azure does.
const maxKeyChars = store.MaxKeyLen / 2

// sibling is another valid RowKey next to k.
func sibling(k string) string {
	if strings.HasSuffix(k, "k") || strings.HasSuffix(k, "😀") {
		_, size := utf8.DecodeLastRuneInString(k)
		return k[:len(k)-size] + "2"
	}
	return k + "2"
}

var badKeys = []struct {
	name string
	key  string
}{
	{"empty", ""},
	{"slash", "a/b"},
	{"backslash", `a\b`},
	{"hash", "a#b"},
	{"question", "a?b"},
	{"tab", "a\tb"},
	{"newline", "a\nb"},
	{"cr", "a\rb"},
	{"nul", "a\x00b"},
	{"unit_separator", "a\x1fb"},
	{"del", "a\x7fb"},
	{"c1_control", "a\u0085b"},
	{"c1_last", "a\u009fb"},
	{"invalid_utf8", "a\xffb"},
	{"too_long", strings.Repeat("k", maxKeyChars+1)},
	{"too_long_utf16", strings.Repeat("😀", maxKeyChars/2) + "k"},
}

func testInvalidKeys(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	for _, bk := range badKeys {
		for _, pos := range []string{"PartitionKey", "RowKey"} {
			pk, rk := bk.key, "r"
			if pos == "RowKey" {
				pk, rk = "p", bk.key
			}
			e := store.Entity{PartitionKey: pk, RowKey: rk}
			ops := []struct {
				name string
				err  error
			}{
				{"Get", second(tbl.Get(ctx, pk, rk))},
				{"Insert", second(tbl.Insert(ctx, e))},
				{"Update", second(tbl.Update(ctx, e, "*"))},
				{"Upsert", second(tbl.Upsert(ctx, e))},
				{"Delete", tbl.Delete(ctx, pk, rk, "*")},
				{"Batch upsert", tbl.Batch(ctx, []store.Op{{Kind: store.OpUpsert, Entity: e}})},
				{"Batch delete", tbl.Batch(ctx, []store.Op{{Kind: store.OpDelete, Entity: e}})},
			}
			for _, op := range ops {
				wantErr(t, fmt.Sprintf("%s with %s in %s", op.name, bk.name, pos), op.err, store.ErrInvalid)
			}
		}
	}
	if es := mustQuery(t, tbl, store.Query{AllPartitions: true}); len(es) != 0 {
		t.Errorf("rows written by refused calls: %v", keysOf(es))
	}
}

func second[T any](_ T, err error) error { return err }

// manyProps returns n int64 properties.
func manyProps(n int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("p%03d", i)] = int64(i)
	}
	return m
}

// blobs returns n properties of size bytes each.
func blobs(n, size int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("b%02d", i)] = patterned(size)
	}
	return m
}

// strs returns n ASCII string properties of size characters each.
func strs(n, size int) map[string]any {
	m := make(map[string]any, n)
	for i := range n {
		m[fmt.Sprintf("s%02d", i)] = strings.Repeat(string(rune('a'+i%26)), size)
	}
	return m
}

func testInvalidProps(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	s := "x"
	tests := []struct {
		name  string
		props map[string]any
	}{
		{"int", map[string]any{"v": 1}},
		{"int32", map[string]any{"v": int32(1)}},
		{"uint64", map[string]any{"v": uint64(1)}},
		{"float32", map[string]any{"v": float32(1)}},
		{"nil", map[string]any{"v": nil}},
		{"struct", map[string]any{"v": struct{}{}}},
		{"map", map[string]any{"v": map[string]any{}}},
		{"slice", map[string]any{"v": []string{"a"}}},
		{"pointer", map[string]any{"v": &s}},
		{"time_pointer", map[string]any{"v": &time.Time{}}},
		{"zero_time", map[string]any{"v": time.Time{}}},
		{"time_before_1601", map[string]any{"v": time.Date(1600, 12, 31, 23, 59, 59, 0, time.UTC)}},
		{"time_after_9999", map[string]any{"v": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{"nan", map[string]any{"v": math.NaN()}},
		{"inf", map[string]any{"v": math.Inf(1)}},
		{"neg_inf", map[string]any{"v": math.Inf(-1)}},
		{"string_over_64KiB_utf16", map[string]any{"v": strings.Repeat("a", 32<<10+1)}},
		{"string_over_64KiB_surrogates", map[string]any{"v": strings.Repeat("😀", 16<<10) + "a"}},
		{"string_invalid_utf8", map[string]any{"v": "a\xffb"}},
		{"bytes_over_64KiB", map[string]any{"v": make([]byte, 64<<10+1)}},
		{"name_PartitionKey", map[string]any{"PartitionKey": "x"}},
		{"name_RowKey", map[string]any{"RowKey": "x"}},
		{"name_Timestamp", map[string]any{"Timestamp": "x"}},
		{"name_empty", map[string]any{"": "x"}},
		{"name_digit_first", map[string]any{"1a": "x"}},
		{"name_dash", map[string]any{"a-b": "x"}},
		{"name_space", map[string]any{"a b": "x"}},
		{"name_dot", map[string]any{"odata.etag": "x"}},
		{"name_annotation", map[string]any{"v@odata.type": "Edm.Int64"}},
		{"name_too_long", map[string]any{"n" + strings.Repeat("x", store.MaxPropNameLen): "x"}},
		{"too_many_props", manyProps(store.MaxCustomProps + 1)},
		{"entity_over_1MiB_azure_size", strs(17, 32<<10)}, // 17 * 64 KiB UTF-16
		{"entity_over_1MiB_json_size", blobs(13, 64<<10)}, // 13 * 85 KiB base64
		// 917 KB as Azure counts, 1035 KB as JSON.
		{"entity_over_1MiB_json_mixed", mergeMaps(blobs(11, 64<<10), strs(3, 32<<10))},
	}
	for _, tt := range tests {
		rk := tt.name
		e := store.Entity{PartitionKey: "p", RowKey: rk, Props: tt.props}
		ops := []struct {
			name string
			err  error
		}{
			{"Insert", second(tbl.Insert(ctx, e))},
			{"Upsert", second(tbl.Upsert(ctx, e))},
			{"Batch insert", tbl.Batch(ctx, []store.Op{{Kind: store.OpInsert, Entity: e}})},
			{"Batch merge", tbl.Batch(ctx, []store.Op{{Kind: store.OpMerge, Entity: e}})},
		}
		for _, op := range ops {
			wantErr(t, fmt.Sprintf("%s with %s", op.name, tt.name), op.err, store.ErrInvalid)
		}
		wantNotFound(t, tbl, "p", rk)
		// Update of an existing row is refused and leaves it alone.
		mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: rk, Props: map[string]any{"ok": true}})
		_, err := tbl.Update(ctx, e, "*")
		wantErr(t, "Update with "+tt.name, err, store.ErrInvalid)
		checkProps(t, "after refused Update with "+tt.name, mustGet(t, tbl, "p", rk).Props, map[string]any{"ok": true})
	}
}

func mergeMaps(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// testPropLimits writes entities right at the limits.
func testPropLimits(t *testing.T, h *harness) {
	tbl := h.table(t)
	tests := []struct {
		name  string
		props map[string]any
	}{
		{"max_props", manyProps(store.MaxCustomProps)},
		{"max_name", map[string]any{"n" + strings.Repeat("x", store.MaxPropNameLen-1): "x"}},
		{"unicode_name", map[string]any{"größe_日本": int64(1), "_under": true}},
		{"string_64KiB_ascii", map[string]any{"v": strings.Repeat("a", 32<<10)}},
		// 32 Ki UTF-16 units from 48 KiB of UTF-8 in 24 Ki characters.
		{"string_64KiB_mixed", map[string]any{"v": strings.Repeat("😀", 8<<10) + strings.Repeat("a", 16<<10)}},
		{"bytes_64KiB", map[string]any{"v": patterned(64 << 10)}},
		{"near_1MiB_strings", strs(15, 32<<10)}, // about 983 KB as Azure counts
		{"near_1MiB_blobs", blobs(11, 64<<10)},  // about 961 KB as JSON
	}
	for _, tt := range tests {
		mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: tt.name, Props: tt.props})
		checkProps(t, tt.name, mustGet(t, tbl, "p", tt.name).Props, tt.props)
	}
}

// testNonASCIIBodies writes request bodies well over 64 KiB full of
// multi-byte characters through every write path. (Azurite corrupts a
// character split by a 64 KiB chunk boundary of a raw UTF-8 body; the
// shifted padding moves the boundaries.)
func testNonASCIIBodies(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	props := func(pad int) map[string]any {
		return map[string]any{
			"a": strings.Repeat("x", pad) + strings.Repeat("é", 30000),
			"b": strings.Repeat("日本", 15000),
			"c": strings.Repeat("😀", 8000) + strings.Repeat("ü", 1000),
		}
	}
	for pad := range 2 {
		rk := fmt.Sprintf("r%d", pad)
		mustInsert(t, tbl, store.Entity{PartitionKey: "insert", RowKey: rk, Props: props(pad)})
		checkProps(t, "Insert "+rk, mustGet(t, tbl, "insert", rk).Props, props(pad))
		if _, err := tbl.Update(ctx, store.Entity{PartitionKey: "insert", RowKey: rk, Props: props(pad + 1)}, "*"); err != nil {
			t.Fatalf("Update %s: %v", rk, err)
		}
		checkProps(t, "Update "+rk, mustGet(t, tbl, "insert", rk).Props, props(pad+1))
		if _, err := tbl.Upsert(ctx, store.Entity{PartitionKey: "upsert", RowKey: rk, Props: props(pad)}); err != nil {
			t.Fatalf("Upsert %s: %v", rk, err)
		}
		checkProps(t, "Upsert "+rk, mustGet(t, tbl, "upsert", rk).Props, props(pad))
	}
	var ops []store.Op
	for pad := range 3 {
		ops = append(ops, store.Op{Kind: store.OpUpsert, Entity: store.Entity{PartitionKey: "batch", RowKey: fmt.Sprintf("r%d", pad), Props: props(pad)}})
	}
	if err := tbl.Batch(ctx, ops); err != nil {
		t.Fatalf("Batch: %v", err)
	}
	for i, e := range mustQuery(t, tbl, store.Query{PartitionKey: "batch"}) {
		checkProps(t, "Batch "+e.RowKey, e.Props, props(i))
	}
}
