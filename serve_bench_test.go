package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/config"
)

// The request path with every feature on, as the shared harness runs it
// (../shared/bench: key auth, team RPM + TPM + monthly limits, so every
// prompt is tokenized; routing; the usage ledger on the embedded store;
// one JSON log line per request), against an in-process backend that
// answers what the harness's mock answers. No sockets: what it measures
// is the gateway's own CPU and allocations per request (allocs/op counts
// the ledger writer's and the other workers' allocations too).
//
//	go test -run '^$' -bench RequestPath -benchmem .

// benchBody is the harness's body.json.
const benchBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant that answers concisely and accurately."},{"role":"user","content":"Please summarize the main benefits of using an API gateway in front of large language model providers, including routing, retries, caching, observability and cost control. Keep it short. xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}],"temperature":0.7,"max_tokens":128,"user":"bench-user-0001"}`

// benchReply is the harness mock's non-streamed answer.
var benchReply = []byte(`{"id":"chatcmpl-mock123","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a mock response."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":10,"total_tokens":30},"system_fingerprint":"fp_mock"}`)

// benchStream is a 10-event stream like the mock's, with the usage chunk.
var benchStream = func() []byte {
	var b bytes.Buffer
	const head = `data: {"id":"chatcmpl-mock123","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":`
	b.WriteString(head + `{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	for i := 1; i < 9; i++ {
		b.WriteString(head + `{"content":"tok` + strconv.Itoa(i) + ` "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	}
	b.WriteString(head + `{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n")
	b.WriteString(`data: {"id":"chatcmpl-mock123","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":10,"total_tokens":30}}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}()

// fakeBackend answers every request in process, as the mock does.
type fakeBackend struct{}

func (fakeBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	_ = r.Body.Close()
	h := http.Header{}
	reply := benchReply
	if bytes.Contains(body, []byte(`"stream":true`)) {
		reply = benchStream
		h["Content-Type"] = []string{"text/event-stream"}
		h["Cache-Control"] = []string{"no-cache"}
	} else {
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(reply))}
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(reply)), ContentLength: int64(len(reply)), Request: r}, nil
}

// benchGateway builds the harness's gateway over fakeBackend and returns
// its handler, an API key and a stop that flushes and closes everything.
func benchGateway(b *testing.B) (http.Handler, string, func()) {
	b.Helper()
	dir := b.TempDir()
	cfg := `listen: 127.0.0.1:0
store: { kind: embedded, path: ` + filepath.Join(dir, "gateway.db") + ` }
queue: { kind: embedded, path: ` + filepath.Join(dir, "queue.db") + ` }
ledger: { spoolPath: ` + filepath.Join(dir, "spool.jsonl") + ` }
limits: { teams: { bench: { rpm: 100000000, tpm: 1000000000000, monthlyTokens: 1000000000000000 } } }
backends:
  - { name: mock, url: "http://127.0.0.1:9", region: swedencentral, auth: { none: true } }
models:
  gpt-4o-mini: { targets: [ { backend: mock, deployment: gpt-4o-mini } ], price: { input: 0.15, output: 0.6, currency: USD } }
`
	path := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	c, err := config.LoadFile(path, func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil)) // the same line, without the syscall
	a, err := build(ctx, c, log, fakeBackend{})
	if err != nil {
		b.Fatal(err)
	}
	kt, err := a.store.Table(ctx, c.Store.TablePrefix+auth.Table)
	if err != nil {
		b.Fatal(err)
	}
	k, err := (&auth.Admin{Keys: auth.NewKeys(kt, nil)}).Create(ctx, auth.CreateRequest{Team: "bench", App: "load"})
	if err != nil {
		b.Fatal(err)
	}
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, run := range a.workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(wctx) }()
	}
	stop := func() {
		stopWorkers()
		wg.Wait()
		for _, closeFn := range a.closers {
			if err := closeFn(ctx); err != nil {
				b.Error(err)
			}
		}
		a.queue.Close()
		a.store.Close()
	}
	return a.handler, k.Secret, stop
}

func benchRequestPath(b *testing.B, body string) {
	h, key, stop := benchGateway(b)
	const url = "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Api-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for range 200 { // warm: key cache, tokenizer tables, pools
		if w := serve(); w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if w := serve(); w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	stop() // the ledger's last batch is part of the work
}

func BenchmarkRequestPath(b *testing.B) { benchRequestPath(b, benchBody) }

func BenchmarkRequestPathStream(b *testing.B) {
	benchRequestPath(b, benchBody[:len(benchBody)-1]+`,"stream":true}`)
}
