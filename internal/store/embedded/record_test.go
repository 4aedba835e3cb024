package embedded

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// allKinds has one property of every kind, with edge values.
func allKinds() map[string]any {
	return map[string]any{
		"Str": "héllo, wörld", "Empty": "", "Int": int64(-42), "MaxInt": int64(math.MaxInt64),
		"MinInt": int64(math.MinInt64), "Zero": int64(0), "Float": 3.0, "NegFloat": -1.5e-300,
		"True": true, "False": false, "Time": time.Date(2031, 2, 3, 4, 5, 6, 789_000_000, time.UTC),
		"Bin": []byte{0, 1, 2, 255}, "NoBin": []byte{},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		props map[string]any
	}{
		{"no properties", map[string]any{}},
		{"every kind", allKinds()},
		{"long values", map[string]any{strings.Repeat("n", 255): strings.Repeat("é", 10000), "B": make([]byte, 70000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
			v := appendRecord(nil, `W/"123"`, ts, tt.props)
			if n := recordSize(`W/"123"`, tt.props); len(v) > n {
				t.Fatalf("recordSize %d < encoded %d", n, len(v))
			}
			rec, err := unmarshalRecord(v)
			if err != nil {
				t.Fatalf("unmarshalRecord: %v", err)
			}
			got := rec.entity("p", "r")
			want := store.Entity{PartitionKey: "p", RowKey: "r", Props: tt.props, ETag: `W/"123"`, Timestamp: time.Unix(0, ts).UTC()}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %#v, want %#v", got, want)
			}
		})
	}
}

// TestRecordSmallerThanJSON guards the point of the binary form: a usage
// row (22 properties) takes well under half its JSON size.
func TestRecordSmallerThanJSON(t *testing.T) {
	props := map[string]any{
		"Time": time.Now().UTC(), "RequestId": "4f1d2c3b4a5968778695a4b3c2d1e0f0", "KeyId": "k_0123456789abcdef",
		"Team": "bench", "App": "load", "Model": "gpt-4o-mini", "Operation": "chat.completions", "Backend": "sim",
		"Deployment": "gpt-4o-mini", "Region": "", "Class": "interactive", "Status": int64(200), "Stream": false,
		"LatencyMs": int64(3), "PromptTokens": int64(12), "CachedTokens": int64(0), "CompletionTokens": int64(40),
		"ReasoningTokens": int64(0), "TotalTokens": int64(52), "Cost": 0.0000258, "Currency": "USD", "UsageSource": "reported",
	}
	bin := appendRecord(nil, `W/"123456"`, time.Now().UnixNano(), props)
	js := legacyJSON(t, `W/"123456"`, time.Now().UnixNano(), props)
	t.Logf("usage row: binary %d bytes, JSON %d bytes", len(bin), len(js))
	if 2*len(bin) > len(js) {
		t.Fatalf("binary row of %d bytes is not under half the JSON row (%d bytes)", len(bin), len(js))
	}
}

func TestRecordCorrupt(t *testing.T) {
	v := appendRecord(nil, `W/"1"`, 1, allKinds())
	for n := 1; n < len(v); n++ { // every truncation
		if _, err := unmarshalRecord(v[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: no error", n, len(v))
		}
	}
	if _, err := unmarshalRecord(append(v[:len(v):len(v)], 0)); err == nil {
		t.Fatal("trailing byte: no error")
	}
	bad := append([]byte{formatBinary}, appendString(nil, "e")...)
	bad = append(bad, make([]byte, 8)...)
	bad = append(bad, 1)
	bad = append(bad, appendString(nil, "P")...)
	bad = append(bad, 'z', 0)
	if _, err := unmarshalRecord(bad); err == nil {
		t.Fatal("unknown kind: no error")
	}
	if _, err := unmarshalRecord(append([]byte{formatBinary}, appendString(nil, "e")...)); err == nil {
		t.Fatal("no timestamp: no error")
	}
}

// legacyJSON is how rows were written before the binary form (the code of
// that version, kept here to prove those rows stay readable).
func legacyJSON(t *testing.T, etag string, ts int64, props map[string]any) []byte {
	t.Helper()
	out := make([]prop, 0, len(props))
	for name, v := range props {
		p := prop{Name: name}
		switch v := v.(type) {
		case string:
			p.Kind, p.Str = kindString, v
		case int64:
			p.Kind, p.Int = kindInt64, v
		case float64:
			p.Kind, p.Float = kindDouble, v
		case bool:
			p.Kind = kindBool
			if v {
				p.Int = 1
			}
		case time.Time:
			p.Kind, p.Int = kindTime, rules.Time(v).UnixMilli()
		case []byte:
			p.Kind, p.Bin = kindBinary, v
		}
		out = append(out, p)
	}
	b, err := json.Marshal(record{ETag: etag, Timestamp: ts, Props: out})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLegacyJSONRows: rows an earlier version wrote as JSON read back the
// same, work as If-Match targets and merge bases, and are rewritten in the
// binary form on their next write.
func TestLegacyJSONRows(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "store.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tbl, err := s.Table(ctx, "Legacy")
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("legacy"))
		for _, rk := range []string{"a", "b", "c"} {
			if err := b.Put(rowKey("p", rk), legacyJSON(t, `W/"7`+rk+`"`, ts.UnixNano(), allKinds())); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := store.Entity{PartitionKey: "p", RowKey: "a", Props: allKinds(), ETag: `W/"7a"`, Timestamp: ts}
	got, err := tbl.Get(ctx, "p", "a")
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Get = %#v, %v; want %#v", got, err, want)
	}
	all, err := tbl.Query(ctx, store.Query{PartitionKey: "p"})
	if err != nil || len(all) != 3 || !reflect.DeepEqual(all[0], want) {
		t.Fatalf("Query = %#v, %v", all, err)
	}
	if _, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "a", Props: map[string]any{"X": int64(1)}}, `W/"wrong"`); err == nil {
		t.Fatal("Update with a wrong ETag succeeded")
	}
	if _, err := tbl.Update(ctx, store.Entity{PartitionKey: "p", RowKey: "a", Props: map[string]any{"X": int64(1)}}, `W/"7a"`); err != nil {
		t.Fatalf("Update with the legacy ETag: %v", err)
	}
	if err := tbl.Batch(ctx, []store.Op{{Kind: store.OpMerge, Entity: store.Entity{PartitionKey: "p", RowKey: "b", Props: map[string]any{"Int": int64(5)}}}}); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	merged := allKinds()
	merged["Int"] = int64(5)
	if got, err := tbl.Get(ctx, "p", "b"); err != nil || !reflect.DeepEqual(got.Props, merged) {
		t.Fatalf("merged row = %#v, %v; want props %#v", got, err, merged)
	}
	if err := tbl.Delete(ctx, "p", "c", `W/"7c"`); err != nil {
		t.Fatalf("Delete with the legacy ETag: %v", err)
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		for _, rk := range []string{"a", "b"} {
			if v := tx.Bucket([]byte("legacy")).Get(rowKey("p", rk)); len(v) == 0 || v[0] != formatBinary {
				t.Errorf("row %s not rewritten in the binary form: %.20q", rk, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
