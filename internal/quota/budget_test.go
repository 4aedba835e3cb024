package quota

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/foundry-gateway/gateway/internal/azurite"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/openai"
)

// TestBudgetsTwoInstancesAzurite: two instances (separate clients) share a
// team's monthly cost budget and an app's monthly token budget on one
// Azurite, reading each other's counts every `every` requests each. The
// money spent stays within the README's bound: the budget plus, per
// instance, the calls it admitted since its last read (here `every`).
// Above the soft limit responses carry the warning header; at the hard
// limit the refusal is 403 budget_exceeded with the figures, never a 429.
func TestBudgetsTwoInstancesAzurite(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Azurite")
	}
	az := azurite.Start(t)
	const every = 3 // requests per instance between two reads
	tests := []struct {
		name       string
		limit      config.Limit
		subjects   []Subject
		perCall    money.Nanos // cost of a call, USD
		tokens     int64       // tokens of a call
		code       string
		budget     int64 // in the budget's unit (nanos or tokens)
		unitOfCall int64
	}{
		{"cost budget", config.Limit{MonthlyCost: 1, MonthlyCostSoft: 0.5}, []Subject{{KindTeam, "finance-test"}},
			30_000_000, 100, CodeBudget, money.PerUnit, 30_000_000},
		{"token budget", config.Limit{MonthlyTokens: 20_000}, []Subject{{KindApp, "t/budget-app"}},
			0, 1000, CodeMonthly, 20_000, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := limitsConfig(func(c *config.LimitsConfig) {
				c.Defaults.Team, c.Defaults.App = tt.limit, tt.limit
				c.DefaultMaxOutput = tt.tokens
			})
			a, b := newStack(t, az.ConnectionString(), cfg), newStack(t, az.ConnectionString(), cfg)
			ctx := context.Background()
			var spent int64
			var warned, refusals int
			for i := 0; i < 200 && refusals < 10; i++ {
				s := []*stack{a, b}[i%2]
				h := http.Header{}
				tk, err := (&Gate{L: s.l}).Admit(ctx, h, tt.subjects, openai.Request{Op: openai.OpChat, Model: "m", N: 1}, nil)
				if err != nil {
					var he *httperr.Error
					if !errors.As(err, &he) || he.Status != http.StatusForbidden || he.Code != tt.code {
						t.Fatalf("refusal: got %v, want 403 %s", err, tt.code)
					}
					if tt.code == CodeBudget && !strings.Contains(he.Msg, "USD used of 1.000000 USD") {
						t.Errorf("refusal message %q lacks the figures", he.Msg)
					}
					refusals++
				} else {
					tk.Settle(tt.tokens, true)
					tk.AddCost(tt.perCall, "USD")
					tk.AddCost(tt.perCall, "EUR") // another currency: not counted
					spent += tt.unitOfCall
					tk.SetHeaders(h)
					if h.Get(HeaderBudgetWarning) != "" {
						warned++
					}
				}
				if i%(2*every) == 2*every-1 {
					for _, s := range []*stack{a, b} {
						if err := s.l.Sync(ctx, true); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			bound := tt.budget + 2*every*tt.unitOfCall
			t.Logf("spent %d of a budget of %d (bound %d); %d warned, %d refusals", spent, tt.budget, bound, warned, refusals)
			if refusals == 0 {
				t.Fatal("never refused")
			}
			if spent < tt.budget || spent > bound {
				t.Errorf("spent %d, want between the budget %d and the bound %d", spent, tt.budget, bound)
			}
			if tt.code == CodeBudget && warned == 0 {
				t.Error("no soft-limit warning header above half the budget")
			}
		})
	}
}

// TestCostBudgetOverride: a per-key cost budget from the Limits table (as
// `handler limits set --key K --monthly-cost 0.10 --monthly-cost-soft
// 0.05` writes it) warns above the soft figure and refuses at the hard one.
func TestCostBudgetOverride(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(nil), newFakeClock(t0), nil)
	if err := l.Overrides().Set(ctx, key1, Override{MonthlyCost: ptr(100_000_000), MonthlyCostSoft: ptr(50_000_000)}); err != nil {
		t.Fatal(err)
	}
	if err := l.LoadOverrides(ctx); err != nil {
		t.Fatal(err)
	}
	var warned []string
	for i := 0; ; i++ {
		h := http.Header{}
		tk, err := l.Admit(ctx, []Subject{key1, teamR}, Estimate{Tokens: 10})
		if err != nil {
			var he *httperr.Error
			if !errors.As(err, &he) || he.Status != 403 || he.Code != CodeBudget || !strings.Contains(he.Msg, "0.120000 USD used of 0.100000 USD") {
				t.Fatalf("refusal %d: got %v, want 403 budget_exceeded with 0.120000 of 0.100000 USD", i, err)
			}
			break
		}
		tk.SetHeaders(h)
		warned = append(warned, h.Get(HeaderBudgetWarning))
		tk.Settle(10, true)
		tk.AddCost(30_000_000, "USD") // 0.03 per call
		if i > 10 {
			t.Fatal("never refused")
		}
	}
	// Calls 1-2 are under 0.05 spent, 3-4 above (0.06, 0.09); the 5th finds 0.12.
	if len(warned) != 4 || warned[1] != "" || warned[2] == "" || !strings.Contains(warned[3], "0.090000 of 0.100000 USD") {
		t.Errorf("warnings %q, want none on the first two calls and the figures on the next two", warned)
	}
}
