package handlers

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/httperr"
)

// invocationRequest is the Functions host's payload-protocol body.
// Values are decoded lazily: the host JSON-encodes non-object values as
// strings (see the reference, A5), so nothing here depends on their shape.
type invocationRequest struct {
	Data     map[string]json.RawMessage `json:"Data"`
	Metadata map[string]json.RawMessage `json:"Metadata"`
}

// invocationResponse is what the host expects back. Outputs is an object
// (never a bare string: the host tries base64 on strings).
type invocationResponse struct {
	Outputs     map[string]any `json:"Outputs"`
	Logs        []string       `json:"Logs"`
	ReturnValue any            `json:"ReturnValue"`
}

// timerInfo is Data.<binding> of a timer trigger; parsed leniently.
type timerInfo struct {
	IsPastDue bool `json:"IsPastDue"`
}

// timer serves POST /{name} for a timer function, to the Functions host
// only (under Functions) or to admin callers (standalone, where the gateway
// runs its timers itself and the route is only a manual trigger).
//
// Under Functions the host invokes a timer over loopback to
// FUNCTIONS_CUSTOMHANDLER_PORT with X-Azure-Functions-InvocationId (source:
// azure-functions-host src/WebJobs.Script/Workers/Http/HttpWorkerConstants.cs,
// DefaultHttpWorkerService). Client requests reach the same port through
// the host's HTTP proxy, also from loopback and also with that header
// (the proxy overwrites it), but the proxy always adds x-ms-invocation-id,
// which a client cannot remove. So a timer call is: from a loopback
// address, with X-Azure-Functions-InvocationId, without x-ms-invocation-id.
// Anything else gets the 404 of an unknown route.
func (g *gateway) timer(name string, fn Timer) echo.HandlerFunc {
	run := invocation(g.Log, name, fn)
	return func(c echo.Context) error {
		r := c.Request()
		if g.UnderFunctions {
			if !fromFunctionsHost(r) {
				return httperr.NotFound("404", "Resource not found: "+r.Method+" "+r.URL.Path)
			}
			return run(c)
		}
		p, err := g.admin(c)
		if err != nil {
			return err
		}
		c.Set(ctxCaller, p.KeyID)
		return run(c)
	}
}

// fromFunctionsHost reports whether r is the host's own payload-protocol
// invocation (see timer).
func fromFunctionsHost(r *http.Request) bool {
	if r.Header.Get("X-Ms-Invocation-Id") != "" || r.Header.Get("X-Azure-Functions-InvocationId") == "" {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// invocation runs a timer function over the payload protocol. A failure
// answers 500 with the logs, which fails the invocation in the host (it
// will run again on the next tick); the body is always valid JSON.
func invocation(log *slog.Logger, name string, fn Timer) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		body, err := io.ReadAll(io.LimitReader(c.Request().Body, 1<<20))
		var req invocationRequest
		if err == nil && len(body) > 0 {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			return c.JSON(http.StatusBadRequest, invocationResponse{Outputs: map[string]any{},
				Logs: []string{name + ": invalid invocation payload: " + err.Error()}})
		}
		pastDue := false
		for _, raw := range req.Data {
			var ti timerInfo
			if json.Unmarshal(raw, &ti) != nil {
				var s string // double-encoded form
				if json.Unmarshal(raw, &s) == nil {
					_ = json.Unmarshal([]byte(s), &ti)
				}
			}
			pastDue = pastDue || ti.IsPastDue
		}
		logs, err := fn(c.Request().Context())
		if pastDue {
			logs = append([]string{name + ": timer was past due"}, logs...)
		}
		log.Info("timer invocation", "function", name, "invocation_id", c.Request().Header.Get("X-Azure-Functions-InvocationId"),
			"duration_ms", time.Since(start).Milliseconds(), "error", errString(err))
		resp := invocationResponse{Outputs: map[string]any{}, Logs: logs}
		if resp.Logs == nil {
			resp.Logs = []string{}
		}
		if err != nil {
			resp.Logs = append(resp.Logs, name+" failed: "+err.Error())
			return c.JSON(http.StatusInternalServerError, resp)
		}
		return c.JSON(http.StatusOK, resp)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
