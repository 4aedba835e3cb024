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
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/telemetry"
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

// Gauge tells how busy a model's pool is, 0 (idle) to 1 (full).
type Gauge interface {
	Utilization(model string) float64
}

// Submission is what the HTTP layer hands to Submit.
type Submission struct {
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
	j := &Job{ID: newID(), KeyID: s.KeyID, Team: s.Team, App: s.App, Model: s.Req.Model, Op: string(s.Req.Op), CallbackURL: s.CallbackURL}
	if err := st.Create(ctx, j); err != nil {
		return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "job_store_unavailable", "The gateway cannot record the job right now. Retry shortly.")
	}
	style := "v1"
	if s.Req.Style == openai.StyleDeployment {
		style = "deployment"
	}
	err := q.Send(ctx, queue.Outgoing{ID: j.ID, Body: s.Body, Properties: map[string]string{
		"key": s.KeyID, "op": string(s.Req.Op), "style": style, "model": s.Req.Model,
		"query": s.RawQuery, "traceparent": s.Traceparent, "regions": strings.Join(s.Regions, ","),
	}})
	if err != nil {
		_, _, _ = st.Update(ctx, j.KeyID, j.ID, func(j *Job) bool {
			j.Status, j.Error = StatusFailed, "could not enqueue the request"
			return true
		})
		return nil, httperr.Wrap(err, http.StatusServiceUnavailable, "queue_unavailable", "The gateway cannot queue the request right now. Retry shortly.")
	}
	return j, nil
}

// DrainOptions tune a drain round. Zero values take the defaults noted.
type DrainOptions struct {
	// Target utilization: jobs run only while their pool is below it. Default 0.7.
	Target float64
	// RoundTimeout bounds one round, well inside the Functions timeout. Default 4m.
	RoundTimeout time.Duration
	// MaxPerRound caps the messages one round takes. Default 500.
	MaxPerRound int
	// Concurrency is how many jobs run at once. Default 4.
	Concurrency int
	// MaxAttempts before a job fails for good on transient errors. Default 5.
	MaxAttempts int
	// BusyDelay is how long a job waits again when its pool is busy. The
	// round stops at the first busy job, so this only keeps the next round
	// from taking the same message first. Default 1s.
	BusyDelay time.Duration
	// ProbeAfter: a busy reading with no fresh sample behind it for this
	// long is not trusted; the round runs one job as a probe, whose answer
	// refreshes the sample. Default 2s.
	ProbeAfter time.Duration
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
	gauge  Gauge
	log    *slog.Logger
	opt    DrainOptions
	now    func() time.Time
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
}

// ErrRevoked is returned by a Drainer's Authorize for a submitter that may
// no longer run jobs (its key was revoked).
var ErrRevoked = errors.New("jobs: the submitting credential was revoked")

// NewDrainer builds a drainer; it starts nothing.
func NewDrainer(st *Store, q consumer, models resolver, fwd forwarder, gauge Gauge, log *slog.Logger, opt DrainOptions) *Drainer {
	if opt.Target <= 0 {
		opt.Target = 0.7
	}
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
	if opt.ProbeAfter <= 0 {
		opt.ProbeAfter = 2 * time.Second
	}
	if opt.CallbackClient == nil {
		opt.CallbackClient, _ = callback.Policy{}.Client(10 * time.Second)
	}
	if opt.CallbackRetryFor <= 0 {
		opt.CallbackRetryFor = 24 * time.Hour
	}
	return &Drainer{st: st, q: q, models: models, fwd: fwd, gauge: gauge, log: log, opt: opt, now: st.now}
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

// errStop ends a round early (a backend said 429).
var errStop = errors.New("stop round")

// errBusy ends a round early: a job's pool is at the drain target.
var errBusy = errors.New("pool busy")

// round is the state one Drain round shares between its jobs.
type round struct {
	mu     sync.Mutex
	probed map[string]bool // models that already had their probe this round
}

// sampler is the optional ability of a Gauge to tell when the deployments
// last reported their load ([route.Router.Status]).
type sampler interface {
	Status() []route.BackendStatus
}

// busy reports whether model's pool is at the drain target. A busy reading
// is only trusted while some deployment of the pool reported its load in
// the last ProbeAfter: the gauge keeps the last sample for up to a minute,
// so once interactive traffic stops it would say "busy" long after the
// backend's window has emptied, and the spare capacity would go unused
// (issue 6). With no fresh sample the round runs one job of that model as
// a probe; its answer brings a fresh sample, and a 429 stops the round.
func (d *Drainer) busy(model string, rs *round) bool {
	if d.gauge == nil || d.gauge.Utilization(model) < d.opt.Target {
		return false
	}
	s, ok := d.gauge.(sampler)
	if !ok {
		return true
	}
	m, err := d.models.Model(model)
	if err != nil {
		return true
	}
	var newest time.Time
	for _, b := range s.Status() {
		for _, t := range m.Targets {
			if t.Backend == nil || t.Backend.Name != b.Name {
				continue
			}
			for _, dep := range b.Deployments {
				if dep.Name == t.Deployment && dep.Utilization != nil && dep.Utilization.At.After(newest) {
					newest = dep.Utilization.At
				}
			}
		}
	}
	if d.now().Sub(newest) < d.opt.ProbeAfter {
		return true
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.probed[model] {
		return true
	}
	rs.probed[model] = true
	return false
}

// Drain runs one round: it receives messages while there is capacity and
// runs them, up to MaxPerRound, until the queue is empty, a backend
// throttles, or RoundTimeout passes.
func (d *Drainer) Drain(ctx context.Context) (RoundStats, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opt.RoundTimeout)
	defer cancel()
	var st RoundStats
	var mu sync.Mutex
	stop := false
	rs := &round{probed: map[string]bool{}}
	for st.Received < d.opt.MaxPerRound && !stop {
		if ctx.Err() != nil {
			st.StoppedBy = "round timeout"
			return st, nil
		}
		// The first batch of a round is one message: it finds out whether
		// the pool has room before Concurrency jobs are taken (and pushed
		// back when it has none).
		n := min(d.opt.Concurrency, d.opt.MaxPerRound-st.Received)
		if st.Received == 0 {
			n = 1
		}
		msgs, err := d.q.Receive(ctx, n, 200*time.Millisecond)
		if err != nil {
			if ctx.Err() != nil {
				st.StoppedBy = "round timeout"
				return st, nil
			}
			return st, fmt.Errorf("drain: receive: %w", err)
		}
		if len(msgs) == 0 {
			st.StoppedBy = "queue empty"
			return st, nil
		}
		st.Received += len(msgs)
		var wg sync.WaitGroup
		for _, m := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				outcome, err := d.run(ctx, m, rs)
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
				switch {
				case errors.Is(err, errStop):
					stop = true
					st.StoppedBy = "backend throttled (429)"
				case errors.Is(err, errBusy):
					// The pool is at the target: taking more messages would
					// only push them back too. The next round looks again.
					stop = true
					if st.StoppedBy == "" {
						st.StoppedBy = "pool busy"
					}
				case err != nil:
					d.log.Warn("drain: job", "job", m.ID, "error", err)
				}
			}()
		}
		wg.Wait()
	}
	if st.StoppedBy == "" {
		st.StoppedBy = "round limit"
	}
	return st, nil
}

// run processes one message and settles it.
func (d *Drainer) run(ctx context.Context, m *queue.Message, rs *round) (string, error) {
	if m.Properties["kind"] == kindCallback {
		return d.deliver(ctx, m)
	}
	keyID := m.Properties["key"]
	j, err := d.st.Get(ctx, keyID, m.ID)
	if errors.Is(err, ErrNotFound) {
		return "skipped", d.q.DeadLetter(ctx, m, "JobNotFound", "no job row for this message")
	}
	if err != nil {
		return "skipped", err // lock expires; redelivered later
	}
	if j.Status.Terminal() {
		return "skipped", d.q.Complete(ctx, m) // cancelled, or a duplicate delivery of a finished job
	}
	if d.busy(j.Model, rs) {
		if err := d.q.Reschedule(ctx, m, d.now().Add(d.opt.BusyDelay)); err != nil {
			return "skipped", err
		}
		return "rescheduled", errBusy
	}
	m2, err := d.models.Model(j.Model)
	if err != nil {
		return d.finish(ctx, m, j, StatusFailed, 0, "", nil, "model "+j.Model+" is no longer configured")
	}
	if d.Authorize != nil {
		if err := d.Authorize(ctx, j); errors.Is(err, ErrRevoked) {
			return d.finish(ctx, m, j, StatusFailed, http.StatusUnauthorized, "", nil, "the API key that submitted the job was revoked")
		} else if err != nil {
			return "skipped", err // lock expires; redelivered later
		}
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
		return "skipped", d.q.Complete(ctx, m)
	}
	res, w, err := d.execute(ctx, m, j, m2)
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
		if err := d.q.Reschedule(ctx, m, d.now().Add(wait)); err != nil {
			return "skipped", err
		}
		return "rescheduled", errStop
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
	if !applied {
		return "skipped", nil
	}
	return string(status), nil
}

// execute forwards the job's request through the proxy into a buffer.
// The job continues the submitter's trace (the traceparent kept in the
// message), so its backend attempts share the submitter's operation id.
func (d *Drainer) execute(ctx context.Context, m *queue.Message, j *Job, model *route.Model) (proxy.Result, *resultWriter, error) {
	style := openai.StyleV1
	if m.Properties["style"] == "deployment" {
		style = openai.StyleDeployment
	}
	op, ok := openai.ParseOp(m.Properties["op"])
	if !ok {
		return proxy.Result{}, nil, fmt.Errorf("unknown operation %q", m.Properties["op"])
	}
	q, _ := url.ParseQuery(m.Properties["query"])
	req, err := openai.Parse(op, style, m.Properties["model"], q.Get("api-version"), m.Body)
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
	res := d.fwd.Forward(w, r, model, proxy.Call{Req: req, Body: m.Body, RawQuery: m.Properties["query"], RequestID: m.ID, Trace: tr,
		Caller: m.Properties["key"], Regions: strings.FieldsFunc(m.Properties["regions"], func(r rune) bool { return r == ',' })})
	if d.Telemetry != nil {
		d.Telemetry.TrackRequest(telemetry.Request{Trace: tr, Name: "RUN " + string(op), URL: "/" + string(op), Start: start,
			Duration: time.Since(start), Status: res.Status,
			Properties: map[string]string{"team": j.Team, "app": j.App, "key_id": j.KeyID, "model": j.Model, "operation": string(op),
				"backend": res.Backend, "deployment": res.Deployment, "region": res.Region, "class": "batch",
				"retries": strconv.Itoa(max(res.Attempts-1, 0)), "request_id": m.ID, "job_id": j.ID},
			Measurements: map[string]float64{"prompt_tokens": float64(res.Usage.PromptTokens),
				"completion_tokens": float64(res.Usage.CompletionTokens), "cached_tokens": float64(res.Usage.CachedTokens),
				"reasoning_tokens": float64(res.Usage.ReasoningTokens)}})
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
