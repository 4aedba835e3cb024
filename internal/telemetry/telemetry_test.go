package telemetry

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ingestion is a fake Application Insights endpoint that keeps envelopes.
type ingestion struct {
	srv  *httptest.Server
	mu   sync.Mutex
	envs []map[string]any
}

func newIngestion(t *testing.T, block <-chan struct{}) *ingestion {
	in := &ingestion{}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("ingestion body not gzip: %v", err)
			return
		}
		sc := bufio.NewScanner(zr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("bad envelope %q: %v", sc.Text(), err)
				continue
			}
			in.mu.Lock()
			in.envs = append(in.envs, m)
			in.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		in.mu.Lock()
		n := len(in.envs)
		in.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"itemsReceived": n, "itemsAccepted": n, "errors": []any{}})
	}))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *ingestion) byType(baseType string) []map[string]any {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []map[string]any
	for _, e := range in.envs {
		if d, _ := e["data"].(map[string]any); d != nil && d["baseType"] == baseType {
			out = append(out, e)
		}
	}
	return out
}

func baseData(e map[string]any) map[string]any {
	return e["data"].(map[string]any)["baseData"].(map[string]any)
}

func tags(e map[string]any) map[string]any { return e["tags"].(map[string]any) }

func TestParseConnectionString(t *testing.T) {
	tests := []struct {
		cs, ikey, url string
		err           bool
	}{
		{"InstrumentationKey=abc;IngestionEndpoint=https://x.in.applicationinsights.azure.com/;LiveEndpoint=https://l/", "abc", "https://x.in.applicationinsights.azure.com/v2/track", false},
		{"instrumentationkey=abc;ingestionendpoint=http://127.0.0.1:9", "abc", "http://127.0.0.1:9/v2/track", false},
		{"InstrumentationKey=abc", "abc", "https://dc.services.visualstudio.com/v2/track", false},
		{"IngestionEndpoint=https://x/", "", "", true},
	}
	for _, tt := range tests {
		ikey, url, err := ParseConnectionString(tt.cs)
		if (err != nil) != tt.err || ikey != tt.ikey || url != tt.url {
			t.Errorf("%q: got %q %q %v, want %q %q err=%v", tt.cs, ikey, url, err, tt.ikey, tt.url, tt.err)
		}
	}
}

func TestTraceparent(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	tr := FromHeader(h)
	if tr.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || tr.ParentID != "00f067aa0ba902b7" || len(tr.SpanID) != 16 {
		t.Fatalf("continued trace %+v", tr)
	}
	child := tr.Child()
	if child.TraceID != tr.TraceID || child.ParentID != tr.SpanID || child.SpanID == tr.SpanID {
		t.Errorf("child %+v of %+v", child, tr)
	}
	if got, want := child.Traceparent(), "00-"+tr.TraceID+"-"+child.SpanID+"-01"; got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
	for _, bad := range []string{"", "00-xyz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"} {
		h.Set("traceparent", bad)
		tr := FromHeader(h)
		if tr.ParentID != "" || len(tr.TraceID) != 32 || tr.TraceID == "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("%q: want a new trace, got %+v", bad, tr)
		}
	}
}

func TestEnvelopes(t *testing.T) {
	in := newIngestion(t, nil)
	c, err := New(Options{ConnectionString: "InstrumentationKey=ikey-1;IngestionEndpoint=" + in.srv.URL + "/", BatchInterval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	h := http.Header{}
	h.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	req := FromHeader(h)
	att := req.Child()
	now := time.Now()
	c.TrackDependency(Dependency{Trace: att, Name: "POST /openai/v1/chat/completions", Target: "sim:8081", Start: now, Duration: 3 * time.Millisecond, Status: 429, Properties: map[string]string{"backend": "ptu"}})
	c.TrackRequest(Request{Trace: req, Name: "POST /openai/v1/chat/completions", URL: "http://gw/openai/v1/chat/completions", Start: now, Duration: 9 * time.Millisecond, Status: 200,
		Properties: map[string]string{"team": "research", "model": "gpt-4o-mini", "empty": ""}, Measurements: map[string]float64{"prompt_tokens": 12}})
	c.TrackMetric("gateway.tokens", 42, req, map[string]string{"team": "research"})
	cancel()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	c.Close(cctx)

	reqs, deps, mets := in.byType("RequestData"), in.byType("RemoteDependencyData"), in.byType("MetricData")
	if len(reqs) != 1 || len(deps) != 1 || len(mets) != 1 {
		t.Fatalf("got %d requests, %d dependencies, %d metrics; want 1 each", len(reqs), len(deps), len(mets))
	}
	r, d := reqs[0], deps[0]
	checks := []struct{ name, got, want string }{
		{"ikey", r["iKey"].(string), "ikey-1"},
		{"request id = gateway span", baseData(r)["id"].(string), req.SpanID},
		{"operation id = trace id", tags(r)["ai.operation.id"].(string), req.TraceID},
		{"request parent = caller span", tags(r)["ai.operation.parentId"].(string), "00f067aa0ba902b7"},
		{"request name", baseData(r)["name"].(string), "POST /openai/v1/chat/completions"},
		{"result code", baseData(r)["responseCode"].(string), "200"},
		{"team property", baseData(r)["properties"].(map[string]any)["team"].(string), "research"},
		{"dependency id = attempt span", baseData(d)["id"].(string), att.SpanID},
		{"dependency parent = request span", tags(d)["ai.operation.parentId"].(string), req.SpanID},
		{"dependency operation", tags(d)["ai.operation.id"].(string), req.TraceID},
		{"dependency result", baseData(d)["resultCode"].(string), "429"},
		{"role", tags(r)["ai.cloud.role"].(string), "foundry-gateway"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s: got %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	if _, ok := baseData(r)["properties"].(map[string]any)["empty"]; ok {
		t.Error("empty property sent")
	}
	if baseData(r)["measurements"].(map[string]any)["prompt_tokens"].(float64) != 12 {
		t.Error("measurement lost")
	}
	if baseData(d)["success"].(bool) {
		t.Error("a 429 dependency must not be a success")
	}
}

// TestHangingIngestionNeverBlocks: with an endpoint that never answers, Track
// calls return at once and the oldest items are dropped and counted.
//
// The endpoint hangs until the test ends, so a Track that blocked would
// never return: the time limit only turns that hang into a failure and is
// no speed requirement. 50,000 calls within 20 s failed under -race at a
// load of 25 on 2 cores; 5,000 calls are still 50 times the buffer.
func TestHangingIngestionNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	in := newIngestion(t, block)
	c, err := New(Options{ConnectionString: "InstrumentationKey=k;IngestionEndpoint=" + in.srv.URL, Buffer: 100, BatchInterval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 5000; i++ {
			c.TrackRequest(Request{Name: "r", Status: 200, Trace: Trace{TraceID: strings.Repeat("a", 32), SpanID: "b"}})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("Track blocked behind a hanging ingestion endpoint")
	}
	if c.Dropped() == 0 {
		t.Error("no items dropped with a 100-item buffer and a hung endpoint")
	}
}

func TestDisabledClientIsNoop(t *testing.T) {
	c, err := New(Options{}, nil)
	if err != nil || c != nil {
		t.Fatalf("got %v %v", c, err)
	}
	c.TrackRequest(Request{})
	c.TrackDependency(Dependency{})
	c.TrackMetric("m", 1, Trace{}, nil)
	c.TrackTrace("x", true, Trace{}, nil)
	c.Close(context.Background())
}

func BenchmarkTrackRequest(b *testing.B) {
	c, _ := New(Options{ConnectionString: "InstrumentationKey=k;IngestionEndpoint=http://127.0.0.1:1/", Buffer: 1 << 20}, slog.New(slog.DiscardHandler))
	tr := Trace{TraceID: strings.Repeat("a", 32), SpanID: strings.Repeat("b", 16)}
	props := map[string]string{"team": "t", "app": "a", "model": "m"}
	b.ReportAllocs()
	for b.Loop() {
		c.TrackRequest(Request{Trace: tr, Name: "POST /x", Status: 200, Properties: props})
		select {
		case <-c.buf:
		default:
		}
	}
}
