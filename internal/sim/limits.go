package sim

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// limiter is the admission control of one deployment: a sliding window of
// admitted requests and the tokens charged for them.
//
// Standard deployments check RPM and TPM; provisioned ones check only
// tokens against PTUCapacityTPM and report utilization instead. Tokens are
// charged at admission with the estimate (prompt + output cap) and never
// corrected afterwards, which is how Azure meters TPM.
//
// A single request larger than the whole token budget is admitted into an
// empty window only; otherwise it could never succeed.
type limiter struct {
	window      time.Duration
	provisioned bool
	rpm, tpm    int64 // standard; 0 = unlimited
	capacity    int64 // provisioned

	// background is the tokens per window taken by clients that bypass
	// the gateway (Deployment.BackgroundLoad x the token budget).
	background int64
	// keep is how long hist is kept (metrics retention + one window).
	keep time.Duration

	mu      sync.Mutex
	entries []admitted // oldest first
	tokens  int64      // sum of entries[].tokens
	hist    []admitted // every admission for the metrics emulation, oldest first
}

type admitted struct {
	at     time.Time
	tokens int64
}

// limitState is the window after an admission decision, for headers.
type limitState struct {
	requests, tokens int64
	retryAfter       time.Duration // > 0 when rejected
	// reset is when the window is back to its initial state: the newest
	// admission leaves it (0 when empty).
	reset time.Duration
}

// resetIn is the time until every entry has left the window. Callers hold mu.
func (l *limiter) resetIn(now time.Time) time.Duration {
	if len(l.entries) == 0 {
		return 0
	}
	return max(l.entries[len(l.entries)-1].at.Add(l.window).Sub(now), 0)
}

func newLimiter(d Deployment, window, retention time.Duration) *limiter {
	l := &limiter{
		window:      window,
		provisioned: d.Provisioned,
		rpm:         d.RPM,
		tpm:         d.TPM,
		capacity:    d.PTUCapacityTPM,
		keep:        retention + window,
	}
	l.background = int64(d.BackgroundLoad * float64(l.tokenBudget()))
	return l
}

// unlimited reports whether nothing needs tracking.
func (l *limiter) unlimited() bool { return !l.provisioned && l.rpm == 0 && l.tpm == 0 }

// unlimited deployments keep no history; the metric reads 0 for them.

func (l *limiter) tokenBudget() int64 {
	if l.provisioned {
		return l.capacity
	}
	return l.tpm
}

// admit charges est tokens and one request at now, or rejects with the
// time until the window has room for it.
func (l *limiter) admit(now time.Time, est int64) (limitState, bool) {
	if l.unlimited() {
		return limitState{}, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	var wait time.Duration
	if !l.provisioned && l.rpm > 0 && int64(len(l.entries))+1 > l.rpm {
		// Room for one more once the first (count - rpm + 1) entries expire.
		wait = l.entries[int64(len(l.entries))-l.rpm].at.Add(l.window).Sub(now)
	}
	if budget := l.tokenBudget(); budget > 0 {
		if need := l.tokens + l.background + min(est, budget) - budget; need > 0 {
			var freed int64
			for _, e := range l.entries {
				freed += e.tokens
				if freed >= need {
					wait = max(wait, e.at.Add(l.window).Sub(now))
					break
				}
			}
		}
	}
	if wait > 0 || l.background > 0 && l.tokens+l.background+min(est, l.tokenBudget()) > l.tokenBudget() {
		// Background load never leaves the window: with it, a full window
		// asks to wait one window at most.
		if wait <= 0 {
			wait = l.window
		}
		return limitState{requests: int64(len(l.entries)), tokens: l.tokens + l.background, retryAfter: wait, reset: l.resetIn(now)}, false
	}
	l.entries = append(l.entries, admitted{at: now, tokens: est})
	l.tokens += est
	l.hist = append(l.hist, admitted{at: now, tokens: est})
	l.trimHistory(now)
	return limitState{requests: int64(len(l.entries)), tokens: l.tokens + l.background, reset: l.resetIn(now)}, true
}

// trimHistory drops admissions older than keep. Callers hold mu.
func (l *limiter) trimHistory(now time.Time) {
	i := 0
	for i < len(l.hist) && now.Sub(l.hist[i].at) > l.keep {
		i++
	}
	if i > 0 {
		l.hist = append(l.hist[:0:0], l.hist[i:]...)
	}
}

// utilizationAt is the share of the token budget (percent) in use at t:
// the tokens admitted in (t-window, t] plus the background load.
func (l *limiter) utilizationAt(t time.Time) float64 {
	budget := l.tokenBudget()
	if budget <= 0 {
		return 0
	}
	var sum int64
	for _, e := range l.hist {
		if e.at.After(t) {
			break
		}
		if e.at.After(t.Add(-l.window)) {
			sum += e.tokens
		}
	}
	return float64(sum+l.background) * 100 / float64(budget)
}

// grainStats samples the utilization 10 times across [from, from+grain)
// and returns the average and the maximum.
func (l *limiter) grainStats(from time.Time, grain time.Duration) (avg, peak float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	const n = 10
	for i := 1; i <= n; i++ {
		u := l.utilizationAt(from.Add(grain * time.Duration(i) / n))
		avg += u / n
		peak = max(peak, u)
	}
	return avg, peak
}

// peek returns the window at now without charging anything.
func (l *limiter) peek(now time.Time) limitState {
	if l.unlimited() {
		return limitState{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	return limitState{requests: int64(len(l.entries)), tokens: l.tokens + l.background, reset: l.resetIn(now)}
}

func (l *limiter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = nil
	l.tokens = 0
	l.hist = nil
}

// expire drops entries that have left the window. Reslicing from the front
// is enough: append reallocates once the capacity runs out and copies only
// the live entries.
func (l *limiter) expire(now time.Time) {
	i := 0
	for i < len(l.entries) && !l.entries[i].at.Add(l.window).After(now) {
		l.tokens -= l.entries[i].tokens
		i++
	}
	l.entries = l.entries[i:]
	if len(l.entries) == 0 {
		l.entries = nil
	}
}

// setHeaders writes what Azure reports about the window: the x-ratelimit-*
// limit, remaining and reset headers on standard deployments (the unlimited
// dimension is left out), azure-openai-deployment-utilization on
// provisioned ones. Azure sends x-ratelimit-reset-* in whole seconds; the
// simulator's windows are often seconds long, so it sends seconds with
// millisecond decimals ("1.25"), which readers of the integer form parse too.
func (l *limiter) setHeaders(h http.Header, st limitState) {
	if l.provisioned {
		util := float64(st.tokens) * 100 / float64(l.capacity)
		h.Set("azure-openai-deployment-utilization", strconv.FormatFloat(util, 'f', 1, 64)+"%")
		return
	}
	if l.rpm > 0 {
		h.Set("x-ratelimit-limit-requests", strconv.FormatInt(l.rpm, 10))
		h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(max(l.rpm-st.requests, 0), 10))
		h.Set("x-ratelimit-reset-requests", resetSeconds(st.reset))
	}
	if l.tpm > 0 {
		h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(l.tpm, 10))
		h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(max(l.tpm-st.tokens, 0), 10))
		h.Set("x-ratelimit-reset-tokens", resetSeconds(st.reset))
	}
}

// resetSeconds formats d as seconds, rounded up to the millisecond.
func resetSeconds(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
}

// setRetryAfter writes retry-after (whole seconds, rounded up, as Azure
// sends) and retry-after-ms (what clients should prefer).
func setRetryAfter(h http.Header, d time.Duration) {
	ms := max((d+time.Millisecond-1)/time.Millisecond, 1)
	secs := max((d+time.Second-1)/time.Second, 1)
	h.Set("retry-after", strconv.FormatInt(int64(secs), 10))
	h.Set("retry-after-ms", strconv.FormatInt(int64(ms), 10))
}

// retryAfterSeconds is the whole-second wait quoted in 429 messages.
func retryAfterSeconds(d time.Duration) int64 {
	return int64(max((d+time.Second-1)/time.Second, 1))
}
