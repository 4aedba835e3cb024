package sim

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

func cos(a, b []float32) float64 {
	var d, na, nb float64
	for i := range a {
		d += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return d / math.Sqrt(na*nb)
}

// TestTextVectorsSemantic checks the simulator's embeddings on the cache
// acceptance pairs (test/testdata/cache_pairs.json): every unrelated pair
// is far apart (cosine below 0.5), paraphrases mostly close.
func TestTextVectorsSemantic(t *testing.T) {
	b, err := os.ReadFile("../../test/testdata/cache_pairs.json")
	if err != nil {
		t.Fatal(err)
	}
	var pairs struct{ Paraphrases, Unrelated [][2]string }
	if err := json.Unmarshal(b, &pairs); err != nil {
		t.Fatal(err)
	}
	close := 0
	for _, p := range pairs.Paraphrases {
		c := cos(textVector("m", p[0], 256), textVector("m", p[1], 256))
		if c >= 0.8 {
			close++
		}
		t.Logf("paraphrase %.3f  %q / %q  %v / %v", c, p[0], p[1], contentWords(p[0]), contentWords(p[1]))
	}
	for _, p := range pairs.Unrelated {
		if c := cos(textVector("m", p[0], 256), textVector("m", p[1], 256)); c >= 0.5 {
			t.Errorf("unrelated %.3f: %q / %q", c, p[0], p[1])
		}
	}
	if close < len(pairs.Paraphrases)*4/5 {
		t.Errorf("%d of %d paraphrases within cosine 0.8, want at least 4/5", close, len(pairs.Paraphrases))
	}
	// Deterministic per model: punctuation and case do not matter.
	a, b2 := textVector("m", "Hello, world!", 64), textVector("m", "hello world", 64)
	for i := range a {
		if a[i] != b2[i] {
			t.Fatal("equal content words embed differently")
		}
	}
	if c := cos(textVector("m", "hello world", 64), textVector("other-model", "hello world", 64)); c > 0.5 {
		t.Errorf("two models embed alike: cosine %.3f", c)
	}
}
