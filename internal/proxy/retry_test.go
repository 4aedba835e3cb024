package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/sim"
)

// simBackend is the simulator behind a steering wrapper: the next n
// requests carry x-sim-fault (and x-sim-retry-after-ms), the rest pass
// untouched. It records the arrival time of every request.
type simBackend struct {
	srv   *httptest.Server
	mu    sync.Mutex
	fault string
	ms    int
	n     int
	at    []time.Time
	hits  atomic.Int32
}

func newSimBackend(t testing.TB, simYAML string) *simBackend {
	t.Helper()
	cfg, err := sim.ParseConfig([]byte(simYAML))
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b := &simBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.at = append(b.at, time.Now())
		if b.n > 0 {
			b.n--
			r.Header.Set(sim.HeaderFault, b.fault)
			r.Header.Set(sim.HeaderRetryAfterMS, fmt.Sprint(b.ms))
		}
		b.mu.Unlock()
		s.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// arm makes the next n requests fail with fault (429: retry-after-ms ms).
func (b *simBackend) arm(fault string, ms, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fault, b.ms, b.n = fault, ms, n
}

// singleTarget is model "m" with one deployment on b, through route.New
// (live cooling and breaker, wall clock).
func singleTarget(t testing.TB, b *simBackend) *route.Model {
	t.Helper()
	c, err := config.Parse([]byte(fmt.Sprintf(`
backends:
  - {name: only, url: %q, region: swedencentral, auth: {none: true}}
models:
  m:
    targets:
      - {backend: only, deployment: gpt-4o-mini}
`, b.srv.URL)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := route.New(c, backendauth.For, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.Model("m")
	return m
}

const simOne = `deployments: [{name: gpt-4o-mini}]`

func simCall() Call {
	return Call{Req: openai.Request{Op: openai.OpChat, Model: "m"},
		Body: []byte(`{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)}
}

func TestSameTargetRetry(t *testing.T) {
	tests := []struct {
		name       string
		fault      string
		ms, n      int
		attempts   int
		wantStatus int
		wantHits   int32
		// wantGap is the least time between the failed attempt and the
		// retry (the wait asked for); 0 when there is no retry.
		wantGap time.Duration
	}{
		{"429 retry-after-ms 500: waited, then 200", "429", 500, 1, 3, 200, 2, 500 * time.Millisecond},
		{"429 retry-after 30s: above the maximum, at once", "429", 30000, 1, 3, 429, 1, 0},
		{"503 twice: backoff, third attempt 200", "503", 0, 2, 3, 200, 3, 100 * time.Millisecond},
		{"500 until the attempt cap", "500", 0, 5, 2, 500, 2, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newSimBackend(t, simOne)
			b.arm(tt.fault, tt.ms, tt.n)
			px := newProxy(Options{MaxAttempts: tt.attempts})
			start := time.Now()
			rec, res := forward(t, px, singleTarget(t, b), simCall())
			took := time.Since(start)
			if rec.Code != tt.wantStatus || b.hits.Load() != tt.wantHits || res.Attempts != int(tt.wantHits) {
				t.Fatalf("got %d after %d calls (%d attempts) %s, want %d after %d", rec.Code, b.hits.Load(), res.Attempts,
					rec.Body, tt.wantStatus, tt.wantHits)
			}
			t.Logf("%d after %d attempts in %v", rec.Code, res.Attempts, took.Round(time.Millisecond))
			if tt.wantGap > 0 {
				if gap := b.at[1].Sub(b.at[0]); gap < tt.wantGap {
					t.Errorf("retried %v after the failure, want at least %v", gap, tt.wantGap)
				}
			}
			if tt.wantStatus == 429 {
				if got := rec.Header().Get("Retry-After"); got != "30" {
					t.Errorf("got retry-after %q, want 30 passed to the client", got)
				}
				// Never hung: the client gets the 429 without any wait.
				if took >= 2*time.Second {
					t.Errorf("429 took %v, want it at once (below the 2s maximum wait)", took)
				}
			}
		})
	}
}

func TestRetryWaitEndsWithClient(t *testing.T) {
	b := newSimBackend(t, simOne)
	b.arm("429", 1500, 1)
	px := newProxy(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/openai/v1/chat/completions", nil).WithContext(ctx)
	start := time.Now()
	res := px.Forward(rec, req, singleTarget(t, b), simCall())
	if res.Status != 499 || rec.Body.Len() != 0 || b.hits.Load() != 1 {
		t.Fatalf("got status %d, body %q, %d backend calls; want 499, nothing written, 1 call", res.Status, rec.Body, b.hits.Load())
	}
	if took := time.Since(start); took >= 1500*time.Millisecond {
		t.Errorf("returned after %v, want the wait cut short by the client leaving", took)
	}
}

func TestAllCoolingWaitedOnce(t *testing.T) {
	b := newSimBackend(t, simOne)
	m := singleTarget(t, b)
	b.arm("429", 300, 1)
	// One attempt allowed: the 429 goes to the client and the deployment cools.
	if rec, _ := forward(t, newProxy(Options{MaxAttempts: 1}), m, simCall()); rec.Code != 429 {
		t.Fatalf("got %d, want the 429", rec.Code)
	}
	// The next call finds it cooling for less than the maximum wait: it
	// waits instead of answering 429, then is served.
	rec, res := forward(t, newProxy(Options{}), m, simCall())
	if rec.Code != 200 || res.Attempts != 1 || b.hits.Load() != 2 {
		t.Fatalf("got %d after %d attempts, %d backend calls; want 200, 1 attempt, 2 calls", rec.Code, res.Attempts, b.hits.Load())
	}
	if gap := b.at[1].Sub(b.at[0]); gap < 300*time.Millisecond {
		t.Errorf("second call reached the backend %v after the 429, want at least the 300ms it asked for", gap)
	}
	// Disabled (negative maximum): the gateway's own 429 at once.
	b.arm("429", 300, 1)
	forward(t, newProxy(Options{MaxAttempts: 1}), m, simCall())
	rec, _ = forward(t, newProxy(Options{MaxRetryWait: -1}), m, simCall())
	if rec.Code != 429 || !strings.Contains(rec.Body.String(), "rate_limit_error") || rec.Header().Get("Retry-After-Ms") == "" {
		t.Errorf("got %d %s, want the gateway's 429 with retry-after-ms", rec.Code, rec.Body)
	}
}

func TestLatencyRoutingPrefersFasterDeployment(t *testing.T) {
	b := newSimBackend(t, `deployments:
  - {name: fast, model: gpt-4o-mini, latency: {ttft: 50ms}}
  - {name: slow, model: gpt-4o-mini, latency: {ttft: 400ms}}`)
	c, err := config.Parse([]byte(fmt.Sprintf(`
backends:
  - {name: a, url: %[1]q, region: swedencentral, auth: {none: true}}
  - {name: b, url: %[1]q, region: swedencentral, auth: {none: true}}
models:
  m:
    routing: latency
    targets:
      - {backend: a, deployment: fast}
      - {backend: b, deployment: slow}
`, b.srv.URL)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	r, err := route.New(c, backendauth.For, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := r.Model("m")
	px := newProxy(Options{})
	const calls, workers = 45, 3
	var fast atomic.Int32
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < calls; i += workers {
				c := simCall()
				c.Caller = fmt.Sprintf("caller-%d", i) // many callers: stickiness does not decide
				rec := httptest.NewRecorder()
				res := px.Forward(rec, httptest.NewRequest(http.MethodPost, "/openai/v1/chat/completions", nil), m, c)
				if rec.Code != 200 {
					t.Errorf("call %d: got %d %s", i, rec.Code, rec.Body)
				}
				if res.Backend == "a" {
					fast.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	share := float64(fast.Load()) / calls
	t.Logf("%d of %d calls (%.0f%%) on the 50ms deployment", fast.Load(), calls, 100*share)
	if share < 0.8 {
		t.Errorf("got %.0f%% of calls on the 50ms deployment, want at least 80%%", 100*share)
	}
}
