package utilization

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/sim"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

const account = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/sim"

// TestMetricsFromSimulator runs the real azmetrics client against the
// simulator's emulation of the getBatch API: load sent straight to the
// simulator shows up per deployment, a grain after it happened.
func TestMetricsFromSimulator(t *testing.T) {
	cfg, err := sim.ParseConfig([]byte(`window: 1s
metrics: { grain: 1s, delay: 1s }
deployments:
  - { name: ptu, model: gpt-4o-mini, provisioned: true, ptuCapacityTPM: 1000 }
  - { name: ptu-bg, model: gpt-4o-mini, provisioned: true, ptuCapacityTPM: 1000, backgroundLoad: 0.85 }
  - { name: paygo, model: gpt-4o-mini, tpm: 1000 }
`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	// Direct load on ptu: ~500 tokens per 1 s window (prompt + max_tokens 100).
	body := `{"model":"ptu","max_tokens":100,"messages":[{"role":"user","content":"` + strings.Repeat("x", 400) + `"}]}`
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			resp, err := http.Post(srv.URL+"/openai/v1/chat/completions", "application/json", strings.NewReader(body))
			if err == nil {
				resp.Body.Close()
			}
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	time.Sleep(2500 * time.Millisecond)
	defer func() { close(stop); <-loadDone }()
	client, err := NewClient(ClientOptions{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(client, map[string]string{"sim": account}, MetricsOptions{Grain: "PT1S", GrainDur: time.Second})
	if err := m.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	ptu, ok := m.Get(Key{"sim", "ptu"})
	// ~50-60% when the load keeps its pace; a loaded -race run sends fewer.
	if !ok || ptu.Source != SourceMetrics || ptu.Percent < 15 || ptu.Percent > 120 {
		t.Errorf("ptu metric: %+v %v; want the direct load (15-120%%)", ptu, ok)
	}
	if age := time.Since(ptu.At); age < 900*time.Millisecond || age > 4*time.Second {
		t.Errorf("ptu point ends %v ago; want about the 1 s delay", age)
	}
	bg, _ := m.Get(Key{"sim", "ptu-bg"})
	if bg.Percent < 84 || bg.Percent > 86 {
		t.Errorf("ptu-bg metric %+v; want the background load 85%%", bg)
	}
	if _, ok := m.Get(Key{"sim", "paygo"}); ok {
		t.Error("a standard deployment has no provisioned utilization metric")
	}
	t.Logf("metrics: ptu %.1f%% at %v, ptu-bg %.1f%%", ptu.Percent, ptu.At.Format(time.RFC3339), bg.Percent)

	// Down and slow: Poll fails and keeps the previous points.
	for _, fault := range []string{"down", "slow"} {
		resp, err := http.Post(srv.URL+"/sim/metrics-fault?fault="+fault, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		m.opt.Timeout = 300 * time.Millisecond
		if err := m.Poll(context.Background()); err == nil {
			t.Errorf("metrics %s: Poll succeeded", fault)
		}
		if again, _ := m.Get(Key{"sim", "ptu"}); again != ptu {
			t.Errorf("metrics %s: the previous point changed: %+v", fault, again)
		}
	}
}

// TestSignalsNewestFreshWins: the newest fresh reading decides; nothing
// fresh is unknown.
func TestSignalsNewestFreshWins(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	k := Key{"b", "d"}
	type src struct {
		r  Reading
		ok bool
	}
	tests := []struct {
		name          string
		local, metric src
		want          Source
		wantPct       float64
	}{
		{"nothing", src{}, src{}, SourceUnknown, 0},
		{"stale header only", src{Reading{Percent: 50, Source: SourceHeaders, At: now.Add(-6 * time.Second)}, true}, src{}, SourceUnknown, 0},
		{"fresh header", src{Reading{Percent: 50, Source: SourceHeaders, At: now.Add(-time.Second)}, true}, src{}, SourceHeaders, 50},
		{"metric newer than stale-ish header", src{Reading{Percent: 10, Source: SourceHeaders, At: now.Add(-4 * time.Second)}, true},
			src{Reading{Percent: 85, Source: SourceMetrics, At: now.Add(-2 * time.Second)}, true}, SourceMetrics, 85},
		{"header newer than metric", src{Reading{Percent: 10, Source: SourceHeaders, At: now.Add(-time.Second)}, true},
			src{Reading{Percent: 85, Source: SourceMetrics, At: now.Add(-70 * time.Second)}, true}, SourceHeaders, 10},
		{"old metric only", src{}, src{Reading{Percent: 85, Source: SourceMetrics, At: now.Add(-4 * time.Minute)}, true}, SourceUnknown, 0},
		{"unknown capacity", src{Reading{Percent: -1, Source: SourceHeaders, At: now}, true}, src{}, SourceUnknown, 0},
		// A young header sample whose rate-limit window has reset: the
		// deployment reads 0% from the reset on, however busy the sample.
		{"header past its window's reset", src{Reading{Percent: 90, Source: SourceHeaders, At: now.Add(-time.Second), Until: now.Add(-time.Millisecond)}, true}, src{}, SourceHeaders, 0},
		{"header before its window's reset", src{Reading{Percent: 90, Source: SourceHeaders, At: now.Add(-time.Second), Until: now.Add(time.Second)}, true}, src{}, SourceHeaders, 90},
		// The reset reading is fresh for the max age from the reset.
		{"header reset long ago", src{Reading{Percent: 90, Source: SourceHeaders, At: now.Add(-8 * time.Second), Until: now.Add(-6 * time.Second)}, true}, src{}, SourceUnknown, 0},
		// A metric point older than the sample says nothing newer: the reset decides.
		{"older metric when the header's window has reset", src{Reading{Percent: 90, Source: SourceHeaders, At: now.Add(-time.Second), Until: now}, true},
			src{Reading{Percent: 85, Source: SourceMetrics, At: now.Add(-30 * time.Second)}, true}, SourceHeaders, 0},
		// A metric point taken after the sample saw traffic the sample did
		// not (say, straight to the account): it wins over the reset.
		{"newer metric when the header's window has reset", src{Reading{Percent: 90, Source: SourceHeaders, At: now.Add(-2 * time.Second), Until: now.Add(-time.Second)}, true},
			src{Reading{Percent: 80, Source: SourceMetrics, At: now.Add(-1500 * time.Millisecond)}, true}, SourceMetrics, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(func(Key) (Reading, bool) { return tt.local.r, tt.local.ok }, nil, nil, Options{Now: func() time.Time { return now }})
			if tt.metric.ok {
				s.metrics = fixedMetrics{tt.metric.r}
			}
			got := s.Utilization(k, 0.7)
			if got.Source != tt.want || (got.Known() && got.Percent != tt.wantPct) {
				t.Errorf("got %+v, want %s %v", got, tt.want, tt.wantPct)
			}
			if u, _ := s.Used(k); u.Reading != got || u.Threshold != 0.7 {
				t.Errorf("Used: %+v", u)
			}
		})
	}
}

type fixedMetrics struct{ r Reading }

func (f fixedMetrics) Get(Key) (Reading, bool) { return f.r, true }

// TestFleetOnAzurite: two instances publish to the DeploymentLoad table;
// each sees the other's samples, a publish without news writes nothing.
func TestFleetOnAzurite(t *testing.T) {
	inst := azurite.Start(t)
	ctx := context.Background()
	st, err := tables.NewFromConnectionString(inst.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	tb, err := st.Table(ctx, "t"+fmt.Sprint(time.Now().UnixNano()%1e6)+Table)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Millisecond)
	a := NewFleet(tb, func() map[Key]Reading {
		return map[Key]Reading{{"sim", "ptu"}: {Percent: 85, Source: SourceHeaders, At: at, Until: at.Add(1500 * time.Millisecond)}}
	}, FleetOptions{Instance: "a", ReadEvery: time.Nanosecond})
	b := NewFleet(tb, func() map[Key]Reading {
		return map[Key]Reading{{"sim", "ptu"}: {Percent: 40, Source: SourceHeaders, At: at.Add(-time.Second)}, {"sim", "other"}: {Percent: -1, At: at}}
	}, FleetOptions{Instance: "b", ReadEvery: time.Nanosecond})
	for _, f := range []*Fleet{a, b} {
		if wrote, err := f.Publish(ctx); err != nil || !wrote {
			t.Fatalf("publish: %v %v", wrote, err)
		}
	}
	if wrote, _ := a.Publish(ctx); wrote {
		t.Error("a publish without new samples wrote the row again")
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, ok := b.Get(Key{"sim", "ptu"})
	if !ok || got.Percent != 85 || got.Source != SourceFleet || !got.At.Equal(at) || !got.Until.Equal(at.Add(1500*time.Millisecond)) {
		t.Errorf("b's view of ptu: %+v %v; want a's newer 85%% with its window's reset", got, ok)
	}
	// Past the reset, b reads the deployment free from a's sample alone.
	sig := New(nil, b, nil, Options{Now: func() time.Time { return at.Add(2 * time.Second) }})
	if r := sig.Utilization(Key{"sim", "ptu"}, 0.7); r.Source != SourceFleet || r.Percent != 0 || !r.At.Equal(at.Add(1500*time.Millisecond)) {
		t.Errorf("b's reading past a's reset: %+v; want 0%% from the fleet as of the reset", r)
	}
	sig = New(nil, b, nil, Options{Now: func() time.Time { return at.Add(time.Second) }})
	if r := sig.Utilization(Key{"sim", "ptu"}, 0.7); r.Percent != 85 {
		t.Errorf("b's reading before a's reset: %+v; want 85%%", r)
	}
	if _, ok := b.Get(Key{"sim", "other"}); ok {
		t.Error("a sample without a known capacity was published")
	}
}
