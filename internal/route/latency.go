package route

import (
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// ewmaAlpha is the weight of a new sample in the time-to-first-byte
// average: about the last ten calls count.
const ewmaAlpha = 0.2

// minShare is the least factor latency or load may shrink a target's
// weight to, so a slow or busy target still gets a trickle of calls and
// its average keeps up with it.
const minShare = 0.02

// ewma is an exponentially weighted moving average of durations, safe for
// concurrent use. Zero means no sample yet.
type ewma struct{ v atomic.Int64 }

func (e *ewma) add(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		old := e.v.Load()
		n := int64(d)
		if old != 0 {
			n = old + int64(ewmaAlpha*float64(int64(d)-old))
		}
		if e.v.CompareAndSwap(old, max(n, 1)) {
			return
		}
	}
}

// get returns the average, or false before any sample.
func (e *ewma) get() (time.Duration, bool) {
	v := e.v.Load()
	return time.Duration(v), v > 0
}

// TTFB is the backend's recent time to first byte (the response headers)
// of successful calls, an exponentially weighted moving average; false
// before any.
func (h *Health) TTFB() (time.Duration, bool) { return h.ttfb.get() }

// oneVersion reports whether every target of a tier serves the same model
// version: only then may latency reorder it (a canary split keeps its
// weights and stickiness).
func oneVersion(ts []Target) bool {
	for i := 1; i < len(ts); i++ {
		if ts[i].Version != ts[0].Version {
			return false
		}
	}
	return true
}

// latencyShuffle orders a tier by weighted sampling without replacement,
// each target's configured weight scaled by (fastest TTFB / its TTFB)²
// and by its spare capacity (1 - utilization), neither below minShare. A
// target with no TTFB yet counts as the fastest, so it gets tried.
func latencyShuffle(ts []Target, now time.Time) {
	var buf [16]float64
	var w []float64
	if len(ts) <= len(buf) {
		w = buf[:len(ts)]
	} else {
		w = make([]float64, len(ts))
	}
	var best time.Duration
	for _, t := range ts {
		if d, ok := t.Backend.Health.TTFB(); ok && (best == 0 || d < best) {
			best = d
		}
	}
	for i, t := range ts {
		f := float64(max(t.Weight, 0))
		if d, ok := t.Backend.Health.TTFB(); ok && best > 0 {
			r := float64(best) / float64(d)
			f *= max(r*r, minShare)
		}
		if u, ok := t.utilization(now); ok {
			f *= max(1-u, minShare)
		}
		w[i] = f
	}
	for i := 0; i < len(ts)-1; i++ {
		total := 0.0
		for _, x := range w[i:] {
			total += x
		}
		if total <= 0 {
			return
		}
		x := rand.Float64() * total
		k := len(ts) - 1
		for j := i; j < len(ts); j++ {
			x -= w[j]
			if x < 0 {
				k = j
				break
			}
		}
		ts[i], ts[k] = ts[k], ts[i]
		w[i], w[k] = w[k], w[i]
	}
}

// sampleMaxAge is how long a utilization sample stays meaningful.
const sampleMaxAge = time.Minute

// utilization is the deployment's fresh load sample as a fraction (0–1,
// capped), false when there is none or its capacity is unknown.
func (t Target) utilization(now time.Time) (float64, bool) {
	if t.dep == nil {
		return 0, false
	}
	s := t.dep.util.Load()
	if s == nil || s.Percent < 0 || math.IsNaN(s.Percent) || now.Sub(s.At) >= sampleMaxAge {
		return 0, false
	}
	if !s.ResetAt.IsZero() && !now.Before(s.ResetAt) {
		return 0, false // its rate-limit window has reset: the load it saw is gone (as the drain reads it)
	}
	return min(s.Percent/100, 1), true
}
