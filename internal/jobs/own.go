package jobs

import (
	"time"

	"github.com/foundry-gateway/gateway/internal/utilization"
)

// The drain's own jobs leave a deployment's rate-limit window one by one,
// each one window after it was admitted (Azure meters at admission, over a
// sliding window). A deployment that reads busy because of the drain's
// own jobs therefore has room again as soon as the oldest of them has left,
// long before the window is empty (x-ratelimit-reset-* says when the
// newest leaves). Waiting for the reset, or for a probe backoff, leaves the
// deployment idle for most of a window after every burst: the backlog used
// 70–73% of the 85% it may use, in cycles of a burst and a window's wait.
// So the drain remembers its own jobs per deployment and, after a busy
// reading, starts new jobs only in place of its own jobs that have left the
// window since: the tokens they were charged, less what its jobs started
// since may take. Probes are not replaced (they ran on a deployment that
// may have been busy). Capacity other traffic frees is
// not replaced this way; only a reading below the threshold hands it out.

// ownJob is one job the drain sent to a deployment.
type ownJob struct {
	sent time.Time
	// probe: the job ran to learn, on a deployment with no fresh reading.
	// It may have taken the deployment past the threshold, so nothing
	// takes its place when it leaves the window.
	probe bool
	done  bool
	// tokens it was charged (prompt + completion, as the response reports
	// them); meaningful once done.
	tokens float64
	// window is an upper bound of the deployment's window learned from this
	// job: the reset (x-ratelimit-reset-*) read after it, less when it was
	// sent. 0: none learned.
	window time.Duration
}

// ownLoad is the drain's own share of one deployment's window. Callers
// hold Drainer.coolMu.
type ownLoad struct {
	jobs []*ownJob // oldest first
	// busyAt and busyPct are the newest busy reading (its sample time).
	busyAt  time.Time
	busyPct float64
}

// maxOwnJobs bounds the jobs remembered per deployment.
const maxOwnJobs = 4096

// windowOf is the deployment's window: the smallest bound learned from
// the remembered jobs, else def (DrainOptions.Window).
func (o *ownLoad) windowOf(def time.Duration) time.Duration {
	w := time.Duration(0)
	for _, j := range o.jobs {
		if j.window > 0 && (w == 0 || j.window < w) {
			w = j.window
		}
	}
	if w == 0 {
		return def
	}
	return w
}

// avgTokens is what the drain's finished jobs on the deployment cost on
// average (0: none finished).
func (o *ownLoad) avgTokens() float64 {
	var sum float64
	n := 0
	for _, j := range o.jobs {
		if j.done {
			sum += j.tokens
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// allowance is the tokens the drain may start on the deployment now in
// place of its own jobs that left the window since the busy reading, and
// when the next of its jobs still in the window leaves (zero: none).
func (o *ownLoad) allowance(now time.Time, def time.Duration) (float64, time.Time) {
	w := o.windowOf(def)
	avg := o.avgTokens() // a running job's charge is not known yet
	if avg == 0 {
		return 0, time.Time{}
	}
	var freed, taken float64
	var next time.Time
	for _, j := range o.jobs {
		tok := avg
		if j.done {
			tok = j.tokens
		}
		if j.sent.After(o.busyAt) {
			taken += tok // not in the busy reading
		}
		switch leaves := j.sent.Add(w); {
		case !leaves.After(o.busyAt):
			// gone before the reading: not in it
		case j.probe:
		case !leaves.After(now):
			freed += tok
		case next.IsZero() || leaves.Before(next):
			next = leaves
		}
	}
	return freed - taken, next
}

// prune forgets jobs that no longer matter: out of the window before the
// busy reading, and sent before it.
func (o *ownLoad) prune(def time.Duration) {
	w := o.windowOf(def)
	i := 0
	for i < len(o.jobs) && o.jobs[i].done && !o.jobs[i].sent.Add(w).After(o.busyAt) {
		i++
	}
	if len(o.jobs)-i > maxOwnJobs {
		i = len(o.jobs) - maxOwnJobs
	}
	if i > 0 {
		o.jobs = append(o.jobs[:0:0], o.jobs[i:]...)
	}
}

// ownOf returns k's ownLoad. Callers hold coolMu.
func (d *Drainer) ownOf(k utilization.Key) *ownLoad {
	o := d.own[k]
	if o == nil {
		o = &ownLoad{}
		d.own[k] = o
	}
	return o
}

// sent records a job placed on k at now.
func (d *Drainer) sent(k utilization.Key, now time.Time, probe bool) *ownJob {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	o := d.ownOf(k)
	o.prune(d.opt.Window)
	j := &ownJob{sent: now, probe: probe}
	o.jobs = append(o.jobs, j)
	return j
}

// finished records what j was charged and, from the reading that followed
// it, a bound of the window: the reset of a header sample taken after j was
// sent is at least a window after j's admission.
func (d *Drainer) finished(j *ownJob, tokens int64, r utilization.Reading) {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	j.done, j.tokens = true, float64(tokens)
	if r.Source == utilization.SourceHeaders && !r.Until.IsZero() && r.At.After(j.sent) {
		j.window = r.Until.Sub(j.sent)
	}
}

// replacement reports whether a job may start on k in place of the drain's
// own jobs that left its window since a busy reading, or when to look
// again. It never does while the busy reading is past halfway from the
// threshold to full: then others' traffic has grown into the room.
func (d *Drainer) replacement(k utilization.Key, threshold float64, now time.Time) (bool, time.Time) {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	o := d.own[k]
	if o == nil || o.busyAt.IsZero() || o.busyPct >= 50*(1+threshold) {
		return false, time.Time{}
	}
	a, next := o.allowance(now, d.opt.Window)
	return a > 0, next
}
