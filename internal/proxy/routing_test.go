package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/route"
)

// clock is a fake clock for cooling and circuits.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fake is a backend whose answer a test switches at will.
type fake struct {
	srv    *httptest.Server
	hits   atomic.Int32
	mu     sync.Mutex
	status int
	hdr    http.Header
	body   string
}

func newFake(t testing.TB) *fake {
	f := &fake{status: 200, body: okBody}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		f.hits.Add(1)
		f.mu.Lock()
		st, body := f.status, f.body
		for k, v := range f.hdr {
			w.Header()[k] = v
		}
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fake) set(status int, body string, kv ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.body, f.hdr = status, body, http.Header{}
	for i := 0; i < len(kv); i += 2 {
		f.hdr.Set(kv[i], kv[i+1])
	}
}

// routed builds a model "m" over the fakes: ptu (provisioned, EU), std (EU)
// and us (eastus), through route.New so health and cooling are live.
func routed(t testing.TB, clk *clock, ptu, std, us *fake, extra string) *route.Model {
	t.Helper()
	y := fmt.Sprintf(`
routing: { breaker: { failures: 5, openFor: 30s } }
backends:
  - {name: ptu, url: %q, provisioned: true, region: swedencentral, auth: {none: true}}
  - {name: std, url: %q, region: swedencentral, auth: {none: true}}
  - {name: us, url: %q, region: eastus, auth: {none: true}}
models:
  m:
    targets:
      - {backend: ptu, deployment: d}
      - {backend: std, deployment: d, version: "2024-07-18"}
      - {backend: us, deployment: d, priority: 3}
%s`, ptu.srv.URL, std.srv.URL, us.srv.URL, extra)
	c, err := config.Parse([]byte(y), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var now func() time.Time
	if clk != nil {
		now = clk.Now
	}
	r, err := route.New(c, backendauth.For, now)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.Model("m")
	return m
}

func newProxy(opt Options) *Proxy {
	if opt.MaxAttempts == 0 {
		opt.MaxAttempts = 3
	}
	opt.ExposeBackend = true
	return New(NewTransport(), slog.New(slog.DiscardHandler), opt)
}

func TestCoolingSpillsToStandardAndBack(t *testing.T) {
	clk := newClock()
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, clk, ptu, std, us, "")
	p := newProxy(Options{})
	ptu.set(429, `{"error":{"code":"429"}}`, "retry-after-ms", "2000", "retry-after", "2")
	steps := []struct {
		name        string
		advance     time.Duration
		wantBackend string
		wantPTUHits int32
	}{
		{"429 from ptu fails over to std", 0, "std", 1},
		{"ptu cooling: not tried", time.Second, "std", 1},
		{"just before the wait ends", 999 * time.Millisecond, "std", 1},
		{"after the wait: ptu again", time.Millisecond, "ptu", 2},
	}
	for i, s := range steps {
		if i == 3 {
			ptu.set(200, okBody)
		}
		clk.Advance(s.advance)
		rec, res := forward(t, p, m, Call{Caller: "k"})
		if rec.Code != 200 || res.Backend != s.wantBackend || rec.Header().Get("X-Gateway-Backend") != s.wantBackend {
			t.Fatalf("%s: got %d from %s, want 200 from %s", s.name, rec.Code, res.Backend, s.wantBackend)
		}
		if got := ptu.hits.Load(); got != s.wantPTUHits {
			t.Fatalf("%s: got %d ptu hits, want %d", s.name, got, s.wantPTUHits)
		}
	}
	if us.hits.Load() != 0 {
		t.Errorf("got %d hits on the third tier, want 0", us.hits.Load())
	}
}

func TestAllCoolingAnswers429WithShortestWait(t *testing.T) {
	clk := newClock()
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, clk, ptu, std, us, "")
	// The waits below are all above the maximum: nothing is waited out.
	p := newProxy(Options{MaxRetryWait: 500 * time.Millisecond})
	ptu.set(429, `{}`, "retry-after-ms", "3000")
	std.set(429, `{}`, "retry-after-ms", "1500")
	us.set(429, `{"error":{"message":"us busy"}}`, "retry-after-ms", "2500")
	rec, _ := forward(t, p, m, Call{})
	if rec.Code != 429 || !strings.Contains(rec.Body.String(), "us busy") {
		t.Fatalf("got %d %s, want the last backend's 429 passed through", rec.Code, rec.Body)
	}
	clk.Advance(500 * time.Millisecond)
	hits := ptu.hits.Load() + std.hits.Load() + us.hits.Load()
	rec, res := forward(t, p, m, Call{})
	if got := ptu.hits.Load() + std.hits.Load() + us.hits.Load(); got != hits {
		t.Errorf("got %d backend calls while all cool, want 0", got-hits)
	}
	tests := []struct{ name, got, want string }{
		{"status", fmt.Sprint(rec.Code), "429"},
		{"retry-after-ms: the shortest remaining wait", rec.Header().Get("Retry-After-Ms"), "1000"},
		{"retry-after", rec.Header().Get("Retry-After"), "1"},
		{"attempts", fmt.Sprint(res.Attempts), "0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if !strings.Contains(rec.Body.String(), `"type":"rate_limit_error"`) {
		t.Errorf("got body %s, want an OpenAI rate_limit_error", rec.Body)
	}
}

func TestRegionsOnFailover(t *testing.T) {
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	tests := []struct {
		name       string
		regions    []string
		ptu, std   int
		wantStatus int
		wantFrom   string
		wantCode   string
	}{
		{"eu key served in eu", []string{"swedencentral"}, 200, 200, 200, "ptu", ""},
		{"eu failing: eu key gets eu's error, never us", []string{"swedencentral"}, 503, 503, 503, "std", ""},
		{"unrestricted key fails over to us", nil, 503, 503, 200, "us", ""},
		{"no region allowed: 403", []string{"japaneast"}, 200, 200, 403, "", "region_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := routed(t, nil, ptu, std, us, "")
			ptu.set(tt.ptu, okBody)
			std.set(tt.std, okBody)
			before := us.hits.Load()
			rec, res := forward(t, p(), m, Call{Regions: tt.regions})
			if rec.Code != tt.wantStatus || res.Backend != tt.wantFrom || !strings.Contains(rec.Body.String(), tt.wantCode) {
				t.Fatalf("got %d from %q %s, want %d from %q %s", rec.Code, res.Backend, rec.Body, tt.wantStatus, tt.wantFrom, tt.wantCode)
			}
			if tt.regions != nil && us.hits.Load() != before {
				t.Errorf("got %d calls to the us backend for an eu key, want 0", us.hits.Load()-before)
			}
		})
	}
}

func p() *Proxy { return newProxy(Options{}) }

func TestCircuitOpensAndProbeCloses(t *testing.T) {
	clk := newClock()
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, clk, ptu, std, us, "")
	px := newProxy(Options{})
	ptu.set(500, `{}`)
	for i := range 5 {
		rec, res := forward(t, px, m, Call{})
		if rec.Code != 200 || res.Backend != "std" {
			t.Fatalf("call %d: got %d from %s, want 200 from std after failover", i, rec.Code, res.Backend)
		}
	}
	if ptu.hits.Load() != 5 {
		t.Fatalf("got %d ptu hits, want 5", ptu.hits.Load())
	}
	forward(t, px, m, Call{})
	if ptu.hits.Load() != 5 {
		t.Fatalf("got %d ptu hits with its circuit open, want 5", ptu.hits.Load())
	}
	// After openFor one probe goes through; the backend has recovered.
	ptu.set(200, okBody)
	clk.Advance(30 * time.Second)
	if _, res := forward(t, px, m, Call{}); res.Backend != "ptu" {
		t.Fatalf("got probe on %s, want ptu", res.Backend)
	}
	for range 3 {
		if _, res := forward(t, px, m, Call{}); res.Backend != "ptu" {
			t.Fatalf("got %s after a successful probe, want ptu (closed)", res.Backend)
		}
	}
	// Client errors never open it.
	ptu.set(400, `{"error":{"code":"content_filter"}}`)
	for range 10 {
		forward(t, px, m, Call{})
	}
	ptu.set(200, okBody)
	if _, res := forward(t, px, m, Call{}); res.Backend != "ptu" {
		t.Errorf("got %s after ten 400s, want ptu (client errors do not count)", res.Backend)
	}
}

func TestAllCircuitsOpenIs503(t *testing.T) {
	clk := newClock()
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, clk, ptu, std, us, "")
	px := newProxy(Options{MaxAttempts: 3})
	for _, f := range []*fake{ptu, std, us} {
		f.set(503, `{}`)
	}
	for range 5 {
		forward(t, px, m, Call{})
	}
	rec, _ := forward(t, px, m, Call{})
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "no_healthy_backend") || rec.Header().Get("Retry-After") == "" {
		t.Errorf("got %d %s retry-after %q, want 503 no_healthy_backend with retry-after", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
}

func TestClientDisconnectDoesNotCount(t *testing.T) {
	clk := newClock()
	block := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer block.Close()
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	ptu.srv.Config.Handler = block.Config.Handler
	m := routed(t, clk, ptu, std, us, "")
	px := newProxy(Options{})
	for range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		req := httptest.NewRequest(http.MethodPost, "/", nil).WithContext(ctx)
		res := px.Forward(httptest.NewRecorder(), req, m, Call{Req: openai.Request{Op: openai.OpChat}, Body: []byte(`{}`)})
		cancel()
		if res.Status != 499 {
			t.Fatalf("got %d, want 499", res.Status)
		}
	}
	if !m.Targets[0].Backend.Health.Allow() {
		t.Error("got an open circuit after client disconnects, want closed")
	}
}

// memAffinity is an in-memory Affinity.
type memAffinity struct {
	mu sync.Mutex
	m  map[string]string
}

func (a *memAffinity) Remember(id, b, _ string) { a.mu.Lock(); a.m[id] = b; a.mu.Unlock() }
func (a *memAffinity) Lookup(_ context.Context, id string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.m[id]
	return b, ok
}

func TestResponsesAffinity(t *testing.T) {
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, nil, ptu, std, us, "")
	aff := &memAffinity{m: map[string]string{"resp_old": "us"}}
	px := newProxy(Options{Affinity: aff})
	ptu.set(200, `{"id":"resp_new1","object":"response","usage":{"input_tokens":1,"output_tokens":1,"total_tokens":2}}`)
	// A new conversation: its id is remembered against the backend.
	_, res := forward(t, px, m, Call{Req: openai.Request{Op: openai.OpResponses}, Body: []byte(`{}`)})
	if res.Backend != "ptu" || aff.m["resp_new1"] != "ptu" {
		t.Fatalf("got %s and affinity %v, want resp_new1 → ptu", res.Backend, aff.m)
	}
	// A continued one goes where it started, even to a lower tier.
	_, res = forward(t, px, m, Call{Req: openai.Request{Op: openai.OpResponses, PreviousResponseID: "resp_old"}, Body: []byte(`{}`)})
	if res.Backend != "us" {
		t.Errorf("got %s, want us (the backend that made resp_old)", res.Backend)
	}
	// Streams: the id comes from response.created.
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_s1\",\"status\":\"in_progress\"}}\n\n")
		io.WriteString(w, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_s1\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1,\"total_tokens\":2}}}\n\n")
	}))
	defer sse.Close()
	ptu.srv.Config.Handler = sse.Config.Handler
	forward(t, px, m, Call{Req: openai.Request{Op: openai.OpResponses, Stream: true}, Body: []byte(`{}`)})
	if aff.m["resp_s1"] != "ptu" {
		t.Errorf("got affinity %v, want resp_s1 → ptu from the stream", aff.m)
	}
}

func TestModelVersionHeader(t *testing.T) {
	ptu, std, us := newFake(t), newFake(t), newFake(t)
	m := routed(t, nil, ptu, std, us, "")
	ptu.set(503, `{}`)
	rec, _ := forward(t, p(), m, Call{})
	if got := rec.Header().Get("X-Gateway-Model-Version"); got != "2024-07-18" {
		t.Errorf("got %q, want 2024-07-18", got)
	}
}

// BenchmarkFailoverUnderLoad: parallel calls whose first-tier backend
// answers 503 (its circuit opens, then probes every openFor) and whose
// second tier serves them.
func BenchmarkFailoverUnderLoad(b *testing.B) {
	ptu, std, us := newFake(b), newFake(b), newFake(b)
	ptu.set(503, `{}`)
	m := routed(b, nil, ptu, std, us, "")
	px := newProxy(Options{})
	c := Call{Req: openai.Request{Op: openai.OpChat, Model: "m"}, Body: []byte(`{"model":"m","messages":[]}`)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			px.Forward(rec, httptest.NewRequest(http.MethodPost, "/", nil), m, c)
			if rec.Code != 200 {
				b.Errorf("got %d, want 200", rec.Code)
			}
		}
	})
}
