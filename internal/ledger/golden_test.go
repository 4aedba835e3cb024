package ledger

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/usage"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestReportGolden")

// TestReportGolden: a mixed-currency config (a USD model, a EUR model, a
// deployment with its own EUR price) priced through the real path (config →
// Pricing → Writer → partial sums → Report → Write). Every format (the CLI's
// table, the CSV and the JSON that GET /admin/usage serves) matches its
// golden file byte for byte: costs summed in exact nanos and printed with
// six decimals (no float noise), one total per currency.
func TestReportGolden(t *testing.T) {
	c, err := config.Parse([]byte(`
backends: [{name: b1, url: "http://h1", auth: {none: true}}, {name: b2, url: "http://h2", auth: {none: true}}]
models:
  gpt-4o-mini:
    targets: [ { backend: b1 } ]
    price: { input: 0.15, cachedInput: 0.075, output: 0.6, currency: USD }
  mistral-large:
    targets: [ { backend: b1 }, { backend: b2, deployment: ml-eu, price: { input: 1.7, output: 5.1 } } ]
    price: { input: 2, output: 6, currency: EUR }
`), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	pr := NewPricing(PricesFromConfig(c), 0.5, nil)
	tb := embeddedTables(t)
	clk := func() time.Time { return day1.Add(10 * time.Hour) }
	w := NewWriter(tb, WriterOptions{Now: clk})
	ctx := context.Background()
	calls := []Call{
		{Team: "research", App: "notebook", Model: "gpt-4o-mini", Backend: "b1", Deployment: "gpt-4o-mini", Status: 200,
			Usage: usage.Usage{PromptTokens: 1234, CachedTokens: 1000, CompletionTokens: 2, Reported: true}},
		{Team: "research", App: "notebook", Model: "gpt-4o-mini", Backend: "b1", Deployment: "gpt-4o-mini", Status: 200,
			Usage: usage.Usage{PromptTokens: 7, CompletionTokens: 1, Reported: true}},
		{Team: "research", App: "batch-eval", Model: "gpt-4o-mini", Backend: "b1", Deployment: "gpt-4o-mini", Class: ClassBatch, Status: 200,
			Usage: usage.Usage{PromptTokens: 3333, CompletionTokens: 777, Reported: true}},
		{Team: "sales", App: "crm", Model: "mistral-large", Backend: "b1", Deployment: "mistral-large", Status: 200,
			Usage: usage.Usage{PromptTokens: 101, CompletionTokens: 33, Reported: true}},
		{Team: "sales", App: "crm", Model: "mistral-large", Backend: "b2", Deployment: "ml-eu", Status: 200,
			Usage: usage.Usage{PromptTokens: 99, CompletionTokens: 7, Reported: true}},
		{Team: "sales", App: "crm", Model: "mistral-large", Backend: "b2", Deployment: "ml-eu", Status: 503},
		{Team: "sales", App: "crm", Model: "gpt-4o-mini", Backend: "b1", Deployment: "gpt-4o-mini", Status: 200,
			Usage: usage.Usage{PromptTokens: 10, CompletionTokens: 3, Reported: true}},
	}
	for i, cl := range calls {
		cl.Time = day1.Add(time.Duration(i) * time.Minute)
		cl.RequestID = fmt.Sprintf("req-%02d", i)
		w.Record(ctx, pr.Event(cl))
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	d := NewDaily(tb, clk)
	for _, tt := range []struct {
		name, format string
		by           []string
	}{
		{"team-app-model-class.csv", FormatCSV, []string{ByTeam, ByApp, ByModel, ByClass}},
		{"team-model.json", FormatJSON, []string{ByTeam, ByModel}},
		{"team.txt", FormatTable, []string{ByTeam}},
		{"totals.csv", FormatCSV, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := Query{From: day1, To: day1, By: tt.by}
			rows, err := d.Report(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := Write(&b, tt.format, q, rows); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.name)
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b.Bytes(), want) {
				t.Errorf("got\n%s\nwant (%s)\n%s", b.String(), path, want)
			}
		})
	}
}
