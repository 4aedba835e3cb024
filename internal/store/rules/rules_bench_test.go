package rules

import (
	"strconv"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

// BenchmarkBatch checks a batch of 100 usage-ledger-like rows (23
// properties each), as the ledger writer's every transaction is checked.
func BenchmarkBatch(b *testing.B) {
	ops := make([]store.Op, 100)
	for i := range ops {
		ops[i] = store.Op{Kind: store.OpInsert, Entity: store.Entity{PartitionKey: "2026-12-05|bench",
			RowKey: "0193a1b2c3d4e5f60718293a4b5c" + strconv.Itoa(1000+i), Props: map[string]any{
				"Time": time.Now(), "RequestId": "0193a1b2c3d4e5f60718293a4b5c6d7e", "KeyId": "k_0123456789", "Team": "bench",
				"App": "load", "Model": "gpt-4o-mini", "Operation": "chat/completions", "Backend": "mock",
				"Deployment": "gpt-4o-mini", "Region": "swedencentral", "Class": "interactive", "Status": int64(200),
				"Stream": false, "LatencyMs": int64(3), "PromptTokens": int64(20), "CachedTokens": int64(0),
				"CompletionTokens": int64(10), "ReasoningTokens": int64(0), "TotalTokens": int64(30), "Cost": 0.0000090,
				"CostNanos": int64(9000), "Currency": "USD", "UsageSource": "reported"}}}
	}
	b.ReportAllocs()
	for range b.N {
		if err := Batch(ops); err != nil {
			b.Fatal(err)
		}
	}
}
