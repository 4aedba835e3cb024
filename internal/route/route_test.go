package route

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
)

func testRouter(t *testing.T, yaml string) *Router {
	t.Helper()
	c, err := config.Parse([]byte(yaml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(c, backendauth.For)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const cfg = `
backends:
  - {name: ptu, url: "http://a", provisioned: true, auth: {none: true}}
  - {name: s1, url: "http://b", auth: {none: true}}
  - {name: s2, url: "http://c", auth: {none: true}}
models:
  m:
    targets:
      - {backend: s1, deployment: d1, weight: 9}
      - {backend: s2, deployment: d2, weight: 1}
      - {backend: ptu, deployment: dp}
`

func TestPlanTiersAndWeights(t *testing.T) {
	r := testRouter(t, cfg)
	m, err := r.Model("m")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	first := map[string]int{}
	const n = 10000
	var plan []Target
	for range n {
		plan = m.Plan(plan, rng)
		if len(plan) != 3 || plan[0].Backend.Name != "ptu" {
			t.Fatalf("provisioned tier must come first: %+v", plan)
		}
		first[plan[1].Backend.Name]++
	}
	share := float64(first["s1"]) / n
	if math.Abs(share-0.9) > 0.02 {
		t.Errorf("s1 first in its tier %.3f of the time, want 0.90±0.02", share)
	}
}

func TestUnknownModel(t *testing.T) {
	r := testRouter(t, cfg)
	if _, err := r.Model("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("got %v, want ErrUnknownModel", err)
	}
}

func BenchmarkPlan(b *testing.B) {
	c, _ := config.Parse([]byte(cfg), func(string) string { return "" })
	r, _ := New(c, backendauth.For)
	m, _ := r.Model("m")
	rng := rand.New(rand.NewPCG(1, 2))
	var plan []Target
	b.ReportAllocs()
	for b.Loop() {
		plan = m.Plan(plan, rng)
	}
}
