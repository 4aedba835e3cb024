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
	"text/tabwriter"
	"time"

	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/sim"
)

func cmdKeys(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return usageError{"keys: want create, list or revoke"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("keys "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	team := fs.String("team", "", "team (create)")
	appName := fs.String("app", "", "app (create)")
	regions := fs.String("regions", "", "create: comma-separated backend regions the key may be served from (default any)")
	asJSON := fs.Bool("json", false, "JSON output")
	secretOnly := fs.Bool("secret-only", false, "create: print only the key (for scripts)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	c, _, err := loadConfig(configArgs(*path), "keys", getenv)
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
	keys := auth.NewKeys(t, nil)
	switch sub {
	case "create":
		if *team == "" || *appName == "" {
			return usageError{"keys create: --team and --app are required"}
		}
		k, secret, err := keys.Create(ctx, *team, *appName, auth.SplitRegions(*regions)...)
		if err != nil {
			return err
		}
		if *secretOnly {
			fmt.Fprintln(stdout, secret)
			return nil
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(struct {
				ID     string `json:"id"`
				Team   string `json:"team"`
				App    string `json:"app"`
				Prefix string `json:"prefix"`
				Key    string `json:"key"`
			}{k.ID, k.Team, k.App, k.Prefix(), secret})
		}
		fmt.Fprintf(stdout, "key id:  %s\nteam:    %s\napp:     %s\nkey:     %s\n\nThe key is shown once; store it now.\n", k.ID, k.Team, k.App, secret)
		return nil
	case "list":
		ks, err := keys.List(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			if ks == nil {
				ks = []auth.Key{}
			}
			return json.NewEncoder(stdout).Encode(ks)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPREFIX\tTEAM\tAPP\tSTATUS\tCREATED")
		for _, k := range ks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix(), k.Team, k.App, k.Status, k.CreatedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return usageError{"keys revoke: want exactly one key id"}
		}
		k, err := keys.Revoke(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(k)
		}
		fmt.Fprintf(stdout, "revoked %s (%s/%s)\n", k.ID, k.Team, k.App)
		return nil
	}
	return usageError{"keys: unknown subcommand " + sub}
}

func configArgs(path string) []string {
	if path == "" {
		return nil
	}
	return []string{"--config", path}
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
