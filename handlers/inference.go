package handlers

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// inference serves one OpenAI operation in the v1 style (model in the body),
// the Azure deployment style (model in the path) or the Azure style of the
// Responses API (/openai/responses?api-version=, model in the body).
func (g *gateway) inference(opPath string, style openai.Style) echo.HandlerFunc {
	op, _ := openai.ParseOp(opPath)
	deploymentStyle := style == openai.StyleDeployment
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		ctx := r.Context()
		p, err := g.caller(ctx, r.Header)
		if err != nil {
			return err
		}
		c.Set(ctxCaller, p.KeyID)
		q := r.URL.Query()
		apiVersion := q.Get("api-version")
		if style != openai.StyleV1 && apiVersion == "" {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "missing_api_version", Param: "api-version",
				Msg: "The api-version query parameter is required on /openai/deployments/... and /openai/responses paths (for example api-version=2024-10-21)."}
		}
		body, err := readBody(c, g.MaxBodyBytes)
		if err != nil {
			return err
		}
		var req openai.Request
		if op.Multipart() {
			req, err = openai.ParseMultipart(op, style, c.Param("deployment"), apiVersion, r.Header.Get("Content-Type"), body)
		} else {
			req, err = openai.Parse(op, style, c.Param("deployment"), apiVersion, body)
		}
		if err != nil {
			return badRequest(err)
		}
		if err := p.Scope.CheckModel(req.Model); err != nil { // before the lookup: 403 whether the alias exists or not
			return err
		}
		m, err := g.Router.Model(req.Model)
		if errors.Is(err, route.ErrUnknownModel) {
			if deploymentStyle {
				return httperr.NotFound("DeploymentNotFound", "The API deployment "+req.Model+" does not exist on this gateway.")
			}
			return &httperr.Error{Status: http.StatusNotFound, Code: "model_not_found", Param: "model",
				Msg: "The model " + req.Model + " does not exist on this gateway."}
		}
		if err != nil {
			return err
		}
		if req.Stream && op == openai.OpEmbeddings {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "stream",
				Msg: "Embeddings cannot be streamed."}
		}
		if req.PreviousResponseID != "" && g.ResponseBackend != nil {
			// A conversation continues only for the caller that started it.
			if _, owner, ok := g.ResponseBackend(ctx, req.PreviousResponseID); ok && owner != "" && owner != p.KeyID {
				return &httperr.Error{Status: http.StatusBadRequest, Code: "previous_response_not_found", Param: "previous_response_id",
					Msg: "Previous response with id '" + req.PreviousResponseID + "' not found."}
			}
		}
		async := wantsAsync(r.Header)
		if async && op.Media() {
			return httperr.BadRequest("invalid_request_error", "Image and audio requests cannot be queued with Prefer: respond-async.")
		}
		// Scope and the model's policy: priority class (403), per-request
		// caps (400 or clamped; the body sent on is the clamped one).
		body, clamped, err := p.Scope.WithCaps(m.Caps).Admit(&req, async, body)
		if err != nil {
			return err
		}
		if clamped != "" {
			c.Response().Header().Set("X-Gateway-Clamped", clamped+"="+strconv.FormatInt(req.MaxOutput, 10))
		}
		if err := g.checkPrompt(c, p, req, op, body); err != nil { // content safety (issue #19)
			return err
		}
		tr := traceOf(c)
		subjects := quota.Subjects(p.KeyID, p.Team, p.App)
		var ticket *quota.Ticket
		if g.Quota != nil {
			if ticket, err = g.Quota.Admit(ctx, c.Response().Header(), subjects, req, body); err != nil {
				return err
			}
			ticket.SetHeaders(c.Response().Header())
		}
		if g.Telemetry != nil {
			setProps(c, map[string]string{"team": p.Team, "app": p.App, "key_id": p.KeyID, "model": req.Model,
				"operation": string(op), "stream": strconv.FormatBool(req.Stream)})
		}

		if async {
			if ticket != nil {
				ticket.SettleUsage(usage.Usage{Reported: true}) // the submission counts as a request; tokens are spent later
			}
			return g.submit(c, p, req, body, tr)
		}

		// The audit trail (issue #19; nil unless opted in) also records
		// answers the response cache (docs/caching.md) serves.
		aud := g.auditStart(c, p.Team, req.Model)
		lk, served := g.cacheLookup(c, p, req, body, ticket, start, tr, aud)
		if served {
			return nil
		}
		call := proxy.Call{Req: req, Body: body, RawQuery: r.URL.RawQuery, RequestID: requestIDOf(c),
			Caller: p.KeyID, Regions: p.Scope.Regions, Trace: tr}
		if req.NeedsUsageInjection() {
			// Ask for the usage chunk so the stream can be metered, and strip
			// it again so the client's stream is what it asked for.
			if call.Body, err = openai.InjectIncludeUsage(body); err != nil {
				return badRequest(err)
			}
			call.StripUsageChunk = true
		}
		res := g.Proxy.Forward(lk.Capture(c.Response()), r, m, call)
		g.auditDone(c, aud, p, call, op, body, res)
		cacheStore(lk, res)
		if ticket != nil {
			ticket.SettleUsage(res.Usage)
			if g.Cost != nil && res.Usage.Reported {
				ticket.AddCost(g.Cost(req.Model, res.Backend, res.Deployment, res.Usage))
			}
		}
		e := Event{
			Time: start.UTC(), RequestID: call.RequestID, KeyID: p.KeyID, Team: p.Team, App: p.App,
			Model: req.Model, Op: string(op), Backend: res.Backend, Deployment: res.Deployment, Region: res.Region,
			Stream: req.Stream, Status: res.Status, Attempts: res.Attempts, Latency: time.Since(start), TTFB: res.TTFB,
			Complete: res.Complete, Usage: res.Usage, Class: "interactive", TraceID: tr.TraceID, Text: res.Text,
		}
		if !res.Usage.Reported && res.Backend != "" && !op.Media() {
			e.PromptEstimate = g.promptTokens(op, req.Model, body)
		}
		if g.Telemetry != nil { // dimensions and measurements of the request item
			setProps(c, map[string]string{"backend": res.Backend, "deployment": res.Deployment, "region": res.Region,
				"class": e.Class, "retries": strconv.Itoa(max(res.Attempts-1, 0))})
			meas := map[string]float64{"prompt_tokens": float64(res.Usage.PromptTokens),
				"completion_tokens": float64(res.Usage.CompletionTokens), "cached_tokens": float64(res.Usage.CachedTokens),
				"reasoning_tokens": float64(res.Usage.ReasoningTokens), "ttfb_ms": float64(res.TTFB.Microseconds()) / 1000}
			if g.Cost != nil && res.Usage.Reported {
				cost, _ := g.Cost(req.Model, res.Backend, res.Deployment, res.Usage)
				meas["cost"] = cost.Float()
			}
			c.Set(ctxMeasurements, meas)
		}
		g.metrics(e, tr)
		if g.Usage != nil {
			g.Usage.Record(ctx, e)
		}
		if res.Aborted {
			// The backend broke mid-response: make the client see a broken
			// stream rather than a clean, truncated end.
			panic(http.ErrAbortHandler)
		}
		return nil
	}
}

// wantsAsync reports "Prefer: respond-async" (RFC 7240).
func wantsAsync(h http.Header) bool {
	for _, v := range h.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "respond-async") {
				return true
			}
		}
	}
	return false
}

// submit queues the request as a low-priority job: 202 with the job and
// where to poll it.
func (g *gateway) submit(c echo.Context, p auth.Principal, req openai.Request, body []byte, tr telemetry.Trace) error {
	if g.Submit == nil {
		return httperr.BadRequest("async_not_enabled", "Low-priority (Prefer: respond-async) requests are not enabled on this gateway.")
	}
	if req.Stream {
		return &httperr.Error{Status: http.StatusBadRequest, Code: "invalid_request_error", Param: "stream",
			Msg: "Streaming cannot be combined with Prefer: respond-async; poll the job for the result instead."}
	}
	j, err := g.Submit(c.Request().Context(), jobs.Submission{KeyID: p.KeyID, Team: p.Team, App: p.App, Regions: p.Scope.Regions, Req: req, Body: body,
		RawQuery: c.Request().URL.RawQuery, CallbackURL: c.Request().Header.Get("X-Gateway-Callback-Url"), Host: c.Request().Host,
		Traceparent: tr.Traceparent()})
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("Operation-Location", "/jobs/"+j.ID)
	h.Set("Location", "/jobs/"+j.ID)
	h.Set("Preference-Applied", "respond-async")
	h.Set("Retry-After", "5")
	return c.JSON(http.StatusAccepted, viewOf(j))
}

// promptTokens counts a prompt offline, for estimating the usage of a call
// whose backend reported none.
func (g *gateway) promptTokens(op openai.Op, model string, body []byte) int64 {
	if g.Tokens != nil {
		return g.Tokens.Prompt(op, model, body)
	}
	return int64(len(body)/4 + 1)
}

// metrics sends token and throttle metrics with the request's dimensions.
func (g *gateway) metrics(e Event, tr telemetry.Trace) {
	if g.Telemetry == nil {
		return
	}
	dims := map[string]string{"team": e.Team, "app": e.App, "model": e.Model, "backend": e.Backend, "class": e.Class}
	if e.Usage.Reported {
		g.Telemetry.TrackMetric("gateway.tokens.prompt", float64(e.Usage.PromptTokens), tr, dims)
		g.Telemetry.TrackMetric("gateway.tokens.completion", float64(e.Usage.CompletionTokens), tr, dims)
	}
	if e.Status == http.StatusTooManyRequests {
		g.Telemetry.TrackMetric("gateway.throttled", 1, tr, dims)
	}
}

// setProps adds telemetry dimensions for the request item.
func setProps(c echo.Context, kv map[string]string) {
	props, _ := c.Get(ctxProps).(map[string]string)
	if props == nil {
		props = map[string]string{}
		c.Set(ctxProps, props)
	}
	for k, v := range kv {
		props[k] = v
	}
}

// readBody reads the whole request body, capped at max (413 above it). The
// bytes are kept: every backend attempt sends the same body.
func readBody(c echo.Context, max int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > max {
		return nil, tooLarge(max)
	}
	rd := http.MaxBytesReader(c.Response(), r.Body, max)
	size := r.ContentLength
	if size <= 0 || size > 1<<20 {
		size = 4096
	}
	buf := make([]byte, 0, size+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, tooLarge(max)
			}
			return nil, bodyReadError(c, err)
		}
	}
}

func tooLarge(max int64) error {
	return httperr.New(http.StatusRequestEntityTooLarge, "request_too_large",
		"The request body is larger than the gateway accepts ("+itoa(max)+" bytes).")
}

func badRequest(err error) error {
	return httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", err.Error())
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
