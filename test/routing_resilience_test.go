package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// injector sits in front of the simulator as one backend and, when armed,
// adds x-sim-fault (and x-sim-retry-after-ms) to the next requests, so the
// simulator fails only on this backend while another backend on the same
// simulator serves normally.
type injector struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
	hits   atomic.Int32
	mu     sync.Mutex
	fault  string
	ms     int
	times  int
}

func newInjector(t *testing.T) *injector {
	t.Helper()
	in := &injector{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(in.target.Load())
			in.mu.Lock()
			if in.times > 0 {
				in.times--
				pr.Out.Header.Set("x-sim-fault", in.fault)
				pr.Out.Header.Set("x-sim-retry-after-ms", strconv.Itoa(in.ms))
			}
			in.mu.Unlock()
		},
		FlushInterval: -1,
	}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.hits.Add(1)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(in.srv.Close)
	return in
}

// arm makes the next n requests fail with fault (retry-after-ms for 429).
func (in *injector) arm(fault string, retryMS, n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fault, in.ms, in.times = fault, retryMS, n
}

func (in *injector) point(rawURL string) {
	u, _ := url.Parse(rawURL)
	in.target.Store(u)
}

// resilienceStack: model "tiered" is a provisioned deployment (gpt-4o-mini-ptu
// behind injector ptu) first, a standard one (gpt-4o-mini behind injector
// std) next, both on the simulator.
func resilienceStack(t *testing.T, extraTop string) (*stack, *injector, *injector) {
	ptu, std := newInjector(t), newInjector(t)
	s := startStack(t, stackOptions{
		extraTop: extraTop,
		extraBackends: fmt.Sprintf(`  - { name: eu-ptu, url: "%s", provisioned: true, region: swedencentral, auth: { none: true } }
  - { name: eu-std, url: "%s", region: swedencentral, auth: { none: true } }`, ptu.srv.URL, std.srv.URL),
		extraModels: `  tiered:
    targets:
      - { backend: eu-ptu, deployment: gpt-4o-mini-ptu }
      - { backend: eu-std, deployment: gpt-4o-mini }`,
	})
	ptu.point(s.SimURL)
	std.point(s.SimURL)
	return s, ptu, std
}

const tieredChat = `{"model":"tiered","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

// call sends one request and returns status, serving backend and body.
func call(t *testing.T, s *stack, key, body string, hdr map[string]string) (int, string, string, http.Header) {
	t.Helper()
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", key, body, hdr)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), string(b), resp.Header
}

func TestRoutingProvisionedSpilloverAndReturn(t *testing.T) {
	s, ptu, std := resilienceStack(t, "")
	if st, b, body, _ := call(t, s, s.Key, tieredChat, nil); st != 200 || b != "eu-ptu" {
		t.Fatalf("warm-up: got %d from %q %s, want 200 from eu-ptu", st, b, body)
	}
	ptu.arm("429", 2000, 1)
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		st, b, body, _ := call(t, s, s.Key, tieredChat, nil)
		if st != 200 || b != "eu-std" {
			t.Fatalf("request %d while the ptu cools: got %d from %q %s, want 200 from eu-std", i, st, b, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := ptu.hits.Load(); got != 2 {
		t.Errorf("got %d calls to the ptu, want 2 (warm-up, the 429; none while cooling)", got)
	}
	time.Sleep(time.Until(start.Add(2100 * time.Millisecond)))
	if st, b, body, _ := call(t, s, s.Key, tieredChat, nil); st != 200 || b != "eu-ptu" {
		t.Errorf("after the wait: got %d from %q %s, want 200 from eu-ptu", st, b, body)
	}
	if std.hits.Load() == 0 {
		t.Error("the standard tier was never used")
	}
}

func TestRoutingAllCoolingOne429(t *testing.T) {
	s, ptu, std := resilienceStack(t, "")
	ptu.arm("429", 4000, 1)
	std.arm("429", 2500, 1)
	st, _, _, h := call(t, s, s.Key, tieredChat, nil)
	if st != 429 {
		t.Fatalf("got %d, want the last backend's 429", st)
	}
	hits := ptu.hits.Load() + std.hits.Load()
	time.Sleep(300 * time.Millisecond)
	st, _, body, h := call(t, s, s.Key, tieredChat, nil)
	ms, _ := strconv.Atoi(h.Get("Retry-After-Ms"))
	tests := []struct {
		name string
		ok   bool
		got  any
	}{
		{"status 429", st == 429, st},
		{"retry-after-ms is the shortest remaining wait (std's 2500 minus ~300)", ms > 1500 && ms <= 2300, ms},
		{"retry-after in seconds", h.Get("Retry-After") == "2" || h.Get("Retry-After") == "3", h.Get("Retry-After")},
		{"OpenAI error shape", strings.Contains(body, `"type":"rate_limit_error"`), body},
		{"no backend called", ptu.hits.Load()+std.hits.Load() == hits, ptu.hits.Load() + std.hits.Load() - hits},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("%s: got %v", tt.name, tt.got)
		}
	}
}

func TestRoutingStreamFailover(t *testing.T) {
	s, ptu, std := resilienceStack(t, "")
	stream := `{"model":"tiered","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

	// Fails before the first byte: the client gets a whole stream from std.
	ptu.arm("reset", 0, 1)
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key, stream, nil)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Gateway-Backend") != "eu-std" || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("got %d from %q err %v body %q, want a complete stream from eu-std", resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), err, b)
	}

	// Cut after bytes were sent: the client sees a broken stream, and it is
	// not replayed on the standard tier.
	before := std.hits.Load()
	ptu.arm("cut", 0, 1)
	resp = post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"tiered","stream":true,"max_tokens":200,"messages":[{"role":"user","content":"tell me a long story"}]}`, nil)
	sc := bufio.NewScanner(resp.Body)
	events := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			events++
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Gateway-Backend") != "eu-ptu" || events == 0 || sc.Err() == nil {
		t.Errorf("got %d from %q, %d events, read error %v; want some events from eu-ptu then a broken stream",
			resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), events, sc.Err())
	}
	if got := std.hits.Load() - before; got != 0 {
		t.Errorf("got %d calls to eu-std after the cut, want 0 (never replayed)", got)
	}
}

// flaky is a backend whose failure the test toggles.
type flaky struct {
	srv  *httptest.Server
	fail atomic.Bool
	hits atomic.Int32
}

func TestRoutingCircuitBreaker(t *testing.T) {
	f := &flaky{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		f.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if f.fail.Load() {
			w.WriteHeader(500)
			io.WriteString(w, `{"error":{"code":"InternalServerError","message":"boom"}}`)
			return
		}
		io.WriteString(w, `{"id":"x","object":"chat.completion","model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`)
	}))
	t.Cleanup(f.srv.Close)
	s := startStack(t, stackOptions{
		extraTop:      "routing: { breaker: { failures: 5, openFor: 1s } }",
		extraBackends: fmt.Sprintf(`  - { name: flaky, url: "%s", provisioned: true, region: swedencentral, auth: { none: true } }`, f.srv.URL),
		extraModels: `  guarded:
    targets:
      - { backend: flaky, deployment: gpt-4o-mini }
      - { backend: sim-paygo, deployment: gpt-4o-mini }`,
		extraKeys: [][]string{{"--team", "other", "--app", "x"}},
	})
	body := `{"model":"guarded","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	f.fail.Store(true)
	for i := range 5 {
		if st, b, resp, _ := call(t, s, s.Key, body, nil); st != 200 || b != "sim-paygo" {
			t.Fatalf("failure %d: got %d from %q %s, want 200 from sim-paygo", i+1, st, b, resp)
		}
	}
	if got := admin(t, s, s.Key)["flaky"]; got != "open" {
		t.Fatalf("after 5 failures: got circuit %q, want open", got)
	}
	for range 3 {
		call(t, s, s.Key, body, nil)
	}
	if got := f.hits.Load(); got != 5 {
		t.Fatalf("got %d calls to the open backend, want 5", got)
	}
	f.fail.Store(false)
	time.Sleep(1100 * time.Millisecond)
	if st, b, _, _ := call(t, s, s.Key, body, nil); st != 200 || b != "flaky" {
		t.Fatalf("probe: got %d from %q, want 200 from flaky", st, b)
	}
	if got := admin(t, s, s.Key)["flaky"]; got != "closed" {
		t.Errorf("after the probe: got circuit %q, want closed", got)
	}
	if st, b, _, _ := call(t, s, s.Key, body, nil); b != "flaky" {
		t.Errorf("after closing: got %d from %q, want flaky", st, b)
	}
	// Only admin teams may look.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/gateway/admin/backends", nil)
	req.Header.Set("api-key", s.ExtraKeys[0])
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("non-admin team: got %d, want 403", resp.StatusCode)
	}
}

// admin returns circuit state by backend from GET /admin/backends.
func admin(t *testing.T, s *stack, key string) map[string]string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/admin/backends", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Backends []struct {
			Name         string   `json:"name"`
			Circuit      string   `json:"circuit"`
			LatencyP50Ms *float64 `json:"latency_p50_ms"`
		} `json:"backends"`
	}
	if resp.StatusCode != 200 {
		t.Fatalf("admin: got %d, want 200", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, b := range out.Backends {
		m[b.Name] = b.Circuit
	}
	return m
}
