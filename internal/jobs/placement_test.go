package jobs

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/utilization"
)

// perDeployment is a fake Loads with one reading per deployment; a
// missing entry reads unknown.
type perDeployment struct {
	mu sync.Mutex
	v  map[string]float64 // deployment -> share
}

func (p *perDeployment) set(dep string, v float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v < 0 {
		delete(p.v, dep)
		return
	}
	p.v[dep] = v
}

func (p *perDeployment) Utilization(k utilization.Key, _ float64) utilization.Reading {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.v[k.Deployment]
	if !ok {
		return utilization.Reading{Source: utilization.SourceUnknown}
	}
	return utilization.Reading{Percent: 100 * v, Source: utilization.SourceMetrics, At: time.Now()}
}

func (p *perDeployment) Refresh(context.Context) error { return nil }

// countingBackend answers 200 (or status) and counts calls per deployment
// (the v1 body's model), keeping the most calls running at once.
type countingBackend struct {
	srv           *httptest.Server
	mu            sync.Mutex
	calls         map[string]int
	status        map[string]int
	running, peak atomic.Int32
	delay         time.Duration
}

func newCountingBackend(t *testing.T, delay time.Duration) *countingBackend {
	b := &countingBackend{calls: map[string]int{}, status: map[string]int{}, delay: delay}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		dep := "ptu"
		if string(body) != "" && contains(body, `"model":"paygo"`) {
			dep = "paygo"
		}
		n := b.running.Add(1)
		for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
		}
		time.Sleep(b.delay)
		b.running.Add(-1)
		b.mu.Lock()
		b.calls[dep]++
		status := b.status[dep]
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status == 429 {
			w.Header().Set("Retry-After-Ms", "3000")
			w.WriteHeader(429)
			io.WriteString(w, `{"error":{"code":"429","message":"busy"}}`)
			return
		}
		io.WriteString(w, `{"id":"x","choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func contains(b []byte, s string) bool {
	return len(s) <= len(b) && (string(b) == s || indexOf(string(b), s) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func (b *countingBackend) count(dep string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[dep]
}

// twoTargetFixture: model m has a provisioned target (ptu, priority 1) and
// a pay-as-you-go one (paygo, priority 2); the policy allows allowed.
func twoTargetFixture(t *testing.T, loads Loads, allowed []utilization.Key, delay time.Duration) (*fixture, *countingBackend) {
	f := newFixture(t)
	be := newCountingBackend(t, delay)
	auth := backendauth.None{}
	ptu := &route.Backend{Name: "b", URL: be.srv.URL, Provisioned: true, Timeout: 2 * time.Second, Auth: auth}
	paygo := &route.Backend{Name: "p", URL: be.srv.URL, Timeout: 2 * time.Second, Auth: auth}
	m := &route.Model{Alias: "m", Targets: []route.Target{
		{Backend: ptu, Deployment: "ptu", Priority: 1, Weight: 1},
		{Backend: paygo, Deployment: "paygo", Priority: 2, Weight: 1}}}
	opt := f.d.opt
	opt.Policies = map[string]Policy{"m": {Targets: allowed, Threshold: 0.7}}
	f.d = NewDrainer(f.st, f.q, models{m}, f.d.fwd, loads, f.d.log, opt)
	return f, be
}

var (
	keyPTU   = utilization.Key{Backend: "b", Deployment: "ptu"}
	keyPaygo = utilization.Key{Backend: "p", Deployment: "paygo"}
)

// TestJobsOnlyOnAllowedTargets: a busy provisioned deployment holds jobs
// back; they never fall over to pay-as-you-go, which the policy does not
// allow, however idle it is.
func TestJobsOnlyOnAllowedTargets(t *testing.T) {
	loads := &perDeployment{v: map[string]float64{"ptu": 0.85, "paygo": 0}}
	f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU}, 0)
	for range 5 {
		f.submit(t, "")
	}
	st, _ := f.d.Drain(context.Background())
	if be.count("ptu")+be.count("paygo") != 0 || st.StoppedBy != "pool busy" {
		t.Fatalf("busy PTU: round %v, calls ptu %d paygo %d; want none", st, be.count("ptu"), be.count("paygo"))
	}
	loads.set("ptu", 0.1)
	f.clock.Advance(2 * time.Second)
	st, _ = f.d.Drain(context.Background())
	if st.Succeeded != 5 || be.count("ptu") != 5 || be.count("paygo") != 0 {
		t.Errorf("idle PTU: round %v, calls ptu %d paygo %d; want 5 on ptu", st, be.count("ptu"), be.count("paygo"))
	}
}

// TestUnknownProbesOneAtATime: with no fresh signal one job runs, as a
// probe; an answer that brings no signal either counts as busy, so the next
// probe waits: twice ProbeBackoff after the first such probe (5s doubled),
// twice as long after each further one. A reading
// below the threshold after a probe lets the rest run.
func TestUnknownProbesOneAtATime(t *testing.T) {
	loads := &perDeployment{v: map[string]float64{}}
	f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU}, 30*time.Millisecond)
	for range 4 {
		f.submit(t, "")
	}
	f.d.opt.Concurrency = 8
	st, _ := f.d.Drain(context.Background())
	if st.Succeeded != 1 || st.Rescheduled != 1 || be.peak.Load() != 1 {
		t.Fatalf("unknown: round %v, peak %d; want one probe, then the rest held back", st, be.peak.Load())
	}
	f.clock.Advance(2 * time.Second) // past BusyDelay, inside the backoff (10s)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 || be.count("ptu") != 1 {
		t.Fatalf("silence right after a silent probe: round %v, calls %d; want no probe yet", st, be.count("ptu"))
	}
	f.clock.Advance(9 * time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 1 || be.count("ptu") != 2 {
		t.Fatalf("after the backoff: round %v; want one more probe", st)
	}
	// The second silent probe doubled the backoff to 20 s.
	f.clock.Advance(12 * time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 {
		t.Fatalf("inside the doubled backoff: round %v; want no probe", st)
	}
	// A fresh reading below the threshold: everything left runs.
	loads.set("ptu", 0.1)
	f.clock.Advance(2 * time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 2 {
		t.Errorf("idle reading: round %v; want the last 2 jobs", st)
	}
}

// TestThrottleCoolsOnlyThatDeployment: a 429 on one allowed deployment
// moves the round to the other; it does not end the round.
func TestThrottleCoolsOnlyThatDeployment(t *testing.T) {
	loads := &perDeployment{v: map[string]float64{"ptu": 0.1, "paygo": 0.2}}
	f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU, keyPaygo}, 0)
	be.status["ptu"] = 429
	for range 6 {
		f.submit(t, "")
	}
	f.d.opt.Concurrency = 1
	st, _ := f.d.Drain(context.Background())
	if be.count("ptu") != 1 || be.count("paygo") != 5 || st.Succeeded != 5 || st.Rescheduled != 1 {
		t.Errorf("round %v, calls ptu %d paygo %d; want one 429 on ptu, the other 5 on paygo", st, be.count("ptu"), be.count("paygo"))
	}
}

// TestConcurrencyFollowsHeadroom: near the threshold one job at a time;
// idle, up to Concurrency.
func TestConcurrencyFollowsHeadroom(t *testing.T) {
	for _, tt := range []struct {
		util     float64
		min, max int32
	}{{0.65, 1, 1}, {0, 3, 8}} {
		loads := &perDeployment{v: map[string]float64{"ptu": tt.util}}
		f, be := twoTargetFixture(t, loads, []utilization.Key{keyPTU}, 150*time.Millisecond)
		f.d.opt.Concurrency = 8
		for range 16 {
			f.submit(t, "")
		}
		if st, _ := f.d.Drain(context.Background()); st.Succeeded != 16 {
			t.Fatalf("util %v: round %v", tt.util, st)
		}
		// Idle, the cap is 8; how many overlap also depends on how fast
		// the round reads jobs, so only "well above 1" is asserted.
		if got := be.peak.Load(); got < tt.min || got > tt.max {
			t.Errorf("util %.0f%%: peak concurrency %d, want %d..%d", 100*tt.util, got, tt.min, tt.max)
		}
	}
}

// TestBusyHeaderSampleEndsAtItsReset: a header sample that read busy says
// so only until its rate-limit window resets (x-ratelimit-reset-*): from
// the reset on the deployment reads free, however young the sample and
// whatever the probe backoff, and the backlog runs without a probe.
func TestBusyHeaderSampleEndsAtItsReset(t *testing.T) {
	var f *fixture
	var sample utilization.Reading // what the last response's headers said
	local := func(utilization.Key) (utilization.Reading, bool) { return sample, sample.Source != "" }
	now := func() time.Time { return f.clock.Now() }
	sig := utilization.New(local, nil, nil, utilization.Options{Now: now}) // header max age 5s
	f, be := twoTargetFixture(t, sig, []utilization.Key{keyPTU}, 0)
	f.d.opt.ProbeBackoff = 5 * time.Second
	f.d.opt.Concurrency = 4
	for range 4 {
		f.submit(t, "")
	}
	// Traffic took the deployment to 90%; its window resets in 2s.
	sample = utilization.Reading{Percent: 90, Source: utilization.SourceHeaders, At: f.clock.Now(), Until: f.clock.Now().Add(2 * time.Second)}
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 || be.count("ptu") != 0 {
		t.Fatalf("busy sample: round %v, calls %d; want none", st, be.count("ptu"))
	}
	f.clock.Advance(1500 * time.Millisecond)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 0 {
		t.Fatalf("busy sample before its reset: round %v; want none", st)
	}
	// 2.5s on: the sample is young (max age 5s) and the backoff (5s) not
	// over, but its window has reset: the deployment is free.
	f.clock.Advance(time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 4 || be.count("ptu") != 4 {
		t.Fatalf("past the sample's reset: round %v, calls %d; want all 4 jobs", st, be.count("ptu"))
	}
	if u, _ := sig.Used(keyPTU); u.Percent != 0 || u.Source != utilization.SourceHeaders {
		t.Errorf("reading the drain used past the reset: %+v; want 0%% from the headers", u)
	}
}
