package tables

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/rules"
)

// recorder is a per-call policy that keeps what wirePolicy let through.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, url string
	body        []byte
}

func (r *recorder) Do(req *policy.Request) (*http.Response, error) {
	var body []byte
	if req.Body() != nil {
		var err error
		if body, err = io.ReadAll(req.Body()); err != nil {
			return nil, err
		}
		if err := req.RewindBody(); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{req.Raw().Method, req.Raw().URL.String(), body})
	r.mu.Unlock()
	return req.Next()
}

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) == 0 {
		t.Fatal("no request recorded")
	}
	return r.reqs[len(r.reqs)-1]
}

func recordingTable(t *testing.T) (store.Table, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := newFromConnectionString(az.Start(t).ConnectionString(), rec)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := s.Table(t.Context(), fmt.Sprintf("wire%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return tbl, rec
}

// Batch sub-requests must address a key with quotes exactly as a
// single-entity call does.
func TestBatchURLsQuoteKeysLikeSingleCalls(t *testing.T) {
	tbl, rec := recordingTable(t)
	ctx := t.Context()
	const pk, rk = "o'brien", "it's"
	if _, err := tbl.Update(ctx, store.Entity{PartitionKey: pk, RowKey: rk}, "*"); err == nil {
		t.Fatal("Update of a missing row: got nil error")
	}
	single := rec.last(t).url // .../table(PartitionKey='...',RowKey='...')
	predicate := single[strings.Index(single, "(PartitionKey="):]
	if want := "(PartitionKey='o%27%27brien',RowKey='it%27%27s')"; predicate != want {
		t.Fatalf("single-entity URL predicate: got %s, want %s", predicate, want)
	}
	err := tbl.Batch(ctx, []store.Op{
		{Kind: store.OpUpsert, Entity: store.Entity{PartitionKey: pk, RowKey: rk}},
		{Kind: store.OpMerge, Entity: store.Entity{PartitionKey: pk, RowKey: "merge'"}},
	})
	if err != nil {
		t.Fatalf("Batch: %v", err)
	}
	body := rec.last(t).body
	if !bytes.Contains(body, []byte(predicate+" HTTP/1.1")) {
		t.Errorf("batch body lacks %s:\n%s", predicate, body)
	}
	if bytes.Contains(body, []byte("%27brien")) && !bytes.Contains(body, []byte("%27%27brien")) {
		t.Errorf("batch body has an unescaped quote:\n%s", body)
	}
	// The JSON body keeps the raw key.
	if !bytes.Contains(body, []byte(`"PartitionKey":"o'brien"`)) {
		t.Errorf("batch JSON lost the raw key:\n%s", body)
	}
}

func TestBodiesAreASCII(t *testing.T) {
	tbl, rec := recordingTable(t)
	e := store.Entity{PartitionKey: "pä", RowKey: "r😀", Props: map[string]any{"s": "é日😀 <&>", "naïve": true}}
	if _, err := tbl.Upsert(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Batch(t.Context(), []store.Op{{Kind: store.OpUpsert, Entity: e}}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rec.reqs {
		for _, c := range r.body {
			if c >= 0x80 {
				t.Errorf("%s %s: body has non-ASCII byte %#x:\n%s", r.method, r.url, c, r.body)
				break
			}
		}
	}
	got, err := tbl.Get(t.Context(), "pä", "r😀")
	if err != nil {
		t.Fatal(err)
	}
	if got.Props["s"] != e.Props["s"] || got.Props["naïve"] != true {
		t.Errorf("got %v, want %v", got.Props, e.Props)
	}
}

// rules.Batch's size estimate must never be below what is really sent.
func TestBatchSizeEstimateIsUpperBound(t *testing.T) {
	tbl, rec := recordingTable(t)
	blob := make([]byte, 1000)
	tests := []struct {
		name  string
		props map[string]any
		kind  store.OpKind
	}{
		{"no props", nil, store.OpUpsert},
		{"delete", nil, store.OpDelete},
		{"numbers", map[string]any{"i": int64(-1 << 62), "f": -1.2345678901234567e-300, "t": time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC), "b": false}, store.OpMerge},
		{"ascii", map[string]any{"s": strings.Repeat("abc", 1000)}, store.OpUpsert},
		{"escapes", map[string]any{"s": strings.Repeat("<\"\\\n\x01&>", 500)}, store.OpUpsert},
		{"non-ascii", map[string]any{"s": strings.Repeat("é日😀", 500), "ñame": "x"}, store.OpUpsert},
		{"binary", map[string]any{"x": blob}, store.OpInsert},
	}
	for i, tt := range tests {
		pk := fmt.Sprintf("p%d", i)
		var ops []store.Op
		for j := range 20 {
			rk := fmt.Sprintf("%s'%d with spaces/ü", strings.Repeat("k", 40), j)
			rk = strings.ReplaceAll(rk, "/", "-")
			if tt.kind == store.OpDelete {
				if _, err := tbl.Upsert(t.Context(), store.Entity{PartitionKey: pk, RowKey: rk}); err != nil {
					t.Fatal(err)
				}
			}
			ops = append(ops, store.Op{Kind: tt.kind, Entity: store.Entity{PartitionKey: pk, RowKey: rk, Props: tt.props}})
		}
		if err := tbl.Batch(t.Context(), ops); err != nil {
			t.Fatalf("%s: Batch: %v", tt.name, err)
		}
		sent := len(rec.last(t).body)
		estimate := 1024
		for _, op := range ops {
			estimate += 1024 + rules.WireSize(op.Entity, op.Kind != store.OpDelete)
		}
		if estimate < sent {
			t.Errorf("%s: estimate %d bytes, sent %d", tt.name, estimate, sent)
		}
		t.Logf("%s: estimate %d, sent %d", tt.name, estimate, sent)
	}
}

func TestQuoteKeyPredicate(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{"PUT http://h/a/t(PartitionKey='o%27b',RowKey='x')?$format=x HTTP/1.1\r\n", "PUT http://h/a/t(PartitionKey='o%27%27b',RowKey='x')?$format=x HTTP/1.1\r\n", true},
		{"DELETE http://h/a/t(PartitionKey='p',RowKey='%27%27') HTTP/1.1\r\n", "DELETE http://h/a/t(PartitionKey='p',RowKey='%27%27%27%27') HTTP/1.1\r\n", true},
		{"PATCH http://h/a/t(PartitionKey='p',RowKey='r') HTTP/1.1\r\n", "", false},
		{"POST http://h/a/t HTTP/1.1\r\n", "", false},
	}
	for _, tt := range tests {
		got, changed := quoteKeyPredicate(tt.in)
		if changed != tt.changed || changed && got != tt.want {
			t.Errorf("quoteKeyPredicate(%q): got %q, %v, want %q, %v", tt.in, got, changed, tt.want, tt.changed)
		}
	}
	// JSON lines are never touched, even when they look like a predicate.
	body := "{\"s\":\"PUT x(PartitionKey='%27',RowKey='a') HTTP/1.1\"}\r\n"
	if got, changed := quoteBatchKeys([]byte(body)); changed || string(got) != body {
		t.Errorf("quoteBatchKeys changed a JSON line: %q", got)
	}
}

func TestASCIIJSON(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"plain"}`, `{"a":"plain"}`},
		{`{"a":"é"}`, `{"a":"\u00e9"}`},
		{`{"日":"😀"}`, `{"\u65e5":"\ud83d\ude00"}`},
	}
	for _, tt := range tests {
		got, _ := asciiJSON([]byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("asciiJSON(%s): got %s, want %s", tt.in, got, tt.want)
		}
	}
}
