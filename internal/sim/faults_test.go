package sim

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const streamChatBody = `{"stream":true,"stream_options":{"include_usage":true},` + `"messages":[{"role":"user","content":"Stream a fairly long answer, please."}]}`

func TestErrorFaults(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	tests := []struct {
		name             string
		headers          []string
		wantStatus       int
		wantCode         string
		wantRetryAfterMS string
		wantRetryAfter   string
	}{
		{"500", []string{HeaderFault, "500"}, 500, "InternalServerError", "", ""},
		{"502", []string{HeaderFault, "502"}, 502, "BadGateway", "", ""},
		{"503", []string{HeaderFault, "503"}, 503, "ServiceUnavailable", "", ""},
		{"429 default wait", []string{HeaderFault, "429"}, 429, "429", "1000", "1"},
		{"429 steered wait", []string{HeaderFault, "429", HeaderRetryAfterMS, "2500"}, 429, "429", "2500", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Limited, so the rate-limit headers are expected on faults too.
			resp := post(t, srv, limitedChat, chatBody, tt.headers...)
			m := decodeJSON(t, resp)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := str(t, m, "error.code"); got != tt.wantCode {
				t.Errorf("error.code: got %q, want %q", got, tt.wantCode)
			}
			if got := resp.Header.Get("retry-after-ms"); got != tt.wantRetryAfterMS {
				t.Errorf("retry-after-ms: got %q, want %q", got, tt.wantRetryAfterMS)
			}
			if got := resp.Header.Get("retry-after"); got != tt.wantRetryAfter {
				t.Errorf("retry-after: got %q, want %q", got, tt.wantRetryAfter)
			}
			if got, want := resp.Header.Get("x-ratelimit-remaining-requests"), "3"; got != want {
				t.Errorf("x-ratelimit-remaining-requests: got %q, want %q (faults charge nothing)", got, want)
			}
		})
	}
	if got := s.Usage(); len(got) != 0 {
		t.Errorf("Usage after faults: got %+v, want empty", got)
	}
}

// trackedServer serves s and reports on done each time a handler returns,
// to prove the simulator stops working when the client goes away.
func trackedServer(t *testing.T, s *Server) (*httptest.Server, <-chan struct{}) {
	t.Helper()
	done := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { done <- struct{}{} }()
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, done
}

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: the handler is still running 2s after the client went away", what)
	}
}

func TestClientGoneStopsWork(t *testing.T) {
	t.Parallel() // mostly waiting on real timers
	cfg := testConfig()
	cfg.Deployments[3].Latency.EmbeddingLatency = Duration(time.Minute)
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, done := trackedServer(t, s)
	tests := []struct {
		name    string
		body    string
		headers []string
	}{
		{"timeout fault", chatBody, []string{HeaderFault, "timeout"}},
		{"long time to first token", chatBody, []string{HeaderLatencyTTFTMS, "60000"}},
		{"slow stream", streamChatBody, []string{HeaderTokensPerSecond, "0.5"}},
		{"long pause", streamChatBody, []string{HeaderPauseAfter, "2", HeaderPauseMS, "60000"}},
		{"slow embeddings", `{"model":"embed","input":"x"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			path := classicChat
			if strings.Contains(tt.body, "embed") {
				path = "/openai/v1/embeddings"
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader(tt.body))
			for i := 0; i < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			start := time.Now()
			resp, err := srv.Client().Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("client: got %v, want a deadline error", err)
			}
			waitDone(t, done, tt.name)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("handler ran %v after a 300ms client", elapsed)
			}
		})
	}
	if got := s.Usage(); len(got) != 0 {
		t.Errorf("Usage: got %+v, want nothing counted for abandoned requests", got)
	}
}

func TestCutFaults(t *testing.T) {
	tests := []struct {
		name, path, body, fault string
		wantLastData            string // data of the last event received; "" = not a stream
		wantUsageChunk          bool
	}{
		{"cut chat stream", classicChat, streamChatBody, "cut", "", false},
		{"cut before usage", classicChat, streamChatBody, "cut-before-usage", "finish", false},
		{"cut non-stream chat", classicChat, chatBody, "cut", "", false},
		{"cut embeddings", "/openai/v1/embeddings", `{"model":"embed","input":"x"}`, "cut", "", false},
		{"cut responses stream", "/openai/v1/responses", `{"model":"chat","input":"hello there","stream":true}`, "cut", "", false},
		{"responses cut before usage", "/openai/v1/responses", `{"model":"chat","input":"hello there","stream":true}`, "cut-before-usage", "response.output_item.done", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, _ := newTestServer(t, testConfig())
			resp := post(t, srv, tt.path, tt.body, HeaderFault, tt.fault)
			if resp.StatusCode != 200 {
				t.Fatalf("status: got %d, want 200 (the cut comes after the headers)", resp.StatusCode)
			}
			body, err := io.ReadAll(resp.Body)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("reading body: got %v, want io.ErrUnexpectedEOF (read %d bytes)", err, len(body))
			}
			if strings.Contains(string(body), "[DONE]") || strings.Contains(string(body), "response.completed") {
				t.Errorf("a cut stream reached its end: %s", body)
			}
			if strings.Contains(string(body), `"usage":{`) {
				t.Errorf("a cut stream carried usage: %s", body)
			}
			if tt.wantLastData != "" {
				events, _ := readSSE(strings.NewReader(string(body)))
				last := events[len(events)-1]
				switch {
				case last.name != "":
					if last.name != tt.wantLastData {
						t.Errorf("last event: got %q, want %q", last.name, tt.wantLastData)
					}
				default:
					if !strings.Contains(last.data, `"finish_reason":"stop"`) {
						t.Errorf("last event: got %s, want the finish chunk", last.data)
					}
				}
			}
			if got := s.Usage(); len(got) != 0 {
				t.Errorf("Usage: got %+v, want nothing counted for a cut answer", got)
			}
		})
	}
}

func TestResetFault(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+classicChat, strings.NewReader(chatBody))
	req.Header.Set(HeaderFault, "reset")
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d, want a transport error", resp.StatusCode)
	}
	if got := s.Usage(); len(got) != 0 {
		t.Errorf("Usage: got %+v, want empty", got)
	}
	// The server is still fine afterwards.
	if resp := post(t, srv, classicChat, chatBody); resp.StatusCode != 200 {
		t.Errorf("status after a reset: got %d, want 200", resp.StatusCode)
	}
}

func TestConfiguredFaultRates(t *testing.T) {
	pattern := func(f Faults, body string) string {
		cfg := testConfig()
		cfg.Deployments[0].Faults = f
		_, srv, _ := newTestServer(t, cfg)
		var b strings.Builder
		for range 40 {
			resp := post(t, srv, classicChat, body)
			readAll(t, resp)
			if resp.StatusCode == 200 {
				b.WriteByte('.')
			} else {
				b.WriteByte('x')
			}
		}
		return b.String()
	}
	if got, want := pattern(Faults{ErrorRate: 1}, chatBody), strings.Repeat("x", 40); got != want {
		t.Errorf("errorRate 1: got %s, want %s", got, want)
	}
	if got, want := pattern(Faults{CutStreamRate: 1}, chatBody), strings.Repeat(".", 40); got != want {
		t.Errorf("cutStreamRate 1 on non-streams: got %s, want %s", got, want)
	}
	a := pattern(Faults{ErrorRate: 0.3, Seed: 42}, chatBody)
	b := pattern(Faults{ErrorRate: 0.3, Seed: 42}, chatBody)
	c := pattern(Faults{ErrorRate: 0.3, Seed: 43}, chatBody)
	if a != b {
		t.Errorf("same seed, different faults:\n%s\n%s", a, b)
	}
	if a == c {
		t.Errorf("different seeds, same faults: %s", a)
	}
	if n := strings.Count(a, "x"); n < 4 || n > 24 {
		t.Errorf("errorRate 0.3 over 40 requests: got %d failures (%s), want roughly 12", n, a)
	}
}

// TestPauseProvesFlushing is the property gateway streaming tests rely
// on: an event is on the wire as soon as it is produced, long before the
// pause that follows it ends.
func TestPauseProvesFlushing(t *testing.T) {
	t.Parallel() // mostly waiting on real timers
	_, srv, _ := newTestServer(t, testConfig())
	const pause = 1500 * time.Millisecond
	start := time.Now()
	resp := post(t, srv, classicChat, streamChatBody, HeaderPauseAfter, "1", HeaderPauseMS, "1500")
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
		t.Errorf("first event after %v, want well before the %v pause ends", elapsed, pause)
	}
	if !strings.Contains(first, "prompt_filter_results") {
		t.Errorf("first event: got %q, want the prompt filter event", first)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < pause {
		t.Errorf("stream ended after %v, want at least the %v pause", elapsed, pause)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream did not end with [DONE]")
	}
}

func TestLatencyModel(t *testing.T) {
	t.Parallel() // mostly waiting on real timers
	cfg := testConfig()
	cfg.Deployments[0].Latency = Latency{TTFT: Duration(100 * time.Millisecond), TokensPerSecond: 2000}
	_, srv, _ := newTestServer(t, cfg)
	whole := decodeJSON(t, post(t, srv, classicChat, chatBody, HeaderLatencyTTFTMS, "0", HeaderTokensPerSecond, "0"))
	completion := num(t, whole, "usage.completion_tokens")
	generation := time.Duration(float64(completion) / 2000 * float64(time.Second))

	tests := []struct {
		name    string
		body    string
		headers []string
		min     time.Duration
	}{
		{"configured", chatBody, nil, 100*time.Millisecond + generation},
		{"stream configured", streamChatBody, nil, 100 * time.Millisecond},
		{"ttft header", chatBody, []string{HeaderLatencyTTFTMS, "300"}, 300 * time.Millisecond},
		{"tokens per second header", chatBody, []string{HeaderLatencyTTFTMS, "0", HeaderTokensPerSecond, "500"}, 4 * generation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			readAll(t, post(t, srv, classicChat, tt.body, tt.headers...))
			if elapsed := time.Since(start); elapsed < tt.min {
				t.Errorf("took %v, want at least %v", elapsed, tt.min)
			}
		})
	}
}
