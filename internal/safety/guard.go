package safety

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
)

// checker is what a Guard needs of the service ([Client] has it).
type checker interface {
	Analyze(ctx context.Context, text string, categories []string) (Analysis, error)
	ShieldPrompt(ctx context.Context, userPrompt string, documents []string) (Shield, error)
}

// Guard applies the content safety rules to requests. Safe for concurrent
// use.
type Guard struct {
	c   checker
	cfg config.SafetyConfig
}

// NewGuard returns a guard for the configured rules.
func NewGuard(c checker, cfg config.SafetyConfig) *Guard { return &Guard{c: c, cfg: cfg} }

// Outcome is what a check did, for telemetry. It holds no content.
type Outcome struct {
	// Checked is true when a rule applied and the prompt had text.
	Checked bool
	// Blocked is true when the prompt was refused for its content.
	Blocked bool
	// FailedOpen is true when the service did not answer in time (or
	// failed) and the request went on unchecked.
	FailedOpen bool
	// Unavailable is true when the service failed and the request was
	// refused (fail closed).
	Unavailable bool
	// Latency is the time the check added.
	Latency time.Duration
	// Calls is the number of Content Safety calls made.
	Calls int
	// Truncated is true when the text was longer than the analysed part.
	Truncated bool
	// Err is the service failure (for logs; it carries no content).
	Err error
}

// Check runs the rule for team and model on the request. It returns a
// refusal to send (400 content_filter, or 503 content_safety_unavailable
// when the service fails and the mode is closed), or nil to forward.
func (g *Guard) Check(ctx context.Context, team, model string, op openai.Op, body []byte) (Outcome, error) {
	var o Outcome
	rule, ok := g.cfg.Rule(team, model)
	if !ok || !Checked(op) {
		return o, nil
	}
	t := Extract(op, body)
	if t.Empty() {
		return o, nil
	}
	o.Checked = true
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout.D())
	defer cancel()

	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		sev    = Analysis{}
		shield Shield
		errs   []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	if cats := thresholdCategories(rule); len(cats) > 0 {
		pieces, truncated := split(t.All(), MaxText, maxPieces)
		o.Truncated = truncated
		for _, p := range pieces {
			o.Calls++
			wg.Add(1)
			go func() {
				defer wg.Done()
				a, err := g.c.Analyze(cctx, p, cats)
				if err != nil {
					fail(err)
					return
				}
				mu.Lock()
				for k, v := range a {
					sev[k] = max(sev[k], v)
				}
				mu.Unlock()
			}()
		}
	}
	if rule.PromptShield && (t.User != "" || len(t.Documents) > 0) {
		o.Calls++
		wg.Add(1)
		go func() {
			defer wg.Done()
			user, _ := split(t.User, MaxText, 1)
			s, err := g.c.ShieldPrompt(cctx, strings.Join(user, ""), t.Documents)
			if err != nil {
				fail(err)
				return
			}
			mu.Lock()
			shield = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	o.Latency = time.Since(start)

	// A verdict that blocks stands even when another call failed.
	if res, blocked := verdict(rule, sev, shield); blocked {
		o.Blocked = true
		return o, Refusal(res)
	}
	if len(errs) > 0 {
		o.Err = errors.Join(errs...)
		if ctx.Err() != nil { // the caller went away
			return o, httperr.Wrap(ctx.Err(), httperr.StatusClientClosedRequest, "client_closed_request", "The client closed the request.")
		}
		if g.cfg.FailMode == config.FailOpen {
			o.FailedOpen = true
			return o, nil
		}
		o.Unavailable = true
		return o, httperr.Wrap(o.Err, http.StatusServiceUnavailable, "content_safety_unavailable",
			"The content safety service did not answer in time; the request was not forwarded. Retry later.")
	}
	return o, nil
}

func thresholdCategories(r config.SafetyRule) []string {
	var cats []string
	for _, c := range config.Categories { // a stable order
		if _, ok := r.Thresholds[c]; ok {
			cats = append(cats, c)
		}
	}
	return cats
}

// split cuts s into pieces of at most n characters, at most limit pieces;
// truncated reports text left out.
func split(s string, n, limit int) (pieces []string, truncated bool) {
	for s != "" {
		if len(pieces) == limit {
			return pieces, true
		}
		i, count := 0, 0
		for i < len(s) && count < n {
			_, size := utf8.DecodeRuneInString(s[i:])
			i += size
			count++
		}
		pieces = append(pieces, s[:i])
		s = s[i:]
	}
	return pieces, false
}

// FilterResult is one category of content_filter_result.
type FilterResult struct {
	Filtered bool    `json:"filtered"`
	Severity *string `json:"severity,omitempty"`
	Detected *bool   `json:"detected,omitempty"`
}

// azureCategory names Content Safety's categories as Azure OpenAI does.
var azureCategory = map[string]string{"Hate": "hate", "SelfHarm": "self_harm", "Sexual": "sexual", "Violence": "violence"}

// SeverityName maps a 0-7 severity to Azure OpenAI's names.
func SeverityName(s int) string {
	switch {
	case s >= 6:
		return "high"
	case s >= 4:
		return "medium"
	case s >= 2:
		return "low"
	}
	return "safe"
}

// verdict builds content_filter_result and says whether anything blocks.
func verdict(rule config.SafetyRule, sev Analysis, sh Shield) (map[string]FilterResult, bool) {
	res := map[string]FilterResult{}
	blocked := false
	for cat, th := range rule.Thresholds {
		s, ok := sev[cat]
		if !ok {
			continue
		}
		name := SeverityName(s)
		f := s >= th
		blocked = blocked || f
		res[azureCategory[cat]] = FilterResult{Filtered: f, Severity: &name}
	}
	if rule.PromptShield {
		u, d := sh.UserPromptAttack, sh.DocumentAttack
		res["jailbreak"] = FilterResult{Filtered: u, Detected: &u}
		res["indirect_attack"] = FilterResult{Filtered: d, Detected: &d}
		blocked = blocked || u || d
	}
	return res, blocked
}

// Refusal is the 400 Azure OpenAI sends for a filtered prompt, with the
// gateway's categories.
func Refusal(res map[string]FilterResult) *httperr.Error {
	e := httperr.New(http.StatusBadRequest, "content_filter",
		"The response was filtered due to the prompt triggering the gateway's content management policy. Please modify your prompt and retry.")
	e.Param = "prompt"
	e.Inner = struct {
		Code   string                  `json:"code"`
		Result map[string]FilterResult `json:"content_filter_result"`
	}{"ResponsibleAIPolicyViolation", res}
	return e
}
