package quota

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Error codes of refused requests.
const (
	CodeRateLimit   = "rate_limit_exceeded"
	CodeMonthly     = "monthly_budget_exceeded"
	CodeUnavailable = "quota_unavailable"
)

// Clock tells the limiter the time.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now implements [Clock].
func (SystemClock) Now() time.Time { return time.Now() }

// Estimate is what admission reserves for a request.
type Estimate struct {
	// Tokens: prompt estimate plus the requested (or default) output.
	Tokens int64
	// Prompt and Output are its parts (Output = max output × n); Default
	// says the request set no max output, so Output is the configured
	// defaultMaxOutput. For the message of a request that can never fit.
	Prompt, Output int64
	Default        bool
}

// Limiter admits requests against RPM, TPM and monthly token limits shared
// by every gateway instance through the Counters table. Admit and Settle
// work in memory only; Run syncs with the table. Safe for concurrent use.
type Limiter struct {
	counters store.Table
	ovTable  *Overrides
	cfg      config.LimitsConfig
	clock    Clock
	log      *slog.Logger
	warned   map[string]bool // soft budget warnings logged (subject|month), under mu
	instance string

	window time.Duration

	overrides atomic.Pointer[map[Subject]Override]
	// live is the number of gateway instances seen by the last heartbeat
	// (at least 1): the share divisor for subjects with no history here.
	live atomic.Int64
	// down is set while the Counters table does not answer.
	down atomic.Bool

	mu       sync.Mutex
	subjects map[Subject]*subjectState

	healthMu               sync.Mutex
	downSince, lastDownLog time.Time
}

// counter is this instance's view of one subject in one window (a rate
// window or a month).
type counter struct {
	rk         string // RowKey prefix: the window
	start, end time.Time
	month      bool

	// tokens, requests: this instance's cumulative count in the window:
	// settled usage plus the estimates of requests still in flight.
	tokens, requests int64
	// pushedTokens, pushedRequests: what our row in the table holds.
	pushedTokens, pushedRequests int64
	// othersTokens, othersRequests: the other instances' counts at the last
	// read in force.
	othersTokens, othersRequests int64
	// othersCeilTokens, othersCeilRequests: the same with each row counted
	// as the larger of its count and its ceiling (what that instance may
	// reach before its next read): the base of the share.
	othersCeilTokens, othersCeilRequests int64
	// atReadTokens, atReadRequests: our own count at the last read in force;
	// what we admitted since is the share heuristic's "since".
	atReadTokens, atReadRequests int64
	// writers: instances counting in this window (us included), at least
	// the floor carried from the previous window.
	writers  int64
	inflight int
	// pending is the last read, not yet in force: its share may be used
	// only once our row publishes the ceiling it grants (see sync.go).
	pending *readView
	// pubCeilTokens, pubCeilRequests: the ceilings our row holds.
	pubCeilTokens, pubCeilRequests int64
	// cost, pushedCost, othersCost: the same for cost in limits.currency
	// (nanos), monthly counters only; charged when a call's cost is known.
	cost, pushedCost, othersCost int64
}

type subjectState struct {
	subject Subject
	pk      string
	wins    []*counter // rate windows, oldest first
	months  []*counter
}

// New returns a Limiter over the Counters table and the Limits (overrides)
// table. It starts nothing: call Run for the sync loop and Flush on
// shutdown. cfg must have its defaults applied (config.Parse does it).
func New(counters, limits store.Table, cfg config.LimitsConfig, clock Clock, logger *slog.Logger) *Limiter {
	if clock == nil {
		clock = SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var id [6]byte
	_, _ = crand.Read(id[:])
	l := &Limiter{
		counters: counters,
		ovTable:  NewOverrides(limits),
		cfg:      cfg,
		clock:    clock,
		log:      logger,
		instance: hex.EncodeToString(id[:]),
		window:   cfg.Window.D(),
		subjects: map[Subject]*subjectState{},
	}
	empty := map[Subject]Override{}
	l.overrides.Store(&empty)
	l.live.Store(1)
	return l
}

// InstanceID names this instance's rows in the Counters table.
func (l *Limiter) InstanceID() string { return l.instance }

// Overrides returns the override store (for the CLI and admin API).
func (l *Limiter) Overrides() *Overrides { return l.ovTable }

// Estimate is what to reserve for req whose prompt was estimated at
// promptTokens: embeddings count their input only; other operations add
// max output (or limits.defaultMaxOutput) times n.
func (l *Limiter) Estimate(req openai.Request, promptTokens int64) Estimate {
	if req.Op == openai.OpEmbeddings || req.Op.Media() {
		return Estimate{Tokens: promptTokens, Prompt: promptTokens}
	}
	out := req.MaxOutput
	def := out <= 0
	if def {
		out = l.cfg.DefaultMaxOutput
	}
	n := req.N
	if n < 1 {
		n = 1
	}
	return Estimate{Tokens: promptTokens + out*n, Prompt: promptTokens, Output: out * n, Default: def}
}

// Limits returns the limits that apply to s now: the configuration
// (teams.<id> or defaults.<kind>) with any override from the Limits table.
func (l *Limiter) Limits(s Subject) config.Limit {
	var base config.Limit
	switch s.Kind {
	case KindKey:
		base = l.cfg.Defaults.Key
	case KindApp:
		base = l.cfg.Defaults.App
	case KindTeam:
		if t, ok := l.cfg.Teams[s.ID]; ok {
			base = t
		} else {
			base = l.cfg.Defaults.Team
		}
	}
	if o, ok := (*l.overrides.Load())[s]; ok {
		base = o.apply(base)
	}
	return base
}

// Ticket is one admitted request's reservation. Settle it exactly once
// when the response (or stream) ends.
type Ticket struct {
	l       *Limiter
	est     int64
	settled atomic.Bool
	charges []charge
	buf     [3]charge

	// warning: a soft cost budget is passed (HeaderBudgetWarning).
	warning string
	// The tightest subject's figures, after this request, for the headers.
	limitRequests, remainingRequests int64
	limitTokens, remainingTokens     int64
}

type charge struct {
	win, month *counter // nil when that limit is unlimited
}

// Admit checks a request against the limits of every subject (all must
// pass) and reserves est on success. It never touches the table. A refusal
// is an *httperr.Error: 429 rate_limit_exceeded with RetryAfter (until the
// window ends, or until the next sync when only this instance's share is
// used up), the monthly budget's status with monthly_budget_exceeded, or
// 503 when failMode is closed and the Counters table is unreachable.
// Subjects without any limit are not counted.
func (l *Limiter) Admit(ctx context.Context, subjects []Subject, est Estimate) (*Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, httperr.Wrap(err, httperr.StatusClientClosedRequest, "client_closed_request", "the client went away")
	}
	now := l.clock.Now()
	need := max(est.Tokens, 0)
	t := &Ticket{l: l, est: need, limitRequests: -1, limitTokens: -1}
	t.charges = t.buf[:0]

	var lims [8]config.Limit
	limits := lims[:0]
	any := false
	for _, s := range subjects {
		lim := l.Limits(s)
		limits = append(limits, lim)
		if lim != (config.Limit{}) {
			any = true
		}
	}
	if !any {
		return t, nil
	}
	if l.cfg.FailMode == config.FailClosed && l.down.Load() {
		e := httperr.New(http.StatusServiceUnavailable, CodeUnavailable,
			"Rate limits cannot be checked right now; retry shortly.")
		e.RetryAfter = l.cfg.SyncInterval.D()
		return nil, e
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range subjects {
		lim := limits[i]
		if lim == (config.Limit{}) {
			continue
		}
		st := l.state(s)
		var c charge
		if lim.RPM > 0 || lim.TPM > 0 {
			w := st.current(now, l.window, false, l.live.Load())
			if lim.RPM > 0 {
				if ok, shareOnly := fits(lim.RPM, w.othersRequests, w.othersCeilRequests, w.requests, w.atReadRequests, w.writers, 1); !ok {
					return nil, l.refuse(s, "requests", lim.RPM, w, now, shareOnly)
				}
			}
			if lim.TPM > 0 {
				if need > lim.TPM {
					return nil, tooLarge(s, "tokens-per-minute limit", lim.TPM, est)
				}
				if ok, shareOnly := fits(lim.TPM, w.othersTokens, w.othersCeilTokens, w.tokens, w.atReadTokens, w.writers, need); !ok {
					return nil, l.refuse(s, "tokens", lim.TPM, w, now, shareOnly)
				}
			}
			c.win = w
		}
		if lim.MonthlyTokens > 0 || lim.MonthlyCost > 0 {
			c.month = st.current(now, 0, true, l.live.Load())
		}
		if lim.MonthlyCost > 0 {
			if err := l.checkCost(s, lim, c.month, now, t); err != nil {
				return nil, err
			}
		}
		if lim.MonthlyTokens > 0 {
			if need > lim.MonthlyTokens {
				return nil, tooLarge(s, "monthly token budget", lim.MonthlyTokens, est)
			}
			m := c.month
			// A budget is checked against the global total only, without the
			// per-instance share of the rate windows: a share refusal would
			// be a 429 with Retry-After: 1 while tokens are left (clients
			// retry it), and near the end, where an overshoot could happen,
			// the remainder each instance can take is small anyway. Bound:
			// README, "Budgets".
			if m.othersTokens+m.tokens+need > lim.MonthlyTokens {
				left := max(lim.MonthlyTokens-m.othersTokens-m.tokens, 0)
				e := httperr.New(l.cfg.MonthlyExceeded, CodeMonthly, fmt.Sprintf(
					"The monthly token budget of %s %s (%d tokens) is used up: %d tokens left, fewer than this request's estimate of %d; it resets at %s.",
					s.Kind, s.ID, lim.MonthlyTokens, left, need, m.end.Format(time.RFC3339)))
				e.RetryAfter = m.end.Sub(now)
				return nil, e
			}
		}
		t.charges = append(t.charges, c)
	}
	// Every subject passed: reserve.
	for _, c := range t.charges {
		if w := c.win; w != nil {
			w.requests++
			w.tokens += need
			w.inflight++
		}
		if m := c.month; m != nil {
			m.requests++
			m.tokens += need
			m.inflight++
		}
	}
	// Header figures: the tightest subject per dimension.
	ci := 0
	for i := range subjects {
		lim := limits[i]
		if lim == (config.Limit{}) {
			continue
		}
		c := t.charges[ci]
		ci++
		if c.win == nil {
			continue
		}
		if lim.RPM > 0 {
			rem := max(lim.RPM-c.win.othersRequests-c.win.requests, 0)
			if t.limitRequests < 0 || rem < t.remainingRequests {
				t.limitRequests, t.remainingRequests = lim.RPM, rem
			}
		}
		if lim.TPM > 0 {
			rem := max(lim.TPM-c.win.othersTokens-c.win.tokens, 0)
			if t.limitTokens < 0 || rem < t.remainingTokens {
				t.limitTokens, t.remainingTokens = lim.TPM, rem
			}
		}
	}
	return t, nil
}

// fits reports whether need more fits under limit given the other
// instances' total at the last read, our own count, our own count at the
// last read and the number of instances counting. Beyond the global check
// it applies the local share: since the last read this instance may take
// at most (remaining at that read) / (2 × writers) (all of it when alone). The read misses what the
// others admitted since their last push (up to one share each), so shares
// of two successive intervals are in flight at once; halving keeps their
// sum under the remainder. The remainder still shrinks geometrically, so the
// limit is reached within a few sync intervals under load. A request
// larger than limit/writers could never fit a share; it is admitted as the
// first request after a read if it fits globally, so big requests are not
// starved (each instance may then overshoot by one such request).
// shareOnly reports a refusal by the share alone.
func fits(limit, others, othersCeil, mine, mineAtRead, writers, need int64) (ok, shareOnly bool) {
	if others+mine+need > limit {
		return false, false
	}
	n := max(writers, 1)
	since := mine - mineAtRead
	if since <= 0 && need > limit/n {
		return true, false
	}
	rem := limit - othersCeil - mineAtRead
	div := 2 * n
	if n == 1 {
		div = 1 // alone: nobody's admissions are unseen
	}
	if max(since, 0)+need <= share(limit, othersCeil, mineAtRead, writers) {
		return true, false
	}
	// End game: the share is smaller than one request but the remainder
	// still holds it. Take it with probability rem / (2 × writers × need),
	// so that together the instances take about half of it per interval
	// instead of leaving it unused (or all taking it at once).
	if since <= 0 && need > 0 && rand.Float64()*float64(div*need) < float64(rem) {
		return true, false
	}
	return false, true
}

// share is what this instance may admit between a read and the next: the
// remainder at the read over 2 × writers (all of it when alone). It is
// fits' rule, and what the ceiling published in our row is made of.
func share(limit, others, mineAtRead, writers int64) int64 {
	n := max(writers, 1)
	rem := limit - others - mineAtRead
	if n == 1 {
		return rem
	}
	return rem / (2 * n)
}

// ceiling is the count this instance may reach before its next read in
// force: its count at the read plus its share. An instance that counts
// itself alone (writers 1) reserves nothing: the others it does not know
// of could not read a reservation of everything without starving, and its
// writer count is corrected by their first row or heartbeat. 0 for an
// unlimited dimension.
func ceiling(limit, othersCeil, mineAtRead, writers int64) int64 {
	if limit <= 0 || writers <= 1 {
		return 0
	}
	return mineAtRead + max(share(limit, othersCeil, mineAtRead, writers), 0)
}

// CodeTooLarge is the code of a request whose own estimate exceeds a limit:
// it could never be admitted, so retrying is pointless.
const CodeTooLarge = "request_exceeds_limit"

// tooLarge is the non-retryable 400 for a request whose estimate exceeds
// limit on its own, naming the estimate and what to change.
func tooLarge(s Subject, what string, limit int64, est Estimate) error {
	var fix string
	switch {
	case est.Default:
		fix = fmt.Sprintf(" The request sets no max_tokens (max_completion_tokens / max_output_tokens), so %d output tokens are reserved; set it lower.", est.Output)
	case est.Output > 0:
		fix = fmt.Sprintf(" Lower max_tokens (%d output tokens reserved) or shorten the prompt.", est.Output)
	default:
		fix = " Shorten the input."
	}
	return httperr.New(http.StatusBadRequest, CodeTooLarge, fmt.Sprintf(
		"This request is estimated at %d tokens (%d prompt + %d output), more than the %s of %s %s (%d); it can never be admitted.%s",
		est.Tokens, est.Prompt, est.Output, what, s.Kind, s.ID, limit, fix))
}

func (l *Limiter) refuse(s Subject, what string, limit int64, c *counter, now time.Time, shareOnly bool) error {
	retry := c.end.Sub(now)
	if shareOnly {
		retry = min(retry, l.cfg.SyncInterval.D())
	}
	per := "per " + l.window.String()
	if l.window == time.Minute {
		per = "per minute"
	}
	if c.month {
		per = "this month"
	}
	e := httperr.New(http.StatusTooManyRequests, CodeRateLimit, fmt.Sprintf(
		"Rate limit exceeded: %s %s is limited to %d %s %s. Retry after %d ms.",
		s.Kind, s.ID, limit, what, per, retry.Milliseconds()))
	e.RetryAfter = max(retry, time.Millisecond)
	return e
}

// state returns the state of s, creating it. l.mu must be held.
func (l *Limiter) state(s Subject) *subjectState {
	st := l.subjects[s]
	if st == nil {
		st = &subjectState{subject: s, pk: s.partitionKey()}
		l.subjects[s] = st
	}
	return st
}

// current returns the counter of the window (or month) holding now,
// creating it. live is the instance count for a subject with no history.
func (st *subjectState) current(now time.Time, w time.Duration, month bool, live int64) *counter {
	list := &st.wins
	var start, end time.Time
	var rk string
	if month {
		list = &st.months
		start = monthStart(now)
		end = start.AddDate(0, 1, 0)
	} else {
		start = windowStart(now, w)
		end = start.Add(w)
	}
	if n := len(*list); n > 0 {
		last := (*list)[n-1]
		if last.start.Equal(start) {
			return last
		}
		if last.start.After(start) { // the clock went back: stay in the newest window
			return last
		}
	}
	if month {
		rk = monthKey(start)
	} else {
		rk = windowKey(start, w)
	}
	floor := max(live, 1)
	if n := len(*list); n > 0 {
		floor = max((*list)[n-1].writers, 1)
	}
	c := &counter{rk: rk, start: start, end: end, month: month, writers: floor}
	*list = append(*list, c)
	return c
}

// Settle corrects the reservation with the truth: tokens is the usage the
// backend reported (prompt + completion), possibly 0 for a failed call,
// possibly more or less than the estimate. ok says whether the call
// succeeded; the request counts for RPM either way, and the tokens charged
// are tokens either way. Settling twice does nothing.
func (t *Ticket) Settle(tokens int64, ok bool) {
	_ = ok
	if t == nil || !t.settled.CompareAndSwap(false, true) || len(t.charges) == 0 {
		return
	}
	delta := max(tokens, 0) - t.est
	t.l.mu.Lock()
	for _, c := range t.charges {
		if w := c.win; w != nil {
			w.tokens += delta
			w.inflight--
		}
		if m := c.month; m != nil {
			m.tokens += delta
			m.inflight--
		}
	}
	t.l.mu.Unlock()
}

// SettleUsage is Settle with the usage the gateway extracted: the reported
// total (prompt + completion when the total is missing). When the backend
// reported nothing (a stream cut before its usage chunk) the estimate is
// kept, as the tokens were most likely used.
func (t *Ticket) SettleUsage(u usage.Usage) {
	if t == nil {
		return
	}
	if !u.Reported {
		t.Settle(t.est, false)
		return
	}
	n := u.TotalTokens
	if n == 0 {
		n = u.PromptTokens + u.CompletionTokens
	}
	t.Settle(n, true)
}

// Header names set on every response (as Azure OpenAI does).
const (
	HeaderLimitRequests     = "x-ratelimit-limit-requests"
	HeaderLimitTokens       = "x-ratelimit-limit-tokens"
	HeaderRemainingRequests = "x-ratelimit-remaining-requests"
	HeaderRemainingTokens   = "x-ratelimit-remaining-tokens"
)

// SetHeaders sets the x-ratelimit-* headers of the tightest subject (per
// dimension) as of admission. Nothing is set for unlimited dimensions.
func (t *Ticket) SetHeaders(h http.Header) {
	if t == nil {
		return
	}
	// On every admitted request: the four values share one string and one
	// slice (2 allocations instead of 8; issue 17), under the canonical keys.
	var num [4 * 20]byte
	b := num[:0]
	var ends [4]int
	n := 0
	if t.limitRequests >= 0 {
		b = strconv.AppendInt(b, t.limitRequests, 10)
		ends[n], n = len(b), n+1
		b = strconv.AppendInt(b, t.remainingRequests, 10)
		ends[n], n = len(b), n+1
	}
	if t.limitTokens >= 0 {
		b = strconv.AppendInt(b, t.limitTokens, 10)
		ends[n], n = len(b), n+1
		b = strconv.AppendInt(b, t.remainingTokens, 10)
		ends[n], n = len(b), n+1
	}
	if n > 0 {
		all, vals, start := string(b), make([]string, n), 0
		for i := range n {
			vals[i], start = all[start:ends[i]], ends[i]
		}
		i := 0
		if t.limitRequests >= 0 {
			h[canonLimitRequests], h[canonRemainingRequests] = vals[0:1:1], vals[1:2:2]
			i = 2
		}
		if t.limitTokens >= 0 {
			h[canonLimitTokens], h[canonRemainingTokens] = vals[i:i+1:i+1], vals[i+1:i+2:i+2]
		}
	}
	if t.warning != "" {
		h.Set(HeaderBudgetWarning, t.warning)
	}
}

// The x-ratelimit-* keys as http.Header stores them.
var (
	canonLimitRequests     = http.CanonicalHeaderKey(HeaderLimitRequests)
	canonRemainingRequests = http.CanonicalHeaderKey(HeaderRemainingRequests)
	canonLimitTokens       = http.CanonicalHeaderKey(HeaderLimitTokens)
	canonRemainingTokens   = http.CanonicalHeaderKey(HeaderRemainingTokens)
)

// SetHeaders sets the x-ratelimit-* headers for subjects without admitting
// anything: for refused requests (429), which must carry them too.
func (l *Limiter) SetHeaders(h http.Header, subjects []Subject) {
	now := l.clock.Now()
	t := Ticket{limitRequests: -1, limitTokens: -1}
	l.mu.Lock()
	for _, s := range subjects {
		lim := l.Limits(s)
		if lim.RPM == 0 && lim.TPM == 0 {
			continue
		}
		w := l.state(s).current(now, l.window, false, l.live.Load())
		if lim.RPM > 0 {
			rem := max(lim.RPM-w.othersRequests-w.requests, 0)
			if t.limitRequests < 0 || rem < t.remainingRequests {
				t.limitRequests, t.remainingRequests = lim.RPM, rem
			}
		}
		if lim.TPM > 0 {
			rem := max(lim.TPM-w.othersTokens-w.tokens, 0)
			if t.limitTokens < 0 || rem < t.remainingTokens {
				t.limitTokens, t.remainingTokens = lim.TPM, rem
			}
		}
	}
	l.mu.Unlock()
	t.SetHeaders(h)
}

// Charge records tokens spent outside admission against the subjects'
// monthly budgets only: a low-priority job runs later, when the pools are
// idle, so it must not eat the interactive rate windows, but its tokens are
// real spend. The counts reach the Counters table with the next sync.
func (l *Limiter) Charge(subjects []Subject, tokens int64) {
	if tokens <= 0 {
		return
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range subjects {
		if l.Limits(s).MonthlyTokens <= 0 {
			continue
		}
		l.state(s).current(now, 0, true, l.live.Load()).tokens += tokens
	}
}
