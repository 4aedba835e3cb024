package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

func testTableNames(t *testing.T, h *harness) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"abc", true},
		{"A1b2C3", true},
		{"t" + strings.Repeat("x", 62), true},
		{"", false},
		{"ab", false},
		{"1abc", false},
		{"a-bc", false},
		{"a_bc", false},
		{"ab c", false},
		{"abc!", false},
		{"äbcd", false},
		{"t" + strings.Repeat("x", 63), false},
		{"tables", false},
		{"Tables", false},
	}
	for _, tt := range tests {
		tbl, err := h.s.Table(t.Context(), tt.name)
		switch {
		case tt.ok && err != nil:
			t.Errorf("Table(%q): got %v, want nil", tt.name, err)
		case tt.ok && tbl == nil:
			t.Errorf("Table(%q): got nil Table", tt.name)
		case !tt.ok:
			wantErr(t, "Table("+tt.name+")", err, store.ErrInvalid)
		}
	}
}

// Azure table names are case-insensitive: Foo and foo are one table.
func testTableNamesCaseInsensitive(t *testing.T, h *harness) {
	name := uniqueName("Case")
	upper, err := h.s.Table(t.Context(), strings.ToUpper(name))
	if err != nil {
		t.Fatalf("Table(%q): %v", strings.ToUpper(name), err)
	}
	mustInsert(t, upper, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"n": int64(1)}})
	lower, err := h.s.Table(t.Context(), strings.ToLower(name))
	if err != nil {
		t.Fatalf("Table(%q): %v", strings.ToLower(name), err)
	}
	got := mustGet(t, lower, "p", "r")
	checkProps(t, "row via lower-case name", got.Props, map[string]any{"n": int64(1)})
}

func testTablesAreSeparate(t *testing.T, h *harness) {
	a, b := h.table(t), h.table(t)
	mustInsert(t, a, store.Entity{PartitionKey: "p", RowKey: "r"})
	wantNotFound(t, b, "p", "r")
	if es := mustQuery(t, b, store.Query{AllPartitions: true}); len(es) != 0 {
		t.Errorf("Query of the other table: got %v, want none", keysOf(es))
	}
}

func testGetMissing(t *testing.T, h *harness) {
	tbl := h.table(t)
	wantNotFound(t, tbl, "p", "r")
	mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r"})
	wantNotFound(t, tbl, "p", "r2")
	wantNotFound(t, tbl, "p2", "r")
}

func testInsertGet(t *testing.T, h *harness) {
	tbl := h.table(t)
	when := time.Date(2025, 3, 4, 5, 6, 7, 8_000_000, time.UTC)
	props := map[string]any{
		"s": "text", "i": int64(-7), "f": 2.5, "b": true, "t": when, "x": []byte{0, 1, 254, 255},
	}
	before := time.Now()
	etag := mustInsert(t, tbl, store.Entity{PartitionKey: "pk", RowKey: "rk", Props: props, ETag: "ignored"})
	after := time.Now()

	got := mustGet(t, tbl, "pk", "rk")
	if got.PartitionKey != "pk" || got.RowKey != "rk" {
		t.Errorf("keys: got %q/%q, want pk/rk", got.PartitionKey, got.RowKey)
	}
	if got.ETag != etag {
		t.Errorf("ETag: got %q, want %q (from Insert)", got.ETag, etag)
	}
	// The server clock may differ a little from ours.
	if got.Timestamp.Before(before.Add(-time.Minute)) || got.Timestamp.After(after.Add(time.Minute)) {
		t.Errorf("Timestamp: got %v, want about %v", got.Timestamp, before)
	}
	if got.Timestamp.Location() != time.UTC {
		t.Errorf("Timestamp location: got %v, want UTC", got.Timestamp.Location())
	}
	checkProps(t, "Get", got.Props, props)

	// An entity without properties is fine too.
	mustInsert(t, tbl, store.Entity{PartitionKey: "pk", RowKey: "empty"})
	if got := mustGet(t, tbl, "pk", "empty"); len(got.Props) != 0 {
		t.Errorf("Props of an empty entity: got %v, want none", got.Props)
	}
}

func testInsertExisting(t *testing.T, h *harness) {
	tbl := h.table(t)
	etag := mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"v": "first"}})
	_, err := tbl.Insert(t.Context(), store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"v": "second"}})
	wantErr(t, "second Insert", err, store.ErrExists)
	got := mustGet(t, tbl, "p", "r")
	checkProps(t, "after failed Insert", got.Props, map[string]any{"v": "first"})
	if got.ETag != etag {
		t.Errorf("ETag after failed Insert: got %q, want %q", got.ETag, etag)
	}
}

// A store must not keep or hand out references to caller-owned maps and
// slices.
func testCallerMapsAreNotShared(t *testing.T, h *harness) {
	tbl := h.table(t)
	buf := []byte("abc")
	props := map[string]any{"s": "one", "x": buf}
	mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r", Props: props})
	props["s"] = "changed"
	props["new"] = true
	buf[0] = 'Z'

	got := mustGet(t, tbl, "p", "r")
	checkProps(t, "after caller changed its map", got.Props, map[string]any{"s": "one", "x": []byte("abc")})
	got.Props["s"] = "mutated"
	got.Props["x"].([]byte)[0] = 'Q'
	again := mustGet(t, tbl, "p", "r")
	checkProps(t, "after caller changed a returned map", again.Props, map[string]any{"s": "one", "x": []byte("abc")})
}

func testUpdate(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	etag1 := mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": int64(1), "old": "x"}})
	first := mustGet(t, tbl, "p", "r")

	etag2, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": int64(2)}}, etag1)
	if err != nil {
		t.Fatalf("Update with current ETag: %v", err)
	}
	if etag2 == "" || etag2 == etag1 {
		t.Errorf("ETag after Update: got %q, want new non-empty (was %q)", etag2, etag1)
	}
	got := mustGet(t, tbl, "p", "r")
	// Update replaces: "old" is gone.
	checkProps(t, "after Update", got.Props, map[string]any{"a": int64(2)})
	if got.ETag != etag2 {
		t.Errorf("Get ETag: got %q, want %q (from Update)", got.ETag, etag2)
	}
	if got.Timestamp.Before(first.Timestamp) {
		t.Errorf("Timestamp went back: got %v, was %v", got.Timestamp, first.Timestamp)
	}

	_, err = tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": int64(99)}}, etag1)
	wantErr(t, "Update with stale ETag", err, store.ErrPrecondition)
	checkProps(t, "after stale Update", mustGet(t, tbl, "p", "r").Props, map[string]any{"a": int64(2)})

	_, err = tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": int64(3)}}, "")
	wantErr(t, "Update with empty ifMatch", err, store.ErrInvalid)

	etag3, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": int64(3)}, ETag: etag1}, "*")
	if err != nil {
		t.Fatalf(`Update with "*": %v`, err)
	}
	if etag3 == etag2 {
		t.Errorf(`ETag after Update "*": got %q, want a new one`, etag3)
	}
	checkProps(t, `after Update "*"`, mustGet(t, tbl, "p", "r").Props, map[string]any{"a": int64(3)})
}

func testUpdateMissing(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	_, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "missing"}, "*")
	wantErr(t, `Update "*" of a missing row`, err, store.ErrNotFound)
	wantNotFound(t, tbl, "p", "missing")

	// With a concrete ETag on a row that was deleted, Azurite (and RFC 7232)
	// answer 412, Azure may answer 404: either error is the contract, and
	// nothing is written.
	etag := mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "gone"})
	if err := tbl.Delete(ctx, "p", "gone", etag); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "gone"}, etag)
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("Update with ETag of a deleted row: got %v, want %v or %v", err, store.ErrNotFound, store.ErrPrecondition)
	}
	wantNotFound(t, tbl, "p", "gone")
	err = tbl.Delete(ctx, "p", "gone", etag)
	if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrPrecondition) {
		t.Errorf("Delete with ETag of a deleted row: got %v, want %v or %v", err, store.ErrNotFound, store.ErrPrecondition)
	}
}

func testUpsert(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	etag1, err := tbl.Upsert(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"a": "one", "b": true}})
	if err != nil {
		t.Fatalf("Upsert of a new row: %v", err)
	}
	got := mustGet(t, tbl, "p", "r")
	checkProps(t, "after first Upsert", got.Props, map[string]any{"a": "one", "b": true})
	if got.ETag != etag1 {
		t.Errorf("Get ETag: got %q, want %q", got.ETag, etag1)
	}

	// Upsert ignores the entity's ETag (stale here) and replaces.
	etag2, err := tbl.Upsert(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"c": 1.5}, ETag: "W/\"stale\""})
	if err != nil {
		t.Fatalf("Upsert of an existing row: %v", err)
	}
	if etag2 == etag1 {
		t.Errorf("ETag after second Upsert: got %q, want a new one", etag2)
	}
	got = mustGet(t, tbl, "p", "r")
	checkProps(t, "after second Upsert", got.Props, map[string]any{"c": 1.5})
	if got.ETag != etag2 {
		t.Errorf("Get ETag: got %q, want %q", got.ETag, etag2)
	}
	_, err = tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r"}, etag1)
	wantErr(t, "Update with the ETag from before an Upsert", err, store.ErrPrecondition)
}

func testDelete(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	etag1 := mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"v": int64(1)}})
	etag2, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"v": int64(2)}}, etag1)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}

	wantErr(t, "Delete with stale ETag", tbl.Delete(ctx, "p", "r", etag1), store.ErrPrecondition)
	checkProps(t, "after stale Delete", mustGet(t, tbl, "p", "r").Props, map[string]any{"v": int64(2)})
	wantErr(t, "Delete with empty ifMatch", tbl.Delete(ctx, "p", "r", ""), store.ErrInvalid)

	if err := tbl.Delete(ctx, "p", "r", etag2); err != nil {
		t.Fatalf("Delete with current ETag: %v", err)
	}
	wantNotFound(t, tbl, "p", "r")
	wantErr(t, `Delete "*" of a missing row`, tbl.Delete(ctx, "p", "r", "*"), store.ErrNotFound)

	mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r2"})
	if err := tbl.Delete(ctx, "p", "r2", "*"); err != nil {
		t.Fatalf(`Delete "*": %v`, err)
	}
	wantNotFound(t, tbl, "p", "r2")

	// A row deleted and inserted again gets an ETag the old one does not match.
	etag3 := mustInsert(t, tbl, store.Entity{PartitionKey: "p", RowKey: "r"})
	if etag3 == etag1 || etag3 == etag2 {
		t.Errorf("ETag of a re-inserted row: got %q, want one not used before", etag3)
	}
	wantErr(t, "Delete of a re-inserted row with an old ETag", tbl.Delete(ctx, "p", "r", etag2), store.ErrPrecondition)
}

func testETagChangesOnEveryWrite(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx := t.Context()
	seen := map[string]string{}
	record := func(step, etag string) {
		t.Helper()
		if etag == "" {
			t.Fatalf("%s: empty ETag", step)
		}
		if prev, dup := seen[etag]; dup {
			t.Errorf("%s: ETag %q was already returned by %s", step, etag, prev)
		}
		seen[etag] = step
		if got := mustGet(t, tbl, "p", "r"); got.ETag != etag {
			t.Errorf("%s: Get ETag got %q, want %q", step, got.ETag, etag)
		}
	}
	row := func(n int64) store.Entity {
		return store.Entity{PartitionKey: "p", RowKey: "r", Props: map[string]any{"n": n}}
	}
	etag := mustInsert(t, tbl, row(0))
	record("Insert", etag)
	for i := int64(1); i <= 3; i++ {
		// Writing the same value again still changes the ETag.
		var err error
		etag, err = tbl.Update(ctx, row(1), etag)
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		record("Update", etag)
	}
	etag, err := tbl.Update(ctx, row(1), "*")
	if err != nil {
		t.Fatalf(`Update "*": %v`, err)
	}
	record(`Update "*"`, etag)
	etag, err = tbl.Upsert(ctx, row(1))
	if err != nil {
		t.Fatalf("Upsert: %v", err)
	}
	record("Upsert", etag)
	for _, kind := range []store.OpKind{store.OpUpsert, store.OpMerge} {
		if err := tbl.Batch(ctx, []store.Op{{Kind: kind, Entity: row(1)}}); err != nil {
			t.Fatalf("Batch: %v", err)
		}
		got := mustGet(t, tbl, "p", "r")
		record("Batch", got.ETag)
		_, err := tbl.Update(ctx, row(2), etag)
		wantErr(t, "Update with the ETag from before a Batch", err, store.ErrPrecondition)
		etag = got.ETag
	}
}
