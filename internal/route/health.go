package route

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
)

// Health is a backend's passive health: its circuit breaker and its recent
// latencies. It lives inside [Backend] and must not be copied.
type Health struct {
	Breaker
	lat latencies
	// ttfb averages successful calls' time to response headers, for
	// latency routing.
	ttfb ewma
}

// Record implements the breaker contract and also keeps the latency for
// the admin endpoint's p50. See [Breaker.Record] for what status means.
func (h *Health) Record(status int, latency time.Duration) {
	h.Breaker.Record(status, latency)
	if status != 499 && latency > 0 {
		h.lat.add(latency)
	}
	if status >= 200 && status < 300 {
		h.ttfb.add(latency)
	}
}

// latencies is a ring of the last len(ring) call latencies.
type latencies struct {
	next atomic.Uint64
	ring [128]atomic.Int64
}

func (l *latencies) add(d time.Duration) {
	i := l.next.Add(1) - 1
	l.ring[i%uint64(len(l.ring))].Store(int64(d))
}

// p50 is the median of the ring, or false when nothing was recorded.
func (l *latencies) p50() (time.Duration, bool) {
	var buf [128]int64
	s := buf[:0]
	for i := range l.ring {
		if v := l.ring[i].Load(); v > 0 {
			s = append(s, v)
		}
	}
	if len(s) == 0 {
		return 0, false
	}
	slices.Sort(s)
	return time.Duration(s[len(s)/2]), true
}

// deployment is the state of one deployment on one backend, shared by every
// alias that targets it: rate limits (and so cooling and utilization) are
// per deployment in Azure OpenAI. Must not be copied.
type deployment struct {
	name     string
	capacity config.Capacity
	set      *settings
	// coolUntil is the unix-nano time before which the deployment is not
	// tried (it answered 429).
	coolUntil atomic.Int64
	util      atomic.Pointer[Utilization]
}

// Utilization is the last load sample a deployment reported.
type Utilization struct {
	// Percent of the deployment's capacity in use, 0–100 (and above when
	// over committed): azure-openai-deployment-utilization on provisioned
	// deployments, otherwise derived from x-ratelimit-remaining-tokens /
	// -requests against the configured capacity (or the reported limit).
	Percent float64 `json:"percent"`
	// Source is "provisioned" or "ratelimit".
	Source            string    `json:"source"`
	RemainingTokens   *int64    `json:"remaining_tokens,omitempty"`
	RemainingRequests *int64    `json:"remaining_requests,omitempty"`
	At                time.Time `json:"at"`
	// ResetAt is when the rate-limit window behind Percent is back to its
	// initial state (x-ratelimit-reset-tokens / -requests of the dimension
	// that gave Percent); after it the sample no longer says anything
	// about the load. Zero when not reported.
	ResetAt time.Time `json:"reset_at,omitzero"`
	// LimitTokens is the token limit of the window (the configured TPM or
	// x-ratelimit-limit-tokens); 0 when not known.
	LimitTokens int64 `json:"limit_tokens,omitempty"`
}

// cool marks the deployment cooling until at least until (never shortens).
func (d *deployment) cool(until int64) {
	for {
		old := d.coolUntil.Load()
		if old >= until || d.coolUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// observe keeps the utilization the response headers report, if any.
func (d *deployment) observe(h http.Header, now time.Time) {
	if v := h.Get("Azure-Openai-Deployment-Utilization"); v != "" {
		if p, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "%")), 64); err == nil {
			d.util.Store(&Utilization{Percent: p, Source: "provisioned", At: now})
		}
		return
	}
	remT, okT := headerInt(h, "X-Ratelimit-Remaining-Tokens")
	remR, okR := headerInt(h, "X-Ratelimit-Remaining-Requests")
	if !okT && !okR {
		return
	}
	u := &Utilization{Source: "ratelimit", At: now, Percent: math.NaN()}
	used := func(rem, capacity int64, limitHeader, resetHeader string) {
		if capacity <= 0 {
			capacity, _ = headerInt(h, limitHeader)
		}
		if capacity > 0 {
			p := 100 * float64(capacity-rem) / float64(capacity)
			if math.IsNaN(u.Percent) || p > u.Percent {
				u.Percent = p
				u.ResetAt = time.Time{}
				if r, ok := headerReset(h, resetHeader); ok {
					u.ResetAt = now.Add(r)
				}
			}
		}
	}
	if okT {
		u.RemainingTokens = &remT
		used(remT, d.capacity.TPM, "X-Ratelimit-Limit-Tokens", "X-Ratelimit-Reset-Tokens")
		if u.LimitTokens = d.capacity.TPM; u.LimitTokens <= 0 {
			u.LimitTokens, _ = headerInt(h, "X-Ratelimit-Limit-Tokens")
		}
	}
	if okR {
		u.RemainingRequests = &remR
		used(remR, d.capacity.RPM, "X-Ratelimit-Limit-Requests", "X-Ratelimit-Reset-Requests")
	}
	if math.IsNaN(u.Percent) {
		u.Percent = -1 // capacity unknown: only the remaining counts are meaningful
	}
	// The window resets when its newest admission leaves it, which only
	// moves later: responses that finish out of order (an earlier
	// admission's headers read after a later one's) must not pull the
	// reset forward while the later reset is still ahead.
	if old := d.util.Load(); old != nil && !u.ResetAt.IsZero() && old.ResetAt.After(u.ResetAt) && old.ResetAt.After(now) {
		u.ResetAt = old.ResetAt
	}
	d.util.Store(u)
}

// headerReset reads an x-ratelimit-reset-* header: seconds as Azure sends
// them ("12", or with decimals) or a Go-style duration as OpenAI sends them
// ("9ms", "6m0s"). Zero (nothing to reset: the window is empty, or the
// headers are placeholders, as Azure sent on some APIs with -1 limits),
// negative or unreadable values are not reported.
func headerReset(h http.Header, name string) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f <= 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > 86400 {
			return 0, false
		}
		return time.Duration(f * float64(time.Second)), true
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d, true
	}
	return 0, false
}

func headerInt(h http.Header, name string) (int64, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	return n, err == nil
}

// RetryAfter reads how long a 429 asks to wait: retry-after-ms first (what
// Azure OpenAI sends and clients should prefer), then retry-after in
// seconds or as an HTTP date. ok is false when neither is usable.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond)), true
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && s >= 0 {
			return time.Duration(s) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	return 0, false
}
