package tokens

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"

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

// benchText is the 2 KB user message of BenchmarkPrompt_Chat2KB plus some
// code and CJK, to compare the counters on the same text.
var benchText = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 30) +
	"func main() {\n\tfmt.Println(\"hello\")\n}\n" + strings.Repeat("日本語のテキストです。", 10)

// BenchmarkCount_O200K is our counter on benchText.
func BenchmarkCount_O200K(b *testing.B) {
	tb, err := loadTable(O200K)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchText)))
	for b.Loop() {
		tb.count(benchText)
	}
}

// BenchmarkCount_TiktokenGo_O200K is the former counter (tiktoken-go, now
// the test oracle) on the same text.
func BenchmarkCount_TiktokenGo_O200K(b *testing.B) {
	oracle(b)
	tk := oracleTK[O200K]
	b.ReportAllocs()
	b.SetBytes(int64(len(benchText)))
	for b.Loop() {
		tk.EncodeOrdinary(benchText)
	}
}

// BenchmarkLoad reports the time to load each table and the live heap it
// keeps (heap-B).
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{CL100K, O200K} {
		b.Run(name, func(b *testing.B) {
			var keep *table
			for b.Loop() {
				before := liveHeap()
				t, err := loadTable(name)
				if err != nil {
					b.Fatal(err)
				}
				keep = t
				b.ReportMetric(float64(liveHeap()-before), "heap-B")
			}
			runtime.KeepAlive(keep)
		})
	}
}

// TestHeapAfterLoad logs the live heap of both our tables and of
// tiktoken-go's (rank maps, decoder maps, sorted token list) for the same
// two encodings. A measurement, not a check: run it alone so that
// tiktoken-go is not loaded yet:
//
//	TOKENS_MEASURE=1 go test -v -run TestHeapAfterLoad ./internal/tokens/
func TestHeapAfterLoad(t *testing.T) {
	if os.Getenv("TOKENS_MEASURE") == "" {
		t.Skip("measurement only: set TOKENS_MEASURE=1")
	}
	before := liveHeap()
	var ours []*table
	for _, name := range []string{CL100K, O200K} {
		tb, err := loadTable(name)
		if err != nil {
			t.Fatal(err)
		}
		ours = append(ours, tb)
	}
	mid := liveHeap()
	tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
	var theirs []*tiktoken.Tiktoken
	for _, name := range []string{CL100K, O200K} {
		tk, err := tiktoken.GetEncoding(name)
		if err != nil {
			t.Fatal(err)
		}
		theirs = append(theirs, tk)
	}
	after := liveHeap()
	t.Logf("live heap after loading cl100k_base+o200k_base: ours %.1f MiB, tiktoken-go %.1f MiB",
		float64(mid-before)/(1<<20), float64(after-mid)/(1<<20))
	runtime.KeepAlive(ours)
	runtime.KeepAlive(theirs)
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
