package utilization

import (
	"context"
	"sync"
	"time"
)

// Source says where a reading came from.
type Source string

// Sources, best first. Unknown means no fresh signal.
const (
	SourceMetrics Source = "metrics"
	SourceHeaders Source = "headers"
	SourceFleet   Source = "fleet"
	SourceUnknown Source = "unknown"
)

// Key names one deployment on one backend.
type Key struct{ Backend, Deployment string }

// Reading is one deployment's utilization.
type Reading struct {
	// Percent of capacity in use, 0–100 (above when over committed).
	// Meaningless when Source is SourceUnknown.
	Percent float64
	Source  Source
	// At is when the sample was taken (a metric point: the end of its grain).
	At time.Time
	// Until is when the rate-limit window the sample describes has reset
	// (a header sample with x-ratelimit-reset-*, this instance's or another
	// instance's): by then everything the sample counted has left the
	// window, so from then on the deployment reads 0% as of Until, however
	// young or busy the sample was. Zero: no such end.
	Until time.Time
	// Capacity is the window's size in tokens when the sample knows it
	// (x-ratelimit-remaining-tokens against the limit); 0 when not.
	Capacity float64
}

// Known reports whether the reading rests on a fresh signal.
func (r Reading) Known() bool { return r.Source != SourceUnknown && r.Source != "" }

// LocalSamples gives this instance's newest header sample of a deployment.
type LocalSamples func(k Key) (Reading, bool)

// metricsView is what Signals needs from [Metrics].
type metricsView interface {
	Get(k Key) (Reading, bool)
}

// Options tune Signals.
type Options struct {
	// HeaderMaxAge: this instance's header sample is fresh this long. Default 5s.
	HeaderMaxAge time.Duration
	// FleetMaxAge: another instance's header sample is fresh this long;
	// it is at least a publish period old when read. Default 5s.
	FleetMaxAge time.Duration
	// MetricsMaxAge: a metric point is fresh while its end is this recent. Default 3m.
	MetricsMaxAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Signals combines the sources per deployment. Any source may be nil.
type Signals struct {
	local   LocalSamples
	fleet   *Fleet
	metrics metricsView
	opt     Options

	mu   sync.Mutex
	used map[Key]Used
}

// Used is what Signals last answered for a deployment, with the threshold
// the caller compared it to.
type Used struct {
	Reading
	Threshold float64
}

// New builds Signals from the sources it has.
func New(local LocalSamples, fleet *Fleet, metrics *Metrics, opt Options) *Signals {
	if opt.HeaderMaxAge <= 0 {
		opt.HeaderMaxAge = 5 * time.Second
	}
	if opt.FleetMaxAge <= 0 {
		opt.FleetMaxAge = 5 * time.Second
	}
	if opt.MetricsMaxAge <= 0 {
		opt.MetricsMaxAge = 3 * time.Minute
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Signals{local: local, fleet: fleet, opt: opt, used: map[Key]Used{}}
	if metrics != nil {
		s.metrics = metrics
	}
	return s
}

// Utilization is k's utilization: the newest fresh reading among the
// sources, or SourceUnknown when none is fresh. A reading is fresh while
// younger than its source's max age. A reading past its Until reads 0% as
// of Until (its window is empty then), without waiting for a probe, unless
// another source saw the deployment after the sample was taken. threshold is only remembered (see
// [Signals.Used]).
func (s *Signals) Utilization(k Key, threshold float64) Reading {
	now := s.opt.Now()
	best := Reading{Source: SourceUnknown}
	var bestSeen time.Time
	consider := func(r Reading, ok bool, maxAge time.Duration) {
		if !ok || r.Percent < 0 {
			return
		}
		// seen is when the reading's evidence was taken: a reset says
		// nothing about traffic after the sample, so a source that saw
		// later traffic (a newer metric point) still wins over it.
		seen := r.At
		if !r.Until.IsZero() && !now.Before(r.Until) {
			r = Reading{Percent: 0, Source: r.Source, At: r.Until, Capacity: r.Capacity}
		}
		if now.Sub(r.At) >= maxAge {
			return
		}
		if !best.Known() || seen.After(bestSeen) {
			best, bestSeen = r, seen
		}
	}
	if s.local != nil {
		r, ok := s.local(k)
		consider(r, ok, s.opt.HeaderMaxAge)
	}
	if s.fleet != nil {
		r, ok := s.fleet.Get(k)
		consider(r, ok, s.opt.FleetMaxAge)
	}
	if s.metrics != nil {
		r, ok := s.metrics.Get(k)
		consider(r, ok, s.opt.MetricsMaxAge)
	}
	s.mu.Lock()
	s.used[k] = Used{Reading: best, Threshold: threshold}
	s.mu.Unlock()
	return best
}

// Used returns what Utilization last answered for k.
func (s *Signals) Used(k Key) (Used, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.used[k]
	return u, ok
}

// Refresh re-reads the fleet's samples when they are older than the
// fleet's read period; a failed read leaves the previous view, whose
// samples age out.
func (s *Signals) Refresh(ctx context.Context) error {
	if s.fleet == nil {
		return nil
	}
	return s.fleet.Refresh(ctx)
}
