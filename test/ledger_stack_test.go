package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/foundry-gateway/gateway/handlers"
	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/policy"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
)

// ledgerStack is a simulator process plus an in-process gateway whose usage
// sink is the ledger, assembled here the way serve.go will wire it, with the
// admin usage routes registered. Keys maps team → key.
type ledgerStack struct {
	SimURL, URL string
	Keys        map[string]string
	Writer      *ledger.Writer
	Daily       *ledger.Daily
	Tables      ledger.Tables
	stopRun     context.CancelFunc
	runDone     chan struct{}
}

// ledgerSink is the adapter the lead puts in handlers/usage.go.
type ledgerSink struct {
	p *ledger.Pricing
	w *ledger.Writer
}

func (s ledgerSink) Record(ctx context.Context, e handlers.Event) {
	s.w.Record(ctx, s.p.Event(ledger.Call{
		Time: e.Time, RequestID: e.RequestID, KeyID: e.KeyID, Team: e.Team, App: e.App, Model: e.Model,
		Op: e.Op, Backend: e.Backend, Deployment: e.Deployment, Region: e.Region, Stream: e.Stream,
		Status: e.Status, Latency: e.Latency, Usage: e.Usage,
	}))
}

func startLedgerStack(t testing.TB, teams ...string) *ledgerStack {
	t.Helper()
	dir := t.TempDir()
	simPort := freePort(t)
	s := &ledgerStack{SimURL: fmt.Sprintf("http://127.0.0.1:%d", simPort), Keys: map[string]string{}}
	simCfg := filepath.Join(dir, "sim.yaml")
	if err := os.WriteFile(simCfg, []byte(fastSim), 0o600); err != nil {
		t.Fatal(err)
	}
	sim := start(t, dir, nil, "sim", "--listen", fmt.Sprintf("127.0.0.1:%d", simPort), "--config", simCfg)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
store: { kind: embedded, path: %s }
proxy: { responseHeaderTimeout: 5s }
ledger: { flushInterval: 200ms, spoolPath: %s }
backends:
  - { name: sim-paygo, url: "%s", region: swedencentral, auth: { none: true } }
models:
  gpt-4o-mini:
    targets: [ { backend: sim-paygo, deployment: gpt-4o-mini } ]
    price: { input: 0.15, cachedInput: 0.075, output: 0.60, currency: USD }
  o4-mini:
    targets: [ { backend: sim-paygo, deployment: o4-mini } ]
    price: { input: 1.10, cachedInput: 0.275, output: 4.40, currency: USD }
  text-embedding-3-small:
    targets: [ { backend: sim-paygo, deployment: text-embedding-3-small } ]
    price: { input: 0.02, output: 0, currency: USD }
`, filepath.Join(dir, "gw.db"), filepath.Join(dir, "spool.jsonl"), s.SimURL)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(cfg.Store.Path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	keysTable, err := st.Table(ctx, auth.Table)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeys(keysTable, nil)
	for _, tm := range teams {
		_, secret, err := keys.Create(ctx, auth.Spec{Team: tm, App: "e2e", Scope: policy.Scope{Admin: tm == "finance", UsageRead: tm == "usage-reader"}})
		if err != nil {
			t.Fatal(err)
		}
		s.Keys[tm] = secret
	}
	rtr, err := route.New(cfg, backendauth.For, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	px := proxy.New(proxy.NewTransport(), log, proxy.Options{MaxAttempts: cfg.Proxy.MaxAttempts,
		TryDuration: cfg.Proxy.TryDuration.D(), StreamIdleTimeout: cfg.Proxy.StreamIdleTimeout.D()})

	// --- the ledger wiring (serve.go) ---
	s.Tables, err = ledger.OpenTables(ctx, st, cfg.Store.TablePrefix)
	if err != nil {
		t.Fatal(err)
	}
	s.Writer = ledger.NewWriter(s.Tables, ledger.WriterOptions{FlushInterval: cfg.Ledger.FlushInterval.D(),
		MaxBuffered: cfg.Ledger.MaxBuffered, SpoolAfter: cfg.Ledger.SpoolAfter.D(), SpoolPath: cfg.Ledger.SpoolPath, Log: log})
	s.Daily = ledger.NewDaily(s.Tables, nil)
	pricing := ledger.NewPricing(ledger.PricesFromConfig(cfg), cfg.Ledger.BatchDiscount, nil)
	authn := auth.NewAuthenticator(keys, time.Second)
	gw := handlers.New(handlers.Deps{Log: log, Auth: authn, Router: rtr, Proxy: px,
		Usage: ledgerSink{p: pricing, w: s.Writer}, MaxBodyBytes: cfg.MaxBodyBytes,
		Timers: map[string]handlers.Timer{"rollup": s.Daily.Timer()}, Ready: st.Ping, UsageReports: s.Daily})

	runCtx, cancel := context.WithCancel(context.Background())
	s.stopRun, s.runDone = cancel, make(chan struct{})
	go func() { _ = s.Writer.Run(runCtx); close(s.runDone) }()
	srv := httptest.NewServer(withKeyForm(gw))
	s.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		s.Close(t)
		st.Close()
	})
	waitHTTP(t, sim, s.SimURL+"/sim/usage")
	return s
}

// withKeyForm adds GET /_test/key-form?key=K&to=PATH, a test-only page that
// does what a person does with the usage page: puts the key where the page
// keeps the typed key for the tab (sessionStorage, same origin) and opens
// PATH, so headless Chromium can show the page without a ?key= in its
// address.
func withKeyForm(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_test/key-form" {
			h.ServeHTTP(w, r)
			return
		}
		k, _ := json.Marshal(r.URL.Query().Get("key"))
		to, _ := json.Marshal(r.URL.Query().Get("to"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><script>sessionStorage.setItem('fgwKey',%s);location.replace(%s)</script>`, k, to)
	})
}

// Close stops the writer's loop and flushes it, as serve.go does on SIGTERM
// after the HTTP server has shut down.
func (s *ledgerStack) Close(t testing.TB) {
	s.stopRun()
	<-s.runDone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Writer.Close(ctx); err != nil {
		t.Error(err)
	}
}
