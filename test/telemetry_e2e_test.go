package test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Issue 8: what the gateway sends to Application Insights, read back from a
// local ingestion endpoint (the v2/track protocol: gzip, one JSON envelope
// per line).

// aiEnvelope is one Application Insights item as the SDK sends it.
type aiEnvelope struct {
	Name string            `json:"name"` // Microsoft.ApplicationInsights.Request, .RemoteDependency, .Metric …
	IKey string            `json:"iKey"`
	Tags map[string]string `json:"tags"`
	Data struct {
		BaseType string     `json:"baseType"` // RequestData, RemoteDependencyData, MetricData, MessageData
		BaseData aiBaseData `json:"baseData"`
	} `json:"data"`
}

type aiBaseData struct {
	ID           string             `json:"id"`
	Name         string             `json:"name"`
	ResponseCode string             `json:"responseCode"` // requests
	ResultCode   string             `json:"resultCode"`   // dependencies
	Success      *bool              `json:"success"`
	Duration     string             `json:"duration"`
	Target       string             `json:"target"`
	Data         string             `json:"data"`
	Type         string             `json:"type"`
	URL          string             `json:"url"`
	Properties   map[string]string  `json:"properties"`
	Measurements map[string]float64 `json:"measurements"`
	Metrics      []struct {
		Name  string  `json:"name"`
		Value float64 `json:"value"`
	} `json:"metrics"`
}

func (e aiEnvelope) opID() string     { return e.Tags["ai.operation.id"] }
func (e aiEnvelope) parentID() string { return e.Tags["ai.operation.parentId"] }
func (e aiEnvelope) success() bool    { return e.Data.BaseData.Success != nil && *e.Data.BaseData.Success }

// aiIngest is a local ingestion endpoint. With hang set it accepts batches
// and never answers until the test ends.
type aiIngest struct {
	srv     *httptest.Server
	hang    bool
	release chan struct{}
	mu      sync.Mutex
	items   []aiEnvelope
	raw     bytes.Buffer // every decoded payload, for leak checks
	posts   int          // answered
	arrived atomic.Int32 // received, answered or not
}

func newAIIngest(t *testing.T, hang bool) *aiIngest {
	t.Helper()
	in := &aiIngest{hang: hang, release: make(chan struct{})}
	in.srv = httptest.NewServer(http.HandlerFunc(in.serve))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *aiIngest) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v2/track" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	in.arrived.Add(1)
	if in.hang {
		select {
		case <-in.release:
		case <-r.Context().Done():
			return
		}
	}
	n := 0
	in.mu.Lock()
	in.posts++
	in.raw.Write(b)
	in.raw.WriteByte('\n')
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var e aiEnvelope
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Name != "" {
			in.items = append(in.items, e)
			n++
		}
	}
	in.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"itemsReceived":%d,"itemsAccepted":%d,"errors":[]}`, n, n)
}

// env is the connection string that points the gateway here.
func (in *aiIngest) env() string {
	return "APPLICATIONINSIGHTS_CONNECTION_STRING=InstrumentationKey=test-ikey;IngestionEndpoint=" + in.srv.URL + "/"
}

// received returns the items of baseType typ ("" for all).
func (in *aiIngest) received(typ string) []aiEnvelope {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []aiEnvelope
	for _, e := range in.items {
		if typ == "" || e.Data.BaseType == typ {
			out = append(out, e)
		}
	}
	return out
}

func (in *aiIngest) payloads() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.raw.String()
}

// stopGateway sends SIGTERM and waits for the process to exit: the
// telemetry client must flush what is queued on the way out (the SDK's own
// batch interval is 5 s, so nothing would have been sent yet otherwise).
func stopGateway(t *testing.T, s *stack) {
	t.Helper()
	_ = s.GW.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.GW.done:
	case <-time.After(20 * time.Second):
		t.Fatal("gateway did not exit within 20s of SIGTERM")
	}
}

func itemByID(items []aiEnvelope, id string) (aiEnvelope, bool) {
	for _, e := range items {
		if e.Data.BaseData.ID == id {
			return e, true
		}
	}
	return aiEnvelope{}, false
}

func inOperation(items []aiEnvelope, op string) []aiEnvelope {
	var out []aiEnvelope
	for _, e := range items {
		if e.opID() == op {
			out = append(out, e)
		}
	}
	return out
}

// telCheck is one assertion row.
type telCheck struct {
	name string
	got  any
	want any
}

func checkAll(t *testing.T, checks []telCheck) {
	t.Helper()
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

const (
	testTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	testSpanID  = "00f067aa0ba902b7"
)

// TestTelemetryPlainCall: a chat call with an incoming traceparent gives one
// request item in the caller's operation with the dimensions and the usage
// the client saw, and one dependency item under it for the backend attempt.
func TestTelemetryPlainCall(t *testing.T) {
	in := newAIIngest(t, false)
	s := startStack(t, stackOptions{env: []string{in.env()}})
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"gpt-4o-mini","max_tokens":8,"messages":[{"role":"user","content":"hello telemetry"}]}`,
		map[string]string{"traceparent": "00-" + testTraceID + "-" + testSpanID + "-01"})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	var cc struct {
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(b, &cc); err != nil || cc.Usage.CompletionTokens == 0 {
		t.Fatalf("no usage in %s (%v)", b, err)
	}
	stopGateway(t, s)

	reqs := inOperation(in.received("RequestData"), testTraceID)
	if len(reqs) != 1 {
		t.Fatalf("got %d request items in the operation, want 1; all items: %+v", len(reqs), in.received(""))
	}
	rq := reqs[0]
	rd := rq.Data.BaseData
	deps := inOperation(in.received("RemoteDependencyData"), testTraceID)
	if len(deps) != 1 {
		t.Fatalf("got %d dependency items, want 1: %+v", len(deps), deps)
	}
	dep := deps[0]
	p := rd.Properties
	checkAll(t, []telCheck{
		{"envelope name (ikey without dashes inside)", rq.Name, "Microsoft.ApplicationInsights.testikey.Request"},
		{"ikey", rq.IKey, "test-ikey"},
		{"request name", rd.Name, "POST /openai/v1/chat/completions"},
		{"operation name", rq.Tags["ai.operation.name"], "POST /openai/v1/chat/completions"},
		{"cloud role", rq.Tags["ai.cloud.role"], "foundry-gateway"},
		{"parent is the incoming span", rq.parentID(), testSpanID},
		{"request id is a fresh span (16 hex)", len(rd.ID) == 16 && rd.ID != testSpanID, true},
		{"result code", rd.ResponseCode, "200"},
		{"success", rq.success(), true},
		{"team", p["team"], "research"},
		{"app", p["app"], "e2e"},
		{"key_id set and not the secret", p["key_id"] != "" && !strings.Contains(s.Key, "."+p["key_id"]) && strings.Contains(s.Key, p["key_id"]), true},
		{"model", p["model"], "gpt-4o-mini"},
		{"operation", p["operation"], "chat/completions"},
		{"backend", p["backend"], "sim-paygo"},
		{"deployment", p["deployment"], "gpt-4o-mini"},
		{"region", p["region"], "swedencentral"},
		{"class", p["class"], "interactive"},
		{"stream", p["stream"], "false"},
		{"retries", p["retries"], "0"},
		{"request_id is the client's x-request-id", p["request_id"] != "" && p["request_id"] == resp.Header.Get("X-Request-Id"), true},
		{"x-request-id is not the backend's", resp.Header.Get("X-Request-Id") != resp.Header.Get("X-Gateway-Backend-Request-Id") && resp.Header.Get("X-Gateway-Backend-Request-Id") != "", true},
		{"prompt_tokens", rd.Measurements["prompt_tokens"], float64(cc.Usage.PromptTokens)},
		{"completion_tokens", rd.Measurements["completion_tokens"], float64(cc.Usage.CompletionTokens)},
		{"ttfb_ms measured", rd.Measurements["ttfb_ms"] > 0, true},
		{"dependency parent is the request item", dep.parentID(), rd.ID},
		{"dependency target is the sim", dep.Data.BaseData.Target, strings.TrimPrefix(s.SimURL, "http://")},
		{"dependency type", dep.Data.BaseData.Type, "HTTP"},
		{"dependency result code", dep.Data.BaseData.ResultCode, "200"},
		{"dependency success", dep.success(), true},
		{"dependency backend", dep.Data.BaseData.Properties["backend"], "sim-paygo"},
		{"dependency attempt", dep.Data.BaseData.Properties["attempt"], "1"},
		{"dependency id differs from request's", dep.Data.BaseData.ID != rd.ID && len(dep.Data.BaseData.ID) == 16, true},
	})

	// Token metrics carry the same operation and dimensions.
	got := map[string]float64{}
	for _, m := range inOperation(in.received("MetricData"), testTraceID) {
		for _, dp := range m.Data.BaseData.Metrics {
			got[dp.Name] += dp.Value
			if m.Data.BaseData.Properties["team"] != "research" || m.Data.BaseData.Properties["backend"] != "sim-paygo" {
				t.Errorf("metric %s dimensions: %v", dp.Name, m.Data.BaseData.Properties)
			}
		}
	}
	checkAll(t, []telCheck{
		{"metric gateway.tokens.prompt", got["gateway.tokens.prompt"], float64(cc.Usage.PromptTokens)},
		{"metric gateway.tokens.completion", got["gateway.tokens.completion"], float64(cc.Usage.CompletionTokens)},
	})

	// Probes make no request items.
	for _, e := range in.received("RequestData") {
		if u := e.Data.BaseData.URL; u == "/healthz" || u == "/readyz" || u == "/" {
			t.Errorf("probe %s produced a request item", u)
		}
	}
}

// TestTelemetryStreamFailover: a stream whose first backend cannot be
// reached (a refused port: no response at all) gives two dependency items
// (failed, then ok), both children of the one request item, which says
// retries=1 and names the second backend.
func TestTelemetryStreamFailover(t *testing.T) {
	in := newAIIngest(t, false)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	std := newInjector(t)
	s := startStack(t, stackOptions{
		env: []string{in.env()},
		extraBackends: fmt.Sprintf(`  - { name: eu-ptu, url: "%s", provisioned: true, region: swedencentral, auth: { none: true } }
  - { name: eu-std, url: "%s", region: swedencentral, auth: { none: true } }`, "http://"+dead, std.srv.URL),
		extraModels: `  tiered:
    targets:
      - { backend: eu-ptu, deployment: gpt-4o-mini-ptu }
      - { backend: eu-std, deployment: gpt-4o-mini }`,
	})
	std.point(s.SimURL)

	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"tiered","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Gateway-Backend") != "eu-std" || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("got %d from %q (%v): %s; want a whole stream from eu-std", resp.StatusCode, resp.Header.Get("X-Gateway-Backend"), err, b)
	}
	stopGateway(t, s)

	var rq aiEnvelope
	n := 0
	for _, e := range in.received("RequestData") {
		if e.Data.BaseData.Properties["model"] == "tiered" {
			rq, n = e, n+1
		}
	}
	if n != 1 {
		t.Fatalf("got %d request items for model tiered, want 1", n)
	}
	rd := rq.Data.BaseData
	deps := inOperation(in.received("RemoteDependencyData"), rq.opID())
	sort.Slice(deps, func(i, j int) bool {
		return deps[i].Data.BaseData.Properties["attempt"] < deps[j].Data.BaseData.Properties["attempt"]
	})
	if len(deps) != 2 {
		t.Fatalf("got %d dependency items, want 2: %+v", len(deps), deps)
	}
	d1, d2 := deps[0].Data.BaseData, deps[1].Data.BaseData
	checkAll(t, []telCheck{
		{"operation id is a trace id (32 hex)", len(rq.opID()), 32},
		{"no parent: the gateway started the trace", rq.parentID(), ""},
		{"request result", rd.ResponseCode, "200"},
		{"stream", rd.Properties["stream"], "true"},
		{"retries", rd.Properties["retries"], "1"},
		{"backend", rd.Properties["backend"], "eu-std"},
		{"completion tokens counted from the stream", rd.Measurements["completion_tokens"] > 0, true},
		{"attempt 1 backend", d1.Properties["backend"], "eu-ptu"},
		{"attempt 1 failed", deps[0].success(), false},
		{"attempt 1 result code (no response)", d1.ResultCode, "error"},
		{"attempt 1 error recorded", d1.Properties["error"] != "", true},
		{"attempt 1 parent", deps[0].parentID(), rd.ID},
		{"attempt 1 target", d1.Target, dead},
		{"attempt 2 backend", d2.Properties["backend"], "eu-std"},
		{"attempt 2 ok", deps[1].success(), true},
		{"attempt 2 result code", d2.ResultCode, "200"},
		{"attempt 2 parent", deps[1].parentID(), rd.ID},
		{"distinct attempt spans", d1.ID != d2.ID, true},
	})
}

// TestTelemetryAsyncJob: a job submitted with a traceparent runs later in
// the drain, and its backend call still belongs to the submitter's trace.
func TestTelemetryAsyncJob(t *testing.T) {
	in := newAIIngest(t, false)
	s := startStack(t, stackOptions{env: []string{in.env()}, extraTop: "timers: { drain: 200ms }"})
	resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key,
		`{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"later please"}]}`,
		map[string]string{"Prefer": "respond-async", "traceparent": "00-" + testTraceID + "-" + testSpanID + "-01"})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var job struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &job) != nil || job.ID == "" {
		t.Fatalf("submit: got %d %s, want 202 with a job", resp.StatusCode, b)
	}
	waitJobSucceeded(t, s, s.Key, job.ID)
	stopGateway(t, s)

	var submit aiEnvelope
	n := 0
	for _, e := range inOperation(in.received("RequestData"), testTraceID) {
		if e.Data.BaseData.Name == "POST /openai/v1/chat/completions" {
			submit, n = e, n+1
		}
	}
	if n != 1 {
		t.Fatalf("got %d submit request items in the trace, want 1; items: %+v", n, in.received("RequestData"))
	}
	deps := inOperation(in.received("RemoteDependencyData"), testTraceID)
	if len(deps) != 1 {
		t.Fatalf("got %d dependency items in the submitter's trace, want 1 (the job's backend call): %+v", len(deps), in.received("RemoteDependencyData"))
	}
	dep := deps[0]
	checkAll(t, []telCheck{
		{"submit result", submit.Data.BaseData.ResponseCode, "202"},
		{"submit parent is the caller's span", submit.parentID(), testSpanID},
		{"job dependency ok", dep.success(), true},
		{"job dependency target", dep.Data.BaseData.Target, strings.TrimPrefix(s.SimURL, "http://")},
		{"job dependency request_id is the job id", dep.Data.BaseData.Properties["request_id"], job.ID},
		{"job dependency has a parent span", len(dep.parentID()), 16},
	})
	// With the drainer's telemetry wired (Drainer.Telemetry), the job run is
	// a request item between the submit and the backend call.
	if run, ok := itemByID(in.received("RequestData"), dep.parentID()); ok {
		checkAll(t, []telCheck{
			{"run item name", run.Data.BaseData.Name, "RUN chat/completions"},
			{"run item parent is the submit request", run.parentID(), submit.Data.BaseData.ID},
			{"run item class", run.Data.BaseData.Properties["class"], "batch"},
		})
	} else {
		t.Logf("no request item for the job run (Drainer.Telemetry not wired in serve.go); the dependency's parent %s is the run span", dep.parentID())
	}
}

// waitJobSucceeded polls a job until it is terminal and fails unless it succeeded.
// It returns the job's JSON.
func waitJobSucceeded(t *testing.T, s *stack, key, id string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/jobs/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var j struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(b, &j)
		switch j.Status {
		case "succeeded":
			return b
		case "failed", "cancelled":
			t.Fatalf("job %s: %s", id, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s not done in 15s", id)
	return nil
}

// TestTelemetryHangingIngestion: an ingestion endpoint that never answers
// does not slow requests down or fail them (the client's buffer is bounded
// and the SDK sends off the request path).
func TestTelemetryHangingIngestion(t *testing.T) {
	const n = 200
	body := `{"model":"gpt-4o-mini","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`
	measure := func(s *stack) time.Duration {
		t.Helper()
		c := &http.Client{Timeout: 10 * time.Second}
		lat := make([]time.Duration, 0, n)
		for i := range n + 10 { // the first 10 warm connections and caches
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/openai/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.Key)
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: status %d", i, resp.StatusCode)
			}
			if i >= 10 {
				lat = append(lat, time.Since(start))
			}
		}
		slices.Sort(lat)
		return lat[len(lat)/2]
	}

	base := startStack(t, stackOptions{})
	p50Base := measure(base)

	in := newAIIngest(t, true)
	s := startStack(t, stackOptions{env: []string{in.env()}})
	t.Cleanup(func() { close(in.release) }) // runs first: lets the shutdown flush finish
	// One call, then wait for the SDK's first batch (5 s interval) to go out
	// and hang, so every measured call runs while ingestion is stuck.
	if resp := post(t, context.Background(), s.URL+"/openai/v1/chat/completions", s.Key, body, nil); resp.StatusCode != 200 {
		t.Fatalf("warm-up: %d", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); in.arrived.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway sent no batch to the ingestion endpoint within 10s")
		}
	}
	p50Hang := measure(s)
	t.Logf("p50 over %d sequential chat calls: %v without telemetry, %v with a hanging ingestion endpoint", n, p50Base, p50Hang)
	if limit := 2*p50Base + 2*time.Millisecond; p50Hang > limit {
		t.Errorf("p50 with hanging ingestion %v > %v (2× baseline + 2ms)", p50Hang, limit)
	}
	in.mu.Lock()
	answered := in.posts
	in.mu.Unlock()
	if answered != 0 {
		t.Errorf("ingestion answered %d posts, want 0 (it hangs)", answered)
	}
	// n requests make about 4n items, far below the 10000 buffer: nothing
	// may be dropped, so the drop warning must not appear.
	if got := s.GW.LogLines("telemetry items dropped: ingestion too slow"); len(got) != 0 {
		t.Errorf("unexpected drop warning: %v", got)
	}
}
