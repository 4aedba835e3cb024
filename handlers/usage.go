package handlers

import (
	"context"
	"log/slog"

	"github.com/foundry-gateway/gateway/internal/ledger"
)

// LogUsage writes one structured log line per completed call: the request
// log, with tokens, at ERROR for 5xx answers. It never logs prompt or
// completion text.
type LogUsage struct{ Log *slog.Logger }

// Record implements [UsageSink].
func (l LogUsage) Record(ctx context.Context, e Event) {
	lvl := slog.LevelInfo
	if e.Status >= 500 {
		lvl = slog.LevelError // 5xx answers are an operator signal (README, Logs)
	}
	l.Log.LogAttrs(ctx, lvl, "request",
		slog.String("request_id", e.RequestID), slog.String("trace_id", e.TraceID), slog.String("key_id", e.KeyID),
		slog.String("team", e.Team), slog.String("app", e.App), slog.String("model", e.Model),
		slog.String("op", e.Op), slog.String("class", e.Class), slog.String("backend", e.Backend), slog.String("deployment", e.Deployment),
		slog.Bool("stream", e.Stream), slog.Int("status", e.Status), slog.Int("attempts", e.Attempts),
		slog.Int64("latency_ms", e.Latency.Milliseconds()), slog.Int64("ttfb_ms", e.TTFB.Milliseconds()),
		slog.Bool("complete", e.Complete), slog.Bool("usage_reported", e.Usage.Reported),
		slog.Int64("prompt_tokens", e.Usage.PromptTokens), slog.Int64("completion_tokens", e.Usage.CompletionTokens),
		slog.Int64("cached_tokens", e.Usage.CachedTokens), slog.Int64("reasoning_tokens", e.Usage.ReasoningTokens),
		slog.String("cache", e.Cache),
	)
}

// LedgerUsage logs each call and records it in the usage ledger (priced,
// batched, written off the request path).
type LedgerUsage struct {
	Pricing *ledger.Pricing
	Writer  *ledger.Writer
	Log     LogUsage
}

// Record implements [UsageSink].
func (l LedgerUsage) Record(ctx context.Context, e Event) {
	l.Log.Record(ctx, e)
	l.Writer.Record(ctx, l.Pricing.Event(ledger.Call{Time: e.Time, RequestID: e.RequestID, KeyID: e.KeyID,
		Team: e.Team, App: e.App, Model: e.Model, Op: e.Op, Backend: e.Backend, Deployment: e.Deployment,
		Region: e.Region, Class: ledger.Class(e.Class), Stream: e.Stream, Status: e.Status, Latency: e.Latency,
		Usage: e.Usage, Text: e.Text, PromptEstimate: e.PromptEstimate,
		Cache: e.Cache, Saved: e.Saved, SavedBackend: e.SavedBackend, SavedDeployment: e.SavedDeployment}))
}
