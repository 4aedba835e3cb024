package route

import "time"

// sampleMaxAge is how long a utilization sample stays meaningful.
const sampleMaxAge = time.Minute

// Utilization is how busy an alias's pool is, 0 (idle) to 1 (full), for the
// drain function: the least-used deployment decides, because one deployment
// with spare capacity is enough to run a low-priority request. A cooling
// deployment counts as full; one with no recent sample (or no known
// capacity) counts as idle, since nothing says it is busy. An unknown alias
// is full, so nothing runs against it.
func (r *Router) Utilization(alias string) float64 {
	m, ok := r.models[alias]
	if !ok || len(m.Targets) == 0 {
		return 1
	}
	now := r.set.clock()
	best := 1.0
	for _, t := range m.Targets {
		u := 0.0
		switch {
		case t.dep == nil:
		case t.dep.coolUntil.Load() > now.UnixNano():
			u = 1
		default:
			if s := t.dep.util.Load(); s != nil && s.Percent >= 0 && now.Sub(s.At) < sampleMaxAge {
				u = s.Percent / 100
			}
		}
		best = min(best, u)
	}
	return best
}
