package route

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func testRouter(t testing.TB, yaml string, clk *fakeClock) *Router {
	t.Helper()
	c, err := config.Parse([]byte(yaml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var now func() time.Time
	if clk != nil {
		now = clk.Now
	}
	r, err := New(c, backendauth.For, now)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testModel(t testing.TB, yaml string, clk *fakeClock) *Model {
	t.Helper()
	m, err := testRouter(t, yaml, clk).Model("m")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const cfg = `
backends:
  - {name: ptu, url: "http://a", provisioned: true, region: swedencentral, auth: {none: true}}
  - {name: s1, url: "http://b", region: swedencentral, auth: {none: true}}
  - {name: s2, url: "http://c", region: eastus, auth: {none: true}}
models:
  m:
    targets:
      - {backend: s1, deployment: d1, weight: 9}
      - {backend: s2, deployment: d2, weight: 1}
      - {backend: ptu, deployment: dp}
`

func names(ts []Target) string {
	s := ""
	for i, t := range ts {
		if i > 0 {
			s += ","
		}
		s += t.Backend.Name
	}
	return s
}

func TestPlanTiersAndWeights(t *testing.T) {
	m := testModel(t, cfg, nil)
	first := map[string]int{}
	const n = 10000
	var plan []Target
	for range n {
		var err error
		plan, err = m.Plan(plan, Request{})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan) != 3 || plan[0].Backend.Name != "ptu" {
			t.Fatalf("got plan %s, want the provisioned tier first", names(plan))
		}
		first[plan[1].Backend.Name]++
	}
	share := float64(first["s1"]) / n
	if math.Abs(share-0.9) > 0.02 {
		t.Errorf("got s1 first in its tier %.3f of the time, want 0.90±0.02", share)
	}
}

func TestUnknownModel(t *testing.T) {
	r := testRouter(t, cfg, nil)
	if _, err := r.Model("nope"); !errors.Is(err, ErrUnknownModel) {
		t.Errorf("got %v, want ErrUnknownModel", err)
	}
}

func TestBreakerTransitions(t *testing.T) {
	const openFor = 10 * time.Second
	type step struct {
		advance time.Duration
		record  []int // statuses recorded after advancing
		allow   []bool
		state   string
	}
	fails := func(n, status int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = status
		}
		return s
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"four failures keep it closed", []step{{record: fails(4, 503), allow: []bool{true}, state: "closed"}}},
		{"five consecutive failures open it", []step{{record: fails(5, 500), allow: []bool{false}, state: "open"}}},
		{"timeouts and dial errors count", []step{{record: []int{408, 504, 502, 408, 504}, allow: []bool{false}, state: "open"}}},
		{"a success resets the run", []step{{record: append(fails(4, 500), 200, 500, 500, 500, 500), allow: []bool{true}, state: "closed"}}},
		{"client errors never count", []step{{record: []int{400, 401, 403, 404, 413, 429, 499, 400, 400, 400, 400, 400}, allow: []bool{true}, state: "closed"}}},
		{"exactly one half-open probe after openFor", []step{
			{record: fails(5, 500), state: "open"},
			{advance: openFor - time.Millisecond, allow: []bool{false}, state: "open"},
			{advance: time.Millisecond, allow: []bool{true, false, false}, state: "half-open"},
		}},
		{"probe success closes", []step{
			{record: fails(5, 500)},
			{advance: openFor, allow: []bool{true}},
			{record: []int{200}, allow: []bool{true, true}, state: "closed"},
		}},
		{"probe failure reopens for openFor", []step{
			{record: fails(5, 500)},
			{advance: openFor, allow: []bool{true}},
			{record: []int{503}, allow: []bool{false}, state: "open"},
			{advance: openFor - time.Millisecond, allow: []bool{false}},
			{advance: time.Millisecond, allow: []bool{true, false}, state: "half-open"},
		}},
		{"probe cancelled by the client frees the probe", []step{
			{record: fails(5, 500)},
			{advance: openFor, allow: []bool{true, false}},
			{record: []int{499}, allow: []bool{true, false}, state: "half-open"},
		}},
		{"stuck probe is replaced after openFor", []step{
			{record: fails(5, 500)},
			{advance: openFor, allow: []bool{true, false}},
			{advance: openFor, allow: []bool{true, false}, state: "half-open"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			var b Breaker
			b.init(BreakerOptions{Failures: 5, OpenFor: openFor, MinRequests: 1000}, clk.Now)
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				for _, st := range s.record {
					b.Record(st, time.Millisecond)
				}
				for k, want := range s.allow {
					if got := b.Allow(); got != want {
						t.Fatalf("step %d: Allow #%d: got %v, want %v", i, k+1, got, want)
					}
				}
				if s.state != "" {
					if got, _, _, _ := b.snapshot(); got != s.state {
						t.Fatalf("step %d: got state %v, want %v", i, got, s.state)
					}
				}
			}
		})
	}
}

func TestBreakerFailureRate(t *testing.T) {
	clk := newFakeClock()
	var b Breaker
	b.init(BreakerOptions{Failures: 100, FailureRate: 0.5, MinRequests: 20, Window: 10 * time.Second}, clk.Now)
	// 9 failures in 20 calls, alternating so no run is long: stays closed.
	for i := range 20 {
		st := 200
		if i%2 == 0 && i < 18 {
			st = 500
		}
		b.Record(st, 0)
	}
	if !b.Allow() {
		t.Fatalf("got open at 9/20 failures, want closed")
	}
	b.Record(500, 0) // 10/21 < 0.5
	b.Record(500, 0) // 11/22 = 0.5: opens
	if b.Allow() {
		t.Fatalf("got closed at 11/22 failures, want open")
	}
	// Failures older than the window are forgotten.
	var c Breaker
	c.init(BreakerOptions{Failures: 100, FailureRate: 0.5, MinRequests: 4, Window: 10 * time.Second}, clk.Now)
	c.Record(500, 0)
	c.Record(500, 0)
	c.Record(500, 0)
	clk.Advance(11 * time.Second)
	c.Record(200, 0)
	c.Record(500, 0) // 1/2 in window, under MinRequests
	if !c.Allow() {
		t.Errorf("got open from failures outside the window, want closed")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		h      map[string]string
		want   time.Duration
		wantOK bool
	}{
		{"ms preferred", map[string]string{"retry-after-ms": "2000", "retry-after": "9"}, 2 * time.Second, true},
		{"fractional ms", map[string]string{"retry-after-ms": "12.5"}, 12500 * time.Microsecond, true},
		{"seconds", map[string]string{"retry-after": "3"}, 3 * time.Second, true},
		{"http date", map[string]string{"retry-after": now.Add(4 * time.Second).Format(http.TimeFormat)}, 4 * time.Second, true},
		{"bad ms falls back to seconds", map[string]string{"retry-after-ms": "x", "retry-after": "1"}, time.Second, true},
		{"none", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.h {
				h.Set(k, v)
			}
			got, ok := RetryAfter(h, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %v %v, want %v %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// target returns m's target on backend name.
func target(t *testing.T, m *Model, name string) Target {
	t.Helper()
	for _, tg := range m.Targets {
		if tg.Backend.Name == name {
			return tg
		}
	}
	t.Fatalf("no target on %s", name)
	return Target{}
}

func TestCooling(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"retry-after-ms", header("retry-after-ms", "2000"), 2 * time.Second},
		{"retry-after", header("retry-after", "7"), 7 * time.Second},
		{"default when absent", header(), 5 * time.Second},
		{"capped at maxCooling", header("retry-after", "86400"), 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			m := testModel(t, cfg, clk)
			if got := target(t, m, "ptu").Cool(tt.h); got != tt.want {
				t.Fatalf("got cooling %v, want %v", got, tt.want)
			}
			plan, err := m.Plan(nil, Request{Sticky: "k"})
			if err != nil || plan[0].Backend.Name == "ptu" || len(plan) != 2 {
				t.Fatalf("got plan %s %v while ptu cools, want the standard tier only", names(plan), err)
			}
			clk.Advance(tt.want - time.Millisecond)
			if plan, _ = m.Plan(plan, Request{Sticky: "k"}); len(plan) != 2 {
				t.Fatalf("got plan %s just before the wait ends, want ptu still skipped", names(plan))
			}
			clk.Advance(time.Millisecond)
			if plan, _ = m.Plan(plan, Request{Sticky: "k"}); plan[0].Backend.Name != "ptu" {
				t.Fatalf("got plan %s after the wait, want ptu first again", names(plan))
			}
		})
	}
}

func TestPlanUnavailable(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(m *Model)
		want      error
		wantAfter time.Duration
	}{
		{"all cooling: shortest wait", func(m *Model) {
			m.Targets[0].Cool(header("retry-after-ms", "3000"))
			m.Targets[1].Cool(header("retry-after-ms", "1200"))
			m.Targets[2].Cool(header("retry-after-ms", "2500"))
		}, ErrAllCooling, 1200 * time.Millisecond},
		{"cooling and open: cooling wins", func(m *Model) {
			m.Targets[0].Cool(header("retry-after-ms", "3000"))
			for range 5 {
				m.Targets[1].Backend.Health.Record(500, 0)
				m.Targets[2].Backend.Health.Record(500, 0)
			}
		}, ErrAllCooling, 3 * time.Second},
		{"all open", func(m *Model) {
			for _, tg := range m.Targets {
				for range 5 {
					tg.Backend.Health.Record(502, 0)
				}
			}
		}, ErrNoHealthyBackend, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testModel(t, cfg, newFakeClock())
			tt.setup(m)
			_, err := m.Plan(nil, Request{})
			var un *Unavailable
			if !errors.Is(err, tt.want) || !errors.As(err, &un) || un.RetryAfter != tt.wantAfter {
				t.Errorf("got %v, want %v with retry after %v", err, tt.want, tt.wantAfter)
			}
		})
	}
}

func TestRegions(t *testing.T) {
	tests := []struct {
		name    string
		regions []string
		cool    []string
		want    string
		wantErr error
	}{
		{"any region", nil, nil, "ptu,s1,s2", nil},
		{"eu only", []string{"swedencentral"}, nil, "ptu,s1", nil},
		{"case-insensitive", []string{"SwedenCentral"}, nil, "ptu,s1", nil},
		{"us only", []string{"eastus"}, nil, "s2", nil},
		{"no region matches", []string{"japaneast"}, nil, "", ErrRegionNotAllowed},
		{"eu only, eu cooling: no us failover", []string{"swedencentral"}, []string{"ptu", "s1"}, "", ErrAllCooling},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testModel(t, cfg, newFakeClock())
			for _, n := range tt.cool {
				target(t, m, n).Cool(header("retry-after", "5"))
			}
			plan, err := m.Plan(nil, Request{Regions: tt.regions, Sticky: "caller"})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			// s1/s2 order inside the tier depends on the hash; compare sets.
			got := map[string]bool{}
			for _, tg := range plan {
				got[tg.Backend.Name] = true
			}
			want := map[string]bool{}
			if tt.want != "" {
				for _, n := range splitComma(tt.want) {
					want[n] = true
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

const canaryCfg = `
backends:
  - {name: a, url: "http://a", auth: {none: true}}
  - {name: b, url: "http://b", auth: {none: true}}
  - {name: c, url: "http://c", auth: {none: true}}
models:
  m:
    targets:
      - {backend: a, deployment: gpt-4o-2024-08-06, weight: 90, version: "2024-08-06"}
      - {backend: b, deployment: gpt-4o-2024-11-20, weight: 10, version: "2024-11-20"}
`

func TestCanarySplitAndStickiness(t *testing.T) {
	m := testModel(t, canaryCfg, newFakeClock())
	const n = 2000
	first := map[string]string{}
	count := map[string]int{}
	for i := range n {
		key := fmt.Sprintf("%012x", i*7919)
		plan, err := m.Plan(nil, Request{Sticky: key})
		if err != nil {
			t.Fatal(err)
		}
		first[key] = plan[0].Version
		count[plan[0].Version]++
	}
	share := float64(count["2024-11-20"]) / n
	t.Logf("canary share over %d keys: %.2f%% (want 10%%)", n, 100*share)
	if math.Abs(share-0.10) > 0.03 {
		t.Errorf("got canary share %.3f, want 0.10±0.03", share)
	}
	// Sticky: every key sees the same version every time.
	for key, v := range first {
		for range 3 {
			plan, _ := m.Plan(nil, Request{Sticky: key})
			if plan[0].Version != v {
				t.Fatalf("key %s: got %s, want %s (not sticky)", key, plan[0].Version, v)
			}
		}
	}
	// Failover: with the canary's circuit open its callers move to the main
	// version, the others keep theirs; once it closes, they come back.
	for range 5 {
		m.Targets[1].Backend.Health.Record(503, 0)
	}
	for key := range first {
		if plan, _ := m.Plan(nil, Request{Sticky: key}); plan[0].Version != "2024-08-06" {
			t.Fatalf("key %s: got %s with the canary down, want 2024-08-06", key, plan[0].Version)
		}
	}
}

func TestResponsesAffinityFirst(t *testing.T) {
	m := testModel(t, cfg, newFakeClock())
	tests := []struct {
		name    string
		q       Request
		want    string
		cooling string
	}{
		{"standard backend before the ptu tier", Request{Backend: "s2"}, "s2", ""},
		{"unknown backend: normal order", Request{Backend: "gone"}, "ptu", ""},
		{"affinity backend cooling: normal order", Request{Backend: "s2"}, "ptu", "s2"},
		{"affinity outside the caller's regions is never used", Request{Backend: "s2", Regions: []string{"swedencentral"}}, "ptu", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cooling != "" {
				target(t, m, tt.cooling).Cool(header("retry-after", "1"))
			}
			plan, err := m.Plan(nil, tt.q)
			if err != nil || plan[0].Backend.Name != tt.want {
				t.Errorf("got %s %v, want %s first", names(plan), err, tt.want)
			}
		})
	}
}

func TestUtilization(t *testing.T) {
	r := testRouter(t, `
backends:
  - {name: p, url: "http://a", provisioned: true, auth: {none: true}}
  - {name: s, url: "http://b", capacity: {tpm: 1000, rpm: 10}, auth: {none: true}}
models:
  m:
    targets:
      - {backend: p, deployment: dp}
      - {backend: s, deployment: ds}
`, newFakeClock())
	m, _ := r.Model("m")
	target(t, m, "p").Observe(header("azure-openai-deployment-utilization", "37.5%"))
	target(t, m, "s").Observe(header("x-ratelimit-remaining-tokens", "750", "x-ratelimit-remaining-requests", "2"))
	st := r.Status()
	tests := []struct {
		name    string
		got     float64
		want    float64
		wantSrc string
		src     string
	}{
		{"provisioned header", st[0].Utilization.Percent, 37.5, "provisioned", st[0].Utilization.Source},
		{"standard: the fuller of tokens and requests", st[1].Utilization.Percent, 80, "ratelimit", st[1].Utilization.Source},
	}
	for _, tt := range tests {
		if tt.got != tt.want || tt.src != tt.wantSrc {
			t.Errorf("%s: got %v %s, want %v %s", tt.name, tt.got, tt.src, tt.want, tt.wantSrc)
		}
	}
}

// TestUtilizationReset: the sample keeps when the window of the dimension
// that gave its percent resets, read as Azure sends it (seconds, also with
// decimals) or as OpenAI does (a duration).
func TestUtilizationReset(t *testing.T) {
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
	tests := []struct {
		name string
		h    http.Header
		want time.Duration // 0: no reset
	}{
		{"tokens fuller, Azure seconds", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "12",
			"x-ratelimit-remaining-requests", "9", "x-ratelimit-reset-requests", "50"), 12 * time.Second},
		{"requests fuller", header("x-ratelimit-remaining-tokens", "900", "x-ratelimit-reset-tokens", "12",
			"x-ratelimit-remaining-requests", "1", "x-ratelimit-reset-requests", "50"), 50 * time.Second},
		{"decimals", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "1.25"), 1250 * time.Millisecond},
		{"OpenAI duration", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "6m0s"), 6 * time.Minute},
		{"none", header("x-ratelimit-remaining-tokens", "100"), 0},
		{"unreadable", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "soon"), 0},
		{"negative", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "-1"), 0},
		{"zero: nothing to reset", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "0"), 0},
		{"zero duration", header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "0s"), 0},
	}
	for _, tt := range tests {
		clock.Advance(time.Hour) // each case on its own
		target(t, m, "s").Observe(tt.h)
		u := r.Status()[0].Utilization
		var got time.Duration
		if !u.ResetAt.IsZero() {
			got = u.ResetAt.Sub(clock.Now())
		}
		if got != tt.want {
			t.Errorf("%s: reset in %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestUtilizationResetOutOfOrder: headers read out of order (an earlier
// admission's after a later one's) do not pull the window's reset forward
// while the later reset is still ahead; after it, a new reset counts.
func TestUtilizationResetOutOfOrder(t *testing.T) {
	clock := newFakeClock()
	r := testRouter(t, `
backends:
  - {name: s, url: "http://b", capacity: {tpm: 1000}, auth: {none: true}}
models:
  m:
    targets:
      - {backend: s, deployment: ds}
`, clock)
	m, _ := r.Model("m")
	t0 := clock.Now()
	target(t, m, "s").Observe(header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-reset-tokens", "2"))
	clock.Advance(10 * time.Millisecond)
	target(t, m, "s").Observe(header("x-ratelimit-remaining-tokens", "150", "x-ratelimit-reset-tokens", "1.9"))
	if got := r.Status()[0].Utilization.ResetAt; !got.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("out of order: reset at +%v, want +2s", got.Sub(t0))
	}
	clock.Advance(3 * time.Second)
	target(t, m, "s").Observe(header("x-ratelimit-remaining-tokens", "900", "x-ratelimit-reset-tokens", "1"))
	if got := r.Status()[0].Utilization.ResetAt; !got.Equal(clock.Now().Add(time.Second)) {
		t.Errorf("after the reset: reset at +%v, want +1s", got.Sub(clock.Now()))
	}
}

// BenchmarkPick is the routing decision of one call: region filter, health
// checks, tiers and the sticky rendezvous order.
func BenchmarkPick(b *testing.B) {
	m := testModel(b, cfg, nil)
	plan := make([]Target, 0, 8)
	q := Request{Sticky: "1a2b3c4d5e6f", Regions: []string{"swedencentral", "eastus"}}
	b.ReportAllocs()
	for b.Loop() {
		plan, _ = m.Plan(plan, q)
	}
}

// TestUtilizationLimitTokens: the sample knows the window's token limit,
// from the configured TPM or else x-ratelimit-limit-tokens (the drain sizes
// its concurrency by it); none without a token dimension.
func TestUtilizationLimitTokens(t *testing.T) {
	r := testRouter(t, `
backends:
  - {name: s, url: "http://b", capacity: {tpm: 1000}, auth: {none: true}}
  - {name: h, url: "http://h", auth: {none: true}}
models:
  m:
    targets:
      - {backend: s, deployment: ds}
      - {backend: h, deployment: dh}
`, newFakeClock())
	m, _ := r.Model("m")
	target(t, m, "s").Observe(header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-limit-tokens", "5000"))
	target(t, m, "h").Observe(header("x-ratelimit-remaining-tokens", "100", "x-ratelimit-limit-tokens", "5000"))
	got := map[string]int64{}
	for _, b := range r.Status() {
		got[b.Name] = b.Utilization.LimitTokens
	}
	if got["s"] != 1000 || got["h"] != 5000 {
		t.Errorf("limit tokens: %v; want s 1000 (configured), h 5000 (header)", got)
	}
	target(t, m, "h").Observe(header("x-ratelimit-remaining-requests", "9", "x-ratelimit-limit-requests", "10"))
	for _, b := range r.Status() {
		if b.Name == "h" && b.Utilization.LimitTokens != 0 {
			t.Errorf("requests only: limit tokens %d; want 0", b.Utilization.LimitTokens)
		}
	}
}
