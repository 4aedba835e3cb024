package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/callback"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/queue/embedded"
	"github.com/foundry-gateway/gateway/internal/queue/queuetest"
	"github.com/foundry-gateway/gateway/internal/route"
	storeembedded "github.com/foundry-gateway/gateway/internal/store/embedded"
	"github.com/foundry-gateway/gateway/internal/utilization"
)

// backend is a fake model backend whose next answers a test scripts.
type backend struct {
	srv   *httptest.Server
	mu    sync.Mutex
	plan  []int // statuses to answer in order; 200 after the plan runs out
	calls atomic.Int32
	// lastBody is the size of the last request body received.
	lastBody atomic.Int64
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		b.lastBody.Store(n)
		b.calls.Add(1)
		b.mu.Lock()
		status := 200
		if len(b.plan) > 0 {
			status, b.plan = b.plan[0], b.plan[1:]
		}
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if status == 429 {
			w.Header().Set("Retry-After-Ms", "3000")
		}
		w.WriteHeader(status)
		if status == 200 {
			io.WriteString(w, `{"id":"chatcmpl-1","choices":[{"message":{"content":"done"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`)
			return
		}
		io.WriteString(w, `{"error":{"code":"x","message":"status"}}`)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) script(s ...int) { b.mu.Lock(); b.plan = s; b.mu.Unlock() }

type models struct{ m *route.Model }

func (m models) Model(alias string) (*route.Model, error) {
	if alias != "m" {
		return nil, route.ErrUnknownModel
	}
	return m.m, nil
}

// gauge is a fake Loads: every deployment reads v (a share), from the
// header source, sampled now; v < 0 reads unknown.
type gauge struct {
	v     atomic.Value
	calls atomic.Int32
}

func (g *gauge) Utilization(utilization.Key, float64) utilization.Reading {
	g.calls.Add(1)
	v, _ := g.v.Load().(float64)
	if v < 0 {
		return utilization.Reading{Source: utilization.SourceUnknown}
	}
	return utilization.Reading{Percent: 100 * v, Source: utilization.SourceHeaders, At: time.Now()}
}

func (g *gauge) Refresh(context.Context) error { return nil }

type fixture struct {
	st    *Store
	q     *embedded.Queue
	clock *queuetest.Clock
	be    *backend
	d     *Drainer
	g     *gauge
	done  atomic.Int32
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	clock := queuetest.NewClock()
	ss, err := storeembedded.Open(filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	tb, _ := ss.Table(context.Background(), Table)
	q, err := embedded.Open(filepath.Join(dir, "q.db"), embedded.Options{Clock: clock, MaxDeliveryCount: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	be := newBackend(t)
	m := &route.Model{Alias: "m", Targets: []route.Target{{Backend: &route.Backend{Name: "b", URL: be.srv.URL, Timeout: 2 * time.Second, Auth: backendauth.None{}}, Deployment: "d", Priority: 1, Weight: 1}}}
	px := proxy.New(proxy.NewTransport(), slog.New(slog.DiscardHandler), proxy.Options{MaxAttempts: 1})
	f := &fixture{st: NewStore(tb, clock.Now), q: q, clock: clock, be: be, g: &gauge{}}
	f.d = NewDrainer(f.st, q, models{m}, px, f.g, slog.New(slog.DiscardHandler), DrainOptions{MaxAttempts: 3, CallbackSecret: "s3cret",
		Policies: map[string]Policy{"m": {Targets: []utilization.Key{{Backend: "b", Deployment: "d"}}, Threshold: 0.7}}})
	f.d.OnDone = func(context.Context, *Job, proxy.Result) { f.done.Add(1) }
	return f
}

func (f *fixture) submit(t *testing.T, callback string) *Job {
	t.Helper()
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	req, err := openai.Parse(openai.OpChat, openai.StyleV1, "", "", body)
	if err != nil {
		t.Fatal(err)
	}
	j, err := Submit(context.Background(), f.st, f.q, Submission{KeyID: "k1", Team: "t", App: "a", Req: req, Body: body, CallbackURL: callback})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (f *fixture) get(t *testing.T, id string) *Job {
	t.Helper()
	j, err := f.st.Get(context.Background(), "k1", id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestDrainSucceedsOnceEvenWhenDeliveredTwice(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	j := f.submit(t, "")
	if got := f.get(t, j.ID).Status; got != StatusQueued {
		t.Fatalf("after submit: %s", got)
	}
	st, err := f.d.Drain(ctx)
	if err != nil || st.Succeeded != 1 {
		t.Fatalf("round %v, %v", st, err)
	}
	got := f.get(t, j.ID)
	if got.Status != StatusSucceeded || got.ResultStatus != 200 || string(got.ResultBody) == "" || got.Attempts != 1 {
		t.Fatalf("job %+v", got)
	}
	var body map[string]any
	if err := json.Unmarshal(got.ResultBody, &body); err != nil || body["id"] != "chatcmpl-1" {
		t.Errorf("result body %s", got.ResultBody)
	}
	// The same message again (at-least-once): no second backend call, no second usage.
	_ = f.q.Send(ctx, queueMsg(j))
	st, _ = f.d.Drain(ctx)
	if st.Skipped != 1 || f.be.calls.Load() != 1 || f.done.Load() != 1 {
		t.Errorf("redelivery: round %v, backend calls %d, usage callbacks %d; want skipped, 1, 1", st, f.be.calls.Load(), f.done.Load())
	}
	if again := f.get(t, j.ID); !again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Error("a redelivery rewrote a finished job")
	}
}

func TestDrainOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		script    []int
		rounds    int
		advance   time.Duration
		want      Status
		wantCode  int
		wantCalls int32
	}{
		{"429 then ok after the wait", []int{429}, 2, 4 * time.Second, StatusSucceeded, 200, 2},
		{"400 fails at once", []int{400}, 1, 0, StatusFailed, 400, 1},
		{"500 retried then ok", []int{500}, 2, 3 * time.Second, StatusSucceeded, 200, 2},
		{"500 until max attempts", []int{500, 500, 500}, 3, 10 * time.Second, StatusFailed, 500, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.be.script(tt.script...)
			j := f.submit(t, "")
			for i := 0; i < tt.rounds; i++ {
				if _, err := f.d.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
				f.clock.Advance(tt.advance)
			}
			got := f.get(t, j.ID)
			if got.Status != tt.want || got.ResultStatus != tt.wantCode || f.be.calls.Load() != tt.wantCalls {
				t.Errorf("job %s result %d after %d backend calls; want %s %d %d (error %q)", got.Status, got.ResultStatus, f.be.calls.Load(), tt.want, tt.wantCode, tt.wantCalls, got.Error)
			}
			if msgs, _ := f.q.Receive(context.Background(), 10, 0); len(msgs) != 0 {
				t.Errorf("%d messages left on the queue", len(msgs))
			}
		})
	}
}

func TestThrottleCoolsTheDeploymentAndWaits(t *testing.T) {
	f := newFixture(t)
	f.be.script(429)
	f.submit(t, "")
	f.submit(t, "")
	f.d.opt.Concurrency = 1
	st, _ := f.d.Drain(context.Background())
	// The 429 cools the one allowed deployment: the second job finds it
	// cooling and waits instead of being sent into the throttle.
	if st.StoppedBy != "pool busy" || st.Received != 2 || f.be.calls.Load() != 1 || st.Rescheduled != 2 {
		t.Errorf("round %v after %d backend calls; want both rescheduled after one call, stopped as busy", st, f.be.calls.Load())
	}
	f.clock.Advance(3100 * time.Millisecond)
	st, _ = f.d.Drain(context.Background())
	if st.Succeeded != 2 {
		t.Errorf("after the wait %v", st)
	}
}

func TestBusyPoolWaits(t *testing.T) {
	f := newFixture(t)
	f.g.v.Store(0.9)
	j := f.submit(t, "")
	st, _ := f.d.Drain(context.Background())
	if st.Rescheduled != 1 || f.be.calls.Load() != 0 || f.get(t, j.ID).Status != StatusQueued {
		t.Fatalf("busy: %v calls %d", st, f.be.calls.Load())
	}
	f.g.v.Store(0.2)
	f.clock.Advance(11 * time.Second)
	if st, _ := f.d.Drain(context.Background()); st.Succeeded != 1 {
		t.Errorf("idle: %v", st)
	}
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	j := f.submit(t, "")
	if _, err := f.st.Cancel(context.Background(), "k1", j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.Cancel(context.Background(), "k1", j.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("second cancel: %v", err)
	}
	st, _ := f.d.Drain(context.Background())
	if st.Skipped != 1 || f.be.calls.Load() != 0 || f.get(t, j.ID).Status != StatusCancelled {
		t.Errorf("cancelled job ran: %v", st)
	}
	if _, err := f.st.Get(context.Background(), "other-key", j.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another key sees the job: %v", err)
	}
}

// loopbackCallbacks lets the fixture's drainer call receivers on 127.0.0.1
// (the dev-mode allow-list).
func (f *fixture) loopbackCallbacks(t *testing.T) {
	t.Helper()
	c, err := callback.Policy{Allow: []string{"127.0.0.1/32"}, AllowHTTP: true}.Client(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	f.d.opt.CallbackClient = c
}

// TestCallbackSigned (issue #16 item 2): the callback carries a timestamped
// signature over "t.body"; a failed delivery is retried through the queue
// with backoff, and the job shows where delivery stands.
func TestCallbackSigned(t *testing.T) {
	var gotSig, gotBody string
	var hits atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if hits.Add(1) == 1 {
			w.WriteHeader(503) // first try fails: retried later
			return
		}
		gotSig, gotBody = r.Header.Get(SignatureHeader), string(b)
	}))
	defer cb.Close()
	f := newFixture(t)
	f.loopbackCallbacks(t)
	j := f.submit(t, cb.URL)
	if _, err := f.d.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID).CallbackState; hits.Load() != 1 || !strings.HasPrefix(got, "retrying: attempt 1 failed (HTTP 503); next at ") {
		t.Fatalf("after the first round: %d hits, callback state %q; want one failed try, rescheduled", hits.Load(), got)
	}
	f.clock.Advance(10 * time.Second) // before the backoff (at least 15 s): nothing
	_, _ = f.d.Drain(context.Background())
	if hits.Load() != 1 {
		t.Fatalf("retried after 10 s: %d hits", hits.Load())
	}
	f.clock.Advance(2 * time.Minute)
	if _, err := f.d.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := callback.Verify("s3cret", gotSig, []byte(gotBody), f.clock.Now(), 5*time.Minute); err != nil || !strings.HasPrefix(gotSig, "t=") {
		t.Errorf("signature %q: %v", gotSig, err)
	}
	var c Callback
	_ = json.Unmarshal([]byte(gotBody), &c)
	if c.ID != j.ID || c.Status != StatusSucceeded {
		t.Errorf("callback %+v", c)
	}
	if got := f.get(t, j.ID).CallbackState; got != "delivered after 2 attempts" {
		t.Errorf("callback state %q", got)
	}
}

// TestCallbackGivesUpWithoutEchoingErrors: a receiver that never answers
// is retried until CallbackRetryFor, and the job's state never shows the
// connection error (it would map open ports).
func TestCallbackGivesUpWithoutEchoingErrors(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String() + "/cb"
	l.Close()
	f := newFixture(t)
	f.loopbackCallbacks(t)
	f.d.opt.CallbackRetryFor = 3 * time.Hour
	j := f.submit(t, dead)
	var states []string
	for i := 0; i < 40; i++ {
		_, _ = f.d.Drain(context.Background())
		st := f.get(t, j.ID).CallbackState
		states = append(states, st)
		if strings.HasPrefix(st, "failed") {
			break
		}
		f.clock.Advance(90 * time.Minute) // past the largest backoff (1 h + 50%)
	}
	last := states[len(states)-1]
	if !strings.HasPrefix(last, "failed: not accepted after ") || len(states) < 3 {
		t.Fatalf("states %q: want retries, then failed", states)
	}
	for _, st := range states {
		if strings.Contains(st, "refused") && strings.Contains(st, "dial") || strings.Contains(st, "127.0.0.1") || strings.Contains(st, "connect:") {
			t.Errorf("state %q echoes the connection error", st)
		}
		if !strings.Contains(st, "connection failed") {
			t.Errorf("state %q: want the generic reason", st)
		}
	}
}

// TestCallbackRefusedAtDialTime: without an allow-list the default client
// refuses a loopback receiver when it dials (DNS rebinding defence).
func TestCallbackRefusedAtDialTime(t *testing.T) {
	var hits atomic.Int32
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer cb.Close()
	f := newFixture(t) // default client: public addresses only
	j := f.submit(t, cb.URL)
	_, _ = f.d.Drain(context.Background())
	if st := f.get(t, j.ID).CallbackState; hits.Load() != 0 || !strings.Contains(st, "destination refused") {
		t.Errorf("hits %d, state %q: want refused at dial time", hits.Load(), st)
	}
}

func TestCallbackBackoff(t *testing.T) {
	if d := callbackBackoff(1, 0.5); d != 30*time.Second {
		t.Errorf("first: %v", d)
	}
	if d := callbackBackoff(20, 0.5); d != time.Hour {
		t.Errorf("capped: %v", d)
	}
	if lo, hi := callbackBackoff(3, 0), callbackBackoff(3, 0.999); lo != 60*time.Second || hi < 179*time.Second {
		t.Errorf("jitter range %v..%v, want 60s..180s", lo, hi)
	}
}

func TestLargeResultChunked(t *testing.T) {
	f := newFixture(t)
	j := &Job{ID: newID(), KeyID: "k1", Model: "m"}
	if err := f.st.Create(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 300<<10)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	if _, _, err := f.st.Update(context.Background(), "k1", j.ID, func(j *Job) bool { j.ResultBody = big; return true }); err != nil {
		t.Fatal(err)
	}
	if got := f.get(t, j.ID).ResultBody; string(got) != string(big) {
		t.Errorf("result of %d bytes came back as %d", len(big), len(got))
	}
}

// A job keeps its submitter's data-residency regions: it is never served
// from a backend outside them, however long it waits on the queue.
func TestDrainKeepsRegions(t *testing.T) {
	tests := []struct {
		name      string
		regions   []string
		wantCalls int32
	}{
		{"no regions", nil, 1},
		{"backend's region", []string{"eastus"}, 1},
		{"other region only", []string{"westeurope"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			m, _ := f.d.models.Model("m")
			m.Targets[0].Backend.Region = "eastus"
			body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
			req, err := openai.Parse(openai.OpChat, openai.StyleV1, "", "", body)
			if err != nil {
				t.Fatal(err)
			}
			j, err := Submit(context.Background(), f.st, f.q, Submission{KeyID: "k1", Team: "t", App: "a", Regions: tt.regions, Req: req, Body: body})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.d.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := f.be.calls.Load(); got != tt.wantCalls {
				t.Errorf("backend calls %d, want %d", got, tt.wantCalls)
			}
			if got := f.get(t, j.ID); tt.wantCalls == 0 && (got.Status != StatusFailed || got.ResultStatus != http.StatusForbidden) {
				t.Errorf("a job no allowed region can serve: %s %d, want failed 403", got.Status, got.ResultStatus)
			}
		})
	}
}

// A revoked submitter's queued jobs fail without reaching a backend; a
// failing check leaves them queued for a later round.
func TestDrainAuthorize(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus Status
		wantCode   int
		wantCalls  int32
	}{
		{"allowed", nil, StatusSucceeded, 200, 1},
		{"revoked", fmt.Errorf("key k1: %w", ErrRevoked), StatusFailed, http.StatusUnauthorized, 0},
		{"key store down", errors.New("store unreachable"), StatusQueued, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			var asked atomic.Int32
			f.d.Authorize = func(_ context.Context, j *Job) error {
				if j.KeyID == "k1" {
					asked.Add(1)
				}
				return tt.err
			}
			j := f.submit(t, "")
			_, _ = f.d.Drain(context.Background())
			got := f.get(t, j.ID)
			if got.Status != tt.wantStatus || got.ResultStatus != tt.wantCode || f.be.calls.Load() != tt.wantCalls || asked.Load() != 1 {
				t.Errorf("job %s %d, backend calls %d, asked %d; want %s %d, %d calls, asked once", got.Status, got.ResultStatus,
					f.be.calls.Load(), asked.Load(), tt.wantStatus, tt.wantCode, tt.wantCalls)
			}
		})
	}
}
