package test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
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
	out, err := exec.CommandContext(ctx, chromium, a...).Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return string(out)
}

// TestUsagePageScreenshot opens the chargeback page in headless Chromium
// against a gateway with two weeks of usage in two currencies (the live
// calls and past gpt-4o-mini in USD, past mistral-large in EUR) and failed
// calls, and saves
// build/usage-ui.png. From the DOM after the scripts ran it checks the
// breakdown by team, app, model and class, the errors column, one total per
// currency (never a sum across them), and that a ?key= in the address is
// neither used nor left in it. It runs only with FGW_SCREENSHOT=1 (`make
// screenshot`, which installs Chromium), so `make test` downloads nothing.
func TestUsagePageScreenshot(t *testing.T) {
	if os.Getenv("FGW_SCREENSHOT") != "1" {
		t.Skip("set FGW_SCREENSHOT=1 (make screenshot) to take the usage page screenshot")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium not found: make screenshot installs it (apt-get install -y chromium)")
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
				s.Writer.Record(context.Background(), pricing.Event(c))
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
	dom = runChromium(t, chromium, "--dump-dom", form)
	for _, want := range []string{`data-loaded="`, "<th>Errors</th>", "<th>App</th>", "<th>Class</th>", "batch-eval",
		"Total EUR", "Total USD", "Cost (EUR)", "Cost (USD)", "Cost per day (EUR)", "Cost per day (USD)", `class="err"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("page DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, key) {
		t.Error("the key appears in the page's DOM")
	}
	out := filepath.Join(repoRoot(), "build", "usage-ui.png")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(out)
	runChromium(t, chromium, "--screenshot="+out, "--window-size=1400,1300", form)
	fi, err := os.Stat(out)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (size %v), want a PNG of the page", out, err, fi)
	}
	t.Logf("screenshot: %s (%d bytes)", out, fi.Size())
}
