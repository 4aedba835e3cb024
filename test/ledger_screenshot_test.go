package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/money"
)

// TestUsagePageScreenshot opens the usage page in headless Chromium against
// a gateway with two weeks of usage and saves build/usage-ui.png. It runs
// only with FGW_SCREENSHOT=1 (`make screenshot`, which installs Chromium),
// so `make test` downloads nothing.
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
	// Past days: events as the gateway would have recorded them.
	pricing := ledger.NewPricing(map[string]ledger.Price{"gpt-4o-mini": {Input: money.FromFloat(0.15), CachedInput: money.FromFloat(0.075), Output: money.FromFloat(0.6), Currency: "USD"},
		"o4-mini": {Input: money.FromFloat(1.1), CachedInput: money.FromFloat(0.275), Output: money.FromFloat(4.4), Currency: "USD"}}, 0, nil)
	now := time.Now().UTC()
	for d := 1; d < 14; d++ {
		for j, tm := range teams {
			for k := 0; k < 20+((d*7+j*5)%23); k++ {
				c := ledger.Call{Time: now.AddDate(0, 0, -d), RequestID: fmt.Sprintf("past-%d-%s-%d", d, tm, k), Team: tm, App: "app",
					Model: []string{"gpt-4o-mini", "o4-mini"}[k%2], Status: 200}
				c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.Reported = int64(800+d*40*(j+1)), int64(300+k*15), true
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
	out := filepath.Join(repoRoot(), "build", "usage-ui.png")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(out)
	url := s.URL + "/gateway/admin/usage/ui?key=" + s.Keys["finance"]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--hide-scrollbars",
		"--screenshot="+out, "--window-size=1280,900", url)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Size() < 10000 {
		t.Fatalf("screenshot %s: %v (size %v), want a PNG of the page", out, err, fi)
	}
	t.Logf("screenshot: %s (%d bytes)", out, fi.Size())
}
