package embedded

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/foundry-gateway/gateway/internal/store"
)

// usageRow is shaped like a ledger UsageEvents row: 22 properties, a random
// request id as RowKey.
func usageRow(pk string) store.Entity {
	var id [16]byte
	_, _ = rand.Read(id[:])
	rk := hex.EncodeToString(id[:])
	return store.Entity{PartitionKey: pk, RowKey: rk, Props: map[string]any{
		"Time": time.Now().UTC(), "RequestId": rk, "KeyId": "k_0123456789abcdef", "Team": "bench", "App": "load",
		"Model": "gpt-4o-mini", "Operation": "chat.completions", "Backend": "sim", "Deployment": "gpt-4o-mini",
		"Region": "", "Class": "interactive", "Status": int64(200), "Stream": false, "LatencyMs": int64(3),
		"PromptTokens": int64(12), "CachedTokens": int64(0), "CompletionTokens": int64(40), "ReasoningTokens": int64(0),
		"TotalTokens": int64(52), "Cost": 0.0000258, "Currency": "USD", "UsageSource": "reported",
	}}
}

const benchPK = "2030-01-02|bench"

// usageBatches returns n batches of 100 new usage rows.
func usageBatches(n int) [][]store.Op {
	out := make([][]store.Op, n)
	for i := range out {
		out[i] = make([]store.Op, store.MaxBatchOps)
		for j := range out[i] {
			out[i][j] = store.Op{Kind: store.OpUpsert, Entity: usageRow(benchPK)}
		}
	}
	return out
}

// BenchmarkBatchUsageRows upserts usage rows with random RowKeys into one
// partition that already holds 20,000, as the ledger writer does: 100-row
// batches, committed one at a time (Batch) or several per commit
// (BatchAll). It reports the time per row and, at the end, the database
// size per row and how full its leaf pages are.
func BenchmarkBatchUsageRows(b *testing.B) {
	for _, per := range []int{1, 2, 5} {
		b.Run("batches per commit="+strconv.Itoa(per), func(b *testing.B) {
			ctx := context.Background()
			s, err := Open(filepath.Join(b.TempDir(), "store.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tbl, err := s.Table(ctx, "UsageEvents")
			if err != nil {
				b.Fatal(err)
			}
			t := tbl.(*table)
			for range 40 {
				for _, err := range t.BatchAll(ctx, usageBatches(5)) {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportAllocs()
			rows := 0
			for b.Loop() {
				b.StopTimer()
				batches := usageBatches(per)
				b.StartTimer()
				if per == 1 {
					err = t.Batch(ctx, batches[0])
				} else {
					err = t.BatchAll(ctx, batches)[0]
				}
				if err != nil {
					b.Fatal(err)
				}
				rows += per * store.MaxBatchOps
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/row")
			b.ReportMetric(float64(s.meter.Releases.Load())/float64(b.N), "releases/op")

			_ = s.db.View(func(tx *bbolt.Tx) error {
				all := rows + 40*5*store.MaxBatchOps
				b.ReportMetric(float64(tx.Size())/float64(all), "db-B/row")
				st := tx.Bucket([]byte("usageevents")).Stats()
				b.ReportMetric(float64(st.LeafInuse)/float64(st.LeafAlloc), "leaf-fill")
				return nil
			})
		})
	}
}
