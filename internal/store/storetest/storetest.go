package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// Run runs the contract suite. open is called once per subtest and must
// return an open Store; Run closes it when the subtest ends. Subtests run in
// parallel and each uses its own freshly named tables, so stores returned by
// open may share one backend (one Azurite, for example).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Ping", testPing},
		{"TableNames", testTableNames},
		{"TableNamesCaseInsensitive", testTableNamesCaseInsensitive},
		{"TablesAreSeparate", testTablesAreSeparate},
		{"GetMissing", testGetMissing},
		{"InsertGet", testInsertGet},
		{"InsertExisting", testInsertExisting},
		{"CallerMapsAreNotShared", testCallerMapsAreNotShared},
		{"PropertyTypes", testPropertyTypes},
		{"Update", testUpdate},
		{"UpdateMissing", testUpdateMissing},
		{"Upsert", testUpsert},
		{"Delete", testDelete},
		{"ETagChangesOnEveryWrite", testETagChangesOnEveryWrite},
		{"Query", testQuery},
		{"QueryPaging", testQueryPaging},
		{"QueryInvalid", testQueryInvalid},
		{"KeyCharacters", testKeyCharacters},
		{"InvalidKeys", testInvalidKeys},
		{"InvalidProps", testInvalidProps},
		{"PropLimits", testPropLimits},
		{"NonASCIIBodies", testNonASCIIBodies},
		{"BatchMixed", testBatchMixed},
		{"BatchFailureWritesNothing", testBatchFailureWritesNothing},
		{"BatchRules", testBatchRules},
		{"BatchSize", testBatchSize},
		{"BatchQuotedKeys", testBatchQuotedKeys},
		{"ConcurrentIncrements", testConcurrentIncrements},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, &harness{s: s})
		})
	}
}

// harness gives a subtest its store and helpers.
type harness struct {
	s store.Store
}

// table opens a new table with a unique name.
func (h *harness) table(t *testing.T) store.Table {
	t.Helper()
	tbl, err := h.s.Table(t.Context(), uniqueName("t"))
	if err != nil {
		t.Fatalf("Table: %v", err)
	}
	return tbl
}

// uniqueName is prefix plus 16 random hex digits: a valid, unused table name.
func uniqueName(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return prefix + hex.EncodeToString(b[:])
}

func mustInsert(t *testing.T, tbl store.Table, e store.Entity) string {
	t.Helper()
	etag, err := tbl.Insert(t.Context(), e)
	if err != nil {
		t.Fatalf("Insert(%q, %q): %v", e.PartitionKey, e.RowKey, err)
	}
	if etag == "" {
		t.Fatalf("Insert(%q, %q): empty ETag", e.PartitionKey, e.RowKey)
	}
	return etag
}

func mustGet(t *testing.T, tbl store.Table, pk, rk string) store.Entity {
	t.Helper()
	e, err := tbl.Get(t.Context(), pk, rk)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v", pk, rk, err)
	}
	return e
}

func mustQuery(t *testing.T, tbl store.Table, q store.Query) []store.Entity {
	t.Helper()
	es, err := tbl.Query(t.Context(), q)
	if err != nil {
		t.Fatalf("Query(%+v): %v", q, err)
	}
	return es
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", what, err, want)
	}
}

func wantNotFound(t *testing.T, tbl store.Table, pk, rk string) {
	t.Helper()
	_, err := tbl.Get(t.Context(), pk, rk)
	wantErr(t, fmt.Sprintf("Get(%q, %q)", pk, rk), err, store.ErrNotFound)
}

// keysOf lists "pk/rk" of entities, for order checks.
func keysOf(es []store.Entity) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.PartitionKey + "/" + e.RowKey
	}
	return out
}

// checkProps compares property maps exactly, types included; times are
// compared as instants and must be UTC; floats bit for bit.
func checkProps(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d props %v, want %d props %v", what, len(got), names(got), len(want), names(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: prop %s missing", what, k)
			continue
		}
		if !sameValue(g, w) {
			t.Errorf("%s: prop %s: got %T(%v), want %T(%v)", what, k, g, brief(g), w, brief(w))
		}
	}
}

func names(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func brief(v any) any {
	switch v := v.(type) {
	case []byte:
		if len(v) > 16 {
			return fmt.Sprintf("%x... (%d bytes)", v[:16], len(v))
		}
	case string:
		if len(v) > 40 {
			return fmt.Sprintf("%.40q... (%d bytes)", v, len(v))
		}
	}
	return v
}

func sameValue(got, want any) bool {
	if reflect.TypeOf(got) != reflect.TypeOf(want) {
		return false
	}
	switch w := want.(type) {
	case []byte:
		return bytes.Equal(got.([]byte), w)
	case time.Time:
		g := got.(time.Time)
		return g.Equal(w) && g.Location() == time.UTC
	case float64:
		return math.Float64bits(got.(float64)) == math.Float64bits(w)
	default:
		return got == want
	}
}

func testPing(t *testing.T, h *harness) {
	if err := h.s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: got %v, want nil", err)
	}
}

func testCanceledContext(t *testing.T, h *harness) {
	tbl := h.table(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	e := store.Entity{PartitionKey: "p", RowKey: "r"}
	ops := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := tbl.Get(ctx, "p", "r"); return err }},
		{"Insert", func() error { _, err := tbl.Insert(ctx, e); return err }},
		{"Update", func() error { _, err := tbl.Update(ctx, e, "*"); return err }},
		{"Upsert", func() error { _, err := tbl.Upsert(ctx, e); return err }},
		{"Delete", func() error { return tbl.Delete(ctx, "p", "r", "*") }},
		{"Query", func() error { _, err := tbl.Query(ctx, store.Query{PartitionKey: "p"}); return err }},
		{"Batch", func() error { return tbl.Batch(ctx, []store.Op{{Kind: store.OpUpsert, Entity: e}}) }},
		{"Table", func() error { _, err := h.s.Table(ctx, uniqueName("c")); return err }},
	}
	for _, op := range ops {
		wantErr(t, op.name+" with canceled context", op.call(), context.Canceled)
	}
	wantNotFound(t, tbl, "p", "r")
}
