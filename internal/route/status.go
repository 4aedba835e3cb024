package route

import "time"

// BackendStatus is one backend's health as the admin endpoint shows it.
type BackendStatus struct {
	Name        string `json:"name"`
	Region      string `json:"region"`
	Provisioned bool   `json:"provisioned"`
	// Circuit is closed, open or half-open.
	Circuit string `json:"circuit"`
	// CircuitUntil is the end of the open period (or the half-open probe's
	// deadline); null when closed.
	CircuitUntil *time.Time `json:"circuit_until"`
	// CoolingUntil is the latest cooling-until of the backend's
	// deployments; null when none is cooling.
	CoolingUntil *time.Time `json:"cooling_until"`
	// LatencyP50Ms is the median time to response headers of the last 128
	// calls; null before any call.
	LatencyP50Ms *float64 `json:"latency_p50_ms"`
	// TTFBEwmaMs is the moving average of successful calls' time to
	// response headers that latency routing weighs; null before any.
	TTFBEwmaMs *float64 `json:"ttfb_ewma_ms"`
	// Requests and ErrorRate cover the breaker window.
	Requests  int64   `json:"requests_in_window"`
	ErrorRate float64 `json:"error_rate"`
	// Utilization is the most recent sample among the deployments.
	Utilization *Utilization       `json:"utilization"`
	Deployments []DeploymentStatus `json:"deployments"`
}

// DeploymentStatus is one deployment of a backend.
type DeploymentStatus struct {
	Name         string       `json:"name"`
	CoolingUntil *time.Time   `json:"cooling_until"`
	Utilization  *Utilization `json:"utilization"`
	// Drain is the utilization the drain last used for this deployment
	// and where it came from; null when no job policy uses it or the
	// drain has not looked yet. Filled in by the caller of Status.
	Drain *DrainLoad `json:"drain,omitempty"`
}

// DrainLoad is a deployment's utilization as the drain judged it.
type DrainLoad struct {
	// Percent of capacity in use; null when unknown.
	Percent *float64 `json:"percent"`
	// Source: metrics, headers (this instance), fleet (another
	// instance's header sample) or unknown (no fresh signal: busy).
	Source string `json:"source"`
	// At is the time of the sample (a metric point: the end of its grain).
	At *time.Time `json:"at,omitempty"`
	// Threshold is the policy's share the drain compared against.
	Threshold float64 `json:"threshold"`
}

// Status reports every backend, in config order.
func (r *Router) Status() []BackendStatus {
	now := r.set.clock()
	out := make([]BackendStatus, 0, len(r.backends))
	for _, b := range r.backends {
		state, until, total, failed := b.Health.snapshot()
		s := BackendStatus{Name: b.Name, Region: b.Region, Provisioned: b.Provisioned, Circuit: state,
			Requests: total, Deployments: []DeploymentStatus{}}
		if !until.IsZero() {
			u := until.UTC()
			s.CircuitUntil = &u
		}
		if total > 0 {
			s.ErrorRate = float64(failed) / float64(total)
		}
		if p, ok := b.Health.lat.p50(); ok {
			ms := float64(p) / float64(time.Millisecond)
			s.LatencyP50Ms = &ms
		}
		if d, ok := b.Health.TTFB(); ok {
			ms := float64(d) / float64(time.Millisecond)
			s.TTFBEwmaMs = &ms
		}
		for _, d := range b.deployments {
			ds := DeploymentStatus{Name: d.name, Utilization: d.util.Load()}
			if u := d.coolUntil.Load(); u > now.UnixNano() {
				t := time.Unix(0, u).UTC()
				ds.CoolingUntil = &t
				if s.CoolingUntil == nil || t.After(*s.CoolingUntil) {
					s.CoolingUntil = &t
				}
			}
			if ds.Utilization != nil && (s.Utilization == nil || ds.Utilization.At.After(s.Utilization.At)) {
				s.Utilization = ds.Utilization
			}
			s.Deployments = append(s.Deployments, ds)
		}
		out = append(out, s)
	}
	return out
}
