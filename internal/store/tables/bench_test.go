package tables

import (
	"slices"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/store"
)

func benchTable(b *testing.B) store.Table {
	b.Helper()
	s, err := NewFromConnectionString(az.Start(b).ConnectionString())
	if err != nil {
		b.Fatal(err)
	}
	tbl, err := s.Table(b.Context(), "bench")
	if err != nil {
		b.Fatal(err)
	}
	return tbl
}

func counterRow(n int64) store.Entity {
	return store.Entity{PartitionKey: "p", RowKey: "counter", Props: map[string]any{
		"n": n, "model": "gpt-4o", "updated": 1.5,
	}}
}

// reportMedian adds the median of the per-operation latencies as p50-ns/op;
// ns/op is the mean, which a few slow calls distort.
func reportMedian(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns/op")
}

// BenchmarkGet is one point read from Azurite on loopback.
func BenchmarkGet(b *testing.B) {
	tbl := benchTable(b)
	if _, err := tbl.Upsert(b.Context(), counterRow(0)); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if _, err := tbl.Get(b.Context(), "p", "counter"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportMedian(b, lat)
}

// BenchmarkUpdate is one ETag-guarded replace (no conflicts).
func BenchmarkUpdate(b *testing.B) {
	tbl := benchTable(b)
	etag, err := tbl.Upsert(b.Context(), counterRow(0))
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		n++
		start := time.Now()
		if etag, err = tbl.Update(b.Context(), counterRow(n), etag); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	reportMedian(b, lat)
}
