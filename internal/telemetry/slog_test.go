package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

type secret string

func (secret) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }

// TestLogHandler: warnings and errors become trace items with their
// attributes (secrets redacted, trace_id as the operation); info does not;
// every record still reaches the next handler.
func TestLogHandler(t *testing.T) {
	in := newIngestion(t, nil)
	c, err := New(Options{ConnectionString: "InstrumentationKey=k;IngestionEndpoint=" + in.srv.URL + "/", BatchInterval: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	var out bytes.Buffer
	log := slog.New(LogHandler(slog.NewJSONHandler(&out, nil), c)).With("component", "proxy")
	log.Info("request", "trace_id", strings.Repeat("a", 32))
	log.Warn("backend attempt retried", "trace_id", strings.Repeat("b", 32), "backend", "eu-ptu", "status", 502)
	log.WithGroup("g").Error("flush failed", "key", secret("fgw-abc.s3cr3t"))
	cancel()
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	c.Close(cctx)

	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("next handler got %d records, want 3", n)
	}
	msgs := in.byType("MessageData")
	if len(msgs) != 2 {
		t.Fatalf("got %d trace items, want 2 (warn, error)", len(msgs))
	}
	byMsg := map[string]map[string]any{}
	for _, m := range msgs {
		byMsg[baseData(m)["message"].(string)] = m
	}
	w, e := byMsg["backend attempt retried"], byMsg["flush failed"]
	if w == nil || e == nil {
		t.Fatalf("messages: %v", byMsg)
	}
	wp, ep := baseData(w)["properties"].(map[string]any), baseData(e)["properties"].(map[string]any)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"warn severity (2)", baseData(w)["severityLevel"], float64(2)},
		{"error severity (3)", baseData(e)["severityLevel"], float64(3)},
		{"warn operation = trace_id", tags(w)["ai.operation.id"], strings.Repeat("b", 32)},
		{"backend property", wp["backend"], "eu-ptu"},
		{"status property", wp["status"], "502"},
		{"WithAttrs attribute", wp["component"], "proxy"},
		{"grouped secret redacted", ep["g.key"], "[REDACTED]"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}
