package test

import (
	"fmt"
	"testing"
	"time"
)

// TestRoutingSameTargetRetry: a model with one deployment, which answers
// 429. A short retry-after-ms is waited out and the call served (config
// defaults: proxy.maxRetryWait 2s); a long one goes to the client at once.
func TestRoutingSameTargetRetry(t *testing.T) {
	one := newInjector(t)
	s := startStack(t, stackOptions{
		extraBackends: fmt.Sprintf(`  - { name: eu-one, url: "%s", region: swedencentral, auth: { none: true } }`, one.srv.URL),
		extraModels: `  single:
    targets:
      - { backend: eu-one, deployment: gpt-4o-mini }`,
	})
	one.point(s.SimURL)
	body := `{"model":"single","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`

	one.arm("429", 500, 1)
	start := time.Now()
	st, b, resp, _ := call(t, s, s.Key, body, nil)
	if st != 200 || b != "eu-one" || one.hits.Load() != 2 {
		t.Fatalf("retry-after-ms 500: got %d from %q after %d backend calls %s, want 200 after 2", st, b, one.hits.Load(), resp)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("served after %v, want after the 500ms the backend asked for", took)
	}

	one.arm("429", 30000, 1)
	start = time.Now()
	st, _, resp, h := call(t, s, s.Key, body, nil)
	if st != 429 || h.Get("Retry-After") != "30" || one.hits.Load() != 3 {
		t.Fatalf("retry-after 30s: got %d retry-after %q after %d backend calls %s, want the 429 with retry-after 30, one call",
			st, h.Get("Retry-After"), one.hits.Load(), resp)
	}
	if took := time.Since(start); took >= 2*time.Second {
		t.Errorf("the 429 took %v, want it at once (30s is above the 2s maximum wait)", took)
	}
}
