package tokens

import (
	"strconv"
	"strings"
	"sync"
	"testing"
)

// countText answers what count answers, from the cache or not, also when
// many goroutines count texts that share cache slots.
func TestCountTextCached(t *testing.T) {
	c := New()
	for _, name := range []string{CL100K, O200K} {
		tk := c.enc(name)
		if tk == nil {
			t.Fatalf("%s did not load", name)
		}
		texts := append([]string{strings.Repeat("The quick brown fox jumps over the lazy dog. ", 45)}, corpus...)
		for i := range 2000 { // more texts than slots: evictions and collisions
			texts = append(texts, strings.Repeat("word ", 10+i%50)+strconv.Itoa(i))
		}
		want := make([]int, len(texts))
		for i, s := range texts {
			want[i] = tk.count(s)
		}
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for round := range 3 {
					for i := range texts {
						j := (i*7 + g*13 + round) % len(texts)
						if got := tk.countText(texts[j]); got != want[j] {
							t.Errorf("%s: countText(%.40q) = %d, want %d", name, texts[j], got, want[j])
							return
						}
					}
				}
			}()
		}
		wg.Wait()
	}
}
