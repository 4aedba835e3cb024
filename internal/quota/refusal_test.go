package quota

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
)

// TestTooLargeNamesEstimateAndMaxTokens: a request whose own estimate is
// over the TPM limit gets a 400 that names the estimate, the limit and the
// missing max_tokens, with no Retry-After.
func TestTooLargeNamesEstimateAndMaxTokens(t *testing.T) {
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
		c.Defaults.Key = config.Limit{TPM: 1500}
		c.DefaultMaxOutput = 4000
	}), newFakeClock(t0), nil)
	g := &Gate{L: l}
	h := http.Header{}
	_, err := g.Admit(context.Background(), h, []Subject{key1}, openai.Request{Op: openai.OpChat, Model: "m", N: 1}, nil)
	var he *httperr.Error
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want an *httperr.Error", err)
	}
	if he.Status != http.StatusBadRequest || he.Code != CodeTooLarge || he.RetryAfter != 0 {
		t.Errorf("got %d %s retry %v, want 400 %s and no Retry-After", he.Status, he.Code, he.RetryAfter, CodeTooLarge)
	}
	for _, want := range []string{"estimated at 4000 tokens", "1500", "max_tokens", "can never be admitted"} {
		if !strings.Contains(he.Msg, want) {
			t.Errorf("message %q lacks %q", he.Msg, want)
		}
	}
	// With max_tokens set small enough it is admitted.
	if _, err := g.Admit(context.Background(), h, []Subject{key1}, openai.Request{Op: openai.OpChat, Model: "m", N: 1, MaxOutput: 500}, nil); err != nil {
		t.Errorf("with max_tokens 500: %v", err)
	}
}

// TestMonthlyBudgetEndGame: two instances share a monthly budget and sync
// after every request. Near the end, where the old code answered 429
// rate_limit_exceeded with Retry-After: 1 while tokens were left, every
// refusal is now 403 monthly_budget_exceeded with x-ratelimit-remaining-
// tokens 0, and the budget is used up with at most one request more (a
// reads b's count one request late).
func TestMonthlyBudgetEndGame(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	clock := newFakeClock(t0)
	cfg := limitsConfig(func(c *config.LimitsConfig) {
		c.Defaults.Team = config.Limit{MonthlyTokens: 20_000, TPM: 1_000_000}
		c.DefaultMaxOutput = 900
	})
	a := New(counters, limits, cfg, clock, nil)
	b := New(counters, limits, cfg, clock, nil)
	for _, l := range []*Limiter{a, b} {
		if err := l.Sync(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	var admitted int64
	var refusals []*httperr.Error
	for i := 0; i < 80; i++ {
		l := []*Limiter{a, b}[i%2]
		g := &Gate{L: l}
		h := http.Header{}
		tk, err := g.Admit(ctx, h, []Subject{teamR}, openai.Request{Op: openai.OpChat, Model: "m", N: 1}, nil)
		if err == nil {
			admitted += 1000
			tk.Settle(1000, true)
		} else {
			var he *httperr.Error
			if !errors.As(err, &he) {
				t.Fatal(err)
			}
			refusals = append(refusals, he)
			if he.Code == CodeMonthly && h.Get(HeaderRemainingTokens) != "0" {
				t.Errorf("refusal %d: %s = %q, want 0", i, HeaderRemainingTokens, h.Get(HeaderRemainingTokens))
			}
		}
		clock.Add(100 * time.Millisecond)
		for _, l := range []*Limiter{a, b} {
			if err := l.Sync(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(refusals) == 0 {
		t.Fatal("no refusal: the budget was never reached")
	}
	for _, he := range refusals {
		if he.Status != http.StatusForbidden || he.Code != CodeMonthly {
			t.Errorf("got %d %s (%s), want 403 %s", he.Status, he.Code, he.Msg, CodeMonthly)
		}
	}
	// Instance a syncs first, so it reads b's count one request late: one
	// request of overshoot at most.
	if admitted < 20_000 || admitted > 21_000 {
		t.Errorf("admitted %d tokens, want the 20,000 budget and at most one request more", admitted)
	}
	t.Logf("admitted %d of 20,000 tokens; %d refusals", admitted, len(refusals))
}
