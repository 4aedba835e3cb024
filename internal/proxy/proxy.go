package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Options tune a Proxy. Zero values take the defaults noted.
type Options struct {
	// MaxAttempts caps backend attempts per call. Default 3.
	MaxAttempts int
	// TryDuration caps the time before the first byte across attempts. Default 60s.
	TryDuration time.Duration
	// StreamIdleTimeout aborts a response when no byte arrives for this long. Default 120s.
	StreamIdleTimeout time.Duration
	// ExposeBackend adds x-gateway-backend and x-gateway-deployment response headers.
	ExposeBackend bool
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
	p := &Proxy{rt: rt, log: log, opt: opt}
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	return p
}

// NewTransport returns the transport the gateway uses for backends: pooled
// keep-alive connections, no transparent compression (we read the bytes we
// forward), and no overall client timeout (streams may be long; deadlines
// are per attempt and per idle chunk instead).
func NewTransport() *http.Transport {
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
// When every attempt fails without a response it writes an OpenAI-shaped
// 502/504 itself. It never writes after a client disconnect.
func (p *Proxy) Forward(w http.ResponseWriter, r *http.Request, m *route.Model, c Call) Result {
	ctx := r.Context()
	start := time.Now()
	deadline := start.Add(p.opt.TryDuration)
	var planBuf [8]route.Target
	plan := m.Plan(planBuf[:0], nil)
	n := min(len(plan), p.opt.MaxAttempts)
	var lastErr error
	res := Result{}
	for i := 0; i < n; i++ {
		t := plan[i]
		res.Attempts = i + 1
		res.Backend, res.Deployment, res.Region = t.Backend.Name, t.Deployment, t.Backend.Region
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		last := i == n-1
		resp, cancel, timedOut, err := p.attempt(ctx, r, t, c, min(t.Backend.Timeout, left))
		if err != nil {
			if ctx.Err() != nil {
				res.Status, res.Err = httperr.StatusClientClosedRequest, ctx.Err()
				return res
			}
			if timedOut {
				lastErr = &httperr.Error{Status: http.StatusGatewayTimeout, Code: "backend_timeout",
					Msg: "The model backend did not answer in time.", Err: fmt.Errorf("backend %s: %w", t.Backend.Name, err)}
			} else {
				lastErr = &httperr.Error{Status: http.StatusBadGateway, Code: "backend_unreachable",
					Msg: "The model backend could not be reached.", Err: fmt.Errorf("backend %s: %w", t.Backend.Name, err)}
			}
			p.log.LogAttrs(ctx, slog.LevelWarn, "backend attempt failed", slog.String("request_id", c.RequestID),
				slog.String("backend", t.Backend.Name), slog.Int("attempt", i+1), slog.String("error", err.Error()))
			continue
		}
		if retryable(resp.StatusCode) && !last && time.Until(deadline) > 0 {
			p.log.LogAttrs(ctx, slog.LevelWarn, "backend attempt retried", slog.String("request_id", c.RequestID),
				slog.String("backend", t.Backend.Name), slog.Int("attempt", i+1), slog.Int("status", resp.StatusCode))
			drain(resp.Body)
			cancel()
			lastErr = nil
			continue
		}
		res.TTFB = time.Since(start)
		p.respond(w, resp, cancel, t, c, &res)
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

// attempt sends one request. The returned cancel must be called once the
// response is done with; timedOut tells a header timeout from other errors.
func (p *Proxy) attempt(ctx context.Context, r *http.Request, t route.Target, c Call, timeout time.Duration) (*http.Response, context.CancelFunc, bool, error) {
	body := c.Body
	if c.Req.Style == openai.StyleV1 && t.Deployment != c.Req.Model {
		b, err := openai.SetModel(body, t.Deployment)
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
	out.Header.Set("Content-Type", "application/json")
	out.Header.Set("Accept-Encoding", "identity")
	if c.RequestID != "" {
		out.Header.Set("X-Ms-Client-Request-Id", c.RequestID)
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

// targetURL builds the backend URL in the style the client used.
func targetURL(t route.Target, c Call) string {
	var u string
	if c.Req.Style == openai.StyleDeployment {
		u = t.Backend.URL + "/openai/deployments/" + url.PathEscape(t.Deployment) + "/" + string(c.Req.Op)
	} else {
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
	}
	w.WriteHeader(resp.StatusCode)

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
			rec = usage.NewRecorder(c.Req.Op.Kind())
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
			}
		}
	}
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			idle.Reset(p.opt.StreamIdleTimeout)
			if err := sink(buf[:n]); err != nil {
				res.Err = fmt.Errorf("writing to client: %w", err)
				res.Status = httperr.StatusClientClosedRequest
				break
			}
		}
		if rerr == io.EOF {
			res.Complete = true
			break
		}
		if rerr != nil {
			res.Err = fmt.Errorf("reading from backend %s: %w", t.Backend.Name, rerr)
			res.Aborted = true
			break
		}
	}
	if sse && res.Complete {
		_ = rc.Flush()
	}
	finish()
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
	if ct == "" {
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
