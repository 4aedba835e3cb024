package quota

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/openai"
)

var t0 = time.Date(2026, 11, 22, 10, 31, 0, 0, time.UTC)

var (
	key1  = Subject{KindKey, "k1"}
	app1  = Subject{KindApp, "a1"}
	teamR = Subject{KindTeam, "research"}
)

func TestAdmit(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		cfg      func(*config.LimitsConfig)
		override *SubjectOverride
		subjects []Subject
		est      int64
		admits   int // requests admitted before the first refusal
		status   int
		code     string
		retry    time.Duration // 0: not checked
	}{
		{"rpm", func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{RPM: 3} },
			nil, []Subject{key1}, 10, 3, 429, CodeRateLimit, 60*time.Second - 10*time.Second},
		{"tpm", func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{TPM: 1000} },
			nil, []Subject{key1}, 300, 3, 429, CodeRateLimit, 50 * time.Second},
		{"team limit binds below the key's", func(c *config.LimitsConfig) {
			c.Defaults.Key = config.Limit{TPM: 1000}
			c.Teams = map[string]config.Limit{"research": {TPM: 500}}
		}, nil, []Subject{key1, app1, teamR}, 200, 2, 429, CodeRateLimit, 0},
		{"monthly default 403", func(c *config.LimitsConfig) { c.Defaults.App = config.Limit{MonthlyTokens: 1000} },
			nil, []Subject{key1, app1}, 400, 2, 403, CodeMonthly, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Sub(t0.Add(10 * time.Second))},
		{"monthly as 429", func(c *config.LimitsConfig) {
			c.Defaults.App = config.Limit{MonthlyTokens: 1000}
			c.MonthlyExceeded = 429
		}, nil, []Subject{app1}, 400, 2, 429, CodeMonthly, 0},
		{"override raises the key's rpm", func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{RPM: 2} },
			&SubjectOverride{key1, Override{RPM: ptr(5)}}, []Subject{key1}, 1, 5, 429, CodeRateLimit, 0},
		{"override of another key changes nothing", func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{RPM: 2} },
			&SubjectOverride{Subject{KindKey, "other"}, Override{RPM: ptr(5)}}, []Subject{key1}, 1, 2, 429, CodeRateLimit, 0},
		{"request bigger than the tpm limit: 400, never a retryable 429", func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{TPM: 100} },
			nil, []Subject{key1}, 101, 0, 400, CodeTooLarge, 0},
		{"request bigger than the monthly budget: 400", func(c *config.LimitsConfig) { c.Defaults.Team = config.Limit{MonthlyTokens: 100} },
			nil, []Subject{key1, teamR}, 101, 0, 400, CodeTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counters, limits := openTables(t)
			clock := newFakeClock(t0.Add(10 * time.Second))
			l := New(counters, limits, limitsConfig(tt.cfg), clock, nil)
			if tt.override != nil {
				if err := l.Overrides().Set(ctx, tt.override.Subject, tt.override.Override); err != nil {
					t.Fatal(err)
				}
				if err := l.LoadOverrides(ctx); err != nil {
					t.Fatal(err)
				}
			}
			admitted := 0
			var err error
			for range tt.admits + 5 {
				if _, err = l.Admit(ctx, tt.subjects, Estimate{Tokens: tt.est}); err != nil {
					break
				}
				admitted++
			}
			if admitted != tt.admits {
				t.Errorf("admitted %v, want %v", admitted, tt.admits)
			}
			var he *httperr.Error
			if !errors.As(err, &he) {
				t.Fatalf("error %v, want *httperr.Error", err)
			}
			if he.Status != tt.status || he.Code != tt.code {
				t.Errorf("refusal %d %s, want %d %s", he.Status, he.Code, tt.status, tt.code)
			}
			if tt.retry != 0 && he.RetryAfter != tt.retry {
				t.Errorf("RetryAfter %v, want %v", he.RetryAfter, tt.retry)
			}
			if he.Msg == "" {
				t.Errorf("empty message")
			}
		})
	}
}

func TestUnlimitedIsNotCounted(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(nil), newFakeClock(t0), nil)
	for range 100 {
		tk, err := l.Admit(ctx, []Subject{key1, app1, teamR}, Estimate{Tokens: 1e6})
		if err != nil {
			t.Fatalf("Admit: %v", err)
		}
		tk.Settle(5, true)
	}
	if err := l.Sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	rows, err := counters.Query(ctx, storeAll())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rows); got != 0 {
		t.Errorf("counter rows %v, want %v", got, 0)
	}
}

func TestWindowRollover(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	clock := newFakeClock(t0.Add(59 * time.Second))
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{RPM: 1} }), clock, nil)
	if _, err := l.Admit(ctx, []Subject{key1}, Estimate{}); err != nil {
		t.Fatal(err)
	}
	_, err := l.Admit(ctx, []Subject{key1}, Estimate{})
	var he *httperr.Error
	if !errors.As(err, &he) || he.RetryAfter != time.Second {
		t.Fatalf("second Admit: %v, want 429 with RetryAfter 1s", err)
	}
	clock.Add(time.Second)
	if _, err := l.Admit(ctx, []Subject{key1}, Estimate{}); err != nil {
		t.Errorf("Admit in the next window: %v, want nil", err)
	}
}

func TestSettle(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		est     []int64
		actual  []int64
		failed  []bool
		wantTok int64
	}{
		{"estimate above the truth", []int64{1000, 1000, 1000}, []int64{120, 80, 300}, nil, 500},
		{"estimate below the truth", []int64{10, 10}, []int64{400, 600}, nil, 1000},
		{"mixed, with a failed call", []int64{500, 500, 500}, []int64{700, 0, 50}, []bool{true, false, true}, 750},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			counters, limits := openTables(t)
			clock := newFakeClock(t0.Add(5 * time.Second))
			l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
				c.Defaults.Key = config.Limit{RPM: 100, TPM: 1e6, MonthlyTokens: 1e9}
			}), clock, nil)
			var tickets []*Ticket
			for _, e := range tt.est {
				tk, err := l.Admit(ctx, []Subject{key1}, Estimate{Tokens: e})
				if err != nil {
					t.Fatal(err)
				}
				tickets = append(tickets, tk)
			}
			// Push the reservations, then settle, some after the window ended.
			if err := l.Sync(ctx, true); err != nil {
				t.Fatal(err)
			}
			for i, tk := range tickets {
				if i == len(tickets)-1 {
					clock.Add(time.Minute)
				}
				ok := tt.failed == nil || !tt.failed[i]
				tk.Settle(tt.actual[i], ok)
				tk.Settle(99999, ok) // a second settle is ignored
			}
			if err := l.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			w := windowKey(windowStart(t0, time.Minute), time.Minute)
			tok, req := tableTotals(t, counters, key1, w)
			if tok != tt.wantTok || req != int64(len(tt.est)) {
				t.Errorf("window row tokens %v requests %v, want %v %v", tok, req, tt.wantTok, len(tt.est))
			}
			mtok, _ := tableTotals(t, counters, key1, monthKey(monthStart(t0)))
			if mtok != tt.wantTok {
				t.Errorf("month row tokens %v, want %v", mtok, tt.wantTok)
			}
		})
	}
}

func TestInstancesShareLimit(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	clock := newFakeClock(t0.Add(time.Second))
	cfg := limitsConfig(func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{TPM: 1000} })
	a := New(counters, limits, cfg, clock, nil)
	b := New(counters, limits, cfg, clock, nil)
	for range 6 {
		if _, err := a.Admit(ctx, []Subject{key1}, Estimate{Tokens: 100}); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range []*Limiter{a, b} {
		if err := l.Sync(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	admitted := int64(0)
	for range 60 {
		if _, err := b.Admit(ctx, []Subject{key1}, Estimate{Tokens: 100}); err == nil {
			admitted += 100
		}
		if err := b.Sync(ctx, true); err != nil {
			t.Fatal(err)
		}
	}
	// b takes its share of what remains per sync, then the end game takes
	// the rest; never more.
	if admitted != 400 {
		t.Errorf("b admitted %v tokens after a took 600 of 1000, want %v", admitted, 400)
	}
	h := http.Header{}
	b.SetHeaders(h, []Subject{key1})
	if got := h.Get(HeaderRemainingTokens); got != "0" {
		t.Errorf("%s = %q, want %q", HeaderRemainingTokens, got, "0")
	}
}

func TestHeaders(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
		c.Defaults.Key = config.Limit{RPM: 10, TPM: 1000}
		c.Defaults.Team = config.Limit{RPM: 5, TPM: 5000}
	}), newFakeClock(t0), nil)
	tk, err := l.Admit(ctx, []Subject{key1, teamR}, Estimate{Tokens: 300})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	tk.SetHeaders(h)
	want := map[string]string{
		HeaderLimitRequests: "5", HeaderRemainingRequests: "4", // the team is tighter on requests
		HeaderLimitTokens: "1000", HeaderRemainingTokens: "700", // the key on tokens
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestFailClosed(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	ct := &countingTable{Table: counters}
	tests := []struct {
		mode       config.FailMode
		wantStatus int
	}{
		{config.FailOpen, 0},
		{config.FailClosed, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			l := New(ct, limits, limitsConfig(func(c *config.LimitsConfig) {
				c.Defaults.Key = config.Limit{RPM: 100}
				c.FailMode = tt.mode
			}), newFakeClock(t0), nil)
			if _, err := l.Admit(ctx, []Subject{key1}, Estimate{}); err != nil {
				t.Fatal(err)
			}
			ct.down.Store(true)
			defer ct.down.Store(false)
			if err := l.Sync(ctx, true); err == nil {
				t.Fatalf("Sync with the table down: nil error, want one")
			}
			_, err := l.Admit(ctx, []Subject{key1}, Estimate{})
			got := 0
			if err != nil {
				got = httperr.From(err).Status
			}
			if got != tt.wantStatus {
				t.Errorf("status while down %v, want %v (err %v)", got, tt.wantStatus, err)
			}
		})
	}
}

// TestNoDoubleCount: a write that the table applied but whose reply was
// lost is pushed again; the row must still hold the true count.
func TestNoDoubleCount(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	ct := &countingTable{Table: counters}
	l := New(ct, limits, limitsConfig(func(c *config.LimitsConfig) { c.Defaults.Key = config.Limit{TPM: 1e6} }), newFakeClock(t0), nil)
	for range 3 {
		tk, err := l.Admit(ctx, []Subject{key1}, Estimate{Tokens: 10})
		if err != nil {
			t.Fatal(err)
		}
		tk.Settle(7, true)
	}
	ct.lostReply.Store(true)
	if err := l.Sync(ctx, false); err == nil {
		t.Fatal("Sync with lost replies: nil error, want one")
	}
	ct.lostReply.Store(false)
	for range 2 {
		if err := l.Sync(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	tok, req := tableTotals(t, counters, key1, windowKey(windowStart(t0, time.Minute), time.Minute))
	if tok != 21 || req != 3 {
		t.Errorf("tokens %v requests %v, want %v %v", tok, req, 21, 3)
	}
}

func TestEstimate(t *testing.T) {
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(nil), newFakeClock(t0), nil)
	tests := []struct {
		name string
		req  openai.Request
		want int64
	}{
		{"chat default output", openai.Request{Op: openai.OpChat, N: 1}, 100 + 1000},
		{"chat max tokens times n", openai.Request{Op: openai.OpChat, MaxOutput: 50, N: 3}, 100 + 150},
		{"embeddings input only", openai.Request{Op: openai.OpEmbeddings, MaxOutput: 50}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.Estimate(tt.req, 100).Tokens; got != tt.want {
				t.Errorf("Estimate = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		id, wantPK string
	}{
		{"k1", "key:k1"},
		{"a/b#c?d\\e|f", "key:a~2Fb~23c~3Fd~5Ce~7Cf"},
		{"ünï", "key:~C3~BCn~C3~AF"},
	}
	for _, tt := range tests {
		s := Subject{KindKey, tt.id}
		if got := s.partitionKey(); got != tt.wantPK {
			t.Errorf("partitionKey(%q) = %v, want %v", tt.id, got, tt.wantPK)
		}
		if got := unescapeKey(escapeKey(tt.id)); got != tt.id {
			t.Errorf("unescape(escape(%q)) = %v, want %v", tt.id, got, tt.id)
		}
	}
	if got := windowKey(t0, time.Minute); got != "m:202611221031" {
		t.Errorf("windowKey = %v, want %v", got, "m:202611221031")
	}
	if got := windowKey(time.Unix(1000, 0), 2*time.Second); got != "w2:500" {
		t.Errorf("windowKey = %v, want %v", got, "w2:500")
	}
	if got := monthKey(monthStart(t0)); got != "mo:202611" {
		t.Errorf("monthKey = %v, want %v", got, "mo:202611")
	}
}

func TestOverrides(t *testing.T) {
	ctx := context.Background()
	_, limits := openTables(t)
	o := NewOverrides(limits)
	s := Subject{KindKey, "k/1"}
	if err := o.Set(ctx, s, Override{RPM: ptr(10)}); err != nil {
		t.Fatal(err)
	}
	if err := o.Set(ctx, s, Override{TPM: ptr(0)}); err != nil {
		t.Fatal(err)
	}
	got, err := o.Get(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.RPM == nil || *got.RPM != 10 || got.TPM == nil || *got.TPM != 0 || got.MonthlyTokens != nil {
		t.Errorf("Get = %+v, want RPM 10, TPM 0, MonthlyTokens nil", got)
	}
	list, err := o.List(ctx)
	if err != nil || len(list) != 1 || list[0].Subject != s {
		t.Errorf("List = %+v, %v, want one override of %v", list, err, s)
	}
	if err := o.Set(ctx, s, Override{RPM: ptr(-1)}); err == nil {
		t.Errorf("Set of a negative limit: nil error, want one")
	}
	if err := o.Delete(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, _ := o.Get(ctx, s); got.RPM != nil {
		t.Errorf("Get after Delete = %+v, want empty", got)
	}
}

// TestChargeCountsAgainstMonthlyBudgetOnly: tokens of a job that ran later
// are charged to the monthly budget (so the next request is refused) but
// not to the rate window.
func TestChargeCountsAgainstMonthlyBudgetOnly(t *testing.T) {
	ctx := context.Background()
	counters, limits := openTables(t)
	l := New(counters, limits, limitsConfig(func(c *config.LimitsConfig) {
		c.Teams = map[string]config.Limit{"research": {TPM: 1000, MonthlyTokens: 1000}}
	}), newFakeClock(t0.Add(10*time.Second)), nil)
	subs := []Subject{key1, teamR}
	l.Charge(subs, 900)
	if _, err := l.Admit(ctx, subs, Estimate{Tokens: 50}); err != nil {
		t.Fatalf("50 tokens after a 900-token job: %v (the rate window must not hold the job's tokens)", err)
	}
	_, err := l.Admit(ctx, subs, Estimate{Tokens: 100})
	var he *httperr.Error
	if !errors.As(err, &he) || he.Code != CodeMonthly {
		t.Errorf("after 950 of 1000 monthly tokens, 100 more: got %v, want %s", err, CodeMonthly)
	}
}
