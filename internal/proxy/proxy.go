package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tidwall/gjson"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/upstream"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Options tune a Proxy. Zero values take the defaults noted.
type Options struct {
	// MaxAttempts caps backend attempts per call. Default 3.
	MaxAttempts int
	// TryDuration caps the time before the first byte across attempts. Default 60s.
	TryDuration time.Duration
	// MaxRetryWait caps how long a call waits to try the same target
	// again when no other target is eligible: a 429's retry-after-ms /
	// retry-after, or the backoff after a 5xx or connection error. A
	// longer wait is not waited: the client gets the answer at once.
	// Default 2s; negative: never wait (fail over only).
	MaxRetryWait time.Duration
	// RetryBackoff is the first backoff before retrying the same target
	// after a 5xx or connection error; it doubles per attempt, with
	// jitter (a uniform draw in its upper half). Default 200ms.
	RetryBackoff time.Duration
	// StreamIdleTimeout aborts a response when no byte arrives for this long. Default 120s.
	StreamIdleTimeout time.Duration
	// ExposeBackend adds x-gateway-backend, x-gateway-deployment and (when
	// the target has one) x-gateway-model-version response headers.
	ExposeBackend bool
	// Observer, when set, is told about every attempt (telemetry).
	Observer Observer
	// AffinityHeader names the request header whose value, when present,
	// replaces the caller's key id for canary stickiness. It is not sent to
	// backends. Default "" (key id only).
	AffinityHeader string
	// Affinity, when set, routes Responses API calls with
	// previous_response_id to the backend that created that response.
	Affinity Affinity
}

// Affinity remembers which backend created a Responses API response.
// Remember must not block; Lookup may read a store.
type Affinity interface {
	Remember(responseID, backend, owner string)
	Lookup(ctx context.Context, responseID string) (backend string, ok bool)
}

// Proxy forwards calls. Safe for concurrent use.
type Proxy struct {
	rt   http.RoundTripper
	log  *slog.Logger
	opt  Options
	bufs sync.Pool
}

// New returns a Proxy sending through rt.
func New(rt http.RoundTripper, log *slog.Logger, opt Options) *Proxy {
	if opt.MaxAttempts <= 0 {
		opt.MaxAttempts = 3
	}
	if opt.TryDuration <= 0 {
		opt.TryDuration = 60 * time.Second
	}
	if opt.StreamIdleTimeout <= 0 {
		opt.StreamIdleTimeout = 120 * time.Second
	}
	if opt.MaxRetryWait == 0 {
		opt.MaxRetryWait = 2 * time.Second
	}
	if opt.RetryBackoff <= 0 {
		opt.RetryBackoff = 200 * time.Millisecond
	}
	// Canonical once, so that reading and dropping it per request does
	// not canonicalize (and allocate) it each time.
	opt.AffinityHeader = http.CanonicalHeaderKey(opt.AffinityHeader)
	p := &Proxy{rt: rt, log: log, opt: opt}
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return p
}

// NewTransport returns the transport the gateway uses for backends: an
// HTTP/1.1 client that writes and reads on the caller's goroutine
// (internal/upstream), with pooled keep-alive connections, no transparent
// compression (we read the bytes we forward), and no overall client timeout
// (streams may be long; deadlines are per attempt and per idle chunk
// instead). What it does not handle itself (an HTTP proxy from the
// environment, bodies of unknown length) goes to NewHTTP2Transport's.
func NewTransport() http.RoundTripper {
	t := upstream.New(NewHTTP2Transport())
	t.Proxy = http.ProxyFromEnvironment
	return t
}

// NewHTTP2Transport returns net/http's Transport as the gateway tunes it:
// HTTP/2 to HTTPS backends that offer it (proxy.backendHTTP2), pooled
// keep-alive connections, no transparent compression, no overall timeout.
func NewHTTP2Transport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// Call is one client call, already authenticated and parsed.
type Call struct {
	Req openai.Request
	// Body is sent to every attempt (rewritten per target when needed).
	Body []byte
	// RawQuery is the client's query string (api-version).
	RawQuery string
	// StripUsageChunk removes the usage-only SSE chunk the gateway asked for
	// on the client's behalf.
	StripUsageChunk bool
	RequestID       string
	// Caller is the caller's key id: what canary stickiness hashes unless
	// the affinity header is set.
	Caller string
	// Regions the caller may be served from; empty means any.
	Regions []string
	// Trace is the request's span; each attempt gets a child span, sent to
	// the backend as traceparent. Zero: the client's traceparent passes as is.
	Trace telemetry.Trace
}

// Attempt is one backend attempt, reported to the Observer.
type Attempt struct {
	// Trace is the attempt's span (a child of Call.Trace).
	Trace                       telemetry.Trace
	Number                      int
	Backend, Deployment, Region string
	// Target is the backend host, Path the request path without query.
	Target, Path string
	Start        time.Time
	// Duration runs to the end of the response for the attempt that
	// answered the client, to the response headers for the others.
	Duration time.Duration
	// Status is 0 when no response arrived (Err says why).
	Status int
	Err    error
}

// Observer hears about every backend attempt, failed and retried ones
// included. It must not block.
type Observer interface {
	ObserveAttempt(ctx context.Context, c *Call, a Attempt)
}

// Result says what happened, for usage and logs.
type Result struct {
	Status     int
	Usage      usage.Usage
	Backend    string
	Deployment string
	Region     string
	Attempts   int
	// TTFB is the time until the backend's response headers.
	TTFB time.Duration
	// Complete is false when the response was cut (upstream or client).
	Complete bool
	// Aborted: the upstream failed after headers were sent; the caller must
	// abort the client connection (panic http.ErrAbortHandler) after
	// accounting, so the client sees a broken stream, not a clean end.
	Aborted bool
	// Text is the streamed completion text when the caller asked to keep it.
	Text string
	Err  error
}

// retryable reports statuses worth another backend (before the first byte).
func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Forward sends c to m's targets in plan order and writes the response to w.
// When no target may take the call it answers itself: 403 when none is in
// the caller's regions, 429 with the shortest retry-after when every
// allowed one is cooling, 503 when every circuit is open. When every
// attempt fails without a response it writes an OpenAI-shaped 502/504. It
// never writes after a client disconnect.
//
// Every attempt reports to the backend's breaker, a 429 cools its
// deployment for the retry-after it names, and every response's
// utilization headers are kept for the admin endpoint.
//
// When no other target is eligible, a failed attempt is retried on the
// same target (see [Proxy.retryWait]) after waiting, racing the client's
// ctx; a wait above Options.MaxRetryWait is not waited and the client
// gets the backend's answer (a 429 with its retry-after) at once. Every
// allowed target cooling for at most MaxRetryWait is waited out once too.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, m *route.Model, c Call) Result {
	ctx := r.Context()
	start := time.Now()
	deadline := start.Add(p.opt.TryDuration)
	q := route.Request{Regions: c.Regions, Sticky: c.Caller}
	if p.opt.AffinityHeader != "" {
		if v := r.Header.Get(p.opt.AffinityHeader); v != "" {
			q.Sticky = v
		}
	}
	if p.opt.Affinity != nil && c.Req.PreviousResponseID != "" {
		q.Backend, _ = p.opt.Affinity.Lookup(ctx, c.Req.PreviousResponseID)
	}
	var planBuf [8]route.Target
	plan, err := m.Plan(planBuf[:0], q)
	res := Result{}
	if err != nil {
		// Every allowed target is cooling: wait for the first one once,
		// when that is short enough, rather than answer 429.
		var un *route.Unavailable
		if !errors.As(err, &un) || !errors.Is(err, route.ErrAllCooling) || !p.canWait(un.RetryAfter, deadline) {
			return p.refuse(w, err, &res)
		}
		wait := un.RetryAfter
		if s := spread(wait); time.Until(deadline) > s {
			wait = s
		}
		if sleep(ctx, wait) != nil {
			res.Status, res.Err = httperr.StatusClientClosedRequest, ctx.Err()
			return res
		}
		if plan, err = m.Plan(planBuf[:0], q); err != nil {
			return p.refuse(w, err, &res)
		}
	}
	// next returns the index of the first target from i on whose breaker
	// lets a call through (taking the half-open probe if it is one), or -1.
	next := func(i int) int {
		for ; i < len(plan); i++ {
			if plan[i].Backend.Health.Allow() {
				return i
			}
		}
		return -1
	}
	i := next(0)
	if i < 0 {
		return p.refuse(w, &route.Unavailable{Reason: route.ErrNoHealthyBackend}, &res)
	}
	var lastErr error
	for {
		t := plan[i]
		res.Attempts++
		res.Backend, res.Deployment, res.Region = t.Backend.Name, t.Deployment, t.Backend.Region
		left := time.Until(deadline)
		if left <= 0 {
			t.Backend.Health.Record(httperr.StatusClientClosedRequest, 0) // release a probe; no verdict
			break
		}
		aStart := time.Now()
		var span telemetry.Trace
		if c.Trace.TraceID != "" {
			span = c.Trace.Child()
		}
		resp, cancel, timedOut, err := p.attempt(ctx, r, t, c, min(t.Backend.Timeout, left), span)
		latency := time.Since(aStart)
		observe := func(status int, d time.Duration, err error) {
			if p.opt.Observer != nil {
				p.opt.Observer.ObserveAttempt(ctx, &c, Attempt{Trace: span, Number: res.Attempts, Backend: t.Backend.Name,
					Deployment: t.Deployment, Region: t.Backend.Region, Target: hostOf(t.Backend.URL), Path: pathOf(t, c),
					Start: aStart, Duration: d, Status: status, Err: err})
			}
		}
		j := -1
		if err != nil {
			if ctx.Err() != nil {
				t.Backend.Health.Record(httperr.StatusClientClosedRequest, latency)
				res.Status, res.Err = httperr.StatusClientClosedRequest, ctx.Err()
				return res
			}
			if timedOut {
				t.Backend.Health.Record(http.StatusGatewayTimeout, latency)
				lastErr = &httperr.Error{Status: http.StatusGatewayTimeout, Code: "backend_timeout",
					Msg: "The model backend did not answer in time.", Err: fmt.Errorf("backend %s: %w", t.Backend.Name, err)}
			} else {
				t.Backend.Health.Record(http.StatusBadGateway, latency)
				lastErr = &httperr.Error{Status: http.StatusBadGateway, Code: "backend_unreachable",
					Msg: "The model backend could not be reached.", Err: fmt.Errorf("backend %s: %w", t.Backend.Name, err)}
			}
			observe(0, latency, err)
			p.log.LogAttrs(ctx, slog.LevelWarn, "backend attempt failed", slog.String("request_id", c.RequestID),
				slog.String("backend", t.Backend.Name), slog.Int("attempt", res.Attempts), slog.String("error", err.Error()))
			if res.Attempts < p.opt.MaxAttempts {
				j = next(i + 1)
				// A connection error is worth another go at the same
				// target; a timeout is not (it would cost another
				// whole timeout, and the deployment is likely busy).
				if j < 0 && !timedOut {
					if d, ok := p.retryWait(0, nil, 0, res.Attempts, deadline); ok {
						if sleep(ctx, d) != nil {
							res.Status, res.Err = httperr.StatusClientClosedRequest, ctx.Err()
							return res
						}
						if t.Backend.Health.Allow() {
							j = i
						}
					}
				}
			}
			if j < 0 {
				break
			}
			i = j
			continue
		}
		t.Backend.Health.Record(resp.StatusCode, latency)
		t.Observe(resp.Header)
		var cooled time.Duration
		if resp.StatusCode == http.StatusTooManyRequests {
			cooled = t.Cool(resp.Header)
		}
		var wait time.Duration
		if retryable(resp.StatusCode) && res.Attempts < p.opt.MaxAttempts && time.Until(deadline) > 0 {
			j = next(i + 1)
			if j < 0 {
				// No other target: the same one again, after its wait.
				if d, ok := p.retryWait(resp.StatusCode, resp.Header, cooled, res.Attempts, deadline); ok {
					j, wait = i, d
				}
			}
		}
		if j >= 0 {
			observe(resp.StatusCode, latency, nil)
			p.log.LogAttrs(ctx, slog.LevelWarn, "backend attempt retried", slog.String("request_id", c.RequestID),
				slog.String("backend", t.Backend.Name), slog.Int("attempt", res.Attempts), slog.Int("status", resp.StatusCode),
				slog.Duration("wait", wait))
			drain(resp.Body)
			cancel()
			lastErr = nil
			if j == i {
				if sleep(ctx, wait) != nil {
					res.Status, res.Err = httperr.StatusClientClosedRequest, ctx.Err()
					return res
				}
				if !t.Backend.Health.Allow() {
					lastErr = &httperr.Error{Status: http.StatusServiceUnavailable, Code: "no_healthy_backend",
						Msg: "Every backend for this model is failing right now (circuit open). Retry shortly."}
					break
				}
			}
			i = j
			continue
		}
		if resp.StatusCode == http.StatusTooManyRequests && cooled > 0 && resp.Header.Get("Retry-After") == "" {
			// The client gets a 429 it may retry: say when, as Azure does.
			resp.Header.Set("Retry-After", strconv.FormatInt(int64((cooled+time.Second-1)/time.Second), 10))
			if resp.Header.Get("Retry-After-Ms") == "" {
				resp.Header.Set("Retry-After-Ms", strconv.FormatInt(cooled.Milliseconds(), 10))
			}
		}
		res.TTFB = time.Since(start)
		p.respond(w, resp, cancel, t, c, &res)
		observe(resp.StatusCode, time.Since(aStart), res.Err)
		return res
	}
	if lastErr == nil {
		lastErr = &httperr.Error{Status: http.StatusGatewayTimeout, Code: "backend_timeout",
			Msg: "No model backend answered within the gateway's retry budget."}
	}
	res.Err = lastErr
	res.Status = httperr.From(lastErr).Status
	httperr.Write(w, lastErr)
	return res
}

// canWait reports whether waiting d stays within Options.MaxRetryWait and
// leaves time before the deadline.
func (p *Proxy) canWait(d time.Duration, deadline time.Time) bool {
	return p.opt.MaxRetryWait >= 0 && d <= p.opt.MaxRetryWait && time.Until(deadline) > d
}

// retryWait is how long to wait before trying the same target again after
// attempt number n failed with status (0: no response) and headers h, and
// whether to. A 429 waits what its deployment asked (cooled: retry-after-ms
// or retry-after, else the router's default cooling); a 5xx or connection
// error waits the backoff, or a longer retry-after the answer names. No
// wait above Options.MaxRetryWait or past the deadline is taken; a 429's
// wait that is taken gets up to a tenth more (spread).
func (p *Proxy) retryWait(status int, h http.Header, cooled time.Duration, n int, deadline time.Time) (time.Duration, bool) {
	var d time.Duration
	ra, hasRA := route.RetryAfter(h, time.Now())
	switch {
	case status == http.StatusTooManyRequests && cooled > 0:
		d = cooled
	case status == http.StatusTooManyRequests && hasRA: // a target without deployment state
		d = ra
	default:
		d = backoff(p.opt.RetryBackoff, n)
		if hasRA {
			d = max(d, ra)
		}
	}
	if !p.canWait(d, deadline) {
		return 0, false
	}
	if s := spread(d); status == http.StatusTooManyRequests && time.Until(deadline) > s {
		d = s
	}
	return d, true
}

// backoff is base doubled per earlier attempt (n is 1 after the first),
// drawn uniformly from its upper half so that calls failing together do
// not retry together.
func backoff(base time.Duration, n int) time.Duration {
	d := base << min(max(n-1, 0), 10)
	return d/2 + rand.N(d/2+1)
}

// spread adds up to a tenth to a wait, so that the calls a deployment
// turned away together do not all come back at the same instant.
func spread(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

// sleep waits d or until ctx is done, whichever is first; it returns the
// ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// refuse answers a call no target may take (see Forward).
func (p *Proxy) refuse(w http.ResponseWriter, err error, res *Result) Result {
	var he *httperr.Error
	var un *route.Unavailable
	switch {
	case errors.Is(err, route.ErrRegionNotAllowed):
		he = &httperr.Error{Status: http.StatusForbidden, Code: "region_not_allowed", Err: err,
			Msg: "This model has no deployment in the regions your API key may use."}
	case errors.As(err, &un) && errors.Is(err, route.ErrAllCooling):
		he = &httperr.Error{Status: http.StatusTooManyRequests, Code: "429", Err: err,
			RetryAfter: max(un.RetryAfter, time.Millisecond),
			Msg:        "Every backend for this model is rate limited right now. Retry after the time in the retry-after-ms header."}
	default:
		he = &httperr.Error{Status: http.StatusServiceUnavailable, Code: "no_healthy_backend", Err: err,
			Msg: "Every backend for this model is failing right now (circuit open). Retry shortly."}
		if un != nil && un.RetryAfter > 0 {
			he.RetryAfter = un.RetryAfter
		}
	}
	res.Err, res.Status = he, he.Status
	httperr.Write(w, he)
	return *res
}

// attempt sends one request. The returned cancel must be called once the
// response is done with; timedOut tells a header timeout from other errors.
func (p *Proxy) attempt(ctx context.Context, r *http.Request, t route.Target, c Call, timeout time.Duration, span telemetry.Trace) (*http.Response, context.CancelFunc, bool, error) {
	body := c.Body
	if c.Req.Style != openai.StyleDeployment && t.Deployment != c.Req.Model {
		set := openai.SetModel
		if c.Req.ContentType != "" {
			set = func(body []byte, m string) ([]byte, error) { return openai.SetFormModel(c.Req.ContentType, body, m) }
		}
		b, err := set(body, t.Deployment)
		if err != nil {
			return nil, nil, false, err
		}
		body = b
	}
	actx, cancel := context.WithCancel(ctx)
	var fired bool
	var mu sync.Mutex
	timer := time.AfterFunc(timeout, func() { mu.Lock(); fired = true; mu.Unlock(); cancel() })
	out, err := http.NewRequestWithContext(actx, http.MethodPost, targetURL(t, c), bytes.NewReader(body))
	if err != nil {
		timer.Stop()
		cancel()
		return nil, nil, false, err
	}
	out.Header = outboundHeader(r.Header)
	if p.opt.AffinityHeader != "" {
		delete(out.Header, p.opt.AffinityHeader)
	}
	// The headers the gateway sets, under their canonical keys, sharing
	// one backing array (one allocation instead of four).
	ct := "application/json"
	if c.Req.ContentType != "" {
		ct = c.Req.ContentType
	}
	var tp string
	if span.TraceID != "" {
		tp = span.Traceparent()
	}
	set := []string{ct, "identity", c.RequestID, tp}
	out.Header["Content-Type"] = set[0:1:1]
	out.Header["Accept-Encoding"] = set[1:2:2]
	if c.RequestID != "" {
		out.Header["X-Ms-Client-Request-Id"] = set[2:3:3]
	}
	if tp != "" {
		out.Header["Traceparent"] = set[3:4:4]
	}
	if err := t.Backend.Auth.Authorize(actx, out.Header); err != nil {
		timer.Stop()
		cancel()
		return nil, nil, false, err
	}
	resp, err := p.rt.RoundTrip(out)
	timer.Stop()
	if err != nil {
		cancel()
		mu.Lock()
		to := fired
		mu.Unlock()
		return nil, nil, to, err
	}
	return resp, cancel, false, nil
}

// hostOf returns the host of a backend URL, for telemetry.
func hostOf(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		u = u[i+3:]
	}
	if i := strings.IndexByte(u, '/'); i >= 0 {
		u = u[:i]
	}
	return u
}

// pathOf is the backend path of an attempt, without the query.
func pathOf(t route.Target, c Call) string {
	u := targetURL(t, Call{Req: c.Req})
	return strings.TrimPrefix(u, t.Backend.URL)
}

// targetURL builds the backend URL in the style the client used.
func targetURL(t route.Target, c Call) string {
	var u string
	switch c.Req.Style {
	case openai.StyleDeployment:
		u = t.Backend.URL + "/openai/deployments/" + url.PathEscape(t.Deployment) + "/" + string(c.Req.Op)
	case openai.StyleAzure:
		u = t.Backend.URL + "/openai/" + string(c.Req.Op)
	default:
		u = t.Backend.URL + "/openai/v1/" + string(c.Req.Op)
	}
	if c.RawQuery != "" {
		u += "?" + c.RawQuery
	}
	return u
}

// respond copies resp to w. Once headers are written the status is fixed:
// failures after that only mark the result.
func (p *Proxy) respond(w http.ResponseWriter, resp *http.Response, cancel context.CancelFunc, t route.Target, c Call, res *Result) {
	defer cancel()
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	sse := isEventStream(resp.Header.Get("Content-Type"))
	strip := sse && c.StripUsageChunk && resp.StatusCode == http.StatusOK
	copyResponseHeader(w.Header(), resp.Header, strip)
	if p.opt.ExposeBackend {
		w.Header().Set("X-Gateway-Backend", t.Backend.Name)
		w.Header().Set("X-Gateway-Deployment", t.Deployment)
		if t.Version != "" {
			w.Header().Set("X-Gateway-Model-Version", t.Version)
		}
	}
	// A whole (non-streamed) answer is held back up to one buffer before
	// the status is sent: a backend that breaks it off within that window
	// becomes a clean 502 instead of a 200 the client cannot use (#16).
	committed := false
	commit := func() {
		if !committed {
			committed = true
			w.WriteHeader(resp.StatusCode)
		}
	}
	if sse {
		commit()
	}

	// Idle timeout: every successful read pushes the deadline out.
	idle := time.AfterFunc(p.opt.StreamIdleTimeout, cancel)
	defer idle.Stop()

	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	buf := *bp
	rc := http.NewResponseController(w)

	var sink func([]byte) error
	var finish func()
	if sse {
		fw := &flushWriter{w: w, rc: rc}
		s := usage.NewStream(fw, c.Req.Op.Kind(), usage.StreamOptions{StripUsageChunk: strip, KeepText: true})
		sink = func(b []byte) error { _, err := s.Write(b); return err }
		finish = func() {
			_ = s.Close()
			res.Usage = s.Usage()
			res.Text = s.Text()
			res.Complete = res.Complete && s.SawDone()
		}
	} else {
		var rec *usage.Recorder
		if resp.StatusCode == http.StatusOK {
			rec = usage.GetRecorder(c.Req.Op.Kind())
		}
		sink = func(b []byte) error {
			if _, err := w.Write(b); err != nil {
				return err
			}
			if rec != nil {
				_, _ = rec.Write(b)
			}
			return nil
		}
		finish = func() {
			if rec != nil {
				res.Usage = rec.Usage()
				usage.PutRecorder(rec)
				rec = nil
			}
		}
	}
	// head keeps the start of a Responses API answer for its id (the
	// first field of the response object, or of response.created).
	var head []byte
	if p.opt.Affinity != nil && c.Req.Op == openai.OpResponses && resp.StatusCode == http.StatusOK {
		head = make([]byte, 0, 8<<10)
	}
	held := 0 // bytes read into buf but not yet sent (before commit)
	send := func(b []byte) bool {
		if err := sink(b); err != nil {
			res.Err = fmt.Errorf("writing to client: %w", err)
			res.Status = httperr.StatusClientClosedRequest
			return false
		}
		return true
	}
	for {
		n, rerr := resp.Body.Read(buf[held:])
		if n > 0 {
			got := buf[held : held+n]
			if head != nil && len(head) < cap(head) {
				head = append(head, got[:min(n, cap(head)-len(head))]...)
			}
			idle.Reset(p.opt.StreamIdleTimeout)
			if committed {
				if !send(got) {
					break
				}
			} else if held += n; held == len(buf) {
				commit()
				if !send(buf[:held]) {
					break
				}
				held = 0
			}
		}
		if rerr == io.EOF {
			commit()
			if held > 0 && !send(buf[:held]) {
				break
			}
			res.Complete = true
			break
		}
		if rerr != nil {
			res.Err = fmt.Errorf("reading from backend %s: %w", t.Backend.Name, rerr)
			if !sse {
				res.Status = http.StatusBadGateway // what the client got: no usable answer
			}
			if committed {
				res.Aborted = true
				break
			}
			// Nothing sent yet: answer a clean 502 in place of the backend's headers.
			for _, k := range []string{"Content-Length", "Content-Encoding", "Content-Type"} {
				w.Header().Del(k)
			}
			httperr.Write(w, &httperr.Error{Status: http.StatusBadGateway, Code: "backend_cut", Err: res.Err,
				Msg: "The model backend broke off its answer before it was complete. Retry the request."})
			break
		}
	}
	if res.Complete {
		// Send the answer now: what the caller does next (settling quota,
		// the log line, the ledger, telemetry) need not delay the client,
		// which would otherwise get the last bytes only when the handler
		// returns (issue 17).
		_ = rc.Flush()
	}
	finish()
	if head != nil {
		if id := responseID(head, sse); id != "" {
			p.opt.Affinity.Remember(id, t.Backend.Name, c.Caller)
		}
	}
}

// responseID finds a Responses API response id in the start of a body: the
// top-level id, or in a stream the response.id of the first event.
func responseID(head []byte, sse bool) string {
	if !sse {
		return gjson.GetBytes(head, "id").String()
	}
	for len(head) > 0 {
		line := head
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			line, head = head[:i], head[i+1:]
		} else {
			head = nil
		}
		if data, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			return gjson.GetBytes(bytes.TrimSpace(data), "response.id").String()
		}
	}
	return ""
}

// flushWriter flushes after every write: each write the usage stream makes
// is one complete SSE event, which the client must see now.
type flushWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err != nil {
		return n, err
	}
	if err := f.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return n, err
	}
	return n, nil
}

func isEventStream(ct string) bool {
	// Most answers are JSON: only a type that starts with text/event-stream
	// (in any case, after spaces) is parsed, which allocates.
	const sse = "text/event-stream"
	t := strings.TrimLeftFunc(ct, unicode.IsSpace) // as mime.ParseMediaType trims
	if len(t) < len(sse) || !strings.EqualFold(t[:len(sse)], sse) {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "text/event-stream"
}

// drain reads a little of a discarded body so the connection can be reused.
func drain(b io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, b, 64<<10)
	_ = b.Close()
}
