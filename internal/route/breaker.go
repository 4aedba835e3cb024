package route

import (
	"net/http"
	"sync/atomic"
	"time"
)

// BreakerOptions tune a [Breaker]. Zero values take the defaults noted.
type BreakerOptions struct {
	// Failures is the number of consecutive failures that opens the
	// circuit. Default 5.
	Failures int
	// FailureRate opens the circuit when this share of the calls in Window
	// failed, once MinRequests calls were seen. Default 0.5.
	FailureRate float64
	// MinRequests is the number of calls in Window before FailureRate
	// applies. Default 20.
	MinRequests int
	// Window is the sliding window of the failure rate and of the error
	// rate shown by the admin endpoint. Default 30s.
	Window time.Duration
	// OpenFor is how long an open circuit refuses calls before it lets one
	// half-open probe through; a probe that never reports back is replaced
	// after the same period. Default 30s.
	OpenFor time.Duration
}

func (o BreakerOptions) withDefaults() BreakerOptions {
	if o.Failures <= 0 {
		o.Failures = 5
	}
	if o.FailureRate <= 0 {
		o.FailureRate = 0.5
	}
	if o.MinRequests <= 0 {
		o.MinRequests = 20
	}
	if o.Window <= 0 {
		o.Window = 30 * time.Second
	}
	if o.OpenFor <= 0 {
		o.OpenFor = 30 * time.Second
	}
	return o
}

// Circuit states.
const (
	circuitClosed int32 = iota
	circuitOpen
	circuitHalfOpen
)

// CircuitState names a state for logs and the admin endpoint.
func circuitName(s int32) string {
	switch s {
	case circuitOpen:
		return "open"
	case circuitHalfOpen:
		return "half-open"
	default:
		return "closed"
	}
}

// numBuckets splits the failure-rate window; the rate is approximate to one
// bucket (a tenth of the window).
const numBuckets = 10

type bucket struct {
	epoch  atomic.Int64 // bucket number (now / width) the counts belong to
	total  atomic.Int64
	failed atomic.Int64
}

// Breaker is one backend's circuit breaker. It opens after Failures
// consecutive failures or when FailureRate of the calls in Window failed,
// refuses calls for OpenFor, then lets exactly one probe through (half-open):
// the probe's success closes it, its failure opens it again.
//
// Only timeouts (408, 504), 5xx and connection errors (reported as 502)
// count as failures. Client errors (400, 401, 403, 404, 413, content
// filter) and 429 (the backend is alive, only busy: cooling handles it) do
// not; a client that went away (499) is not counted at all.
//
// State is kept in atomics; the counts are approximate under races by at
// most the calls in flight, which is all a breaker needs. A Breaker must
// not be copied after first use. The zero value is ready to use with the
// default options and the wall clock.
type Breaker struct {
	opt BreakerOptions
	now func() time.Time

	state atomic.Int32
	// until is, when open, the end of the open period; when half-open, the
	// deadline of the probe in flight. Writers store it before the state
	// so a reader never sees a new state with an old deadline.
	until       atomic.Int64
	consecutive atomic.Int64
	buckets     [numBuckets]bucket
	// notify, when set (before the breaker is shared), hears every
	// open/close transition: an operator signal (logs, telemetry).
	notify func(to string)
}

// changed reports a transition to notify.
func (b *Breaker) changed(to int32) {
	if b.notify != nil {
		b.notify(circuitName(to))
	}
}

// init sets the options and clock; called once before the breaker is shared.
func (b *Breaker) init(opt BreakerOptions, now func() time.Time) {
	b.opt = opt.withDefaults()
	b.now = now
}

func (b *Breaker) options() BreakerOptions {
	if b.opt.Window == 0 {
		return BreakerOptions{}.withDefaults()
	}
	return b.opt
}

func (b *Breaker) clock() time.Time {
	if b.now == nil {
		return time.Now()
	}
	return b.now()
}

// Allow reports whether a call may go to the backend now. On an open
// circuit whose period has passed, exactly one caller gets true: it is the
// probe and must report its outcome with [Breaker.Record].
func (b *Breaker) Allow() bool {
	if b.state.Load() == circuitClosed {
		return true
	}
	now := b.clock().UnixNano()
	u := b.until.Load()
	if now < u {
		return false
	}
	if b.state.Load() == circuitClosed { // closed meanwhile
		return true
	}
	if !b.until.CompareAndSwap(u, now+int64(b.options().OpenFor)) {
		return false // another caller became the probe
	}
	b.state.Store(circuitHalfOpen)
	return true
}

// ready is Allow without taking the probe: Plan uses it to keep targets
// that Allow may still refuse when their turn comes.
func (b *Breaker) ready(now int64) bool {
	return b.state.Load() == circuitClosed || now >= b.until.Load()
}

// Record reports the outcome of a call: the HTTP status the backend
// answered, or 502 for a connection error, 504 for a timeout, 499 when the
// client went away.
func (b *Breaker) Record(status int, _ time.Duration) {
	if status == 499 {
		// Not the backend's fault, and no verdict: if this was the probe,
		// let the next call probe instead of waiting out OpenFor.
		if b.state.Load() == circuitHalfOpen {
			b.until.Store(0)
		}
		return
	}
	o := b.options()
	now := b.clock().UnixNano()
	fail := isFailure(status)
	b.count(now, o, fail)
	if !fail {
		b.consecutive.Store(0)
		if b.state.CompareAndSwap(circuitHalfOpen, circuitClosed) {
			b.resetWindow()
			b.changed(circuitClosed)
		}
		return
	}
	n := b.consecutive.Add(1)
	switch b.state.Load() {
	case circuitHalfOpen:
		b.until.Store(now + int64(o.OpenFor))
		if b.state.CompareAndSwap(circuitHalfOpen, circuitOpen) {
			b.changed(circuitOpen) // the probe failed
		}
	case circuitClosed:
		total, failed := b.window(now, o)
		if n >= int64(o.Failures) || (total >= int64(o.MinRequests) && float64(failed) >= o.FailureRate*float64(total)) {
			b.until.Store(now + int64(o.OpenFor))
			if b.state.CompareAndSwap(circuitClosed, circuitOpen) {
				b.consecutive.Store(0)
				b.changed(circuitOpen)
			}
		}
	}
}

// isFailure: timeouts, server errors and connection errors (502) count.
func isFailure(status int) bool {
	return status == http.StatusRequestTimeout || status >= 500
}

func (b *Breaker) count(now int64, o BreakerOptions, fail bool) {
	width := int64(o.Window) / numBuckets
	epoch := now / width
	bk := &b.buckets[epoch%numBuckets]
	if old := bk.epoch.Load(); old != epoch && bk.epoch.CompareAndSwap(old, epoch) {
		bk.total.Store(0)
		bk.failed.Store(0)
	}
	bk.total.Add(1)
	if fail {
		bk.failed.Add(1)
	}
}

// window returns the calls and failures in the sliding window ending at now.
func (b *Breaker) window(now int64, o BreakerOptions) (total, failed int64) {
	epoch := now / (int64(o.Window) / numBuckets)
	for i := range b.buckets {
		bk := &b.buckets[i]
		if e := bk.epoch.Load(); e > epoch-numBuckets && e <= epoch {
			total += bk.total.Load()
			failed += bk.failed.Load()
		}
	}
	return total, failed
}

func (b *Breaker) resetWindow() {
	for i := range b.buckets {
		b.buckets[i].total.Store(0)
		b.buckets[i].failed.Store(0)
	}
}

// snapshot is the breaker's state for the admin endpoint.
func (b *Breaker) snapshot() (state string, openUntil time.Time, total, failed int64) {
	o := b.options()
	now := b.clock().UnixNano()
	s := b.state.Load()
	if s != circuitClosed {
		openUntil = time.Unix(0, b.until.Load())
	}
	total, failed = b.window(now, o)
	return circuitName(s), openUntil, total, failed
}
