package openai

import "testing"

// benchChat is the shared harness's body.json (../shared/bench/harness).
var benchChat = []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant that answers concisely and accurately."},{"role":"user","content":"Please summarize the main benefits of using an API gateway in front of large language model providers, including routing, retries, caching, observability and cost control. Keep it short. xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}],"temperature":0.7,"max_tokens":128,"user":"bench-user-0001"}`)

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		if _, err := Parse(OpChat, StyleDeployment, "gpt-4o-mini", "2024-10-21", benchChat); err != nil {
			b.Fatal(err)
		}
	}
}
