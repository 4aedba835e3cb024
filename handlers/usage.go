package handlers

import (
	"context"
	"log/slog"
)

// LogUsage writes one structured log line per completed call: the request
// log, with tokens. It never logs prompt or completion text.
type LogUsage struct{ Log *slog.Logger }

// Record implements [UsageSink].
func (l LogUsage) Record(ctx context.Context, e Event) {
	l.Log.LogAttrs(ctx, slog.LevelInfo, "request",
		slog.String("request_id", e.RequestID), slog.String("key_id", e.KeyID),
		slog.String("team", e.Team), slog.String("app", e.App), slog.String("model", e.Model),
		slog.String("op", e.Op), slog.String("backend", e.Backend), slog.String("deployment", e.Deployment),
		slog.Bool("stream", e.Stream), slog.Int("status", e.Status), slog.Int("attempts", e.Attempts),
		slog.Int64("latency_ms", e.Latency.Milliseconds()), slog.Int64("ttfb_ms", e.TTFB.Milliseconds()),
		slog.Bool("complete", e.Complete), slog.Bool("usage_reported", e.Usage.Reported),
		slog.Int64("prompt_tokens", e.Usage.PromptTokens), slog.Int64("completion_tokens", e.Usage.CompletionTokens),
		slog.Int64("cached_tokens", e.Usage.CachedTokens), slog.Int64("reasoning_tokens", e.Usage.ReasoningTokens),
	)
}
