package handlers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/cache"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// cacheLookup asks the response cache about a call (after quota admission:
// a hit counts as a request but spends no tokens). On a hit it serves the
// answer, settles the ticket at zero tokens, records the hit and returns
// served. An audited call (aud) that hits is recorded with the bytes served.
// Otherwise the lookup (nil when the model is not cached) wraps
// the writer the proxy writes to and stores the answer (cacheStore).
func (g *gateway) cacheLookup(c echo.Context, p auth.Principal, req openai.Request, body []byte, ticket *quota.Ticket,
	start time.Time, tr telemetry.Trace, aud *auditCall) (lk *cache.Lookup, served bool) {
	if g.Cache == nil {
		return nil, false
	}
	r := c.Request()
	lk = g.Cache.Lookup(r.Context(), cache.Call{Req: req, Body: body, Header: r.Header, Team: p.Team, KeyID: p.KeyID},
		g.embedder(c, p, tr))
	if lk == nil || lk.Status != cache.Hit {
		if lk != nil && lk.Status == cache.Bypass {
			lk.SetHeaders(c.Response().Header())
		}
		return lk, false
	}
	werr := lk.Serve(c.Response())
	ticket.SettleUsage(usage.Usage{Reported: true}) // one request; no tokens
	// The share of the original cost a hit is charged counts against cost budgets.
	if g.HitCost != nil {
		ticket.AddCost(g.HitCost(req.Model, lk.Entry.Backend, lk.Entry.Deployment, lk.Entry.Usage))
	}
	e := Event{Time: start.UTC(), RequestID: requestIDOf(c), KeyID: p.KeyID, Team: p.Team, App: p.App, Model: req.Model,
		Op: string(req.Op), Stream: req.Stream, Status: http.StatusOK, Latency: time.Since(start), Complete: werr == nil,
		Class: "interactive", TraceID: tr.TraceID, Cache: lk.Kind, Saved: lk.Entry.Usage,
		SavedBackend: lk.Entry.Backend, SavedDeployment: lk.Entry.Deployment}
	if werr != nil {
		e.Status = 499
	}
	if aud != nil { // an audited team's hit is recorded like a forwarded call: what was asked, what was served
		aud.cache = lk.Kind
		g.auditDone(c, aud, p, proxy.Call{Req: req, RequestID: e.RequestID}, req.Op, body, proxy.Result{Status: e.Status})
	}
	if g.Telemetry != nil {
		setProps(c, map[string]string{"cache": lk.Kind})
	}
	if g.Usage != nil {
		g.Usage.Record(r.Context(), e)
	}
	return lk, true
}

// cacheStore stores a miss's answer (see cache.Lookup.Store).
func cacheStore(lk *cache.Lookup, res proxy.Result) {
	lk.Store(cache.Result{Status: res.Status, Complete: res.Complete && !res.Aborted && res.Err == nil, Usage: res.Usage,
		Backend: res.Backend, Deployment: res.Deployment})
}

// embedder embeds a prompt for the semantic cache: a call to the
// embedding alias, routed and forwarded like any other, recorded in the
// ledger under the caller (request id <id>-embed). It is the gateway's
// call, not the caller's: the caller's model scope does not apply.
func (g *gateway) embedder(c echo.Context, p auth.Principal, tr telemetry.Trace) cache.Embedder {
	return func(ctx context.Context, alias, text string) ([]float32, error) {
		start := time.Now()
		m, err := g.Router.Model(alias)
		if err != nil {
			return nil, fmt.Errorf("embedding model %s: %w", alias, err)
		}
		body := cache.EmbeddingBody(alias, text)
		req, err := openai.Parse(openai.OpEmbeddings, openai.StyleV1, "", "", body)
		if err != nil {
			return nil, err
		}
		var buf cache.Buffer
		call := proxy.Call{Req: req, Body: body, RequestID: requestIDOf(c) + "-embed", Caller: p.KeyID,
			Regions: p.Scope.Regions, Trace: tr}
		res := g.Proxy.Forward(&buf, c.Request(), m, call)
		if g.Usage != nil {
			g.Usage.Record(ctx, Event{Time: start.UTC(), RequestID: call.RequestID, KeyID: p.KeyID, Team: p.Team, App: p.App,
				Model: alias, Op: string(openai.OpEmbeddings), Backend: res.Backend, Deployment: res.Deployment,
				Region: res.Region, Status: res.Status, Attempts: res.Attempts, Latency: time.Since(start), TTFB: res.TTFB,
				Complete: res.Complete, Usage: res.Usage, Class: "interactive", TraceID: tr.TraceID})
		}
		if res.Status != http.StatusOK {
			return nil, fmt.Errorf("embedding call answered %d", res.Status)
		}
		return cache.ParseEmbedding(buf.Body.Bytes())
	}
}
