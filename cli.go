package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

// keyAdmin manages API keys: auth.Admin on the store, or the admin API of
// the running gateway that holds the embedded store (adminClient).
type keyAdmin interface {
	Create(ctx context.Context, r auth.CreateRequest) (auth.Created, error)
	Rotate(ctx context.Context, id string, r auth.RotateRequest) (auth.Created, error)
	Revoke(ctx context.Context, id string) (auth.Key, error)
	Get(ctx context.Context, id string) (auth.Key, error)
	List(ctx context.Context, team string) ([]auth.Key, error)
}

// openKeys opens the key admin the CLI works on; close releases it.
func openKeys(ctx context.Context, e env, path string) (keyAdmin, func(), error) {
	t, err := openTarget(ctx, e, path)
	if err != nil {
		return nil, nil, err
	}
	if t.remote != nil {
		return t.remote, t.Close, nil
	}
	kt, err := t.st.Table(ctx, t.c.Store.TablePrefix+auth.Table)
	if err != nil {
		t.Close()
		return nil, nil, err
	}
	c := t.c
	return &auth.Admin{Keys: auth.NewKeys(kt, nil), KnownModel: func(m string) bool { _, ok := c.Models[m]; return ok }}, t.Close, nil
}

// cliFlagNames turns the scope and expiry field names of shared
// validation messages into the CLI's flag names.
var cliFlagNames = strings.NewReplacer(
	"overCap", "--over-cap", "maxOutputTokens", "--max-output-tokens", "maxN", "--max-n",
	"expires_at", "--expires-at", "expires_in", "--expires-in", "overlap:", "--overlap:",
	"max_output_tokens", "--max-output-tokens", "over_cap", "--over-cap", "max_n", "--max-n",
)

// cliError rewrites an error of the shared key admin for the CLI: flag
// names instead of field names; a bad request is a usage error (exit 2).
func cliError(err error) error {
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	msg := cliFlagNames.Replace(err.Error())
	if errors.Is(err, auth.ErrBadRequest) || errors.Is(err, policy.ErrInvalid) {
		return usageError{msg}
	}
	return errors.New(msg)
}

func keysGroup() group {
	return group{name: "keys", subs: []subcommand{
		{name: "create", args: "--team T --app A [scope flags] [--expires-in D | --expires-at TIME] [--json | --secret-only]",
			about: "create an API key (printed once)", flags: keysCreate},
		{name: "list", args: "[--team T] [--json]", about: "list keys (never the secrets)", maxArgs: 0, flags: keysList},
		{name: "get", args: "ID [--json]", about: "show one key (ID or its fgw-<id> prefix)", minArgs: 1, maxArgs: 1, flags: keysGetOrRevoke("get")},
		{name: "rotate", args: "ID [--overlap 24h] [--expires-in D | --expires-at TIME] [--json | --secret-only]",
			about: "new key, same scope; the old one works for the overlap", minArgs: 1, maxArgs: 1, flags: keysRotate},
		{name: "revoke", args: "ID [--json]", about: "revoke a key (every instance within auth.keyCacheTTL)", minArgs: 1, maxArgs: 1, flags: keysGetOrRevoke("revoke")},
	}}
}

// createdOutput declares the output flags of create and rotate and
// returns the printer of the new key.
func createdOutput(fs *flag.FlagSet) func(w io.Writer, k auth.Created) error {
	asJSON := fs.Bool("json", false, "print the key as JSON")
	secretOnly := fs.Bool("secret-only", false, "print only the key (for scripts)")
	return func(w io.Writer, k auth.Created) error {
		switch {
		case *secretOnly && *asJSON:
			return usageError{"--json and --secret-only exclude each other"}
		case *secretOnly:
			_, err := fmt.Fprintln(w, k.Secret)
			return err
		case *asJSON:
			return json.NewEncoder(w).Encode(k)
		}
		fmt.Fprintf(w, "key id:   %s\nteam:     %s\napp:      %s\nscope:    %s\nexpires:  %s\nkey:      %s\n",
			k.ID, k.Team, k.App, scopeText(k.Scope), timeText(k.ExpiresAt), k.Secret)
		if k.Replaces != nil {
			fmt.Fprintf(w, "replaces: %s, which works until %s\n", k.Replaces.ID, timeText(k.Replaces.ExpiresAt))
		}
		fmt.Fprintln(w, "\nThe key is shown once; store it now.")
		return nil
	}
}

// expiryFlags declares --expires-in and --expires-at.
func expiryFlags(fs *flag.FlagSet, what string) func() (string, time.Time, error) {
	in := fs.String("expires-in", "", "lifetime of the key, e.g. 720h or 90d (default: "+what+")")
	at := fs.String("expires-at", "", "expiry as an RFC 3339 time, e.g. 2027-01-31T00:00:00Z")
	return func() (string, time.Time, error) {
		if *in != "" && *at != "" {
			return "", time.Time{}, usageError{"give --expires-in or --expires-at, not both"}
		}
		if *at == "" {
			return *in, time.Time{}, nil
		}
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return "", time.Time{}, usageError{"--expires-at: want an RFC 3339 time such as 2027-01-31T00:00:00Z"}
		}
		return *in, t, nil
	}
}

func keysCreate(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	var cr auth.CreateRequest
	fs.StringVar(&cr.Team, "team", "", "team the key is charged to (required)")
	fs.StringVar(&cr.App, "app", "", "app of the key (required)")
	models := fs.String("models", "", "comma-separated model aliases the key may call (default all)")
	regions := fs.String("regions", "", "comma-separated backend regions the key may be served from (default any)")
	class := fs.String("class", "", "priority class: interactive (default) or batch (Prefer: respond-async only)")
	fs.Int64Var(&cr.Scope.MaxOutputTokens, "max-output-tokens", 0, "cap on max_tokens / max_completion_tokens / max_output_tokens (0 = none)")
	overCap := fs.String("over-cap", "", "above --max-output-tokens: clamp (default) or reject")
	fs.Int64Var(&cr.Scope.MaxN, "max-n", 0, "cap on n and best_of (0 = none)")
	fs.BoolVar(&cr.Scope.Admin, "admin", false, "the key may use the admin API")
	fs.BoolVar(&cr.Scope.UsageRead, "usage-read", false, "a finance key (usage:read): reads every team's usage and nothing else")
	fs.BoolVar(&cr.Scope.AuditRead, "audit-read", false, "a compliance key (audit:read): reads audit records and nothing else")
	expiry := expiryFlags(fs, "never")
	print := createdOutput(fs)
	return func(ctx context.Context, e env, _ []string) error {
		if cr.Team == "" || cr.App == "" {
			return usageError{"keys create: --team and --app are required"}
		}
		if *overCap != "" && cr.Scope.MaxOutputTokens == 0 {
			return usageError{"keys create: --over-cap needs --max-output-tokens"}
		}
		var err error
		if cr.ExpiresIn, cr.ExpiresAt, err = expiry(); err != nil {
			return err
		}
		cr.Scope.Models, cr.Scope.Regions = auth.SplitList(*models), auth.SplitList(*regions)
		cr.Scope.Class, cr.Scope.OverCap = policy.Class(*class), policy.OverCap(*overCap)
		adm, done, err := openKeys(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		k, err := adm.Create(ctx, cr)
		if err != nil {
			return cliError(err)
		}
		return print(e.stdout, k)
	}
}

func keysRotate(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	overlap := fs.String("overlap", "", "how long the old key keeps working (default 24h; 0s = stop it now)")
	expiry := expiryFlags(fs, "the old key's lifetime")
	print := createdOutput(fs)
	return func(ctx context.Context, e env, pos []string) error {
		in, at, err := expiry()
		if err != nil {
			return err
		}
		adm, done, err := openKeys(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		k, err := adm.Rotate(ctx, pos[0], auth.RotateRequest{Overlap: *overlap, ExpiresIn: in, ExpiresAt: at})
		if err != nil {
			return cliError(err)
		}
		return print(e.stdout, k)
	}
}

func keysList(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	path := configFlag(fs)
	team := fs.String("team", "", "only this team's keys")
	asJSON := fs.Bool("json", false, "print the keys as JSON")
	return func(ctx context.Context, e env, _ []string) error {
		adm, done, err := openKeys(ctx, e, *path)
		if err != nil {
			return err
		}
		defer done()
		ks, err := adm.List(ctx, *team)
		if err != nil {
			return cliError(err)
		}
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(ks)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tTEAM\tAPP\tSTATUS\tSCOPE\tCREATED\tEXPIRES")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix(), k.Team, k.App, k.Status, scopeText(k.Scope),
				k.CreatedAt.Format(time.RFC3339), timeText(k.ExpiresAt))
		}
		return tw.Flush()
	}
}

func keysGetOrRevoke(sub string) func(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
	return func(fs *flag.FlagSet) func(ctx context.Context, e env, pos []string) error {
		path := configFlag(fs)
		asJSON := fs.Bool("json", false, "print the key as JSON")
		return func(ctx context.Context, e env, pos []string) error {
			adm, done, err := openKeys(ctx, e, *path)
			if err != nil {
				return err
			}
			defer done()
			get := adm.Get
			if sub == "revoke" {
				get = adm.Revoke
			}
			k, err := get(ctx, pos[0])
			if err != nil {
				return cliError(err)
			}
			if *asJSON {
				return json.NewEncoder(e.stdout).Encode(k)
			}
			fmt.Fprintf(e.stdout, "%s %s (%s/%s) %s, scope %s, expires %s\n", sub, k.ID, k.Team, k.App, k.Status, scopeText(k.Scope), timeText(k.ExpiresAt))
			return nil
		}
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
	if s.AuditRead {
		parts = append(parts, "audit:read")
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

func cmdSim(ctx context.Context, e env, args []string) error {
	log, stdout := e.log, e.stdout
	fs := newFlagSet("sim")
	listen := fs.String("listen", "127.0.0.1:8081", "address to listen on")
	path := fs.String("config", "", "simulator config (YAML/JSON); default: built-in deployments")
	if err := parseSimple(fs, args, stdout, "sim [--listen ADDR] [--config FILE]", "run the Foundry / Azure OpenAI simulator"); err != nil {
		return err
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
