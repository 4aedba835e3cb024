package config

import (
	"fmt"
	"sort"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
)

// FailMode is what admission does while the Counters table is unreachable.
type FailMode string

// Fail modes.
const (
	// FailOpen keeps serving, enforcing the limits with the counts this
	// instance has (its own plus the last global totals it read, with its
	// share of what remained).
	FailOpen FailMode = "open"
	// FailClosed refuses requests that need a limit with 503 until the
	// table answers again.
	FailClosed FailMode = "closed"
)

// Limit is one set of limits. Zero means unlimited.
type Limit struct {
	// RPM is requests per window (per minute with the default window).
	RPM int64 `yaml:"rpm" json:"rpm"`
	// TPM is tokens per window (prompt + completion, estimated at admission
	// and corrected with the real usage).
	TPM int64 `yaml:"tpm" json:"tpm"`
	// MonthlyTokens is the token budget per UTC calendar month.
	MonthlyTokens int64 `yaml:"monthlyTokens" json:"monthlyTokens"`
	// MonthlyCost is the hard cost budget per UTC calendar month, in
	// limits.currency: once the month's cost reaches it, requests get 403
	// budget_exceeded. MonthlyCostSoft is the warning level: above it
	// responses carry x-gateway-budget-warning and the gateway logs once.
	MonthlyCost     float64 `yaml:"monthlyCost" json:"monthlyCost"`
	MonthlyCostSoft float64 `yaml:"monthlyCostSoft" json:"monthlyCostSoft"`
}

// LimitDefaults apply to subjects without their own entry or override.
type LimitDefaults struct {
	Key  Limit `yaml:"key" json:"key"`
	App  Limit `yaml:"app" json:"app"`
	Team Limit `yaml:"team" json:"team"`
}

// LimitsConfig configures rate limits and token budgets (issue 4). Every
// request must pass the limits of its key, its app and its team.
type LimitsConfig struct {
	// Teams maps a team to its limits; a team not listed gets Defaults.Team.
	Teams map[string]Limit `yaml:"teams" json:"teams"`
	// Defaults per subject kind. Zero (the default) means unlimited.
	Defaults LimitDefaults `yaml:"defaults" json:"defaults"`
	// Window is the rate window of rpm and tpm (fixed windows aligned to
	// the Unix epoch). Default 60s; must be whole seconds, at least 1s.
	Window Duration `yaml:"window" json:"window"`
	// SyncInterval is how often each instance pushes its counts to the
	// Counters table and reads the global totals. Default 1s. The overshoot
	// of a shared limit grows with it.
	SyncInterval Duration `yaml:"syncInterval" json:"syncInterval"`
	// MonthSyncInterval is how often the monthly counters are synced.
	// Default 10s (monthly budgets are large; this halves table operations).
	MonthSyncInterval Duration `yaml:"monthSyncInterval" json:"monthSyncInterval"`
	// OverrideTTL is how long per-key/app/team overrides (the Limits table)
	// are cached: a change made with the CLI takes effect within it. Default 30s.
	OverrideTTL Duration `yaml:"overrideTTL" json:"overrideTTL"`
	// FailMode: open (default) or closed.
	FailMode FailMode `yaml:"failMode" json:"failMode"`
	// MonthlyExceeded is the status for a used-up monthly budget: 403
	// (default: SDKs do not retry it, so clients fail fast instead of
	// retrying until the month ends) or 429.
	MonthlyExceeded int `yaml:"monthlyExceeded" json:"monthlyExceeded"`
	// DefaultMaxOutput is the output tokens reserved at admission when the
	// request sets no max_tokens / max_completion_tokens /
	// max_output_tokens. Default 1000. Settlement corrects it.
	DefaultMaxOutput int64 `yaml:"defaultMaxOutput" json:"defaultMaxOutput"`
	// Currency of monthlyCost budgets (ISO 4217, default USD). Only the
	// cost of calls priced in it counts; no exchange rates are applied.
	Currency string `yaml:"currency" json:"currency"`
}

func (l *LimitsConfig) applyDefaults() {
	if l.Window == 0 {
		l.Window = Duration(60 * time.Second)
	}
	if l.SyncInterval == 0 {
		l.SyncInterval = Duration(time.Second)
	}
	if l.MonthSyncInterval == 0 {
		l.MonthSyncInterval = Duration(10 * time.Second)
	}
	if l.OverrideTTL == 0 {
		l.OverrideTTL = Duration(30 * time.Second)
	}
	if l.FailMode == "" {
		l.FailMode = FailOpen
	}
	if l.MonthlyExceeded == 0 {
		l.MonthlyExceeded = 403
	}
	if l.DefaultMaxOutput == 0 {
		l.DefaultMaxOutput = 1000
	}
	if l.Currency == "" {
		l.Currency = "USD"
	}
}

// ApplyDefaults fills the zero fields, for callers that build a
// LimitsConfig in code (tests) rather than through Parse.
func (l *LimitsConfig) ApplyDefaults() { l.applyDefaults() }

// Validate reports every problem of the limits section.
func (l *LimitsConfig) Validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("limits: "+format, a...)) }
	w := l.Window.D()
	if w < time.Second || w%time.Second != 0 {
		bad("window %v: must be whole seconds, at least 1s", w)
	}
	if s := l.SyncInterval.D(); s <= 0 || s >= w {
		bad("syncInterval %v: must be positive and shorter than the window %v", s, w)
	}
	if l.MonthSyncInterval.D() < l.SyncInterval.D() {
		bad("monthSyncInterval %v: must not be shorter than syncInterval", l.MonthSyncInterval.D())
	}
	if l.OverrideTTL.D() <= 0 {
		bad("overrideTTL %v: must be positive", l.OverrideTTL.D())
	}
	switch l.FailMode {
	case FailOpen, FailClosed:
	default:
		bad("failMode %q: want %s or %s", l.FailMode, FailOpen, FailClosed)
	}
	if l.MonthlyExceeded != 403 && l.MonthlyExceeded != 429 {
		bad("monthlyExceeded %d: want 403 or 429", l.MonthlyExceeded)
	}
	if l.DefaultMaxOutput < 0 {
		bad("defaultMaxOutput %d: must not be negative", l.DefaultMaxOutput)
	}
	if !money.ValidCurrency(l.Currency) {
		bad("currency %q: not an ISO 4217 code (e.g. USD, EUR, upper case)", l.Currency)
	}
	check := func(where string, x Limit) {
		if x.RPM < 0 || x.TPM < 0 || x.MonthlyTokens < 0 || x.MonthlyCost < 0 || x.MonthlyCostSoft < 0 {
			bad("%s: limits must not be negative (0 means unlimited)", where)
		}
		if x.MonthlyCost > 0 && x.MonthlyCostSoft > x.MonthlyCost {
			bad("%s: monthlyCostSoft %v is above monthlyCost %v", where, x.MonthlyCostSoft, x.MonthlyCost)
		}
	}
	check("defaults.key", l.Defaults.Key)
	check("defaults.app", l.Defaults.App)
	check("defaults.team", l.Defaults.Team)
	teams := make([]string, 0, len(l.Teams))
	for t := range l.Teams {
		teams = append(teams, t)
	}
	sort.Strings(teams)
	for _, t := range teams {
		check("teams."+t, l.Teams[t])
	}
	return errs
}
