package ledger

import (
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/usage"
)

func TestCost(t *testing.T) {
	p := Price{Input: money.FromFloat(0.15), CachedInput: money.FromFloat(0.075), Output: money.FromFloat(0.60), Currency: "USD"}
	tests := []struct {
		name     string
		tokens   Tokens
		discount float64
		want     string // exact, 9 decimals
	}{
		{"zero", Tokens{}, 0, "0.000000000"},
		{"prompt only", Tokens{Prompt: 1_000_000}, 0, "0.150000000"},
		{"completion only", Tokens{Completion: 1_000_000}, 0, "0.600000000"},
		{"cached part of prompt", Tokens{Prompt: 1_000_000, Cached: 400_000}, 0, "0.120000000"}, // 0.09 + 0.03
		{"all three", Tokens{Prompt: 2000, Cached: 1000, Completion: 500}, 0, "0.000525000"},
		{"one token each: no float noise", Tokens{Prompt: 1, Completion: 1}, 0, "0.000000750"},
		{"cached above prompt is capped", Tokens{Prompt: 100, Cached: 500}, 0, "0.000007500"},
		{"batch half price", Tokens{Prompt: 1_000_000, Completion: 1_000_000}, 0.5, "0.375000000"},
		{"batch discount rounds half up to the nano", Tokens{Prompt: 1, Cached: 1}, 0.5, "0.000000038"}, // 37.5 nanos
		{"negative counts are zero", Tokens{Prompt: -5, Completion: -5}, 0, "0.000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Cost(p, tt.tokens, tt.discount).Text(9); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPricingEvent(t *testing.T) {
	prices := map[string]Price{"gpt-4o-mini": {Input: money.PerUnit, CachedInput: money.PerUnit / 2, Output: 2 * money.PerUnit, Currency: "EUR"}}
	pr := NewPricing(prices, 0.5, CounterFunc(func(_, text string) int { return len(text) }))
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		call       Call
		wantSource Source
		wantP      int64
		wantC      int64
		wantCost   money.Nanos
		wantCur    string
	}{
		{"reported", Call{Model: "gpt-4o-mini", Status: 200, Usage: usage.Usage{PromptTokens: 100, CachedTokens: 40, CompletionTokens: 10, TotalTokens: 110, Reported: true}},
			SourceReported, 100, 10, (60*1000 + 40*500 + 10*2000), "EUR"},
		{"reported batch discount", Call{Model: "gpt-4o-mini", Class: ClassBatch, Status: 200, Usage: usage.Usage{PromptTokens: 100, CompletionTokens: 10, Reported: true}},
			SourceReported, 100, 10, (100*1000 + 10*2000) / 2, "EUR"},
		{"stream cut: estimated from text", Call{Model: "gpt-4o-mini", Status: 200, Stream: true, Text: "abcdefgh", PromptEstimate: 30},
			SourceEstimated, 30, 8, (30*1000 + 8*2000), "EUR"},
		{"failed without output", Call{Model: "gpt-4o-mini", Status: 429, PromptEstimate: 30}, SourceNone, 0, 0, 0, "EUR"},
		{"unpriced model", Call{Model: "other", Status: 200, Usage: usage.Usage{PromptTokens: 5, Reported: true}}, SourceReported, 5, 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call.Time = at
			e := pr.Event(tt.call)
			if e.UsageSource != tt.wantSource || e.PromptTokens != tt.wantP || e.CompletionTokens != tt.wantC || e.Currency != tt.wantCur {
				t.Errorf("got source %v prompt %v completion %v currency %q, want %v %v %v %q",
					e.UsageSource, e.PromptTokens, e.CompletionTokens, e.Currency, tt.wantSource, tt.wantP, tt.wantC, tt.wantCur)
			}
			if e.Cost != tt.wantCost {
				t.Errorf("got cost %v, want %v", e.Cost, tt.wantCost)
			}
			if e.TotalTokens != e.PromptTokens+e.CompletionTokens {
				t.Errorf("got total %v, want %v", e.TotalTokens, e.PromptTokens+e.CompletionTokens)
			}
		})
	}
}

func TestEncodeKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"research", "research"},
		{"team a/b", "team a%2Fb"},
		{`x\y#z?`, "x%5Cy%23z%3F"},
		{"a|b%c", "a%7Cb%25c"},
		{"tab\there", "tab%09here"},
		{"o'brien", "o%27brien"},
		{"équipe", "équipe"},
	}
	for _, tt := range tests {
		if got := EncodeKey(tt.in); got != tt.want {
			t.Errorf("EncodeKey(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// A target with its own price (a canary of another model version) is
// charged at it; the alias's other targets, and calls that reached no
// backend, at the alias's price.
func TestPricePerDeployment(t *testing.T) {
	c, err := config.Parse([]byte(`
backends: [{name: b1, url: "http://h1", auth: {none: true}}, {name: b2, url: "http://h2", auth: {none: true}}]
models:
  chat:
    targets:
      - { backend: b1, deployment: chat-old, weight: 9 }
      - { backend: b2, weight: 1, price: { input: 2, output: 8, currency: USD } }
    price: { input: 1, output: 4, currency: USD }
  canary-only:
    targets: [ { backend: b1, deployment: x, price: { input: 3, output: 3, currency: EUR } } ]
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p := NewPricing(PricesFromConfig(c), 0, nil)
	u := usage.Usage{PromptTokens: 1_000_000, CompletionTokens: 1_000_000, Reported: true}
	tests := []struct {
		name, model, backend, deployment string
		want                             money.Nanos
		currency                         string
	}{
		{"alias price", "chat", "b1", "chat-old", 5 * money.PerUnit, "USD"},
		{"target price (deployment defaults to the alias)", "chat", "b2", "chat", 10 * money.PerUnit, "USD"},
		{"no backend reached", "chat", "", "", 5 * money.PerUnit, "USD"},
		{"only a target price", "canary-only", "b1", "x", 6 * money.PerUnit, "EUR"},
		{"unpriced", "canary-only", "b2", "x", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := p.Event(Call{Model: tt.model, Backend: tt.backend, Deployment: tt.deployment, Usage: u, Status: 200})
			if e.Cost != tt.want || e.Currency != tt.currency {
				t.Errorf("event cost %v %s, want %v %s", e.Cost, e.Currency, tt.want, tt.currency)
			}
			if got, cur := p.CostOf(tt.model, tt.backend, tt.deployment, ClassInteractive, u); got != tt.want || cur != tt.currency {
				t.Errorf("CostOf %v %s, want %v %s", got, cur, tt.want, tt.currency)
			}
		})
	}
}
