package test

import (
	"fmt"
	"math"
	"sync"
	"testing"
)

func TestRoutingCanarySplitAndStickiness(t *testing.T) {
	s := startStack(t, stackOptions{
		extraModels: `  canary:
    targets:
      - { backend: sim-paygo, deployment: gpt-4o-mini, priority: 2, weight: 90, version: "2024-07-18" }
      - { backend: sim-ptu, deployment: gpt-4o-mini-ptu, priority: 2, weight: 10, version: "2025-canary" }`,
		extraKeys: [][]string{{"--team", "a", "--app", "x"}, {"--team", "b", "--app", "x"}, {"--team", "c", "--app", "x"}},
	})
	body := `{"model":"canary","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	version := func(key string, hdr map[string]string) string {
		st, _, b, h := call(t, s, key, body, hdr)
		if st != 200 {
			t.Errorf("got %d %s, want 200", st, b)
		}
		return h.Get("X-Gateway-Model-Version")
	}

	// 2,000 callers (the affinity header stands in for many keys), in parallel.
	const n = 2000
	var mu sync.Mutex
	counts := map[string]int{}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range work {
				v := version(s.Key, map[string]string{"x-gateway-affinity-key": fmt.Sprintf("user-%d", i)})
				mu.Lock()
				counts[v]++
				mu.Unlock()
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	share := float64(counts["2025-canary"]) / n
	t.Logf("canary share over %d callers: %.2f%% (configured 10%%); counts %v", n, 100*share, counts)
	if math.Abs(share-0.10) > 0.03 || counts["2024-07-18"]+counts["2025-canary"] != n {
		t.Errorf("got split %v, want 10%%±3%% canary and nothing else", counts)
	}

	// Each caller always sees one version: by key, and by affinity header.
	keys := append([]string{s.Key}, s.ExtraKeys...)
	for _, k := range keys {
		first := version(k, nil)
		for range 10 {
			if v := version(k, nil); v != first {
				t.Fatalf("key %.16s: got %s, want %s every time", k, v, first)
			}
		}
	}
	for i := range 30 {
		h := map[string]string{"x-gateway-affinity-key": fmt.Sprintf("user-%d", i)}
		first := version(s.Key, h)
		for range 3 {
			if v := version(s.Key, h); v != first {
				t.Fatalf("caller %d: got %s, want %s every time", i, v, first)
			}
		}
	}
}
