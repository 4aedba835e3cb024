package test

import (
	"fmt"
	"strings"
	"testing"
)

func TestRoutingRegions(t *testing.T) {
	eu, us := newInjector(t), newInjector(t) // us only passes through
	s := startStack(t, stackOptions{
		extraBackends: fmt.Sprintf(`  - { name: eu, url: "%s", region: swedencentral, auth: { none: true } }
  - { name: us, url: "%s", region: eastus, auth: { none: true } }`, eu.srv.URL, us.srv.URL),
		extraModels: `  geo:
    targets:
      - { backend: eu, deployment: gpt-4o-mini }
      - { backend: us, deployment: gpt-4o-mini, priority: 3 }
  us-only:
    targets:
      - { backend: us, deployment: gpt-4o-mini }`,
		extraKeys: [][]string{{"--team", "eu", "--app", "x", "--regions", "swedencentral,westeurope"}},
	})
	eu.point(s.SimURL)
	us.point(s.SimURL)
	euKey := s.ExtraKeys[0]
	geo := `{"model":"geo","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`

	if st, b, body, _ := call(t, s, euKey, geo, nil); st != 200 || b != "eu" {
		t.Fatalf("eu key: got %d from %q %s, want 200 from eu", st, b, body)
	}
	// The only EU backend cools: the EU key gets its 429 and then the
	// gateway's, never the US backend; an unrestricted key moves to the US.
	eu.arm("429", 3000, 1)
	st, b, _, _ := call(t, s, euKey, geo, nil)
	if st != 429 || b == "us" {
		t.Errorf("eu key, eu 429: got %d from %q, want 429 and never us", st, b)
	}
	st, b, body, h := call(t, s, euKey, geo, nil)
	if st != 429 || b != "" || h.Get("Retry-After-Ms") == "" {
		t.Errorf("eu key, eu cooling: got %d from %q %s, want the gateway's 429 with retry-after-ms", st, b, body)
	}
	if st, b, _, _ := call(t, s, s.Key, geo, nil); st != 200 || b != "us" {
		t.Errorf("unrestricted key, eu cooling: got %d from %q, want 200 from us", st, b)
	}
	if us.hits.Load() != 1 {
		t.Errorf("got %d calls to the us backend, want 1 (the unrestricted key's)", us.hits.Load())
	}
	// No deployment in the key's regions: 403.
	st, _, body, _ = call(t, s, euKey, `{"model":"us-only","messages":[{"role":"user","content":"hi"}]}`, nil)
	if st != 403 || !strings.Contains(body, "region_not_allowed") {
		t.Errorf("eu key, us-only model: got %d %s, want 403 region_not_allowed", st, body)
	}
}
