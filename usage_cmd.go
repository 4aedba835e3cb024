package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
)

// cmdUsage is `handler usage report`: the finance report the admin API
// also serves, from the same code (ledger.ParseQuery, Daily.Report, Write).
func cmdUsage(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "rebuild" {
		return cmdUsageRebuild(ctx, args[1:], getenv, stdout)
	}
	if len(args) == 0 || args[0] != "report" {
		return usageError{"usage: want `usage report` or `usage rebuild --day yyyy-mm-dd`"}
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
	c, err := loadStoreConfig(*path, getenv)
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

// cmdUsageRebuild is `handler usage rebuild --day D`: it recomputes a day's
// sums from UsageEvents, the exact record, streaming the events a page at a
// time (memory bounded by the number of groups), and rolls the day up.
func cmdUsageRebuild(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("usage rebuild", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	day := fs.String("day", "", "the day to rebuild, yyyy-mm-dd (UTC)")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if *day == "" {
		return usageError{"usage rebuild: --day yyyy-mm-dd is required"}
	}
	d, err := ledger.ParseDate(*day)
	if err != nil {
		return usageError{err.Error()}
	}
	c, err := loadStoreConfig(*path, getenv)
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
	res, err := ledger.NewDaily(lt, nil).Rebuild(ctx, d)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "rebuilt %s: %d events in %d team partitions, %d correction rows; UsageDaily: %d rows, %d written, %d deleted\n",
		*day, res.Events, res.Partitions, res.Corrections, res.Rollup.Rows, res.Rollup.Written, res.Rollup.Deleted)
	return err
}
