package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"

	"github.com/foundry-gateway/gateway/internal/ledger"
)

// usageGroup is `handler usage …`: the finance report the admin API also
// serves, from the same code (ledger.ParseQuery, Daily.Report, Write).
func usageGroup() group {
	return group{name: "usage", subs: []subcommand{
		{name: "report", args: "[--from D] [--to D] [--by team,app,model,class,date] [--format table|csv|json] [--team T]",
			about: "usage and cost per team/app/model/day", maxArgs: 0, flags: usageReport},
		{name: "rebuild", args: "--day D", about: "recompute a day's sums from UsageEvents (streams; bounded memory)", maxArgs: 0, flags: usageRebuild},
	}}
}

func usageReport(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	from := fs.String("from", "", "first day, yyyy-mm-dd (default 6 days before --to)")
	to := fs.String("to", "", "last day, yyyy-mm-dd (default today, UTC)")
	by := fs.String("by", "team", "group by: comma-separated date, team, app, model, class")
	format := fs.String("format", "table", "table, csv or json")
	team := fs.String("team", "", "only this team")
	return func(ctx context.Context, e env, _ []string) error {
		q, f, err := ledger.ParseQuery(*from, *to, *by, *format, time.Now())
		if err != nil {
			return usageError{err.Error()}
		}
		q.Team = *team
		t, err := openTarget(ctx, e, *path)
		if err != nil {
			return err
		}
		defer t.Close()
		if t.remote != nil {
			v := url.Values{"from": {ledger.Day(q.From)}, "to": {ledger.Day(q.To)}, "by": {*by}, "format": {*format}}
			if q.Team != "" {
				v.Set("team", q.Team)
			}
			return t.remote.do(ctx, "GET", adminPath+"/usage?"+v.Encode(), nil, nil, e.stdout)
		}
		lt, err := ledger.OpenTables(ctx, t.st, t.c.Store.TablePrefix)
		if err != nil {
			return err
		}
		rows, err := ledger.NewDaily(lt, nil).Report(ctx, q)
		if err != nil {
			return err
		}
		return ledger.Write(e.stdout, f, q, rows)
	}
}

// usageRebuild is `handler usage rebuild --day D`: it recomputes a day's
// sums from UsageEvents, the exact record, streaming the events a page at a
// time (memory bounded by the number of groups), and rolls the day up.
func usageRebuild(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	day := fs.String("day", "", "the day to rebuild, yyyy-mm-dd (UTC)")
	return func(ctx context.Context, e env, _ []string) error {
		if *day == "" {
			return usageError{"usage rebuild: --day yyyy-mm-dd is required"}
		}
		d, err := ledger.ParseDate(*day)
		if err != nil {
			return usageError{err.Error()}
		}
		t, err := openTarget(ctx, e, *path)
		if err != nil {
			return err
		}
		defer t.Close()
		if t.remote != nil {
			return errors.New("usage rebuild works on the store itself: stop the gateway that holds the embedded store first")
		}
		lt, err := ledger.OpenTables(ctx, t.st, t.c.Store.TablePrefix)
		if err != nil {
			return err
		}
		res, err := ledger.NewDaily(lt, nil).Rebuild(ctx, d)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "rebuilt %s: %d events in %d team partitions, %d correction rows; UsageDaily: %d rows, %d written, %d deleted\n",
			*day, res.Events, res.Partitions, res.Corrections, res.Rollup.Rows, res.Rollup.Written, res.Rollup.Deleted)
		return err
	}
}
