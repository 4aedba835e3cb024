package handlers

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/route"
)

// inference serves one OpenAI operation in the v1 style (model in the body)
// or the Azure deployment style (model in the path).
func (g *gateway) inference(opPath string, deploymentStyle bool) echo.HandlerFunc {
	op, _ := openai.ParseOp(opPath)
	style := openai.StyleV1
	if deploymentStyle {
		style = openai.StyleDeployment
	}
	return func(c echo.Context) error {
		start := time.Now()
		r := c.Request()
		ctx := r.Context()
		p, err := g.Auth.Authenticate(ctx, r.Header)
		if err != nil {
			return err
		}
		q := r.URL.Query()
		apiVersion := q.Get("api-version")
		if deploymentStyle && apiVersion == "" {
			return &httperr.Error{Status: http.StatusBadRequest, Code: "missing_api_version", Param: "api-version",
				Msg: "The api-version query parameter is required on /openai/deployments/... paths (for example api-version=2024-10-21)."}
		}
		body, err := readBody(c, g.MaxBodyBytes)
		if err != nil {
			return err
		}
		req, err := openai.Parse(op, style, c.Param("deployment"), apiVersion, body)
		if err != nil {
			return badRequest(err)
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
		call := proxy.Call{Req: req, Body: body, RawQuery: r.URL.RawQuery, RequestID: requestIDOf(c),
			Caller: p.KeyID, Regions: p.Regions}
		if req.NeedsUsageInjection() {
			// Ask for the usage chunk so the stream can be metered, and strip
			// it again so the client's stream is what it asked for.
			if call.Body, err = openai.InjectIncludeUsage(body); err != nil {
				return badRequest(err)
			}
			call.StripUsageChunk = true
		}
		res := g.Proxy.Forward(c.Response(), r, m, call)
		if g.Usage != nil {
			g.Usage.Record(ctx, Event{
				Time: start.UTC(), RequestID: call.RequestID, KeyID: p.KeyID, Team: p.Team, App: p.App,
				Model: req.Model, Op: string(op), Backend: res.Backend, Deployment: res.Deployment, Region: res.Region,
				Stream: req.Stream, Status: res.Status, Attempts: res.Attempts, Latency: time.Since(start), TTFB: res.TTFB,
				Complete: res.Complete, Usage: res.Usage,
			})
		}
		if res.Aborted {
			// The backend broke mid-response: make the client see a broken
			// stream rather than a clean, truncated end.
			panic(http.ErrAbortHandler)
		}
		return nil
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
			return nil, httperr.Wrap(err, http.StatusBadRequest, "invalid_request_error", "Could not read the request body.")
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
