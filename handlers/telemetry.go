package handlers

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/telemetry"
)

// Context keys the tracing middleware and handlers share.
const (
	ctxTrace        = "trace"
	ctxProps        = "telemetry.props"
	ctxMeasurements = "telemetry.measurements"
	// ctxCaller is the authenticated caller's id, for the refusal log line.
	ctxCaller = "caller"
)

// quiet paths are probes, not client calls: no request items for them.
var quiet = map[string]bool{"/": true, "/healthz": true, "/readyz": true}

// tracing continues or starts the W3C trace of every request and, when
// telemetry is on, records one request item per client call with the
// dimensions the handlers attached. Errors are written here (c.Error) so
// the item carries the final status.
func tracing(tel *telemetry.Client) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			tr := telemetry.FromHeader(r.Header)
			c.Set(ctxTrace, tr)
			if tel == nil || quiet[r.URL.Path] {
				return next(c)
			}
			start := time.Now()
			defer func() { // also when a broken stream is aborted with a panic
				props, _ := c.Get(ctxProps).(map[string]string)
				if props == nil {
					props = map[string]string{}
				}
				props["request_id"] = requestIDOf(c)
				meas, _ := c.Get(ctxMeasurements).(map[string]float64)
				status := c.Response().Status
				name := r.Method + " " + c.Path()
				if c.Path() == "" {
					name = r.Method + " (unmatched)"
				}
				url := r.URL.Path
				if strings.Contains(c.Path(), "/keys/:id") {
					url = c.Path() // an operator may paste a whole key where the id belongs
				}
				tel.TrackRequest(telemetry.Request{Trace: tr, Name: name, URL: url, Start: start,
					Duration: time.Since(start), Status: status, Properties: props, Measurements: meas})
			}()
			if err := next(c); err != nil {
				c.Error(err)
			}
			return nil
		}
	}
}

func traceOf(c echo.Context) telemetry.Trace {
	t, _ := c.Get(ctxTrace).(telemetry.Trace)
	return t
}

// AttemptTelemetry records a dependency item per backend attempt.
type AttemptTelemetry struct{ Tel *telemetry.Client }

// ObserveAttempt implements [proxy.Observer].
func (a AttemptTelemetry) ObserveAttempt(_ context.Context, c *proxy.Call, at proxy.Attempt) {
	if a.Tel == nil {
		return
	}
	d := telemetry.Dependency{Trace: at.Trace, Name: "POST " + at.Path, Target: at.Target, Data: at.Path,
		Start: at.Start, Duration: at.Duration, Status: at.Status,
		Properties: map[string]string{"backend": at.Backend, "deployment": at.Deployment, "region": at.Region,
			"attempt": strconv.Itoa(at.Number), "model": c.Req.Model, "request_id": c.RequestID}}
	if at.Err != nil {
		d.Err = at.Err.Error()
	}
	a.Tel.TrackDependency(d)
}
