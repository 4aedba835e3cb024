package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/foundry-gateway/gateway/handlers"
	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
	"github.com/foundry-gateway/gateway/internal/store/tables"
)

func loadConfig(args []string, name string, getenv func(string) string) (config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "config file (default $GATEWAY_CONFIG or gateway.yaml)")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, nil, usageError{err.Error()}
	}
	c, err := config.LoadFile(config.Path(*path, getenv), getenv)
	return c, fs, err
}

// openStore opens the configured table store.
func openStore(c config.Config) (store.Store, error) {
	switch c.Store.Kind {
	case config.StoreAzureTables:
		if c.Store.ConnectionString != "" {
			return tables.NewFromConnectionString(c.Store.ConnectionString.Reveal())
		}
		cred, err := backendauth.Credential(c.Store.ClientID)
		if err != nil {
			return nil, fmt.Errorf("store credential: %w", err)
		}
		return tables.NewFromServiceURL(c.Store.ServiceURL, cred)
	default:
		if err := os.MkdirAll(filepath.Dir(c.Store.Path), 0o755); err != nil {
			return nil, err
		}
		return embedded.Open(c.Store.Path)
	}
}

// app is the gateway's object graph, built once.
type app struct {
	handler http.Handler
	store   store.Store
	timers  map[string]handlers.Timer
	// affinity's writer runs beside the server (see cmdServe).
	affinity *route.Affinity
}

func build(ctx context.Context, c config.Config, log *slog.Logger, rt http.RoundTripper) (*app, error) {
	st, err := openStore(c)
	if err != nil {
		return nil, err
	}
	keysTable, err := st.Table(ctx, c.Store.TablePrefix+auth.Table)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open keys table: %w", err)
	}
	rtr, err := route.New(c, backendauth.For, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	affTable, err := st.Table(ctx, c.Store.TablePrefix+route.AffinityTable)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("open response affinity table: %w", err)
	}
	ra := c.Routing.ResponseAffinity
	aff := route.NewAffinity(affTable, log, route.AffinityOptions{TTL: ra.TTL.D(), CacheSize: ra.CacheSize, WriteBuffer: ra.WriteBuffer})
	px := proxy.New(rt, log, proxy.Options{
		MaxAttempts: c.Proxy.MaxAttempts, TryDuration: c.Proxy.TryDuration.D(),
		StreamIdleTimeout: c.Proxy.StreamIdleTimeout.D(), ExposeBackend: c.Proxy.ExposeBackend,
		AffinityHeader: c.Routing.AffinityHeader, Affinity: aff,
	})
	timers := map[string]handlers.Timer{
		// The drain and rollup functions exist so the Functions host can
		// call them from day one; their work lands with the low-priority
		// queue and the usage rollup.
		"drain": func(context.Context) ([]string, error) {
			return []string{"drain: no low-priority queue is wired in this build; nothing to drain"}, nil
		},
		"rollup": func(context.Context) ([]string, error) {
			return []string{"rollup: no usage ledger is wired in this build; nothing to roll up"}, nil
		},
	}
	h := handlers.New(handlers.Deps{
		Log:          log,
		Auth:         auth.NewAuthenticator(auth.NewKeys(keysTable, nil), c.Auth.KeyCacheTTL.D()),
		Router:       rtr,
		Proxy:        px,
		Usage:        handlers.LogUsage{Log: log},
		MaxBodyBytes: c.MaxBodyBytes,
		Timers:       timers,
		Ready:        st.Ping,
		Backends:     rtr,
		AdminTeams:   c.Auth.AdminTeams,
	})
	return &app{handler: h, store: st, timers: timers, affinity: aff}, nil
}

func cmdServe(ctx context.Context, args []string, getenv func(string) string, log *slog.Logger) error {
	c, _, err := loadConfig(args, "serve", getenv)
	if err != nil {
		return err
	}
	a, err := build(ctx, c, log, proxy.NewTransport())
	if err != nil {
		return err
	}
	defer a.store.Close()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Info("gateway listening", "addr", ln.Addr().String(), "under_functions", c.UnderFunctions,
		"store", string(c.Store.Kind), "models", len(c.Models), "backends", len(c.Backends))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	affCtx, stopAff := context.WithCancel(context.WithoutCancel(ctx))
	affDone := make(chan struct{})
	go func() { _ = a.affinity.Run(affCtx); close(affDone) }()
	defer func() { stopAff(); <-affDone }() // after Shutdown: flush the last writes
	if !c.UnderFunctions {
		// Standalone: run the timer functions ourselves; under Functions the
		// host calls POST /drain and POST /rollup on its schedule.
		periods := map[string]time.Duration{"drain": c.Timers.Drain.D(), "rollup": c.Timers.Rollup.D()}
		for name, fn := range a.timers {
			go runTimer(ctx, log, name, periods[name], fn)
		}
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// runTimer calls fn every period until ctx ends.
func runTimer(ctx context.Context, log *slog.Logger, name string, period time.Duration, fn handlers.Timer) {
	if period <= 0 {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := fn(ctx); err != nil {
				log.Warn("timer failed", "function", name, "error", err)
			}
		}
	}
}
