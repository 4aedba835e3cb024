package route

import (
	"fmt"
	"math"
	"testing"
	"time"
)

const latencyCfg = `
backends:
  - {name: fast, url: "http://a", region: swedencentral, auth: {none: true}}
  - {name: slow, url: "http://b", region: swedencentral, auth: {none: true}}
models:
  m:
    routing: latency
    targets:
      - {backend: fast, deployment: d %s}
      - {backend: slow, deployment: d %s}
`

// firstShare plans n calls (each from another caller) and returns the
// share that put backend name first.
func firstShare(t *testing.T, m *Model, name string, n int) float64 {
	t.Helper()
	hits := 0
	var plan []Target
	for i := range n {
		var err error
		if plan, err = m.Plan(plan, Request{Sticky: "caller-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))}); err != nil {
			t.Fatal(err)
		}
		if plan[0].Backend.Name == name {
			hits++
		}
	}
	return float64(hits) / float64(n)
}

func TestLatencyRouting(t *testing.T) {
	tests := []struct {
		name string
		// versions of fast and slow (",version: x" fragments).
		fastV, slowV string
		ttfb         [2]time.Duration // 0: no sample
		util         [2]string        // azure-openai-deployment-utilization, "" none
		want         float64          // share of calls to fast first
		tol          float64
	}{
		{"no samples: by weight", "", "", [2]time.Duration{}, [2]string{}, 0.5, 0.05},
		{"50ms vs 400ms", "", "", [2]time.Duration{50 * time.Millisecond, 400 * time.Millisecond}, [2]string{}, 1 / (1 + minShare), 0.03},
		{"100ms vs 200ms", "", "", [2]time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, [2]string{}, 0.8, 0.04},
		{"unmeasured slow is explored", "", "", [2]time.Duration{50 * time.Millisecond, 0}, [2]string{}, 0.5, 0.05},
		{"equal latency, fast 90% busy", "", "", [2]time.Duration{100 * time.Millisecond, 100 * time.Millisecond}, [2]string{"90%", "10%"}, 0.1 / (0.1 + 0.9), 0.04},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testModel(t, fmt.Sprintf(latencyCfg, tt.fastV, tt.slowV), nil)
			for i, name := range []string{"fast", "slow"} {
				tg := target(t, m, name)
				if tt.ttfb[i] > 0 {
					for range 20 {
						tg.Backend.Health.Record(200, tt.ttfb[i])
					}
				}
				if tt.util[i] != "" {
					tg.Observe(header("azure-openai-deployment-utilization", tt.util[i]))
				}
			}
			if got := firstShare(t, m, "fast", 4000); math.Abs(got-tt.want) > tt.tol {
				t.Errorf("got fast first %.3f of the time, want %.3f±%.2f", got, tt.want, tt.tol)
			}
		})
	}
}

func TestLatencyRoutingKeepsCanarySticky(t *testing.T) {
	m := testModel(t, fmt.Sprintf(latencyCfg, ", version: v1", ", version: v2"), nil)
	target(t, m, "fast").Backend.Health.Record(200, 50*time.Millisecond)
	target(t, m, "slow").Backend.Health.Record(200, 400*time.Millisecond)
	// A canary tier keeps weights (1:1) and stickiness: each caller always
	// gets the same first target, and about half the callers get the slow one.
	slow := 0
	var plan []Target
	for i := range 400 {
		key := "caller-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		var first string
		for j := range 5 {
			plan, _ = m.Plan(plan, Request{Sticky: key})
			if j > 0 && plan[0].Backend.Name != first {
				t.Fatalf("caller %s moved from %s to %s", key, first, plan[0].Backend.Name)
			}
			first = plan[0].Backend.Name
		}
		if first == "slow" {
			slow++
		}
	}
	if slow < 140 || slow > 260 {
		t.Errorf("got %d of 400 callers on the slow canary, want about half (weights, not latency)", slow)
	}
}

func TestTTFBAverage(t *testing.T) {
	var h Health
	h.init(BreakerOptions{Failures: 5, FailureRate: 0.5, MinRequests: 20, Window: time.Second, OpenFor: time.Second}, nil)
	if _, ok := h.TTFB(); ok {
		t.Fatal("got a TTFB before any call")
	}
	h.Record(200, 100*time.Millisecond)
	h.Record(503, 5*time.Second) // failures do not count
	h.Record(429, time.Millisecond)
	if d, _ := h.TTFB(); d != 100*time.Millisecond {
		t.Fatalf("got %v, want 100ms (only successes count)", d)
	}
	h.Record(200, 200*time.Millisecond)
	if d, _ := h.TTFB(); d != 120*time.Millisecond {
		t.Errorf("got %v, want 120ms (alpha 0.2)", d)
	}
}

// TestLatencyUtilizationEndsAtReset: latency routing reads a header sample
// as the drain does: once its rate-limit window has reset it says nothing,
// so a deployment that was busy is not held back for the sample's whole
// minute.
func TestLatencyUtilizationEndsAtReset(t *testing.T) {
	clock := newFakeClock()
	r := testRouter(t, `
backends:
  - {name: s, url: "http://b", capacity: {tpm: 1000, rpm: 10}, auth: {none: true}}
models:
  m:
    targets:
      - {backend: s, deployment: ds}
`, clock)
	m, _ := r.Model("m")
	tg := target(t, m, "s")
	tg.Observe(header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "2"))
	if u, ok := tg.utilization(clock.Now()); !ok || u < 0.89 || u > 0.91 {
		t.Fatalf("before the reset: %v %v, want 0.9 true", u, ok)
	}
	clock.Advance(2 * time.Second)
	if u, ok := tg.utilization(clock.Now()); ok {
		t.Errorf("after the reset: %v %v, want no reading", u, ok)
	}
}
