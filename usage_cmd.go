package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
)

// cmdUsage is `handler usage report`: the finance report the admin API
// also serves, from the same code (ledger.ParseQuery, Daily.Report, Write).
func cmdUsage(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "report" {
		return usageError{"usage: want `usage report`"}
	}
	fs := flag.NewFlagSet("usage report", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	from := fs.String("from", "", "first day, yyyy-mm-dd (default 6 days before --to)")
	to := fs.String("to", "", "last day, yyyy-mm-dd (default today, UTC)")
	by := fs.String("by", "team", "group by: comma-separated date, team, app, model, class")
	format := fs.String("format", "table", "table, csv or json")
	team := fs.String("team", "", "only this team")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	q, f, err := ledger.ParseQuery(*from, *to, *by, *format, time.Now())
	if err != nil {
		return usageError{err.Error()}
	}
	q.Team = *team
	c, _, err := loadConfig(configArgs(*path), "usage", getenv)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return err
	}
	defer st.Close()
	lt, err := ledger.OpenTables(ctx, st, c.Store.TablePrefix)
	if err != nil {
		return err
	}
	rows, err := ledger.NewDaily(lt, nil).Report(ctx, q)
	if err != nil {
		return err
	}
	return ledger.Write(stdout, f, q, rows)
}
