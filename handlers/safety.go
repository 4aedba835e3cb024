package handlers

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/audit"
	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/safety"
	"github.com/foundry-gateway/gateway/internal/tee"
	"github.com/foundry-gateway/gateway/internal/telemetry"
)

// promptChecker checks a prompt with content safety (safety.Guard).
type promptChecker interface {
	Check(ctx context.Context, team, model string, op openai.Op, body []byte) (safety.Outcome, error)
}

// SafetyTarget names the Content Safety endpoint in dependency items.
type SafetyTarget string

// checkPrompt runs content safety on a request before it is forwarded (so
// a stream is checked before its first byte). The added latency goes to
// telemetry as a dependency item, a metric and request properties; the
// prompt never does.
func (g *gateway) checkPrompt(c echo.Context, p auth.Principal, req openai.Request, op openai.Op, body []byte) error {
	if g.Safety == nil {
		return nil
	}
	team, model := p.Team, req.Model
	start := time.Now()
	o, err := g.Safety.Check(c.Request().Context(), team, model, op, body)
	if o.Blocked {
		g.auditRefusal(c, p, req, op, body, err)
	}
	if !o.Checked {
		return err
	}
	outcome := "allowed"
	switch {
	case o.Blocked:
		outcome = "blocked"
	case o.FailedOpen:
		outcome = "failed_open"
	case o.Unavailable:
		outcome = "unavailable"
	}
	if o.Err != nil {
		g.Log.Warn("content safety failed", "request_id", requestIDOf(c), "outcome", outcome, "error", o.Err)
	}
	if g.Telemetry != nil {
		ms := float64(o.Latency.Microseconds()) / 1000
		setProps(c, map[string]string{"content_safety": outcome, "content_safety_ms": strconv.FormatFloat(ms, 'f', 3, 64)})
		tr := traceOf(c)
		dims := map[string]string{"team": team, "model": model, "outcome": outcome}
		g.Telemetry.TrackMetric("gateway.content_safety.ms", ms, tr, dims)
		status := http.StatusOK
		var se *safety.ServiceError
		if errors.As(o.Err, &se) {
			status = se.Status
		} else if o.Err != nil {
			status = 0
		}
		d := telemetry.Dependency{Trace: tr.Child(), Name: "POST contentsafety/text", Target: string(g.SafetyTarget),
			Data: "/contentsafety/text", Start: start, Duration: o.Latency, Status: status,
			Properties: map[string]string{"calls": strconv.Itoa(o.Calls), "outcome": outcome, "request_id": requestIDOf(c),
				"truncated": strconv.FormatBool(o.Truncated)}}
		if o.Err != nil {
			d.Err = o.Err.Error()
		}
		g.Telemetry.TrackDependency(d)
	}
	return err
}

// auditSink receives audit records (audit.Writer).
type auditSink interface {
	Record(ctx context.Context, r audit.Record)
}

// auditCall is one call being recorded.
type auditCall struct {
	capture *tee.Writer
	start   time.Time
	cache   string // "exact" or "semantic" when the response cache answered
}

// auditStart begins recording the call when its team or model opts in: it
// wraps the response writer to keep a copy of what the client receives.
func (g *gateway) auditStart(c echo.Context, team, model string) *auditCall {
	if g.Audit == nil || g.Audits == nil || !g.Audits(team, model) {
		return nil
	}
	limit := g.AuditMaxResponse
	if limit <= 0 {
		limit = 16 << 20
	}
	cp := tee.New(c.Response().Writer, limit)
	c.Response().Writer = cp
	return &auditCall{capture: cp, start: time.Now()}
}

// auditDone hands the finished call's record to the audit writer.
func (g *gateway) auditDone(c echo.Context, a *auditCall, p auth.Principal, call proxy.Call, op openai.Op, body []byte, res proxy.Result) {
	if a == nil {
		return
	}
	c.Response().Writer = a.capture.Unwrap()
	resp, truncated := a.capture.Bytes()
	r := audit.Record{Time: a.start.UTC(), RequestID: call.RequestID, KeyID: p.KeyID, Team: p.Team, App: p.App,
		Model: call.Req.Model, Op: string(op), Backend: res.Backend, Deployment: res.Deployment, Region: res.Region,
		Stream: call.Req.Stream, Status: res.Status, ResponseTruncated: truncated, Cache: a.cache}
	if res.Usage.Reported {
		r.Usage = &audit.Usage{PromptTokens: res.Usage.PromptTokens, CompletionTokens: res.Usage.CompletionTokens,
			TotalTokens: res.Usage.TotalTokens}
	}
	r.SetBodies(body, resp)
	g.Audit.Record(c.Request().Context(), r)
}

// auditRefusal records a prompt content safety blocked, with the refusal
// the client gets (the same bytes the error handler writes), when the
// team or model is audited.
func (g *gateway) auditRefusal(c echo.Context, p auth.Principal, req openai.Request, op openai.Op, body []byte, refusal error) {
	if g.Audit == nil || g.Audits == nil || !g.Audits(p.Team, req.Model) {
		return
	}
	rec := &bodyWriter{h: http.Header{}}
	httperr.Write(rec, refusal)
	r := audit.Record{Time: time.Now().UTC(), RequestID: requestIDOf(c), KeyID: p.KeyID, Team: p.Team, App: p.App,
		Model: req.Model, Op: string(op), Stream: req.Stream, Status: rec.code}
	r.SetBodies(body, rec.buf.Bytes())
	g.Audit.Record(c.Request().Context(), r)
}

// bodyWriter keeps what is written to it (the refusal's bytes).
type bodyWriter struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (w *bodyWriter) Header() http.Header         { return w.h }
func (w *bodyWriter) WriteHeader(code int)        { w.code = code }
func (w *bodyWriter) Write(b []byte) (int, error) { return w.buf.Write(b) }

// adminAudit serves GET /admin/audit/{request_id}: one request's audit
// record, for admin and audit:read credentials. ?team= narrows the search.
func (g *gateway) adminAudit(c echo.Context) error {
	p, err := g.Auth.Authenticate(c.Request().Context(), c.Request().Header)
	if err != nil {
		return err
	}
	c.Set(ctxCaller, p.KeyID)
	if !p.Scope.Admin && !p.Scope.AuditRead {
		return httperr.Forbidden("audit_forbidden", "Reading audit records needs the admin or the audit:read scope.")
	}
	id := c.Param("id")
	if _, ok := audit.IDTime(id); !ok {
		return httperr.BadRequest("invalid_request_id", "The request id must be the 32 hex characters of a gateway X-Request-Id.")
	}
	r, err := g.AuditRecord(c.Request().Context(), id, c.QueryParam("team"))
	if errors.Is(err, audit.ErrNotFound) {
		return httperr.NotFound("audit_record_not_found", "No audit record has the request id "+id+" (the request was not audited, or is not written yet: records are appended within a few seconds).")
	}
	if err != nil {
		return httperr.Wrap(err, http.StatusServiceUnavailable, "audit_unavailable", "The audit store could not be read.")
	}
	return c.JSON(http.StatusOK, r)
}
