package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/callback"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/utilization"
)

// sender puts messages on the queue.
type sender interface {
	Send(ctx context.Context, m queue.Outgoing) error
}

// consumer is what a drain round needs from the queue (Send queues
// callback deliveries).
type consumer interface {
	Send(ctx context.Context, m queue.Outgoing) error
	Receive(ctx context.Context, max int, wait time.Duration) ([]*queue.Message, error)
	Complete(ctx context.Context, m *queue.Message) error
	Reschedule(ctx context.Context, m *queue.Message, at time.Time) error
	DeadLetter(ctx context.Context, m *queue.Message, reason, description string) error
}

// resolver maps a model alias to its targets.
type resolver interface {
	Model(alias string) (*route.Model, error)
}

// forwarder runs a call like the synchronous path.
type forwarder interface {
	Forward(w http.ResponseWriter, r *http.Request, m *route.Model, c proxy.Call) proxy.Result
}

// Loads tells how busy a deployment is ([utilization.Signals]).
type Loads interface {
	// Utilization is k's reading; threshold is what the caller compares
	// it to (remembered for the admin endpoint).
	Utilization(k utilization.Key, threshold float64) utilization.Reading
	// Refresh re-reads shared samples when due.
	Refresh(ctx context.Context) error
}

// Policy is where and when a model's jobs may run.
type Policy struct {
	// Targets are the deployments jobs may use; a job never goes
	// anywhere else (no failover down the interactive route).
	Targets []utilization.Key
	// Threshold: a job starts on a deployment only while its utilization
	// is below this share (0–1).
	Threshold float64
}

// Submission is what the HTTP layer hands to Submit.
type Submission struct {
	// ID, when set, is the job's id (a Batch API line's, derived from its
	// batch and line): Submit is then idempotent. An existing job is sent
	// again unless it is terminal (the queue drops a duplicate id still
	// queued), and a refused send leaves the job queued for the caller to
	// retry instead of failing it.
	ID               string
	KeyID, Team, App string
	// Regions the job may be served from (the caller's scope); empty = any.
	Regions     []string
	Req         openai.Request
	Body        []byte
	RawQuery    string
	CallbackURL string
	Traceparent string
	// Host is the Host the request came in on: the gateway itself, which
	// a callback must not call.
	Host string
}

// CheckCallback checks a callback URL before Submit (see
// [callback.Policy.Check]); a refusal is a 400 invalid_callback that says
// why but nothing about what listens there.
func CheckCallback(ctx context.Context, p callback.Policy, raw string) error {
	if raw == "" {
		return nil
	}
	if err := p.Check(ctx, raw, nil); err != nil {
		return httperr.Wrap(err, http.StatusBadRequest, "invalid_callback",
			"The callback URL is refused: "+strings.TrimPrefix(err.Error(), callback.ErrRefused.Error()+": ")+
				". Callbacks go to public https URLs; operators can allow other hosts with jobs.callbackAllow.")
	}
	return nil
}

// Submit records a queued job and enqueues its request. If the queue
// refuses it, the job is marked failed and the caller gets a 503.
func Submit(ctx context.Context, st *Store, q sender, s Submission) (*Job, error) {
	if s.CallbackURL != "" {
		u, err := url.Parse(s.CallbackURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, httperr.BadRequest("invalid_callback", "The callback URL must be an absolute http(s) URL.")
		}
	}
	j := &Job{ID: s.ID, KeyID: s.KeyID, Team: s.Team, App: s.App, Model: s.Req.Model, Op: string(s.Req.Op), CallbackURL: s.CallbackURL}
	if j.ID == "" {
		j.ID = newID()
	}
	if err := st.Create(ctx, j); errors.Is(err, store.ErrExists) && s.ID != "" {
		if j, err = st.Get(ctx, s.KeyID, s.ID); err != nil {
			return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "job_store_unavailable", "The gateway cannot record the job right now. Retry shortly.")
		}
		if j.Status.Terminal() {
			return j, nil
		}
	} else if err != nil {
		return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "job_store_unavailable", "The gateway cannot record the job right now. Retry shortly.")
	}
	style := "v1"
	switch s.Req.Style {
	case openai.StyleDeployment:
		style = "deployment"
	case openai.StyleAzure:
		style = "azure"
	}
	err := q.Send(ctx, queue.Outgoing{ID: j.ID, Body: s.Body, Properties: map[string]string{
		"key": s.KeyID, "op": string(s.Req.Op), "style": style, "model": s.Req.Model,
		"query": s.RawQuery, "traceparent": s.Traceparent, "regions": strings.Join(s.Regions, ","),
	}})
	if err != nil && s.ID != "" {
		return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "queue_unavailable", "The gateway cannot queue the request right now. Retry shortly.")
	}
	if err != nil {
		stored := errors.Is(err, claim.ErrStore)
		_, _, _ = st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool {
			j.Status, j.Error = StatusFailed, "could not enqueue the request"
			if stored {
				j.Error = "could not store the request body"
			}
			return true
		})
		if stored { // a large body goes to blob storage first (claim check); nothing was queued
			return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "job_body_store_unavailable", "The gateway cannot store the request body of the job right now. Retry shortly.")
		}
		return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "queue_unavailable", "The gateway cannot queue the request right now. Retry shortly.")
	}
	return j, nil
}

// DrainOptions tune a drain round. Zero values take the defaults noted.
type DrainOptions struct {
	// Policies per model alias. A model without one (or with no targets)
	// runs no jobs: they fail with a clear error.
	Policies map[string]Policy
	// RoundTimeout bounds one round, well inside the Functions timeout. Default 4m.
	RoundTimeout time.Duration
	// MaxPerRound caps the messages one round takes. Default 500.
	MaxPerRound int
	// Concurrency caps the jobs running at once, and on one deployment:
	// a deployment at utilization u below threshold T takes up to
	// max(1, Concurrency*(T-u)/T) jobs at once. Default 4.
	Concurrency int
	// MaxAttempts before a job fails for good on transient errors. Default 5.
	MaxAttempts int
	// BusyDelay is how long a job waits again when every deployment it may
	// use is busy. The round stops at the first busy job, so this only
	// keeps the next round from taking the same message first. Default 1s.
	BusyDelay time.Duration
	// ProbeBackoff: after a deployment read busy, a probe (a job run on it
	// while no signal is fresh) waits this long; each probe that finds it
	// busy again doubles the wait, up to 16 times; a reading below the
	// threshold resets it. (A busy header sample that reports when its
	// rate-limit window resets needs no probe: from the reset on it reads
	// 0%, see [utilization.Reading].) Default 5s.
	ProbeBackoff time.Duration
	// Window is how long an admitted request counts against a deployment's
	// limits when its responses do not say (no x-ratelimit-reset-*, as on
	// provisioned deployments): the drain replaces its own jobs as they
	// leave it (see own.go). Where responses carry a reset, the window is
	// learned from it. Default 60s (Azure meters tokens per minute).
	Window time.Duration
	// CallbackSecret signs callbacks (HMAC-SHA256); empty sends none signed.
	CallbackSecret string
	// CallbackClient sends callbacks. Default: public addresses only,
	// checked at dial time ([callback.Policy.Client]), 10 s timeout.
	CallbackClient *http.Client
	// CallbackRetryFor is how long a failing callback is retried, through
	// the queue with exponential backoff and jitter. Default 24h.
	CallbackRetryFor time.Duration
}

// Drainer runs queued jobs.
type Drainer struct {
	st     *Store
	q      consumer
	models resolver
	fwd    forwarder
	loads  Loads
	log    *slog.Logger
	opt    DrainOptions
	now    func() time.Time

	coolMu  sync.Mutex
	cooling map[utilization.Key]time.Time // after a job's 429, per deployment
	probes  map[utilization.Key]*probeState
	own     map[utilization.Key]*ownLoad // the drain's own jobs per deployment
	// OnDone, when set, is told about each finished attempt that reached a
	// backend (for usage, class batch). It may be called more than once for
	// a job only if the job ran more than once; usage rows keyed by job id
	// make that harmless.
	OnDone func(ctx context.Context, j *Job, res proxy.Result)
	// Telemetry, when set, records a request item per job run ("RUN
	// <op>", class batch) whose span is the parent of the run's backend
	// attempts and a child of the submitter's span (issue 8). Nil records
	// none; the attempts still join the submitter's trace.
	Telemetry *telemetry.Client
	// Authorize, when set, is asked before a job runs whether its
	// submitter may still run jobs. [ErrRevoked] (wrapped) fails the job
	// without a backend call, so a revoked key's backlog does not spend
	// capacity; other errors leave the job for a later round.
	Authorize func(ctx context.Context, j *Job) error
	// Claims, when set, loads the request bodies that Submit's sender put
	// in blob storage (claim.Sender) and deletes each once its job is
	// finished. Nil: bodies are only read from the message.
	Claims *claim.Check
}

// ErrRevoked is returned by a Drainer's Authorize for a submitter that may
// no longer run jobs (its key was revoked).
var ErrRevoked = errors.New("jobs: the submitting credential was revoked")

// NewDrainer builds a drainer; it starts nothing.
func NewDrainer(st *Store, q consumer, models resolver, fwd forwarder, loads Loads, log *slog.Logger, opt DrainOptions) *Drainer {
	if opt.RoundTimeout <= 0 {
		opt.RoundTimeout = 4 * time.Minute
	}
	if opt.MaxPerRound <= 0 {
		opt.MaxPerRound = 500
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 5
	}
	if opt.BusyDelay <= 0 {
		opt.BusyDelay = time.Second
	}
	if opt.ProbeBackoff <= 0 {
		opt.ProbeBackoff = 5 * time.Second
	}
	if opt.Window <= 0 {
		opt.Window = time.Minute
	}
	if opt.CallbackClient == nil {
		opt.CallbackClient, _ = callback.Policy{}.Client(10 * time.Second)
	}
	if opt.CallbackRetryFor <= 0 {
		opt.CallbackRetryFor = 24 * time.Hour
	}
	return &Drainer{st: st, q: q, models: models, fwd: fwd, loads: loads, log: log, opt: opt, now: st.now,
		cooling: map[utilization.Key]time.Time{}, probes: map[utilization.Key]*probeState{}, own: map[utilization.Key]*ownLoad{}}
}

// RoundStats says what a round did.
type RoundStats struct {
	Received, Succeeded, Failed, Rescheduled, Skipped int
	StoppedBy                                         string
}

func (s RoundStats) String() string {
	return fmt.Sprintf("drain: received %d, succeeded %d, failed %d, rescheduled %d, skipped %d; stopped: %s",
		s.Received, s.Succeeded, s.Failed, s.Rescheduled, s.Skipped, s.StoppedBy)
}

// round is the state one Drain round shares between its jobs.
type round struct {
	mu       sync.Mutex
	inflight map[utilization.Key]int  // jobs running per deployment
	probing  map[utilization.Key]bool // a probe is running on the deployment
	total    int
	done     chan struct{} // one value per finished job
}

// placement is where a job runs, or why it does not run now.
type placement struct {
	target    route.Target
	key       utilization.Key
	reading   utilization.Reading
	threshold float64
	probe     bool
	// replace: the deployment read busy, and the job takes the place of
	// the drain's own jobs that have left its window since (own.go).
	replace bool
	// retryAt: nothing may start now, but one of the drain's own jobs
	// leaves a busy deployment's window then.
	retryAt time.Time
	// own is the job as the drain remembers it on the deployment.
	own *ownJob
	// wait: some allowed deployment has headroom (or a probe running) but
	// its share of the concurrency is taken; try again when a job ends.
	wait bool
	// none: the model has no deployment jobs may use at all.
	none bool
}

// probeState paces the probes of one deployment.
type probeState struct {
	busyAt  time.Time     // last busy reading
	backoff time.Duration // wait after busyAt before the next probe
	probed  bool          // a probe ran since the last reading
}

// due is when the next probe may run.
func (ps *probeState) due() time.Time {
	if ps.busyAt.IsZero() {
		return time.Time{}
	}
	return ps.busyAt.Add(ps.backoff)
}

// observe notes a known reading of k and returns whether it is busy.
func (d *Drainer) observe(k utilization.Key, r utilization.Reading, threshold float64, now time.Time) bool {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	ps := d.probes[k]
	if ps == nil {
		ps = &probeState{backoff: d.opt.ProbeBackoff}
		d.probes[k] = ps
	}
	busy := r.Percent/100 >= threshold
	if o := d.ownOf(k); busy && r.At.After(o.busyAt) {
		o.busyAt, o.busyPct = r.At, r.Percent
	}
	switch {
	case busy && ps.probed:
		ps.backoff = min(2*ps.backoff, 16*d.opt.ProbeBackoff)
		ps.probed, ps.busyAt = false, now
	case busy:
		ps.busyAt = now
	default:
		ps.backoff, ps.probed = d.opt.ProbeBackoff, false
	}
	return busy
}

// learn takes a probe's answer at once: a busy (or still unknown) reading
// starts or lengthens the probe backoff even if the sample goes stale
// before the next placement looks.
func (d *Drainer) learn(p placement) {
	now := d.now()
	r := d.loads.Utilization(p.key, p.threshold)
	if !r.Known() {
		r = utilization.Reading{Percent: 100, Source: utilization.SourceUnknown} // silence is never idle
	}
	d.observe(p.key, r, p.threshold, now)
}

// mayProbe reports whether a probe of k is due, and if so records it.
func (d *Drainer) mayProbe(k utilization.Key, now time.Time) bool {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	ps := d.probes[k]
	if ps == nil {
		ps = &probeState{backoff: d.opt.ProbeBackoff}
		d.probes[k] = ps
	}
	if now.Before(ps.due()) {
		return false
	}
	ps.probed = true
	return true
}

// slots is how many jobs a deployment k at reading r may run at once.
// When the reading knows the window's size in tokens and the drain knows
// what its jobs cost there, as many as fit below the threshold (at least 1,
// at most Concurrency); otherwise Concurrency scaled by the headroom's
// share of the threshold, which near the threshold runs one job at a time
// (a run measured 37 of the 52 jobs a window holds while the interactive
// load's tokens left the window).
func (d *Drainer) slots(k utilization.Key, r utilization.Reading, threshold float64) int {
	if r.Capacity > 0 {
		d.coolMu.Lock()
		avg := 0.0
		if o := d.own[k]; o != nil {
			avg = o.avgTokens()
		}
		d.coolMu.Unlock()
		if avg > 0 {
			fit := (threshold - r.Percent/100) * r.Capacity / avg
			return min(d.opt.Concurrency, max(1, int(fit)))
		}
	}
	head := (threshold - r.Percent/100) / threshold
	return max(1, int(float64(d.opt.Concurrency)*head))
}

// place picks the allowed deployment with the most headroom for a job of
// model m. A deployment counts only with a fresh reading below the
// threshold; one with no fresh reading is unknown, which is busy, except
// that one job at a time may run there as a probe (its answer brings a
// sample). Deployments cooling after a 429 or with an open circuit are
// skipped. It reserves the slot it returns.
func (d *Drainer) place(m *route.Model, rs *round) placement {
	pol, ok := d.opt.Policies[m.Alias]
	if !ok || len(pol.Targets) == 0 {
		return placement{none: true}
	}
	now := d.now()
	var best, probe, repl *placement
	var retryAt time.Time
	wait := false
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, k := range pol.Targets {
		var t route.Target
		found := false
		for _, c := range m.Targets {
			if c.Backend != nil && c.Backend.Name == k.Backend && c.Deployment == k.Deployment {
				t, found = c, true
				break
			}
		}
		if !found || !t.Ready() || d.coolingUntil(k).After(now) {
			continue
		}
		r := d.loads.Utilization(k, pol.Threshold)
		busy := !r.Known() || d.observe(k, r, pol.Threshold, now)
		if busy && repl == nil {
			// Busy (or silent since a busy reading) with the drain's own
			// jobs in its window: take the place of those that left.
			if ok, next := d.replacement(k, pol.Threshold, now); ok {
				repl = &placement{target: t, key: k, reading: r, threshold: pol.Threshold, replace: true}
			} else if !next.IsZero() && (retryAt.IsZero() || next.Before(retryAt)) {
				retryAt = next
			}
		}
		switch {
		case !r.Known():
			if rs.probing[k] {
				wait = true
			} else if probe == nil {
				probe = &placement{target: t, key: k, reading: r, threshold: pol.Threshold, probe: true}
			}
		case !busy:
			if rs.inflight[k] >= d.slots(k, r, pol.Threshold) {
				wait = true
				continue
			}
			if best == nil || r.Percent < best.reading.Percent {
				best = &placement{target: t, key: k, reading: r, threshold: pol.Threshold}
			}
		}
	}
	var p *placement
	switch {
	case best != nil:
		p = best
	case repl != nil:
		p = repl
	case probe != nil && d.mayProbe(probe.key, now):
		p = probe
		rs.probing[p.key] = true
	default:
		return placement{wait: wait, retryAt: retryAt}
	}
	rs.inflight[p.key]++
	rs.total++
	p.own = d.sent(p.key, now, p.probe)
	return *p
}

// release frees p's slot.
func (rs *round) release(p placement) {
	rs.mu.Lock()
	rs.inflight[p.key]--
	if p.probe {
		rs.probing[p.key] = false
	}
	rs.total--
	rs.mu.Unlock()
	rs.done <- struct{}{}
}

func (d *Drainer) coolingUntil(k utilization.Key) time.Time {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	return d.cooling[k]
}

func (d *Drainer) cool(k utilization.Key, until time.Time) {
	d.coolMu.Lock()
	defer d.coolMu.Unlock()
	if until.After(d.cooling[k]) {
		d.cooling[k] = until
	}
}

// Drain runs one round: it takes messages while a deployment their
// policy allows has headroom, runs each on the allowed deployment with
// the most headroom, up to MaxPerRound, until the queue is empty, every
// allowed deployment of a job is busy (or cooling), or RoundTimeout passes.
// A 429 cools only the deployment that sent it; the round goes on.
func (d *Drainer) Drain(ctx context.Context) (RoundStats, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opt.RoundTimeout)
	defer cancel()
	var st RoundStats
	var mu sync.Mutex
	rs := &round{inflight: map[utilization.Key]int{}, probing: map[utilization.Key]bool{},
		done: make(chan struct{}, d.opt.MaxPerRound+1)}
	var wg sync.WaitGroup
	defer wg.Wait()
	count := func(outcome string) {
		mu.Lock()
		defer mu.Unlock()
		switch outcome {
		case "succeeded":
			st.Succeeded++
		case "failed":
			st.Failed++
		case "rescheduled":
			st.Rescheduled++
		default:
			st.Skipped++
		}
	}
	stop := func(why string) (RoundStats, error) {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		st.StoppedBy = why
		d.log.Debug("drain: round", "received", st.Received, "succeeded", st.Succeeded, "rescheduled", st.Rescheduled, "stopped", why)
		return st, nil
	}
	// waitOne waits for a running job to end; false when none runs.
	waitOne := func() bool {
		rs.mu.Lock()
		n := rs.total
		rs.mu.Unlock()
		if n == 0 {
			return false
		}
		select {
		case <-rs.done:
		case <-ctx.Done():
		}
		return true
	}
	if d.loads != nil {
		if err := d.loads.Refresh(ctx); err != nil {
			d.log.Warn("drain: shared utilization samples not read; using what is known", "error", err)
		}
	}
	for st.Received < d.opt.MaxPerRound {
		if ctx.Err() != nil {
			return stop("round timeout")
		}
		rs.mu.Lock()
		free := d.opt.Concurrency - rs.total
		rs.mu.Unlock()
		if free <= 0 {
			waitOne()
			continue
		}
		msgs, err := d.q.Receive(ctx, 1, 200*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				return stop("round timeout")
			}
			wg.Wait()
			return st, fmt.Errorf("drain: receive: %w", err)
		}
		if len(msgs) == 0 {
			return stop("queue empty")
		}
		st.Received++
		m := msgs[0]
		if m.Properties["kind"] == kindCallback {
			// A callback delivery needs no deployment: never held back by a busy pool.
			outcome, err := d.deliver(ctx, m)
			count(outcome)
			if err != nil {
				d.log.Warn("drain: callback", "job", m.ID, "error", err)
			}
			continue
		}
		j, model, outcome, err := d.prepare(ctx, m)
		if j == nil {
			count(outcome)
			if err != nil {
				d.log.Warn("drain: job", "job", m.ID, "error", err)
			}
			continue
		}
		var p placement
		holdUntil := time.Now().Add(d.opt.BusyDelay)
		for {
			if d.loads != nil {
				_ = d.loads.Refresh(ctx) // errors logged above; the view ages out on its own
			}
			p = d.place(model, rs)
			if ctx.Err() != nil {
				break
			}
			if p.wait && waitOne() {
				continue
			}
			// One of the drain's own jobs leaves a busy deployment's
			// window soon: hold the message until then (or until a job
			// ends) rather than end the round and lose the moment.
			if wait := p.retryAt.Sub(d.now()); !p.retryAt.IsZero() && time.Until(holdUntil) > 0 {
				d.log.Debug("drain: wait for an own job to leave the window", "in", wait)
				t := time.NewTimer(min(max(wait, time.Millisecond), time.Until(holdUntil)))
				select {
				case <-t.C:
				case <-rs.done:
				case <-ctx.Done():
				}
				t.Stop()
				continue
			}
			break
		}
		if p.none {
			outcome, err := d.finish(ctx, m, j, StatusFailed, 0, "", nil, "no deployment of model "+j.Model+" may run low-priority jobs (models."+j.Model+".jobs)")
			count(outcome)
			if err != nil {
				d.log.Warn("drain: job", "job", m.ID, "error", err)
			}
			continue
		}
		if p.target.Backend == nil {
			// Every allowed deployment is busy, cooling or being probed.
			if err := d.q.Reschedule(ctx, m, d.now().Add(d.opt.BusyDelay)); err != nil {
				d.log.Warn("drain: job", "job", m.ID, "error", err)
				count("skipped")
			} else {
				count("rescheduled")
			}
			return stop("pool busy")
		}
		d.log.Debug("drain: job placed", "job", m.ID, "backend", p.key.Backend, "deployment", p.key.Deployment,
			"source", string(p.reading.Source), "percent", drainPercent(p.reading), "probe", p.probe, "replace", p.replace)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer rs.release(p)
			outcome, err := d.run(ctx, m, j, model, p)
			count(outcome)
			if err != nil {
				d.log.Warn("drain: job", "job", m.ID, "error", err)
			}
		}()
	}
	return stop("round limit")
}

// prepare reads the job of m and settles the messages that need no run
// (no job row, already terminal, model gone, submitter revoked). It
// returns the job and its model when the job should run.
func (d *Drainer) prepare(ctx context.Context, m *queue.Message) (*Job, *route.Model, string, error) {
	keyID := m.Properties["key"]
	j, err := d.st.Get(ctx, keyID, m.ID)
	if errors.Is(err, ErrNotFound) {
		if err := d.q.DeadLetter(ctx, m, "JobNotFound", "no job row for this message"); err != nil {
			return nil, nil, "skipped", err
		}
		d.release(ctx, m)
		return nil, nil, "skipped", nil
	}
	if err != nil {
		return nil, nil, "skipped", err // lock expires; redelivered later
	}
	if j.Status.Terminal() {
		// Cancelled, or a duplicate delivery of a finished job.
		if err := d.q.Complete(ctx, m); err != nil {
			return nil, nil, "skipped", err
		}
		d.release(ctx, m)
		return nil, nil, "skipped", nil
	}
	m2, err := d.models.Model(j.Model)
	if err != nil {
		outcome, err := d.finish(ctx, m, j, StatusFailed, 0, "", nil, "model "+j.Model+" is no longer configured")
		return nil, nil, outcome, err
	}
	if d.Authorize != nil {
		if err := d.Authorize(ctx, j); errors.Is(err, ErrRevoked) {
			outcome, err := d.finish(ctx, m, j, StatusFailed, http.StatusUnauthorized, "", nil, "the API key that submitted the job was revoked")
			return nil, nil, outcome, err
		} else if err != nil {
			return nil, nil, "skipped", err // lock expires; redelivered later
		}
	}
	return j, m2, "", nil
}

// run runs a prepared job on p's deployment only and settles its message.
func (d *Drainer) run(ctx context.Context, m *queue.Message, j *Job, model *route.Model, p placement) (string, error) {
	keyID := j.KeyID
	// A large body is in blob storage (claim check): load it before the
	// job counts an attempt.
	body, err := d.Claims.Body(ctx, m)
	if errors.Is(err, claim.ErrMissing) {
		return d.finish(ctx, m, j, StatusFailed, 0, "", nil, "the request body of the job is missing from blob storage")
	}
	if err != nil {
		return "skipped", err // storage unreachable: the lock expires; redelivered later
	}
	// Mark running; a cancel that won the race ends here.
	j, applied, err := d.st.Update(ctx, keyID, m.ID, func(j *Job) bool {
		if j.Status.Terminal() {
			return false
		}
		j.Status = StatusRunning
		j.Attempts++
		if j.StartedAt.IsZero() {
			j.StartedAt = d.now().UTC().Truncate(time.Millisecond)
		}
		return true
	})
	if err != nil {
		return "skipped", err
	}
	if !applied {
		if err := d.q.Complete(ctx, m); err != nil {
			return "skipped", err
		}
		d.release(ctx, m)
		return "skipped", nil
	}
	m2 := model.Only(p.target)
	res, w, err := d.execute(ctx, m, body, j, m2, p)
	if p.own != nil {
		d.finished(p.own, res.Usage.PromptTokens+res.Usage.CompletionTokens, d.loads.Utilization(p.key, p.threshold))
	}
	if p.probe {
		d.learn(p)
	}
	if err != nil {
		return d.finish(ctx, m, j, StatusFailed, 0, "", nil, "invalid request: "+err.Error())
	}
	if d.OnDone != nil && res.Backend != "" {
		d.OnDone(ctx, j, res)
	}
	switch {
	case res.Status >= 200 && res.Status < 300 && res.Complete:
		return d.finish(ctx, m, j, StatusSucceeded, res.Status, w.Header().Get("Content-Type"), w.body.Bytes(), "")
	case res.Status == http.StatusTooManyRequests:
		wait := retryAfter(w.Header())
		if _, _, err := d.st.Update(ctx, keyID, j.ID, func(j *Job) bool {
			if j.Status.Terminal() {
				return false
			}
			j.Status = StatusQueued
			return true
		}); err != nil {
			return "skipped", err
		}
		// Only this deployment cools; the round goes on elsewhere.
		d.cool(p.key, d.now().Add(wait))
		if err := d.q.Reschedule(ctx, m, d.now().Add(wait)); err != nil {
			return "skipped", err
		}
		return "rescheduled", nil
	case res.Status >= 400 && res.Status < 500 && res.Status != http.StatusRequestTimeout && res.Status != httperrClientClosed:
		// The backend refused the request itself: retrying will not help.
		return d.finish(ctx, m, j, StatusFailed, res.Status, w.Header().Get("Content-Type"), w.body.Bytes(), "the backend refused the request")
	default:
		// 5xx, 408, a timeout or a cut response: transient.
		if j.Attempts >= d.opt.MaxAttempts {
			if err := d.q.DeadLetter(ctx, m, "MaxAttemptsExceeded", fmt.Sprintf("last status %d", res.Status)); err != nil {
				return "skipped", err
			}
			_, _, err := d.st.Update(ctx, keyID, j.ID, func(j *Job) bool {
				if j.Status.Terminal() {
					return false
				}
				j.Status, j.Error, j.ResultStatus = StatusFailed, fmt.Sprintf("gave up after %d attempts (last status %d)", j.Attempts, res.Status), res.Status
				j.FinishedAt = d.now().UTC().Truncate(time.Millisecond)
				return true
			})
			if err == nil {
				d.release(ctx, m) // the job failed for good; its dead letter is for operators
			}
			return "failed", err
		}
		if _, _, err := d.st.Update(ctx, keyID, j.ID, func(j *Job) bool {
			if j.Status.Terminal() {
				return false
			}
			j.Status = StatusQueued
			return true
		}); err != nil {
			return "skipped", err
		}
		backoff := time.Duration(1<<min(j.Attempts, 6)) * time.Second
		return "rescheduled", d.q.Reschedule(ctx, m, d.now().Add(backoff))
	}
}

const httperrClientClosed = httperr.StatusClientClosedRequest

// release deletes the message's body blob (claim check) once its job is
// finished for good. A failure only leaves an orphan blob, which the
// storage lifecycle rule of the job-bodies container removes later.
func (d *Drainer) release(ctx context.Context, m *queue.Message) {
	if err := d.Claims.Release(context.WithoutCancel(ctx), m); err != nil {
		d.log.Warn("drain: delete the job's request body blob", "job", m.ID, "error", err)
	}
}

// finish stores the outcome (unless the job is already terminal), then
// completes the message, then sends the callback. Storing before completing
// means a crash in between only redelivers a finished job, which is then
// completed without running again.
func (d *Drainer) finish(ctx context.Context, m *queue.Message, j *Job, status Status, code int, ctype string, body []byte, msg string) (string, error) {
	if len(body) > maxResult {
		body, msg = nil, fmt.Sprintf("result of %d bytes is larger than the %d bytes a job keeps", len(body), maxResult)
		status = StatusFailed
	}
	stored, applied, err := d.st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool {
		if j.Status.Terminal() {
			return false
		}
		j.Status, j.ResultStatus, j.ResultContentType, j.ResultBody, j.Error = status, code, ctype, body, msg
		j.FinishedAt = d.now().UTC().Truncate(time.Millisecond)
		return true
	})
	if err != nil {
		return "skipped", err
	}
	if applied && stored.CallbackURL != "" {
		// Queue the callback before completing the job's message: a crash
		// in between redelivers the job, which queues the same callback
		// message again (same id: a duplicate the queue drops).
		if err := d.queueCallback(ctx, stored); err != nil {
			return "skipped", err // the lock expires; the finished job is redelivered
		}
	}
	if err := d.q.Complete(ctx, m); err != nil && !errors.Is(err, queue.ErrLockLost) {
		return string(status), err
	}
	// The job is terminal in its row, so a redelivery completes without
	// reading the body: the blob can go now.
	d.release(ctx, m)
	if !applied {
		return "skipped", nil
	}
	return string(status), nil
}

// execute forwards the job's request through the proxy into a buffer.
// The job continues the submitter's trace (the traceparent kept in the
// message), so its backend attempts share the submitter's operation id.
func (d *Drainer) execute(ctx context.Context, m *queue.Message, body []byte, j *Job, model *route.Model, p placement) (proxy.Result, *resultWriter, error) {
	style := openai.StyleV1
	switch m.Properties["style"] {
	case "deployment":
		style = openai.StyleDeployment
	case "azure":
		style = openai.StyleAzure
	}
	op, ok := openai.ParseOp(m.Properties["op"])
	if !ok {
		return proxy.Result{}, nil, fmt.Errorf("unknown operation %q", m.Properties["op"])
	}
	q, _ := url.ParseQuery(m.Properties["query"])
	req, err := openai.Parse(op, style, m.Properties["model"], q.Get("api-version"), body)
	if err != nil {
		return proxy.Result{}, nil, err
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, "/"+string(op), http.NoBody)
	if err != nil {
		return proxy.Result{}, nil, err
	}
	if tp := m.Properties["traceparent"]; tp != "" {
		r.Header.Set("Traceparent", tp)
	}
	w := &resultWriter{h: http.Header{}}
	tr := telemetry.FromHeader(r.Header)
	start := time.Now()
	// The caller's data-residency regions hold for its queued jobs too.
	res := d.fwd.Forward(w, r, model, proxy.Call{Req: req, Body: body, RawQuery: m.Properties["query"], RequestID: m.ID, Trace: tr,
		Caller: m.Properties["key"], Regions: strings.FieldsFunc(m.Properties["regions"], func(r rune) bool { return r == ',' })})
	if d.Telemetry != nil {
		d.Telemetry.TrackRequest(telemetry.Request{Trace: tr, Name: "RUN " + string(op), URL: "/" + string(op), Start: start,
			Duration: time.Since(start), Status: res.Status,
			Properties: map[string]string{"team": j.Team, "app": j.App, "key_id": j.KeyID, "model": j.Model, "operation": string(op),
				"backend": res.Backend, "deployment": res.Deployment, "region": res.Region, "class": "batch",
				"retries": strconv.Itoa(max(res.Attempts-1, 0)), "request_id": m.ID, "job_id": j.ID,
				"drain_source": string(p.reading.Source), "drain_probe": strconv.FormatBool(p.probe)},
			Measurements: map[string]float64{"prompt_tokens": float64(res.Usage.PromptTokens),
				"completion_tokens": float64(res.Usage.CompletionTokens), "cached_tokens": float64(res.Usage.CachedTokens),
				"reasoning_tokens": float64(res.Usage.ReasoningTokens), "drain_utilization": drainPercent(p.reading)}})
	}
	return res, w, nil
}

// resultWriter is the ResponseWriter a job's answer is written into.
type resultWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *resultWriter) Header() http.Header { return w.h }
func (w *resultWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *resultWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.body.Len() <= maxResult { // keep one byte over to detect "too large"
		w.body.Write(b[:min(len(b), maxResult+1-w.body.Len())])
	}
	return len(b), nil
}

// retryAfter reads retry-after-ms / retry-after; default 5 s.
func retryAfter(h http.Header) time.Duration {
	if v, err := strconv.Atoi(h.Get("Retry-After-Ms")); err == nil && v > 0 {
		return time.Duration(v) * time.Millisecond
	}
	if v, err := strconv.Atoi(h.Get("Retry-After")); err == nil && v > 0 {
		return time.Duration(v) * time.Second
	}
	return 5 * time.Second
}

// Callback is the body POSTed to a job's callback URL.
type Callback struct {
	ID           string `json:"id"`
	Status       Status `json:"status"`
	ResultStatus int    `json:"result_status,omitempty"`
	Error        string `json:"error,omitempty"`
	// Location is where the full result can be read.
	Location string `json:"location"`
}

// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
// "<t>.<body>">" (see [callback.Sign]).
const SignatureHeader = callback.SignatureHeader

// kindCallback marks a queue message that delivers a job's callback.
const kindCallback = "callback"

// queueCallback queues the delivery of j's callback, due now.
func (d *Drainer) queueCallback(ctx context.Context, j *Job) error {
	if err := d.q.Send(ctx, queue.Outgoing{ID: "cb-" + j.ID, Properties: map[string]string{
		"kind": kindCallback, "key": j.KeyID, "job": j.ID}}); err != nil {
		return err
	}
	_, _, err := d.st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool {
		if j.CallbackState != "" {
			return false
		}
		j.CallbackState = "pending"
		return true
	})
	return err
}

// callbackBackoff is the wait after the n-th failed delivery: 30 s
// doubling up to 1 h, with ±50% jitter so many callbacks to one receiver
// that failed together do not retry together.
func callbackBackoff(n int, jitter float64) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < time.Hour; i++ {
		d *= 2
	}
	d = min(d, time.Hour)
	return time.Duration(float64(d) * (0.5 + jitter))
}

// deliver sends one job's callback (a callback queue message). A failure
// is rescheduled with backoff until CallbackRetryFor has passed since the
// job finished; the state on the job says where delivery stands, with the
// receiver's HTTP status at most, never a connection error's text (which
// would map what listens where).
func (d *Drainer) deliver(ctx context.Context, m *queue.Message) (string, error) {
	j, err := d.st.Get(ctx, m.Properties["key"], m.Properties["job"])
	if errors.Is(err, ErrNotFound) {
		return "skipped", d.q.Complete(ctx, m)
	}
	if err != nil {
		return "skipped", err
	}
	body, _ := json.Marshal(Callback{ID: j.ID, Status: j.Status, ResultStatus: j.ResultStatus, Error: j.Error, Location: "/jobs/" + j.ID})
	outcome := d.post(ctx, j.CallbackURL, body)
	n := m.DeliveryCount
	var state string
	switch {
	case outcome == "":
		state = "delivered"
		if n > 1 {
			state = "delivered after " + strconv.Itoa(n) + " attempts"
		}
	case d.now().Sub(m.EnqueuedAt) >= d.opt.CallbackRetryFor:
		state = fmt.Sprintf("failed: not accepted after %d attempts over %v (last: %s)", n,
			d.now().Sub(m.EnqueuedAt).Round(time.Minute), outcome)
	default:
		next := d.now().Add(callbackBackoff(n, rand.Float64())).UTC().Truncate(time.Second)
		if err := d.q.Reschedule(ctx, m, next); err != nil {
			return "skipped", err
		}
		state = fmt.Sprintf("retrying: attempt %d failed (%s); next at %s", n, outcome, next.Format(time.RFC3339))
		_, _, _ = d.st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool { j.CallbackState = state; return true })
		return "rescheduled", nil
	}
	if _, _, err := d.st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool { j.CallbackState = state; return true }); err != nil {
		return "skipped", err
	}
	if strings.HasPrefix(state, "failed") {
		d.log.Warn("job callback given up", "job", j.ID, "attempts", n, "last", outcome)
	}
	return "succeeded", d.q.Complete(ctx, m)
}

// post sends a callback once: "" when the receiver accepted it (2xx),
// else a short reason safe to show ("HTTP 503", "connection failed",
// "destination refused").
func (d *Drainer) post(ctx context.Context, url string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "invalid URL"
	}
	req.Header.Set("Content-Type", "application/json")
	if d.opt.CallbackSecret != "" {
		req.Header.Set(SignatureHeader, callback.Sign(d.opt.CallbackSecret, d.now(), body))
	}
	resp, err := d.opt.CallbackClient.Do(req)
	if err != nil {
		if errors.Is(err, callback.ErrRefused) {
			return "destination refused (not a public address)"
		}
		return "connection failed"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return ""
}

// drainPercent is the utilization a job was placed on, for telemetry; -1
// when it ran as a probe of an unknown deployment.
func drainPercent(r utilization.Reading) float64 {
	if !r.Known() {
		return -1
	}
	return r.Percent
}
