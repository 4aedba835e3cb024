package test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
)

// BenchmarkCacheLatency measures, through a gateway in front of the
// simulator (5 ms to first token), the time of one chat call:
//
//	bypass:          the cache skipped (x-gateway-cache: bypass): the baseline
//	exact-miss:      an exact-only lookup that misses (temperature 0.5: not semantic), then stored
//	semantic-miss:   a semantic lookup that misses: adds the embedding call and the search
//	exact-hit:       served from the cache
//	semantic-hit:    a paraphrase served from the cache (embedding call + search)
//
// Run: go test -run '^$' -bench CacheLatency -benchtime 200x ./test/
// docs/caching.md reports the numbers.
func BenchmarkCacheLatency(b *testing.B) {
	s := cacheStack(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 9))
	// unique prompts of random words share no content word with each other
	unique := func() string {
		p := ""
		for range 8 {
			p += fmt.Sprintf("w%x ", rng.Uint64())
		}
		return p
	}
	do := func(b *testing.B, body string, hdr map[string]string, want string) {
		resp := post(b, ctx, s.URL+"/openai/v1/chat/completions", s.Key, body, hdr)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Gateway-Cache") != want {
			b.Fatalf("status %d cache %q, want 200 %s", resp.StatusCode, resp.Header.Get("X-Gateway-Cache"), want)
		}
	}
	chat := func(prompt, extra string) string {
		return fmt.Sprintf(`{"model":"gpt-4o-mini",%s"messages":[{"role":"user","content":%q}]}`, extra, prompt)
	}
	b.Run("bypass", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(b, chat(unique(), `"temperature":0.5,`), map[string]string{"x-gateway-cache": "bypass"}, "bypass")
		}
	})
	b.Run("exact-miss", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(b, chat(unique(), `"temperature":0.5,`), nil, "miss")
		}
	})
	b.Run("semantic-miss", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(b, chat(unique(), ""), nil, "miss")
		}
	})
	do(b, chat("What is the tallest mountain on Earth?", ""), nil, "miss")
	b.Run("exact-hit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(b, chat("What is the tallest mountain on Earth?", ""), nil, "hit")
		}
	})
	b.Run("semantic-hit", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			do(b, chat("Which mountain is the tallest in the world?", ""), nil, "hit")
		}
	})
}
