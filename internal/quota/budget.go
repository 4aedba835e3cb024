package quota

import (
	"fmt"
	"net/http"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/money"
)

// CodeBudget is the code of a refusal for a spent monthly cost budget.
const CodeBudget = "budget_exceeded"

// HeaderBudgetWarning is set on responses of callers above a soft monthly
// cost budget.
const HeaderBudgetWarning = "x-gateway-budget-warning"

// checkCost applies s's monthly cost budget: the month's cost so far (this
// instance's exact count plus the others' at the last read) at or above
// the hard limit refuses with 403 budget_exceeded and the figures; above
// the soft limit it sets t's warning (and logs once per subject and
// month). l.mu is held.
//
// Costs are known only when a call ends, so the calls in flight when the
// budget is crossed, and what other instances spent since this one last
// read the month's rows, are not seen: that is the overshoot (README,
// "Budgets in money").
func (l *Limiter) checkCost(s Subject, lim config.Limit, m *counter, now time.Time, t *Ticket) error {
	spent := money.Nanos(m.cost + m.othersCost)
	hard := money.FromFloat(lim.MonthlyCost)
	cur := l.cfg.Currency
	if spent >= hard {
		e := httperr.New(http.StatusForbidden, CodeBudget, fmt.Sprintf(
			"The monthly cost budget of %s %s is spent: %s %s used of %s %s this month; it resets at %s.",
			s.Kind, s.ID, spent, cur, hard, cur, m.end.Format(time.RFC3339)))
		e.RetryAfter = m.end.Sub(now)
		return e
	}
	if lim.MonthlyCostSoft > 0 {
		if soft := money.FromFloat(lim.MonthlyCostSoft); spent >= soft {
			t.warning = fmt.Sprintf("%s %s: %s of %s %s monthly budget used (soft limit %s)", s.Kind, s.ID, spent, hard, cur, soft)
			k := string(s.Kind) + "|" + s.ID + "|" + m.rk
			if !l.warned[k] {
				if l.warned == nil || len(l.warned) > 10000 {
					l.warned = map[string]bool{}
				}
				l.warned[k] = true
				l.log.Warn("monthly cost budget above its soft limit", "subject", string(s.Kind)+":"+s.ID,
					"spent", spent.String(), "soft", soft.String(), "hard", hard.String(), "currency", cur)
			}
		}
	}
	return nil
}

// AddCost charges the cost of the ticket's call to the monthly counters
// of its subjects when it is in the budgets' currency (other currencies
// are not converted and do not count). Call it once, when the cost is
// known.
func (t *Ticket) AddCost(cost money.Nanos, currency string) {
	if t == nil || cost <= 0 || currency != t.l.cfg.Currency {
		return
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	for _, c := range t.charges {
		if m := c.month; m != nil {
			m.cost += int64(cost)
		}
	}
}

// ChargeCost is AddCost for work admitted outside Admit (a low-priority
// job): it counts against the subjects' monthly cost budgets.
func (l *Limiter) ChargeCost(subjects []Subject, cost money.Nanos, currency string) {
	if cost <= 0 || currency != l.cfg.Currency {
		return
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range subjects {
		if lim := l.Limits(s); lim.MonthlyCost <= 0 && lim.MonthlyTokens <= 0 {
			continue
		}
		l.state(s).current(now, 0, true, l.live.Load()).cost += int64(cost)
	}
}
