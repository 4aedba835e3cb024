package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/policy"
	"github.com/foundry-gateway/gateway/internal/sim"
)

func cmdKeys(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys: want create, list, get, rotate or revoke"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	asJSON := fs.Bool("json", false, "JSON output")
	// create
	var cr auth.CreateRequest
	fs.StringVar(&cr.Team, "team", "", "create: team the key is charged to; list: only this team")
	fs.StringVar(&cr.App, "app", "", "create: app of the key")
	models := fs.String("models", "", "create: comma-separated model aliases the key may call (default all)")
	regions := fs.String("regions", "", "create: comma-separated backend regions the key may be served from (default any)")
	class := fs.String("class", "", "create: priority class, interactive (default) or batch (Prefer: respond-async only)")
	fs.Int64Var(&cr.Scope.MaxOutputTokens, "max-output-tokens", 0, "create: cap on max_tokens / max_completion_tokens / max_output_tokens (0 = none)")
	overCap := fs.String("over-cap", "", "create: clamp (default) or reject requests above --max-output-tokens")
	fs.Int64Var(&cr.Scope.MaxN, "max-n", 0, "create: cap on n and best_of (0 = none)")
	fs.BoolVar(&cr.Scope.Admin, "admin", false, "create: the key may use the admin API")
	fs.BoolVar(&cr.Scope.UsageRead, "usage-read", false, "create: a finance key (usage:read): reads every team's usage and nothing else")
	expiresIn := fs.String("expires-in", "", "create, rotate: lifetime of the key, e.g. 720h or 90d (default: never; rotate: the old key's lifetime)")
	expiresAt := fs.String("expires-at", "", "create, rotate: expiry as RFC 3339 time")
	secretOnly := fs.Bool("secret-only", false, "create, rotate: print only the key (for scripts)")
	// rotate
	overlap := fs.String("overlap", "", "rotate: how long the old key keeps working (default 24h; 0s = stop it now)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return usageError{err.Error()}
	}
	c, err := loadStoreConfig(*path, getenv)
	if err != nil {
		return err
	}
	st, err := openStore(c)
	if err != nil {
		return fmt.Errorf("open store (is a gateway already running on the embedded store %s? stop it or use the admin API): %w", c.Store.Path, err)
	}
	defer st.Close()
	t, err := st.Table(ctx, c.Store.TablePrefix+auth.Table)
	if err != nil {
		return err
	}
	adm := &auth.Admin{Keys: auth.NewKeys(t, nil), KnownModel: func(m string) bool { _, ok := c.Models[m]; return ok }}
	var exp time.Time
	if *expiresAt != "" {
		if exp, err = time.Parse(time.RFC3339, *expiresAt); err != nil {
			return usageError{"--expires-at: want an RFC 3339 time such as 2027-01-31T00:00:00Z"}
		}
	}
	oneID := func() (string, error) {
		if len(pos) != 1 {
			return "", usageError{"keys " + sub + ": want exactly one key id (or fgw-<id> prefix)"}
		}
		return pos[0], nil
	}
	printCreated := func(k auth.Created) error {
		switch {
		case *secretOnly:
			_, err := fmt.Fprintln(stdout, k.Secret)
			return err
		case *asJSON:
			return json.NewEncoder(stdout).Encode(k)
		}
		fmt.Fprintf(stdout, "key id:   %s\nteam:     %s\napp:      %s\nscope:    %s\nexpires:  %s\nkey:      %s\n",
			k.ID, k.Team, k.App, scopeText(k.Scope), timeText(k.ExpiresAt), k.Secret)
		if k.Replaces != nil {
			fmt.Fprintf(stdout, "replaces: %s, which works until %s\n", k.Replaces.ID, timeText(k.Replaces.ExpiresAt))
		}
		fmt.Fprintln(stdout, "\nThe key is shown once; store it now.")
		return nil
	}
	switch sub {
	case "create":
		if cr.Team == "" || cr.App == "" {
			return usageError{"keys create: --team and --app are required"}
		}
		cr.Scope.Models, cr.Scope.Regions = auth.SplitList(*models), auth.SplitList(*regions)
		cr.Scope.Class, cr.Scope.OverCap = policy.Class(*class), policy.OverCap(*overCap)
		cr.ExpiresIn, cr.ExpiresAt = *expiresIn, exp
		k, err := adm.Create(ctx, cr)
		if err != nil {
			return err
		}
		return printCreated(k)
	case "rotate":
		id, err := oneID()
		if err != nil {
			return err
		}
		k, err := adm.Rotate(ctx, id, auth.RotateRequest{Overlap: *overlap, ExpiresIn: *expiresIn, ExpiresAt: exp})
		if err != nil {
			return err
		}
		return printCreated(k)
	case "list":
		ks, err := adm.List(ctx, cr.Team)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(ks)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tTEAM\tAPP\tSTATUS\tSCOPE\tCREATED\tEXPIRES")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix(), k.Team, k.App, k.Status, scopeText(k.Scope),
				k.CreatedAt.Format(time.RFC3339), timeText(k.ExpiresAt))
		}
		return tw.Flush()
	case "get", "revoke":
		id, err := oneID()
		if err != nil {
			return err
		}
		get := adm.Get
		if sub == "revoke" {
			get = adm.Revoke
		}
		k, err := get(ctx, id)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(k)
		}
		fmt.Fprintf(stdout, "%s %s (%s/%s) %s, scope %s, expires %s\n", sub, k.ID, k.Team, k.App, k.Status, scopeText(k.Scope), timeText(k.ExpiresAt))
		return nil
	}
	return usageError{"keys: unknown subcommand " + sub}
}

// parseInterleaved parses flags that may come before or after positional
// arguments (handler keys revoke <id> --json) and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// scopeText is a one-line summary of a scope for tables.
func scopeText(s policy.Scope) string {
	var parts []string
	add := func(name string, vals []string) {
		if len(vals) > 0 {
			parts = append(parts, name+"="+strings.Join(vals, ","))
		}
	}
	add("models", s.Models)
	add("regions", s.Regions)
	if s.Class != "" {
		parts = append(parts, "class="+string(s.Class))
	}
	if s.MaxOutputTokens > 0 {
		parts = append(parts, fmt.Sprintf("max-output-tokens=%d", s.MaxOutputTokens))
		if s.OverCap != "" {
			parts = append(parts, "over-cap="+string(s.OverCap))
		}
	}
	if s.MaxN > 0 {
		parts = append(parts, fmt.Sprintf("max-n=%d", s.MaxN))
	}
	if s.Admin {
		parts = append(parts, "admin")
	}
	if s.UsageRead {
		parts = append(parts, "usage:read")
	}
	if len(parts) == 0 {
		return "all"
	}
	return strings.Join(parts, ";")
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func cmdSim(ctx context.Context, args []string, log *slog.Logger, stdout io.Writer) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	path := fs.String("config", "", "simulator config (YAML/JSON); default: built-in deployments")
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	cfg := sim.DefaultConfig()
	if *path != "" {
		b, err := os.ReadFile(*path)
		if err != nil {
			return err
		}
		if cfg, err = sim.ParseConfig(b); err != nil {
			return fmt.Errorf("sim config %s: %w", *path, err)
		}
	}
	s, err := sim.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulator listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
