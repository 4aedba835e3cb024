package tokens

import (
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/openai"
)

// BenchmarkPrompt_Chat2KB is a typical chat request: a system prompt and a
// user message of about 2 KB.
func BenchmarkPrompt_Chat2KB(b *testing.B) {
	c := New()
	body := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"` +
		strings.Repeat("The quick brown fox jumps over the lazy dog. ", 45) + `"}]}`)
	c.Prompt(openai.OpChat, "gpt-4o-mini", body) // load the encoding
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		c.Prompt(openai.OpChat, "gpt-4o-mini", body)
	}
}

// BenchmarkPrompt_Large1MB shows the cost is bounded by MaxExactBytes.
func BenchmarkPrompt_Large1MB(b *testing.B) {
	c := New()
	body := []byte(`{"input":"` + strings.Repeat("lorem ipsum dolor sit amet ", 40000) + `"}`)
	c.Prompt(openai.OpEmbeddings, "text-embedding-3-small", body)
	b.ReportAllocs()
	for b.Loop() {
		c.Prompt(openai.OpEmbeddings, "text-embedding-3-small", body)
	}
}
