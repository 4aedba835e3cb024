//go:build unix

package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

// The cost of the cache on the request path, without the network: run
//
//	go test -run '^$' -bench . -benchtime 1s ./internal/cache/
//
// docs/caching.md reports the numbers.

func benchCache(b *testing.B, mode string) *Cache {
	st, err := embedded.Open(filepath.Join(b.TempDir(), "b.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	e, v, err := OpenTables(context.Background(), st, "B")
	if err != nil {
		b.Fatal(err)
	}
	c := New(testConfig(mode), e, v, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func benchCall(b *testing.B, prompt string, stream bool) Call {
	body := fmt.Sprintf(`{"model":"gpt","stream":%v,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":%q}],"max_tokens":200}`, stream, prompt)
	r := chatReq(&testing.T{}, body)
	return Call{Req: r, Body: []byte(body), Header: http.Header{}, Team: "t", KeyID: "k"}
}

// BenchmarkExactMiss: a lookup that misses (key, memory, table read).
func BenchmarkExactMiss(b *testing.B) {
	c := benchCache(b, config.CacheExact)
	calls := make([]Call, b.N)
	for i := range calls {
		calls[i] = benchCall(b, fmt.Sprintf("question number %d about something", i), false)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if l := c.Lookup(context.Background(), calls[i], nil); l.Status != Miss {
			b.Fatal(l.Status)
		}
	}
}

// BenchmarkExactHit: a lookup that hits in memory and serves the JSON.
func BenchmarkExactHit(b *testing.B) {
	benchHit(b, false)
}

// BenchmarkExactHitStream: the same, replayed as an SSE stream.
func BenchmarkExactHitStream(b *testing.B) {
	benchHit(b, true)
}

func benchHit(b *testing.B, stream bool) {
	c := benchCache(b, config.CacheExact)
	call := benchCall(b, "What is Go?", false)
	l := c.Lookup(context.Background(), call, nil)
	w := l.Capture(httptest.NewRecorder())
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, chatAnswer)
	l.Store(Result{Status: 200, Complete: true, Usage: usageOf(chatAnswer)})
	call = benchCall(b, "What is Go?", stream)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := c.Lookup(context.Background(), call, nil)
		if l.Status != Hit {
			b.Fatal(l.Status)
		}
		if err := l.Serve(discardWriter{h: http.Header{}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSemanticSearch: one search of a full partition index (the
// default 2000 vectors) of 1536 dimensions (text-embedding-3-small), and
// of the largest index sizes.
func BenchmarkSemanticSearch(b *testing.B) {
	for _, n := range []int{2000, 10000} {
		for _, dims := range []int{256, 1536} {
			b.Run(fmt.Sprintf("entries=%d/dims=%d", n, dims), func(b *testing.B) {
				x := &index{parts: map[string]*partIndex{}, cap: n, refresh: time.Hour}
				now := time.Now()
				p := x.part("pk")
				p.loadedAt = now
				rng := rand.New(rand.NewPCG(1, 2))
				randVec := func() vec {
					f := make([]float32, dims)
					for i := range f {
						f[i] = float32(rng.NormFloat64())
					}
					v, _ := quantise(f)
					return v
				}
				for i := range n {
					p.add(indexed{key: fmt.Sprint(i), variant: "v", v: randVec(), created: now.Add(time.Duration(i)), expires: now.Add(time.Hour)}, n)
				}
				q := randVec()
				b.ResetTimer()
				cpu0 := cpuTime()
				for i := 0; i < b.N; i++ {
					if _, _, err := x.search(context.Background(), "pk", "v", q, now); err != nil {
						b.Fatal(err)
					}
				}
				// CPU time per search: what it costs, without the waits of
				// a machine shared with other work.
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the process's user+system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}
