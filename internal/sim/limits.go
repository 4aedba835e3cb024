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

	mu      sync.Mutex
	entries []admitted // oldest first
	tokens  int64      // sum of entries[].tokens
}

type admitted struct {
	at     time.Time
	tokens int64
}

// limitState is the window after an admission decision, for headers.
type limitState struct {
	requests, tokens int64
	retryAfter       time.Duration // > 0 when rejected
}

func newLimiter(d Deployment, window time.Duration) *limiter {
	return &limiter{
		window:      window,
		provisioned: d.Provisioned,
		rpm:         d.RPM,
		tpm:         d.TPM,
		capacity:    d.PTUCapacityTPM,
	}
}

// unlimited reports whether nothing needs tracking.
func (l *limiter) unlimited() bool { return !l.provisioned && l.rpm == 0 && l.tpm == 0 }

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
		if need := l.tokens + min(est, budget) - budget; need > 0 {
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
	if wait > 0 {
		return limitState{requests: int64(len(l.entries)), tokens: l.tokens, retryAfter: wait}, false
	}
	l.entries = append(l.entries, admitted{at: now, tokens: est})
	l.tokens += est
	return limitState{requests: int64(len(l.entries)), tokens: l.tokens}, true
}

// peek returns the window at now without charging anything.
func (l *limiter) peek(now time.Time) limitState {
	if l.unlimited() {
		return limitState{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	return limitState{requests: int64(len(l.entries)), tokens: l.tokens}
}

func (l *limiter) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = nil
	l.tokens = 0
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
// quartet on standard deployments (the unlimited dimension is left out),
// azure-openai-deployment-utilization on provisioned ones.
func (l *limiter) setHeaders(h http.Header, st limitState) {
	if l.provisioned {
		util := float64(st.tokens) * 100 / float64(l.capacity)
		h.Set("azure-openai-deployment-utilization", strconv.FormatFloat(util, 'f', 1, 64)+"%")
		return
	}
	if l.rpm > 0 {
		h.Set("x-ratelimit-limit-requests", strconv.FormatInt(l.rpm, 10))
		h.Set("x-ratelimit-remaining-requests", strconv.FormatInt(max(l.rpm-st.requests, 0), 10))
	}
	if l.tpm > 0 {
		h.Set("x-ratelimit-limit-tokens", strconv.FormatInt(l.tpm, 10))
		h.Set("x-ratelimit-remaining-tokens", strconv.FormatInt(max(l.tpm-st.tokens, 0), 10))
	}
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
