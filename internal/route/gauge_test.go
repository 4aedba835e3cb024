package route

import (
	"net/http"
	"testing"
	"time"
)

func TestUtilizationGauge(t *testing.T) {
	clk := newFakeClock()
	r := testRouter(t, cfg, clk)
	m, _ := r.Model("m")
	h := func(kv ...string) http.Header {
		x := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			x.Set(kv[i], kv[i+1])
		}
		return x
	}
	if got := r.Utilization("nope"); got != 1 {
		t.Errorf("unknown alias: %v, want 1", got)
	}
	if got := r.Utilization("m"); got != 0 {
		t.Errorf("no samples: %v, want 0", got)
	}
	for _, tg := range m.Targets {
		switch tg.Backend.Name {
		case "ptu":
			tg.Observe(h("Azure-Openai-Deployment-Utilization", "95.0%"))
		default:
			tg.Observe(h("X-Ratelimit-Remaining-Tokens", "200", "X-Ratelimit-Limit-Tokens", "1000"))
		}
	}
	if got := r.Utilization("m"); got < 0.79 || got > 0.81 {
		t.Errorf("least-used deployment at 80%%: got %v", got)
	}
	for _, tg := range m.Targets {
		if tg.Backend.Name != "ptu" {
			tg.Cool(h("Retry-After-Ms", "5000"))
		}
	}
	if got := r.Utilization("m"); got < 0.94 || got > 0.96 {
		t.Errorf("standard cooling, PTU at 95%%: got %v", got)
	}
	clk.Advance(2 * time.Minute) // cooling over, samples stale
	if got := r.Utilization("m"); got != 0 {
		t.Errorf("stale samples: %v, want 0", got)
	}
}
