package test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/money"
)

// chromiumFlags are the flags every headless run uses.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=8000", "--hide-scrollbars"}

func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a := append(append(append([]string{}, chromiumFlags...), "--user-data-dir="+t.TempDir()), args...)
	start := time.Now()
	out, err := exec.CommandContext(ctx, chromium, a...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	t.Logf("chromium %s: %v", args[0], time.Since(start).Round(time.Millisecond))
	return string(out)
}

// TestUsagePageScreenshot opens the chargeback page in headless Chromium
// against a gateway with two weeks of usage in two currencies (the live
// calls and past gpt-4o-mini in USD, past mistral-large in EUR) and failed
// calls, and saves build/usage-ui.png. From the DOM after the scripts ran
// it checks the breakdown by team, app, model and class, the errors column,
// and the rendered total row and cost card of each currency against sums
// computed here (the EUR figures from the priced events themselves, the
// USD ones from the report rows), so a page that adds currencies together,
// drops one or misprints a figure fails. It also checks that a ?key= in
// the address is neither used nor left in it.
//
// It is part of `make test`, which installs Debian's chromium when it is
// missing (`make chromium`); without chromium it fails, except in -short
// mode.
func TestUsagePageScreenshot(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if testing.Short() {
			t.Skip("-short and no chromium")
		}
		t.Fatal("chromium not found: `make chromium` (part of `make test`) installs it: apt-get install -y chromium")
	}
	teams := []string{"research", "sales", "ops"}
	s := startLedgerStack(t, append(teams, "finance")...)
	for i, tm := range teams {
		load(t, s.URL, s.Keys[tm], 30*(i+1))
	}
	// Past days: events as the gateway would have recorded them, one model
	// priced in EUR, and some failed calls.
	pricing := ledger.NewPricing(map[string]ledger.Price{
		"gpt-4o-mini":   {Input: money.FromFloat(0.15), CachedInput: money.FromFloat(0.075), Output: money.FromFloat(0.6), Currency: "USD"},
		"mistral-large": {Input: money.FromFloat(1.7), Output: money.FromFloat(5.1), Currency: "EUR"}}, 0, nil)
	now := time.Now().UTC()
	var eur pageTotal // what the EUR total must show, from the events
	for d := 1; d < 14; d++ {
		for j, tm := range teams {
			for k := 0; k < 20+((d*7+j*5)%23); k++ {
				c := ledger.Call{Time: now.AddDate(0, 0, -d), RequestID: fmt.Sprintf("past-%d-%s-%d", d, tm, k), Team: tm,
					App: []string{"chatbot", "batch-eval"}[k%3/2], Model: []string{"gpt-4o-mini", "mistral-large"}[k%2], Status: 200}
				if k%9 == 8 {
					c.Status = 500
				} else {
					c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.Reported = int64(800+d*40*(j+1)), int64(300+k*15), true
				}
				e := pricing.Event(c)
				if e.Currency == "EUR" {
					eur.requests++
					eur.tokens += e.TotalTokens
					eur.cost += e.Cost
					if c.Status >= 400 {
						eur.errors++
					}
				}
				s.Writer.Record(context.Background(), e)
			}
		}
	}
	if err := s.Writer.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Daily.Rollup(context.Background()); err != nil {
		t.Fatal(err)
	}
	from, to := ledger.Day(now.AddDate(0, 0, -13)), ledger.Day(now)
	page := "/gateway/admin/usage/ui?from=" + from + "&to=" + to

	// 1. A ?key= in the address: not used, and taken out of the address.
	key := s.Keys["finance"]
	dom := runChromium(t, chromium, "--dump-dom", s.URL+page+"&key="+url.QueryEscape(key))
	if strings.Contains(dom, key) || strings.Contains(dom, `data-loaded="`) {
		t.Errorf("?key= was used: the DOM holds the key or a loaded report")
	}
	if !strings.Contains(dom, "is not used and was removed") {
		t.Errorf("no notice that the ?key= was removed from the address")
	}

	// 2. The key typed into the form (kept for the tab): the report.
	form := s.URL + "/_test/key-form?key=" + url.QueryEscape(key) + "&to=" + url.QueryEscape(page)
	// One run dumps the DOM and saves the screenshot of the same page.
	out := filepath.Join(repoRoot(), "build", "usage-ui.png")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(out)
	dom = runChromium(t, chromium, "--dump-dom", "--screenshot="+out, "--window-size=1400,1300", form)
	for _, want := range []string{`data-loaded="`, "<th>Errors</th>", "<th>App</th>", "<th>Class</th>", "batch-eval",
		"Total EUR", "Total USD", "Cost (EUR)", "Cost (USD)", "Cost per day (EUR)", "Cost per day (USD)", `class="err"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("page DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, key) {
		t.Error("the key appears in the page's DOM")
	}
	// The total row and cost card of each currency, as rendered.
	rows, err := s.Daily.Report(context.Background(), ledger.Query{From: now.AddDate(0, 0, -13), To: now,
		By: []string{ledger.ByTeam, ledger.ByApp, ledger.ByModel, ledger.ByClass}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*pageTotal{}
	for _, r := range rows {
		w := want[r.Currency]
		if w == nil {
			w = &pageTotal{}
			want[r.Currency] = w
		}
		w.requests += r.Requests
		w.errors += r.Errors
		w.tokens += r.TotalTokens
		w.cost += r.Cost
	}
	if w := want["EUR"]; w == nil || *w != eur {
		t.Errorf("report EUR total %+v, want %+v (the priced events)", w, eur)
	}
	got := renderedTotals(dom)
	if len(got) != 2 || len(want) != 2 {
		t.Errorf("rendered totals for %d currencies (%v), report has %d; want USD and EUR", len(got), got, len(want))
	}
	for cur, w := range want {
		row := fmt.Sprintf("%s requests, %s errors, %s tokens, %s", group(w.requests), group(w.errors), group(w.tokens), groupMoney(w.cost))
		if got[cur] != row {
			t.Errorf("rendered total %s: %q, want %q", cur, got[cur], row)
		}
		card := `<small>Cost (` + cur + `)</small><b>` + cur + ` ` + groupMoney(w.cost) + `</b>`
		if !strings.Contains(dom, card) {
			t.Errorf("page DOM lacks the cost card %q", card)
		}
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (size %v), want a PNG of the page", out, err, fi)
	}
	t.Logf("screenshot: %s (%d bytes)", out, fi.Size())
}

// pageTotal is one currency's total row.
type pageTotal struct {
	requests, errors, tokens int64
	cost                     money.Nanos
}

// totalRow matches a rendered total row: currency, requests, errors,
// prompt, cached, completion, total tokens, cost.
var totalRow = regexp.MustCompile(`<tr class="total"><td>Total ([A-Z]{3})</td><td></td><td></td><td></td>` +
	`<td>([\d,]+)</td><td>([\d,]+)</td><td>[\d,]+</td><td>[\d,]+</td><td>[\d,]+</td><td>([\d,]+)</td><td>([\d,.]+)</td>`)

// renderedTotals reads the total rows of the page's DOM by currency.
func renderedTotals(dom string) map[string]string {
	out := map[string]string{}
	for _, m := range totalRow.FindAllStringSubmatch(dom, -1) {
		out[m[1]] = fmt.Sprintf("%s requests, %s errors, %s tokens, %s", m[2], m[3], m[4], m[5])
	}
	return out
}

// group writes n as en-US does (toLocaleString): 1,234,567.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// groupMoney writes n with 6 decimals and grouped units, as the page does.
func groupMoney(n money.Nanos) string {
	s := n.Text(6)
	units, frac, _ := strings.Cut(s, ".")
	u, _ := strconv.ParseInt(units, 10, 64)
	return group(u) + "." + frac
}
