package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/route"
)

func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return "http://" + a
}

// model builds a route.Model with one target per URL, all in separate tiers
// so the plan order is the URL order.
func model(urls ...string) *route.Model {
	m := &route.Model{Alias: "m"}
	for i, u := range urls {
		m.Targets = append(m.Targets, route.Target{
			Backend:    &route.Backend{Name: fmt.Sprintf("b%d", i), URL: u, Timeout: 2 * time.Second, Auth: backendauth.None{}},
			Deployment: "d", Priority: i + 1, Weight: 1,
		})
	}
	return m
}

func status(code int, body string, hits *atomic.Int32) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After-Ms", "1500")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}))
}

// transports are the two backend clients (proxy.backendHTTP2 picks one):
// the gateway's HTTP/1.1 client and net/http's Transport.
var transports = map[string]func() http.RoundTripper{
	"upstream": NewTransport,
	"http2":    func() http.RoundTripper { return NewHTTP2Transport() },
}

const okBody = `{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":6,"total_tokens":10}}`

func forward(t *testing.T, p *Proxy, m *route.Model, c Call) (*httptest.ResponseRecorder, Result) {
	t.Helper()
	if c.Body == nil {
		c.Body = []byte(`{"model":"m","messages":[]}`)
		c.Req = openai.Request{Op: openai.OpChat, Model: "m"}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/openai/v1/chat/completions", nil)
	res := p.Forward(rec, req, m, c)
	return rec, res
}

func TestFailoverBeforeFirstByte(t *testing.T) {
	var h503, h429, hOK, hLast atomic.Int32
	s503 := status(503, `{"error":{"code":"x"}}`, &h503)
	defer s503.Close()
	s429 := status(429, `{"error":{"code":"429"}}`, &h429)
	defer s429.Close()
	sOK := status(200, okBody, &hOK)
	defer sOK.Close()
	sLast429 := status(429, `{"error":{"code":"429","message":"slow down"}}`, &hLast)
	defer sLast429.Close()
	dead := deadAddr(t)

	tests := []struct {
		name       string
		urls       []string
		attempts   int
		wantStatus int
		wantBody   string
		wantTries  int
		wantUsage  int64
	}{
		{"dead then 503 then ok", []string{dead, s503.URL, sOK.URL}, 3, 200, okBody, 3, 10},
		{"429 then ok", []string{s429.URL, sOK.URL}, 3, 200, okBody, 2, 10},
		{"last retryable status passes through", []string{s503.URL, sLast429.URL}, 2, 429, "slow down", 2, 0},
		{"attempt cap", []string{s503.URL, s503.URL, sOK.URL}, 2, 503, `"x"`, 2, 0},
		// The last target is retried (after a backoff) while attempts remain.
		{"all dead", []string{dead, dead}, 3, 502, "backend_unreachable", 3, 0},
	}
	for tname, rt := range transports {
		for _, tt := range tests {
			t.Run(tname+"/"+tt.name, func(t *testing.T) {
				p := New(rt(), slog.New(slog.DiscardHandler), Options{MaxAttempts: tt.attempts})
				rec, res := forward(t, p, model(tt.urls...), Call{})
				if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
					t.Fatalf("got %d %s, want %d containing %q", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
				}
				if res.Attempts != tt.wantTries || res.Usage.TotalTokens != tt.wantUsage {
					t.Errorf("attempts %d usage %d, want %d and %d", res.Attempts, res.Usage.TotalTokens, tt.wantTries, tt.wantUsage)
				}
			})
		}
	}
	if h429.Load() == 0 || hLast.Load() == 0 {
		t.Error("fakes not hit")
	}
}

func TestHeaderTimeoutIs504(t *testing.T) {
	// The fake reads the body first: net/http notices a client hang-up
	// (and cancels r.Context) only once the request body is consumed.
	block := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer block.Close()
	m := model(block.URL)
	m.Targets[0].Backend.Timeout = 100 * time.Millisecond
	for tname, rt := range transports {
		p := New(rt(), slog.New(slog.DiscardHandler), Options{})
		rec, _ := forward(t, p, m, Call{})
		if rec.Code != 504 || !strings.Contains(rec.Body.String(), "backend_timeout") {
			t.Errorf("%s: got %d %s", tname, rec.Code, rec.Body)
		}
	}
}

func TestStreamCutAfterBytesIsNotRetried(t *testing.T) {
	var second atomic.Int32
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	defer cut.Close()
	other := status(200, okBody, &second)
	defer other.Close()
	p := New(NewTransport(), slog.New(slog.DiscardHandler), Options{})
	rec, res := forward(t, p, model(cut.URL, other.URL), Call{Req: openai.Request{Op: openai.OpChat, Stream: true}, Body: []byte(`{}`)})
	if !res.Aborted || res.Complete || second.Load() != 0 {
		t.Errorf("aborted=%v complete=%v second backend hits=%d; want an aborted, unreplayed stream", res.Aborted, res.Complete, second.Load())
	}
	if !strings.Contains(rec.Body.String(), `"content":"a"`) {
		t.Errorf("bytes before the cut were not forwarded: %q", rec.Body.String())
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer stall.Close()
	p := New(NewTransport(), slog.New(slog.DiscardHandler), Options{StreamIdleTimeout: 150 * time.Millisecond})
	begin := time.Now()
	_, res := forward(t, p, model(stall.URL), Call{Req: openai.Request{Op: openai.OpChat, Stream: true}, Body: []byte(`{}`)})
	if !res.Aborted || time.Since(begin) > 5*time.Second {
		t.Errorf("aborted=%v after %v; want the idle timeout to abort the stream", res.Aborted, time.Since(begin))
	}
}

func TestOutboundHeader(t *testing.T) {
	in := http.Header{
		"Authorization":   {"Bearer client"},
		"Api-Key":         {"client"},
		"Traceparent":     {"00-abc-def-01"},
		"Connection":      {"keep-alive, X-Secret-Hop"},
		"X-Secret-Hop":    {"1"},
		"X-Forwarded-For": {"1.2.3.4"},
		"Openai-Beta":     {"assistants=v2"},
		"Te":              {"trailers"},
	}
	out := outboundHeader(in)
	for _, k := range []string{"Authorization", "Api-Key", "Connection", "X-Secret-Hop", "X-Forwarded-For", "Te"} {
		if _, ok := out[k]; ok {
			t.Errorf("%s forwarded", k)
		}
	}
	for _, k := range []string{"Traceparent", "Openai-Beta"} {
		if out.Get(k) != in.Get(k) {
			t.Errorf("%s not forwarded", k)
		}
	}
}

func BenchmarkForward(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, okBody)
	}))
	defer srv.Close()
	p := New(NewTransport(), slog.New(slog.DiscardHandler), Options{})
	m := model(srv.URL)
	c := Call{Req: openai.Request{Op: openai.OpChat, Model: "m"}, Body: []byte(`{"model":"m","messages":[]}`)}
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		p.Forward(rec, httptest.NewRequest(http.MethodPost, "/", nil), m, c)
	}
}

// TestGatewayRequestIDWins: the client's x-request-id is the gateway's, set
// before forwarding; the backend's ids stay visible as apim-request-id and
// x-gateway-backend-request-id, on success and error answers, streamed or not.
func TestGatewayRequestIDWins(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		ct     string
		stream bool
	}{
		{"json 200", 200, "application/json", false},
		{"json 429", 429, "application/json", false},
		{"stream", 200, "text/event-stream", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.ct)
				w.Header().Set("X-Request-Id", "backend-rid")
				w.Header().Set("Apim-Request-Id", "apim-rid")
				w.WriteHeader(tt.status)
				if tt.stream {
					io.WriteString(w, "data: {\"choices\":[]}\n\ndata: [DONE]\n\n")
					return
				}
				io.WriteString(w, okBody)
			}))
			defer srv.Close()
			p := New(NewTransport(), slog.New(slog.DiscardHandler), Options{MaxAttempts: 1})
			rec := httptest.NewRecorder()
			rec.Header().Set("X-Request-Id", "gateway-rid") // as the request-id middleware does
			c := Call{Req: openai.Request{Op: openai.OpChat, Model: "m", Stream: tt.stream}, Body: []byte(`{"model":"m","messages":[]}`), RequestID: "gateway-rid"}
			p.Forward(rec, httptest.NewRequest(http.MethodPost, "/openai/v1/chat/completions", nil), model(srv.URL), c)
			h := rec.Result().Header
			if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] != "gateway-rid" {
				t.Errorf("x-request-id %v, want only the gateway's", got)
			}
			if got := h.Get(BackendRequestIDHeader); got != "backend-rid" {
				t.Errorf("%s %q, want the backend's x-request-id", BackendRequestIDHeader, got)
			}
			if got := h.Get("Apim-Request-Id"); got != "apim-rid" {
				t.Errorf("apim-request-id %q, want it passed through", got)
			}
		})
	}
}
