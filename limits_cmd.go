package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/quota"
)

// cmdLimits is `handler limits set|list|delete`: per-key, per-app and
// per-team overrides of the configured limits. Instances pick changes up
// within limits.overrideTTL.
func cmdLimits(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"limits: want set, list or delete"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("limits "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	key := fs.String("key", "", "key id")
	app := fs.String("app", "", "app")
	team := fs.String("team", "", "team")
	rpm := fs.String("rpm", "", "requests per window (0 = unlimited)")
	tpm := fs.String("tpm", "", "tokens per window (0 = unlimited)")
	monthly := fs.String("monthly-tokens", "", "tokens per calendar month, UTC (0 = unlimited)")
	monthlyCost := fs.String("monthly-cost", "", "hard cost budget per calendar month in limits.currency, e.g. 250.00 (0 = unlimited)")
	monthlyCostSoft := fs.String("monthly-cost-soft", "", "soft cost budget (warning header and log) per calendar month")
	asJSON := fs.Bool("json", false, "JSON output")
	if err := fs.Parse(args[1:]); err != nil {
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
	t, err := st.Table(ctx, c.Store.TablePrefix+quota.LimitsTable)
	if err != nil {
		return err
	}
	ov := quota.NewOverrides(t)
	subject := func() (quota.Subject, error) {
		var subs []quota.Subject
		for kind, id := range map[quota.Kind]string{quota.KindKey: *key, quota.KindApp: *app, quota.KindTeam: *team} {
			if id != "" {
				subs = append(subs, quota.Subject{Kind: kind, ID: id})
			}
		}
		if len(subs) != 1 {
			return quota.Subject{}, usageError{"limits " + sub + ": name exactly one of --key, --app, --team"}
		}
		if subs[0].Kind == quota.KindKey {
			// Limits follow a key through its rotations: they are set on
			// its lineage (the first key's id), which quotas count by.
			kt, err := st.Table(ctx, c.Store.TablePrefix+auth.Table)
			if err != nil {
				return quota.Subject{}, err
			}
			k, err := auth.NewKeys(kt, nil).Get(ctx, subs[0].ID)
			switch {
			case err == nil:
				subs[0].ID = k.Subject()
			case errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrBadRequest):
				subs[0].ID = strings.TrimPrefix(subs[0].ID, "fgw-") // a key that is gone: its override can still be listed and deleted
			default:
				return quota.Subject{}, err
			}
		}
		return subs[0], nil
	}
	num := func(s string) (*int64, error) {
		if s == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, usageError{fmt.Sprintf("%q: want a whole number >= 0", s)}
		}
		return &n, nil
	}
	switch sub {
	case "set":
		s, err := subject()
		if err != nil {
			return err
		}
		var o quota.Override
		if o.RPM, err = num(*rpm); err != nil {
			return err
		}
		if o.TPM, err = num(*tpm); err != nil {
			return err
		}
		if o.MonthlyTokens, err = num(*monthly); err != nil {
			return err
		}
		cost := func(s string) (*int64, error) {
			if s == "" {
				return nil, nil
			}
			n, err := money.Parse(s)
			if err != nil || n < 0 {
				return nil, usageError{fmt.Sprintf("limits set: %q is not an amount (e.g. 250.00)", s)}
			}
			v := int64(n)
			return &v, nil
		}
		if o.MonthlyCost, err = cost(*monthlyCost); err != nil {
			return err
		}
		if o.MonthlyCostSoft, err = cost(*monthlyCostSoft); err != nil {
			return err
		}
		if o.RPM == nil && o.TPM == nil && o.MonthlyTokens == nil && o.MonthlyCost == nil && o.MonthlyCostSoft == nil {
			return usageError{"limits set: give at least one of --rpm, --tpm, --monthly-tokens, --monthly-cost, --monthly-cost-soft"}
		}
		if err := ov.Set(ctx, s, o); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "set limits for %s %s\n", s.Kind, s.ID)
		return nil
	case "delete":
		s, err := subject()
		if err != nil {
			return err
		}
		return ov.Delete(ctx, s)
	case "list":
		list, err := ov.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(list)
		}
		show := func(p *int64) string {
			if p == nil {
				return "(config)"
			}
			return strconv.FormatInt(*p, 10)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		showCost := func(p *int64) string {
			if p == nil {
				return "(config)"
			}
			return money.Nanos(*p).String()
		}
		fmt.Fprintln(tw, "KIND\tID\tRPM\tTPM\tMONTHLY TOKENS\tMONTHLY COST\tSOFT")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Subject.Kind, s.Subject.ID, show(s.Override.RPM), show(s.Override.TPM),
				show(s.Override.MonthlyTokens), showCost(s.Override.MonthlyCost), showCost(s.Override.MonthlyCostSoft))
		}
		return tw.Flush()
	}
	return usageError{"limits: unknown subcommand " + sub}
}
