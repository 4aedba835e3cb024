package sim

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const limitedChat = "/openai/deployments/limited/chat/completions?api-version=2024-10-21"

// chatBody is 21 prompt tokens; without a cap admission charges 21 + 1000.
const chatEstimate = 21 + defaultOutputCap

func withCap(maxTokens string) string {
	return `{"max_tokens":` + maxTokens + `,` + chatBody[1:]
}

// step is one request in a rate-limit scenario.
type step struct {
	advance       time.Duration // moved on the fake clock before the request
	body          string
	wantStatus    int
	wantHeaders   map[string]string
	absentHeaders []string
}

func runSteps(t *testing.T, do func(t *testing.T, body string) *http.Response, clock *fakeClock, steps []step) {
	t.Helper()
	for i, st := range steps {
		clock.Advance(st.advance)
		resp := do(t, st.body)
		body := readAll(t, resp)
		if resp.StatusCode != st.wantStatus {
			t.Fatalf("step %d: status: got %d, want %d: %s", i, resp.StatusCode, st.wantStatus, body)
		}
		for h, want := range st.wantHeaders {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("step %d: %s: got %q, want %q", i, h, got, want)
			}
		}
		for _, h := range st.absentHeaders {
			if got := resp.Header.Get(h); got != "" {
				t.Errorf("step %d: %s: got %q, want no header", i, h, got)
			}
		}
		if st.wantStatus == http.StatusTooManyRequests {
			want := `{"error":{"code":"429","message":"Rate limit is exceeded. Try again in ` + resp.Header.Get("retry-after") + ` seconds."}}`
			if string(body) != want {
				t.Errorf("step %d: 429 body: got %s, want %s", i, body, want)
			}
		}
	}
}

func TestStandardRateLimits(t *testing.T) {
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	tests := []struct {
		name  string
		steps []step
	}{
		{"rpm", []step{
			{body: chatBody, wantStatus: 200, wantHeaders: map[string]string{
				"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2",
				"x-ratelimit-limit-tokens": "4000", "x-ratelimit-remaining-tokens": itoa(4000 - chatEstimate)}},
			{advance: time.Second, body: chatBody, wantStatus: 200, wantHeaders: map[string]string{"x-ratelimit-remaining-requests": "1"}},
			{advance: time.Second, body: chatBody, wantStatus: 200, wantHeaders: map[string]string{
				"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": itoa(4000 - 3*chatEstimate)}},
			// The window is 10 s and the first request was 2 s ago: 8 s to wait.
			{body: chatBody, wantStatus: 429, wantHeaders: map[string]string{
				"retry-after": "8", "retry-after-ms": "8000", "x-ratelimit-remaining-requests": "0"}},
			{advance: 7999 * time.Millisecond, body: chatBody, wantStatus: 429, wantHeaders: map[string]string{
				"retry-after": "1", "retry-after-ms": "1"}},
			{advance: time.Millisecond, body: chatBody, wantStatus: 200, wantHeaders: map[string]string{"x-ratelimit-remaining-requests": "0"}},
		}},
		{"tpm", []step{
			{body: withCap("3000"), wantStatus: 200, wantHeaders: map[string]string{"x-ratelimit-remaining-tokens": itoa(4000 - 21 - 3000)}},
			{advance: 3 * time.Second, body: withCap("1000"), wantStatus: 429, wantHeaders: map[string]string{
				"retry-after": "7", "retry-after-ms": "7000", "x-ratelimit-remaining-tokens": itoa(4000 - 21 - 3000)}},
			{body: withCap("900"), wantStatus: 200, wantHeaders: map[string]string{"x-ratelimit-remaining-tokens": itoa(4000 - 21 - 3000 - 21 - 900)}},
			{advance: 7 * time.Second, body: withCap("1000"), wantStatus: 200},
		}},
		{"larger than the whole budget waits for an empty window", []step{
			{body: withCap("100"), wantStatus: 200},
			{advance: time.Second, body: withCap("5000"), wantStatus: 429, wantHeaders: map[string]string{"retry-after-ms": "9000"}},
			{advance: 9 * time.Second, body: withCap("5000"), wantStatus: 200, wantHeaders: map[string]string{"x-ratelimit-remaining-tokens": "0"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv, clock := newTestServer(t, testConfig())
			runSteps(t, func(t *testing.T, body string) *http.Response { return post(t, srv, limitedChat, body) }, clock, tt.steps)
		})
	}
}

func TestUnlimitedHasNoRateLimitHeaders(t *testing.T) {
	_, srv, _ := newTestServer(t, testConfig())
	resp := post(t, srv, classicChat, chatBody)
	for _, h := range []string{"x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "azure-openai-deployment-utilization"} {
		if got := resp.Header.Get(h); got != "" {
			t.Errorf("%s: got %q, want none on an unlimited deployment", h, got)
		}
	}
}

func TestProvisionedUtilization(t *testing.T) {
	long := `{"max_tokens":896,"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	steps := []step{
		// 21 prompt + 979 cap = 1000 of 5000.
		{body: withCap("979"), wantStatus: 200, wantHeaders: map[string]string{"azure-openai-deployment-utilization": "20.0%"},
			absentHeaders: []string{"x-ratelimit-remaining-tokens", "x-ratelimit-remaining-requests"}},
		// 1256 prompt - 1152 cached + 896 cap = 1000: PTU admission does not charge cached tokens.
		{advance: time.Second, body: long, wantStatus: 200, wantHeaders: map[string]string{"azure-openai-deployment-utilization": "40.0%"}},
		{advance: time.Second, body: withCap("2979"), wantStatus: 200, wantHeaders: map[string]string{"azure-openai-deployment-utilization": "100.0%"}},
		// Full: fast-fail until the first request leaves the 10 s window.
		{advance: time.Second, body: withCap("10"), wantStatus: 429, wantHeaders: map[string]string{
			"azure-openai-deployment-utilization": "100.0%", "retry-after-ms": "7000", "retry-after": "7"}},
		{advance: 7 * time.Second, body: withCap("10"), wantStatus: 200, wantHeaders: map[string]string{"azure-openai-deployment-utilization": "80.6%"}},
	}
	_, srv, clock := newTestServer(t, testConfig())
	runSteps(t, func(t *testing.T, body string) *http.Response {
		return post(t, srv, "/openai/deployments/ptu/chat/completions?api-version=2024-10-21", body)
	}, clock, steps)
}

func TestResetClearsWindows(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	for range 3 {
		post(t, srv, limitedChat, chatBody)
	}
	if resp := post(t, srv, limitedChat, chatBody); resp.StatusCode != 429 {
		t.Fatalf("status: got %d, want 429", resp.StatusCode)
	}
	s.Reset()
	if resp := post(t, srv, limitedChat, chatBody); resp.StatusCode != 200 {
		t.Fatalf("status after Reset: got %d, want 200", resp.StatusCode)
	}
}

func TestRejectedRequestsAreNotCounted(t *testing.T) {
	s, srv, _ := newTestServer(t, testConfig())
	for range 5 {
		post(t, srv, limitedChat, chatBody)
	}
	if got, want := s.Usage()["limited"].Requests, int64(3); got != want {
		t.Errorf("Usage requests: got %d, want %d", got, want)
	}
}

// TestBackgroundLoad: traffic that bypasses the gateway takes its share of
// the budget in admission and in the utilization header.
func TestBackgroundLoad(t *testing.T) {
	l := newLimiter(Deployment{Provisioned: true, PTUCapacityTPM: 1000, BackgroundLoad: 0.8}, time.Minute, time.Minute)
	now := time.Unix(0, 0)
	st, ok := l.admit(now, 100)
	if !ok || st.tokens != 900 {
		t.Fatalf("first: %+v %v; want admitted, 900 tokens in use", st, ok)
	}
	if _, ok := l.admit(now, 200); ok {
		t.Error("a request past the budget left by the background load was admitted")
	}
	if avg, _ := l.grainStats(now.Add(-time.Second), time.Second); avg < 80 {
		t.Errorf("metric average %v, want at least the background 80%%", avg)
	}
}

// TestResetHeaders: x-ratelimit-reset-* is the time until the newest
// admission leaves the window (seconds, millisecond decimals); 0 once empty.
func TestResetHeaders(t *testing.T) {
	l := newLimiter(Deployment{TPM: 1000, RPM: 10}, 2*time.Second, time.Minute)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.admit(t0, 100)
	st, _ := l.admit(t0.Add(750*time.Millisecond), 100)
	h := http.Header{}
	l.setHeaders(h, st)
	if got := h.Get("x-ratelimit-reset-tokens"); got != "2" {
		t.Errorf("reset-tokens right after an admission: %q, want 2", got)
	}
	h = http.Header{}
	l.setHeaders(h, l.peek(t0.Add(time.Second)))
	if got, gotR := h.Get("x-ratelimit-reset-tokens"), h.Get("x-ratelimit-reset-requests"); got != "1.75" || gotR != "1.75" {
		t.Errorf("reset 1s in: tokens %q requests %q, want 1.75", got, gotR)
	}
	h = http.Header{}
	l.setHeaders(h, l.peek(t0.Add(3*time.Second)))
	if got := h.Get("x-ratelimit-reset-tokens"); got != "0" {
		t.Errorf("reset once the window is empty: %q, want 0", got)
	}
}
