package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/store"
)

// limitsAdmin manages limit overrides: quota.Admin on the store (through
// localLimits), or the running gateway's admin API (adminClient).
type limitsAdmin interface {
	SetLimits(ctx context.Context, s quota.Subject, o quota.Override) (quota.Subject, error)
	DeleteLimits(ctx context.Context, s quota.Subject) (quota.Subject, error)
	ListLimits(ctx context.Context) ([]quota.OverrideView, error)
}

// localLimits is quota.Admin as a limitsAdmin.
type localLimits struct{ *quota.Admin }

func (l localLimits) SetLimits(ctx context.Context, s quota.Subject, o quota.Override) (quota.Subject, error) {
	return l.Set(ctx, s, o)
}

func (l localLimits) DeleteLimits(ctx context.Context, s quota.Subject) (quota.Subject, error) {
	return l.Delete(ctx, s)
}

func (l localLimits) ListLimits(ctx context.Context) ([]quota.OverrideView, error) {
	return l.List(ctx)
}

// newLimitsAdmin is the quota.Admin of a gateway: subjects are checked
// against its keys, its configured teams and identity rules. The gateway's
// admin API and the CLI both use it.
func newLimitsAdmin(c config.Config, limits, keys store.Table) *quota.Admin {
	ks := auth.NewKeys(keys, nil)
	return &quota.Admin{
		Overrides: quota.NewOverrides(limits),
		KeySubject: func(ctx context.Context, id string) (string, bool, error) {
			k, err := ks.Get(ctx, id)
			switch {
			case err == nil:
				return k.Subject(), true, nil
			case errors.Is(err, auth.ErrNotFound) || errors.Is(err, auth.ErrBadRequest):
				return "", false, nil
			}
			return "", false, err
		},
		KnownTeam: func(ctx context.Context, team string) (bool, error) {
			if _, ok := c.Limits.Teams[team]; ok {
				return true, nil
			}
			for _, r := range c.Identity.Rules {
				if r.Team == team {
					return true, nil
				}
			}
			list, err := ks.List(ctx, team)
			return len(list) > 0, err
		},
	}
}

// openLimits opens the limits admin the CLI works on.
func openLimits(ctx context.Context, e env, path string) (limitsAdmin, func(), error) {
	t, err := openTarget(ctx, e, path)
	if err != nil {
		return nil, nil, err
	}
	if t.remote != nil {
		return t.remote, t.Close, nil
	}
	lt, err := t.st.Table(ctx, t.c.Store.TablePrefix+quota.LimitsTable)
	if err == nil {
		var kt store.Table
		if kt, err = t.st.Table(ctx, t.c.Store.TablePrefix+auth.Table); err == nil {
			return localLimits{newLimitsAdmin(t.c, lt, kt)}, t.Close, nil
		}
	}
	t.Close()
	return nil, nil, err
}

// limitsGroup is `handler limits set|list|delete`: per-key, per-app and
// per-team overrides of the configured limits. Instances pick changes up
// within limits.overrideTTL.
func limitsGroup() group {
	return group{name: "limits", subs: []subcommand{
		{name: "set", args: "--key ID | --app TEAM/APP | --team T [--rpm N] [--tpm N] [--monthly-tokens N]",
			about: "override a key's, app's or team's limits (0 = unlimited)", maxArgs: 0, flags: limitsSet},
		{name: "list", args: "[--json]", about: "list the limit overrides", maxArgs: 0, flags: limitsList},
		{name: "delete", args: "--key ID | --app TEAM/APP | --team T", about: "remove an override (back to the config)", maxArgs: 0, flags: limitsDelete},
	}}
}

// subjectFlags declares --key, --app and --team.
func subjectFlags(fs *flag.FlagSet) func() (quota.Subject, error) {
	key := fs.String("key", "", "a key id or its fgw-<id> prefix (limits follow it through rotations)")
	app := fs.String("app", "", "an app, as team/app")
	team := fs.String("team", "", "a team")
	return func() (quota.Subject, error) {
		var subs []quota.Subject
		for _, s := range []quota.Subject{{Kind: quota.KindKey, ID: *key}, {Kind: quota.KindApp, ID: *app}, {Kind: quota.KindTeam, ID: *team}} {
			if s.ID != "" {
				subs = append(subs, s)
			}
		}
		if len(subs) != 1 {
			return quota.Subject{}, usageError{fs.Name() + ": name exactly one of --key, --app, --team"}
		}
		return subs[0], nil
	}
}

// limitsCLIError: a bad subject is a usage error (exit 2).
func limitsCLIError(err error) error {
	if errors.Is(err, quota.ErrBadSubject) {
		return usageError{cliFlagNames.Replace(err.Error())}
	}
	return err
}

func limitsSet(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	subject := subjectFlags(fs)
	rpm := fs.String("rpm", "", "requests per window (0 = unlimited)")
	tpm := fs.String("tpm", "", "tokens per window (0 = unlimited)")
	monthly := fs.String("monthly-tokens", "", "tokens per calendar month, UTC (0 = unlimited)")
	monthlyCost := fs.String("monthly-cost", "", "hard cost budget per calendar month in limits.currency, e.g. 250.00 (0 = unlimited)")
	monthlyCostSoft := fs.String("monthly-cost-soft", "", "soft cost budget (warning header and log) per calendar month")
	return func(ctx context.Context, e env, _ []string) error {
		s, err := subject()
		if err != nil {
			return err
		}
		num := func(flag, v string) (*int64, error) {
			if v == "" {
				return nil, nil
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, usageError{fmt.Sprintf("--%s %q: want a whole number >= 0", flag, v)}
			}
			return &n, nil
		}
		var o quota.Override
		if o.RPM, err = num("rpm", *rpm); err != nil {
			return err
		}
		if o.TPM, err = num("tpm", *tpm); err != nil {
			return err
		}
		if o.MonthlyTokens, err = num("monthly-tokens", *monthly); err != nil {
			return err
		}
		cost := func(flag, v string) (*int64, error) {
			if v == "" {
				return nil, nil
			}
			n, err := money.Parse(v)
			if err != nil || n < 0 {
				return nil, usageError{fmt.Sprintf("--%s %q: not an amount (e.g. 250.00)", flag, v)}
			}
			c := int64(n)
			return &c, nil
		}
		if o.MonthlyCost, err = cost("monthly-cost", *monthlyCost); err != nil {
			return err
		}
		if o.MonthlyCostSoft, err = cost("monthly-cost-soft", *monthlyCostSoft); err != nil {
			return err
		}
		if o.RPM == nil && o.TPM == nil && o.MonthlyTokens == nil && o.MonthlyCost == nil && o.MonthlyCostSoft == nil {
			return usageError{"limits set: give at least one of --rpm, --tpm, --monthly-tokens, --monthly-cost, --monthly-cost-soft"}
		}
		adm, done, err := openLimits(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		if s, err = adm.SetLimits(ctx, s, o); err != nil {
			return limitsCLIError(err)
		}
		fmt.Fprintf(e.stdout, "set limits for %s %s\n", s.Kind, s.ID)
		return nil
	}
}

func limitsDelete(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	subject := subjectFlags(fs)
	return func(ctx context.Context, e env, _ []string) error {
		s, err := subject()
		if err != nil {
			return err
		}
		adm, done, err := openLimits(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		if s, err = adm.DeleteLimits(ctx, s); err != nil {
			return limitsCLIError(err)
		}
		fmt.Fprintf(e.stdout, "deleted limits of %s %s\n", s.Kind, s.ID)
		return nil
	}
}

func limitsList(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print the overrides as JSON")
	return func(ctx context.Context, e env, _ []string) error {
		adm, done, err := openLimits(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		list, err := adm.ListLimits(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(list)
		}
		show := func(p *int64) string {
			if p == nil {
				return "(config)"
			}
			return strconv.FormatInt(*p, 10)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		showCost := func(p *int64) string {
			if p == nil {
				return "(config)"
			}
			return money.Nanos(*p).String()
		}
		fmt.Fprintln(tw, "KIND\tID\tRPM\tTPM\tMONTHLY TOKENS\tMONTHLY COST\tSOFT")
		for _, s := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Kind, s.ID, show(s.RPM), show(s.TPM), show(s.MonthlyTokens),
				showCost(s.MonthlyCost), showCost(s.MonthlyCostSoft))
		}
		return tw.Flush()
	}
}
