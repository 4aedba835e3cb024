package ledger

import (
	"math"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Price is what a model alias costs per million tokens, exactly.
type Price struct {
	Input, CachedInput, Output money.Nanos
	Currency                   string
}

// Tokens are the counts a cost is computed from. CachedTokens are part of
// PromptTokens; ReasoningTokens are part of CompletionTokens and are not
// charged again.
type Tokens struct {
	Prompt, Cached, Completion int64
}

// Cost is (prompt−cached)×input + cached×cachedInput + completion×output,
// per million tokens, less discount (a fraction: 0.5 halves the cost), in
// exact integer nanos: each term is exact for prices with at most three
// decimals; the discount is applied in parts per million and rounded half
// up to the nano. Cached tokens above the prompt count are taken as the
// prompt count.
func Cost(p Price, t Tokens, discount float64) money.Nanos {
	cached := min(max(t.Cached, 0), max(t.Prompt, 0))
	uncached := max(t.Prompt, 0) - cached
	c := money.PerMillion(uncached, p.Input) + money.PerMillion(cached, p.CachedInput) +
		money.PerMillion(max(t.Completion, 0), p.Output)
	if discount > 0 {
		c = money.Scale(c, 1_000_000-int64(math.Round(min(discount, 1)*1_000_000)))
	}
	return c
}

// counter counts the tokens of a text for a model (tokens.Counter adapted
// with CounterFunc). Count must be safe for concurrent use.
type counter interface {
	Count(model, text string) int
}

// CounterFunc adapts a function to the counter Pricing uses.
type CounterFunc func(model, text string) int

// Count implements [counter].
func (f CounterFunc) Count(model, text string) int { return f(model, text) }

// bytesQuarter is the fallback counter: about four bytes per token.
type bytesQuarter struct{}

func (bytesQuarter) Count(_, text string) int { return (len(text) + 3) / 4 }

// Pricing turns finished calls into priced events.
type Pricing struct {
	prices   map[string]Price
	discount float64
	counter  counter
	// cacheFraction is the share of the original cost a cache hit is
	// charged (cache.costFraction).
	cacheFraction float64
}

// WithCacheFraction sets the share (0..1) of the original cost a cache hit
// is charged, and returns p.
func (p *Pricing) WithCacheFraction(f float64) *Pricing {
	p.cacheFraction = min(max(f, 0), 1)
	return p
}

// NewPricing returns a Pricing with prices by model alias, the batch
// discount (a fraction), and the counter used to estimate the tokens of a
// call whose usage the backend did not report (nil: about 4 bytes per token).
func NewPricing(prices map[string]Price, batchDiscount float64, c counter) *Pricing {
	if c == nil {
		c = bytesQuarter{}
	}
	return &Pricing{prices: prices, discount: batchDiscount, counter: c}
}

// PricesFromConfig returns the configured price of every alias that has
// one, and of every target with its own price, keyed by [PriceKey]. A
// price without cachedInput charges cached tokens at the input price.
func PricesFromConfig(c config.Config) map[string]Price {
	out := map[string]Price{}
	conv := func(cp *config.Price) Price {
		p := Price{Input: money.FromFloat(cp.Input), CachedInput: money.FromFloat(cp.CachedInput),
			Output: money.FromFloat(cp.Output), Currency: cp.Currency}
		if p.CachedInput == 0 {
			p.CachedInput = p.Input
		}
		return p
	}
	for alias, m := range c.Models {
		if m.Price != nil {
			out[alias] = conv(m.Price)
		}
		for _, t := range m.Targets {
			if t.Price != nil {
				d := t.Deployment
				if d == "" {
					d = alias
				}
				out[PriceKey(alias, t.Backend, d)] = conv(t.Price)
			}
		}
	}
	return out
}

// PriceKey is the prices key of one deployment of an alias; the alias
// alone is the key of its default price.
func PriceKey(alias, backend, deployment string) string {
	return alias + "\x00" + backend + "\x00" + deployment
}

// price is the price of a call: its deployment's own, else its alias's.
func (p *Pricing) price(alias, backend, deployment string) (Price, bool) {
	if backend != "" {
		if pr, ok := p.prices[PriceKey(alias, backend, deployment)]; ok {
			return pr, true
		}
	}
	pr, ok := p.prices[alias]
	return pr, ok
}

// Call is what the gateway knows about a finished call.
type Call struct {
	Time       time.Time
	RequestID  string
	KeyID      string
	Team       string
	App        string
	Model      string
	Op         string
	Backend    string
	Deployment string
	Region     string
	Class      Class // default interactive
	Stream     bool
	Status     int
	Latency    time.Duration
	Usage      usage.Usage
	// Text is the completion text streamed to the client (proxy.Result.Text);
	// it is counted when the backend reported no usage.
	Text string
	// PromptEstimate is the gateway's count of the request's prompt tokens,
	// used when the backend reported no usage.
	PromptEstimate int64
	// Cache is exact or semantic when the response cache answered; Saved
	// is then the usage of the original call, SavedBackend and
	// SavedDeployment who served it (for its price).
	Cache                         string
	Saved                         usage.Usage
	SavedBackend, SavedDeployment string
}

// Event prices a finished call. When the backend reported usage it is used
// as is (UsageSource reported). Otherwise, if the call produced output or
// succeeded, the prompt estimate and the counted text are used (estimated);
// a call that failed without output costs nothing (none).
func (p *Pricing) Event(c Call) Event {
	e := Event{
		Time: c.Time.UTC(), RequestID: c.RequestID, KeyID: c.KeyID, Team: c.Team, App: c.App,
		Model: c.Model, Operation: c.Op, Backend: c.Backend, Deployment: c.Deployment, Region: c.Region,
		Class: c.Class, Status: c.Status, Stream: c.Stream, LatencyMs: c.Latency.Milliseconds(),
	}
	if e.Class == "" {
		e.Class = ClassInteractive
	}
	if c.Cache != "" {
		return p.cacheEvent(e, c)
	}
	switch u := c.Usage; {
	case u.Reported:
		e.PromptTokens, e.CachedTokens = u.PromptTokens, u.CachedTokens
		e.CompletionTokens, e.ReasoningTokens = u.CompletionTokens, u.ReasoningTokens
		e.TotalTokens = u.TotalTokens
		if e.TotalTokens == 0 {
			e.TotalTokens = e.PromptTokens + e.CompletionTokens
		}
		e.UsageSource = SourceReported
	case c.Text != "" || (c.Status >= 200 && c.Status < 300):
		e.PromptTokens = c.PromptEstimate
		if c.Text != "" {
			e.CompletionTokens = int64(p.counter.Count(c.Model, c.Text))
		}
		e.TotalTokens = e.PromptTokens + e.CompletionTokens
		e.UsageSource = SourceEstimated
	default:
		e.UsageSource = SourceNone
	}
	if pr, ok := p.price(c.Model, c.Backend, c.Deployment); ok {
		d := 0.0
		if e.Class == ClassBatch {
			d = p.discount
		}
		e.Cost = Cost(pr, Tokens{Prompt: e.PromptTokens, Cached: e.CachedTokens, Completion: e.CompletionTokens}, d)
		e.Currency = pr.Currency
	}
	return e
}

// cacheEvent prices a cache hit: no backend tokens; the cost is the
// configured fraction of what the original call cost, the rest is saved.
func (p *Pricing) cacheEvent(e Event, c Call) Event {
	e.UsageSource, e.Cache = SourceCache, c.Cache
	e.SavedTokens = c.Saved.TotalTokens
	if e.SavedTokens == 0 {
		e.SavedTokens = c.Saved.PromptTokens + c.Saved.CompletionTokens
	}
	if pr, ok := p.price(c.Model, c.SavedBackend, c.SavedDeployment); ok {
		full := Cost(pr, Tokens{Prompt: c.Saved.PromptTokens, Cached: c.Saved.CachedTokens, Completion: c.Saved.CompletionTokens}, 0)
		e.Cost = Cost(pr, Tokens{Prompt: c.Saved.PromptTokens, Cached: c.Saved.CachedTokens, Completion: c.Saved.CompletionTokens}, 1-p.cacheFraction)
		e.SavedCost = full - e.Cost
		e.Currency = pr.Currency
	}
	return e
}

// CostOf is the cost of reported usage u of model, served by backend's
// deployment, in class (the same rule as Event), and its currency, for
// telemetry and cost budgets; 0 and "" for a model without a price.
func (p *Pricing) CostOf(model, backend, deployment string, class Class, u usage.Usage) (money.Nanos, string) {
	pr, ok := p.price(model, backend, deployment)
	if !ok {
		return 0, ""
	}
	d := 0.0
	if class == ClassBatch {
		d = p.discount
	}
	return Cost(pr, Tokens{Prompt: u.PromptTokens, Cached: u.CachedTokens, Completion: u.CompletionTokens}, d), pr.Currency
}

// HitCostOf is what a cache hit is charged: the configured fraction
// (cache.costFraction) of what the original call u cost, priced as the
// ledger prices the hit's row, so cost budgets and the ledger agree.
func (p *Pricing) HitCostOf(model, backend, deployment string, u usage.Usage) (money.Nanos, string) {
	pr, ok := p.price(model, backend, deployment)
	if !ok || p.cacheFraction <= 0 {
		return 0, ""
	}
	return Cost(pr, Tokens{Prompt: u.PromptTokens, Cached: u.CachedTokens, Completion: u.CompletionTokens}, 1-p.cacheFraction), pr.Currency
}
