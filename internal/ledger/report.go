package ledger

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/store"
)

// Dimensions a report can group by.
const (
	ByDate  = "date"
	ByTeam  = "team"
	ByApp   = "app"
	ByModel = "model"
	ByClass = "class"
)

// ErrBadQuery: a report query with an unknown dimension or format, or a bad
// date range.
var ErrBadQuery = errors.New("ledger: bad report query")

// MaxReportDays caps the date range of one report.
const MaxReportDays = 400

// Query selects a report.
type Query struct {
	// From and To are UTC dates, both included.
	From, To time.Time
	// By lists the dimensions to group by (date, team, app, model, class).
	// Rows are also split by currency. Empty: one total row per currency.
	By []string
	// Team, when set, keeps only that team's usage (a team-scoped caller).
	Team string
}

// Row is one line of a report. Dimensions not grouped by are empty.
type Row struct {
	Date              string `json:"date,omitempty"`
	Team              string `json:"team,omitempty"`
	App               string `json:"app,omitempty"`
	Model             string `json:"model,omitempty"`
	Class             string `json:"class,omitempty"`
	Requests          int64  `json:"requests"`
	Errors            int64  `json:"errors"`
	EstimatedRequests int64  `json:"estimatedRequests"`
	PromptTokens      int64  `json:"promptTokens"`
	CachedTokens      int64  `json:"cachedTokens"`
	CompletionTokens  int64  `json:"completionTokens"`
	ReasoningTokens   int64  `json:"reasoningTokens"`
	TotalTokens       int64  `json:"totalTokens"`
	// Cost is exact; JSON writes it with money.Decimals decimals.
	Cost     money.Nanos `json:"cost"`
	Currency string      `json:"currency"`
	// CacheHits, SavedTokens and SavedCost: what the response cache
	// answered and saved (docs/caching.md).
	CacheHits   int64       `json:"cacheHits"`
	SavedTokens int64       `json:"savedTokens"`
	SavedCost   money.Nanos `json:"savedCost"`
}

// ParseBy parses a comma-separated list of dimensions.
func ParseBy(s string) ([]string, error) {
	var by []string
	for _, f := range strings.Split(s, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if f == "" {
			continue
		}
		switch f {
		case ByDate, ByTeam, ByApp, ByModel, ByClass:
		default:
			return nil, fmt.Errorf("%w: unknown dimension %q (want date, team, app, model, class)", ErrBadQuery, f)
		}
		if !slices.Contains(by, f) {
			by = append(by, f)
		}
	}
	return by, nil
}

// ParseDate parses yyyy-mm-dd as a UTC date.
func ParseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: date %q: want yyyy-mm-dd", ErrBadQuery, s)
	}
	return t, nil
}

// Report sums usage over the query's dates. Past days come from UsageDaily;
// today, yesterday and days marked dirty are computed from UsageEvents, so
// the totals equal the sum of the stored events whenever the report runs.
func (d *Daily) Report(ctx context.Context, q Query) ([]Row, error) {
	from, to := Day(q.From), Day(q.To)
	if q.From.IsZero() || q.To.IsZero() || from > to {
		return nil, fmt.Errorf("%w: from %s after to %s", ErrBadQuery, from, to)
	}
	if q.To.Sub(q.From) > MaxReportDays*24*time.Hour {
		return nil, fmt.Errorf("%w: at most %d days", ErrBadQuery, MaxReportDays)
	}
	for _, b := range q.By {
		if _, err := ParseBy(b); err != nil {
			return nil, err
		}
	}
	now := d.now().UTC()
	today := Day(now)
	if to > today {
		to = today
	}
	live := map[string]bool{today: true, Day(now.AddDate(0, 0, -1)): true}
	marks, err := d.t.Dirty.Query(ctx, store.Query{PartitionKey: dirtyPK})
	if err != nil {
		return nil, fmt.Errorf("report: read dirty days: %w", err)
	}
	for _, m := range marks {
		live[m.RowKey] = true
	}

	agg := map[string]*Row{}
	var keys []string
	add := func(r DailyRow) {
		if q.Team != "" && r.Team != q.Team {
			return
		}
		row := Row{Currency: r.Currency}
		for _, b := range q.By {
			switch b {
			case ByDate:
				row.Date = r.Date
			case ByTeam:
				row.Team = r.Team
			case ByApp:
				row.App = r.App
			case ByModel:
				row.Model = r.Model
			case ByClass:
				row.Class = string(r.Class)
			}
		}
		k := strings.Join([]string{row.Date, row.Team, row.App, row.Model, row.Class, row.Currency}, "\x00")
		if agg[k] == nil {
			agg[k] = &row
			keys = append(keys, k)
		}
		a := agg[k]
		a.Requests += r.Requests
		a.Errors += r.Errors
		a.EstimatedRequests += r.EstimatedRequests
		a.PromptTokens += r.PromptTokens
		a.CachedTokens += r.CachedTokens
		a.CompletionTokens += r.CompletionTokens
		a.ReasoningTokens += r.ReasoningTokens
		a.TotalTokens += r.TotalTokens
		a.Cost += r.Cost
		a.CacheHits += r.CacheHits
		a.SavedTokens += r.SavedTokens
		a.SavedCost += r.SavedCost
	}

	// Stored rows, month by month, skipping the live days.
	for m := time.Date(q.From.Year(), q.From.Month(), 1, 0, 0, 0, 0, time.UTC); Day(m) <= to; m = m.AddDate(0, 1, 0) {
		ents, err := d.t.Daily.Query(ctx, store.Query{PartitionKey: m.Format("2006-01"), RowKeyFrom: from, RowKeyTo: to + "}"})
		if err != nil {
			return nil, fmt.Errorf("report: read UsageDaily: %w", err)
		}
		for _, en := range ents {
			r := dailyFrom(en)
			if r.Date < from || r.Date > to || live[r.Date] {
				continue
			}
			add(r)
		}
	}
	liveDays := make([]string, 0, len(live))
	for day := range live {
		if day >= from && day <= to {
			liveDays = append(liveDays, day)
		}
	}
	sort.Strings(liveDays)
	for _, day := range liveDays {
		rows, err := d.compute(ctx, day)
		if err != nil {
			return nil, fmt.Errorf("report %s: %w", day, err)
		}
		for _, r := range rows {
			add(r)
		}
	}
	sort.Strings(keys)
	out := make([]Row, len(keys))
	for i, k := range keys {
		out[i] = *agg[k]
	}
	return out, nil
}

// Totals sums rows per currency.
func Totals(rows []Row) []Row {
	by := map[string]*Row{}
	var cur []string
	for _, r := range rows {
		t := by[r.Currency]
		if t == nil {
			t = &Row{Currency: r.Currency}
			by[r.Currency] = t
			cur = append(cur, r.Currency)
		}
		t.Requests += r.Requests
		t.Errors += r.Errors
		t.EstimatedRequests += r.EstimatedRequests
		t.PromptTokens += r.PromptTokens
		t.CachedTokens += r.CachedTokens
		t.CompletionTokens += r.CompletionTokens
		t.ReasoningTokens += r.ReasoningTokens
		t.TotalTokens += r.TotalTokens
		t.Cost += r.Cost
		t.CacheHits += r.CacheHits
		t.SavedTokens += r.SavedTokens
		t.SavedCost += r.SavedCost
	}
	sort.Strings(cur)
	out := make([]Row, len(cur))
	for i, c := range cur {
		out[i] = *by[c]
	}
	return out
}

// Formats of a report.
const (
	FormatTable = "table"
	FormatCSV   = "csv"
	FormatJSON  = "json"
)

// columns are the header names (the UsageDaily column names) of rows
// grouped by by; csv adds CostNanos, the exact integer cost, as in the
// table.
func columns(by []string, csv bool) []string {
	var cols []string
	for _, b := range by {
		cols = append(cols, strings.ToUpper(b[:1])+b[1:])
	}
	cols = append(cols, "Requests", "Errors", "EstimatedRequests", "PromptTokens", "CachedTokens",
		"CompletionTokens", "ReasoningTokens", "TotalTokens")
	if csv {
		cols = append(cols, "CostNanos")
	}
	// The cache columns come last: readers of the older columns are unchanged.
	return append(cols, "Cost", "Currency", "CacheHits", "SavedTokens", "SavedCost")
}

func cells(r Row, by []string, csv bool) []string {
	var c []string
	for _, b := range by {
		switch b {
		case ByDate:
			c = append(c, r.Date)
		case ByTeam:
			c = append(c, r.Team)
		case ByApp:
			c = append(c, r.App)
		case ByModel:
			c = append(c, r.Model)
		case ByClass:
			c = append(c, r.Class)
		}
	}
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	c = append(c, i(r.Requests), i(r.Errors), i(r.EstimatedRequests), i(r.PromptTokens), i(r.CachedTokens),
		i(r.CompletionTokens), i(r.ReasoningTokens), i(r.TotalTokens))
	if csv {
		c = append(c, i(int64(r.Cost)))
	}
	return append(c, r.Cost.String(), r.Currency, i(r.CacheHits), i(r.SavedTokens), r.SavedCost.String())
}

// Report is a report as the JSON format writes it.
type Report struct {
	From   string   `json:"from"`
	To     string   `json:"to"`
	By     []string `json:"by"`
	Rows   []Row    `json:"rows"`
	Totals []Row    `json:"totals"`
}

// Write formats rows as table (aligned text with a total line per
// currency), csv (a header of UsageDaily column names: the integer columns,
// CostNanos, Cost with 6 decimals, Currency) or json (a Report).
func Write(w io.Writer, format string, q Query, rows []Row) error {
	switch format {
	case FormatJSON:
		by := q.By
		if by == nil {
			by = []string{}
		}
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(Report{From: Day(q.From), To: Day(q.To), By: by, Rows: rows, Totals: Totals(rows)})
	case FormatCSV:
		cw := csv.NewWriter(w)
		_ = cw.Write(columns(q.By, true))
		for _, r := range rows {
			_ = cw.Write(cells(r, q.By, true))
		}
		cw.Flush()
		return cw.Error()
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, strings.Join(columns(q.By, false), "\t")+"\t")
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(cells(r, q.By, false), "\t")+"\t")
		}
		for _, t := range Totals(rows) {
			c := cells(t, q.By, false)
			if len(q.By) > 0 {
				c[0] = "TOTAL"
			}
			fmt.Fprintln(tw, strings.Join(c, "\t")+"\t")
		}
		return tw.Flush()
	default:
		return fmt.Errorf("%w: format %q (want table, csv or json)", ErrBadQuery, format)
	}
}
