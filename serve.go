package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/foundry-gateway/gateway/handlers"
	"github.com/foundry-gateway/gateway/internal/auth"
	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/blob"
	"github.com/foundry-gateway/gateway/internal/cache"
	"github.com/foundry-gateway/gateway/internal/callback"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/httperr"
	"github.com/foundry-gateway/gateway/internal/jobs"
	"github.com/foundry-gateway/gateway/internal/ledger"
	"github.com/foundry-gateway/gateway/internal/money"
	"github.com/foundry-gateway/gateway/internal/proxy"
	"github.com/foundry-gateway/gateway/internal/queue"
	"github.com/foundry-gateway/gateway/internal/queue/claim"
	queueembedded "github.com/foundry-gateway/gateway/internal/queue/embedded"
	"github.com/foundry-gateway/gateway/internal/queue/servicebus"
	"github.com/foundry-gateway/gateway/internal/quota"
	"github.com/foundry-gateway/gateway/internal/route"
	"github.com/foundry-gateway/gateway/internal/store"
	"github.com/foundry-gateway/gateway/internal/store/embedded"
	"github.com/foundry-gateway/gateway/internal/store/tables"
	"github.com/foundry-gateway/gateway/internal/telemetry"
	"github.com/foundry-gateway/gateway/internal/tokens"
	"github.com/foundry-gateway/gateway/internal/usage"
	"github.com/foundry-gateway/gateway/internal/utilization"
)

// openStore opens the configured table store, waiting at most lockWait
// for the embedded store's file lock.
func openStore(c config.Config, lockWait time.Duration) (store.Store, error) {
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
		return embedded.OpenWait(c.Store.Path, lockWait)
	}
}

// loadStoreConfig loads only the store and models sections of the config
// (config.LoadStoreFile), for the operator commands: they need the table
// endpoint and nothing else, so they work in Azure with `az login` and
// GatewayTables__tableServiceUri alone.
func loadStoreConfig(path string, getenv func(string) string) (config.Config, error) {
	return config.LoadStoreFile(config.Path(path, getenv), getenv)
}

// openBlobs opens the configured blob store's container. An Azure
// container that cannot be created or reached now is only a warning: the
// gateway still serves everything else, and a large job then gets a clear
// 503 (job_body_store_unavailable) instead of the whole app failing to start.
func openBlobs(ctx context.Context, c config.Config, container string, log *slog.Logger) (claim.Blobs, error) {
	if c.Blob.Kind == config.BlobAzureBlob {
		o := blob.AzureOptions{ConnectionString: c.Blob.ConnectionString.Reveal(), ServiceURL: c.Blob.ServiceURL, Container: container}
		if o.ConnectionString == "" {
			cred, err := backendauth.Credential(c.Blob.ClientID)
			if err != nil {
				return nil, fmt.Errorf("blob credential: %w", err)
			}
			o.Credential = cred
		}
		a, err := blob.NewAzure(o)
		if err != nil {
			return nil, err
		}
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := a.EnsureContainer(ectx); err != nil {
			log.Warn("blob container not ready; large jobs fail until it is", "container", container, "error", err)
		}
		return a, nil
	}
	return blob.OpenDir(c.Blob.Path, container)
}

// app is the gateway's object graph, built once.
type app struct {
	handler http.Handler
	store   store.Store
	queue   interface{ Close() error }
	timers  map[string]handlers.Timer
	usage   *ledger.Writer // the usage ledger's writer (ledger_rss_test.go records into it)
	// workers run beside the server until it has shut down; closers then
	// flush what they hold, in order.
	workers []func(ctx context.Context) error
	closers []func(ctx context.Context) error
	// storeOps counts table operations (store.Counted); requests counts the
	// HTTP requests served. Both are logged at shutdown ("stats"), which is
	// how `make bench` reports table operations per 1,000 requests.
	storeOps store.Ops
	requests atomic.Int64
}

// openQueue opens the configured low-priority queue.
func openQueue(ctx context.Context, c config.Config) (queue.Queue, error) {
	if c.Queue.Kind == config.QueueServiceBus {
		return servicebus.New(ctx, servicebus.Options{ConnectionString: c.Queue.ConnectionString.Reveal(),
			Namespace: c.Queue.Namespace, ClientID: c.Queue.ClientID, Queue: c.Queue.Name})
	}
	return queueembedded.Open(c.Queue.Path, queueembedded.Options{LockDuration: c.Queue.LockDuration.D()})
}

// table opens one table under the configured prefix.
func table(ctx context.Context, st store.Store, c config.Config, name string) (store.Table, error) {
	t, err := st.Table(ctx, c.Store.TablePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("open table %s: %w", name, err)
	}
	return t, nil
}

func build(ctx context.Context, c config.Config, log *slog.Logger, rt http.RoundTripper) (_ *app, err error) {
	st, err := openStore(c, 2*time.Second)
	if err != nil {
		return nil, err
	}
	a := &app{}
	st = store.Counted(st, &a.storeOps)
	a.store = st
	defer func() {
		if err != nil {
			if a.queue != nil {
				a.queue.Close()
			}
			st.Close()
		}
	}()
	tabs := map[string]store.Table{}
	for _, name := range []string{auth.Table, route.AffinityTable, quota.CountersTable, quota.LimitsTable, jobs.Table, utilization.Table} {
		if tabs[name], err = table(ctx, st, c, name); err != nil {
			return nil, err
		}
	}
	rtr, err := route.New(c, backendauth.For, nil)
	if err != nil {
		return nil, err
	}
	tel, err := telemetry.New(telemetry.Options{ConnectionString: c.AppInsightsConnectionString.Reveal(),
		HTTPClient: telemetryClient(c)}, log)
	if err != nil {
		return nil, err
	}
	// Warnings and errors also become Application Insights trace items.
	log = slog.New(telemetry.LogHandler(log.Handler(), tel))
	// Circuit transitions: an operator signal, logged and counted.
	rtr.WatchBreakers(func(backend, state string) {
		if state == "open" {
			log.Warn("circuit open", "backend", backend, "state", state)
		} else {
			log.Info("circuit closed", "backend", backend, "state", state)
		}
		tel.TrackMetric("gateway.circuit."+state, 1, telemetry.Trace{}, map[string]string{"backend": backend})
	})
	ra := c.Routing.ResponseAffinity
	aff := route.NewAffinity(tabs[route.AffinityTable], log, route.AffinityOptions{TTL: ra.TTL.D(), CacheSize: ra.CacheSize, WriteBuffer: ra.WriteBuffer})
	px := proxy.New(rt, log, proxy.Options{
		MaxAttempts: c.Proxy.MaxAttempts, TryDuration: c.Proxy.TryDuration.D(),
		MaxRetryWait: c.Proxy.MaxRetryWait.D(), RetryBackoff: c.Proxy.RetryBackoff.D(),
		StreamIdleTimeout: c.Proxy.StreamIdleTimeout.D(), ExposeBackend: c.Proxy.ExposeBackend,
		AffinityHeader: c.Routing.AffinityHeader, Affinity: aff, Observer: observer(tel),
	})

	// Usage ledger: priced events, batched off the request path.
	lt, err := ledger.OpenTables(ctx, st, c.Store.TablePrefix)
	if err != nil {
		return nil, err
	}
	lw := ledger.NewWriter(lt, ledger.WriterOptions{FlushInterval: c.Ledger.FlushInterval.D(), MaxBuffered: c.Ledger.MaxBuffered,
		SpoolAfter: c.Ledger.SpoolAfter.D(), SpoolPath: c.Ledger.SpoolPath, Log: log})
	daily := ledger.NewDaily(lt, nil)
	a.usage = lw
	tc := tokens.New()
	// Offline token counts are exact (BPE) when token limits need them for
	// admission. Otherwise the usage estimates of calls whose backend
	// reported no usage (cut streams) use about 4 bytes per token, and the
	// ~6 MiB of BPE tables are never loaded.
	exact := tokenLimits(c.Limits)
	pricing := ledger.NewPricing(ledger.PricesFromConfig(c), c.Ledger.BatchDiscount,
		ledger.CounterFunc(func(m, s string) int {
			if !exact {
				return (len(s) + 3) / 4
			}
			return int(tc.Text(m, s))
		}))
	sink := handlers.LedgerUsage{Pricing: pricing, Writer: lw, Log: handlers.LogUsage{Log: log}}

	// Rate limits and budgets.
	lim := quota.New(tabs[quota.CountersTable], tabs[quota.LimitsTable], c.Limits, quota.SystemClock{}, log)
	if err := lim.LoadOverrides(ctx); err != nil {
		log.Warn("limit overrides not loaded; using config limits until the next refresh", "error", err)
	}

	// Low-priority jobs.
	q, err := openQueue(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	a.queue = q
	// Claim check: job bodies above jobs.claimCheckBytes go to blob storage
	// and the message carries a reference (Service Bus Standard: 256 KB).
	bodies, err := openBlobs(ctx, c, c.Jobs.BodyContainer, log)
	if err != nil {
		return nil, fmt.Errorf("open blob container %s: %w", c.Jobs.BodyContainer, err)
	}
	claims := claim.New(bodies, c.Jobs.ClaimCheckBytes, func(err error) bool { return errors.Is(err, blob.ErrNotFound) })
	js := jobs.NewStore(tabs[jobs.Table], nil)
	// Callbacks: public https destinations only unless allowed (issue #16);
	// the dial-time check refuses what a name re-resolves to.
	cbPolicy := callback.Policy{Allow: c.Jobs.CallbackAllow, AllowHTTP: c.Jobs.CallbackAllowHTTP,
		Self: []string{c.PublicHost, c.Listen}}
	cbClient, err := cbPolicy.Client(10 * time.Second)
	if err != nil {
		return nil, err
	}
	sig, sigWorkers, err := drainSignals(c, rtr, tabs[utilization.Table], log)
	if err != nil {
		return nil, err
	}
	policies := jobPolicies(c)
	dr := jobs.NewDrainer(js, q, rtr, px, sig, log, jobs.DrainOptions{Policies: policies,
		RoundTimeout: c.Jobs.RoundTimeout.D(), MaxPerRound: c.Jobs.MaxPerRound, Concurrency: c.Jobs.Concurrency,
		MaxAttempts: c.Jobs.MaxAttempts, CallbackSecret: c.Jobs.CallbackSecret.Reveal(), ProbeBackoff: c.Jobs.ProbeBackoff.D(), Window: c.Jobs.Signals.Window.D(),
		CallbackClient: cbClient, CallbackRetryFor: c.Jobs.CallbackRetryFor.D()})
	dr.Telemetry = tel
	dr.Claims = claims
	keys := auth.NewKeys(tabs[auth.Table], nil)
	dr.Authorize = func(ctx context.Context, j *jobs.Job) error {
		if strings.HasPrefix(j.KeyID, "jwt:") {
			return nil // token callers were checked at submission; tokens cannot be revoked here
		}
		k, err := keys.Latest(ctx, j.KeyID) // the job's owner is a key lineage: its current key decides
		switch {
		case errors.Is(err, auth.ErrNotFound) || err == nil && k.Status == auth.StatusRevoked:
			return jobs.ErrRevoked
		case err != nil:
			return err
		}
		return nil // an expired (or rotated-out) key's queued jobs still run: they were submitted while it was valid
	}
	dr.OnDone = func(ctx context.Context, j *jobs.Job, res proxy.Result) {
		// Keyed by the job id: a job run twice leaves one usage row.
		sink.Record(ctx, handlers.Event{Time: time.Now().UTC(), RequestID: j.ID, KeyID: j.KeyID, Team: j.Team, App: j.App,
			Model: j.Model, Op: j.Op, Backend: res.Backend, Deployment: res.Deployment, Region: res.Region,
			Status: res.Status, Attempts: res.Attempts, Complete: res.Complete, Usage: res.Usage, Class: "batch", Text: res.Text})
		// Job tokens count against the caller's monthly budget (not the
		// interactive rate windows).
		if res.Usage.Reported {
			subjects := quota.Subjects(j.KeyID, j.Team, j.App)
			lim.Charge(subjects, max(res.Usage.TotalTokens, res.Usage.PromptTokens+res.Usage.CompletionTokens))
			cost, cur := pricing.CostOf(j.Model, res.Backend, res.Deployment, ledger.ClassBatch, res.Usage)
			lim.ChargeCost(subjects, cost, cur)
		}
		// Make the usage row durable before the drain stores the result and
		// completes the message: a crash in between re-runs the job, and
		// the row keyed by the job id keeps that to one row.
		if err := lw.Flush(ctx); err != nil {
			log.Warn("drain: usage flush", "job", j.ID, "error", err)
		}
	}

	// Batch API: each line a job of the same queue and drain.
	bs, err := newBatches(ctx, c, st, q, claims, js, policies, log)
	if err != nil {
		return nil, err
	}
	a.timers = map[string]handlers.Timer{
		"drain": func(ctx context.Context) ([]string, error) {
			// Batches advance beside the round (queue their lines,
			// count, finish the ended ones); failures there are logged.
			stop := bs.Every(ctx, c.Batch.AdvanceInterval.D())
			defer stop()
			stats, err := dr.Drain(ctx)
			logs := []string{stats.String()}
			for err == nil && ctx.Err() == nil && bs.Queueing() && len(logs) < 1000 {
				// A batch's lines are being queued: drain them as they come.
				stats, err = dr.Drain(ctx)
				logs = append(logs, stats.String())
			}
			return logs[max(0, len(logs)-3):], err
		},
		"rollup": daily.Timer(),
	}
	authn := auth.NewAuthenticator(keys, c.Auth.KeyCacheTTL.D())
	if len(c.Identity.Issuers) > 0 { // JWT bearer tokens from OIDC issuers (issue #3)
		authn.WithOIDC(auth.NewOIDC(c.Identity, &http.Client{Timeout: 15 * time.Second}, nil, log))
	}
	deps := handlers.Deps{
		Log:             log,
		Auth:            authn,
		Router:          rtr,
		Proxy:           px,
		Usage:           sink,
		MaxBodyBytes:    c.MaxBodyBytes,
		BodyReadTimeout: c.BodyReadTimeout.D(),
		Timers:          a.timers,
		UnderFunctions:  c.UnderFunctions,
		Ready:           st.Ping,
		Backends:        drainStatus{rtr: rtr, sig: sig, policies: policies},
		Keys: &auth.Admin{Keys: keys, Changed: authn.Forget,
			KnownModel: func(m string) bool { _, err := rtr.Model(m); return err == nil }},
		Jobs:    js,
		Batches: bs,
		Submit: func(ctx context.Context, s jobs.Submission) (*jobs.Job, error) {
			if len(policies[s.Req.Model].Targets) == 0 {
				return nil, httperr.BadRequest("jobs_not_allowed", "Model "+s.Req.Model+" has no deployment that may run low-priority jobs (models."+s.Req.Model+".jobs: targets, or spillToPaygo for a pay-as-you-go only model).")
			}
			p := cbPolicy
			p.Self = append([]string{s.Host}, p.Self...)
			if err := jobs.CheckCallback(ctx, p, s.CallbackURL); err != nil {
				return nil, err
			}
			return jobs.Submit(ctx, js, claim.Sender{Queue: q, Check: claims}, s)
		},
		Quota:     &quota.Gate{L: lim, Counter: tc},
		Telemetry: tel,
		Cost: func(model, backend, deployment string, u usage.Usage) (money.Nanos, string) {
			return pricing.CostOf(model, backend, deployment, ledger.ClassInteractive, u)
		},
		UsageReports: daily,
		Limits:       newLimitsAdmin(c, tabs[quota.LimitsTable], tabs[auth.Table]),
		Build:        readBuildInfo(),
		ResponseBackend: func(ctx context.Context, id string) (*route.Backend, string, bool) {
			name, owner, ok := aff.LookupOwner(ctx, id)
			if !ok {
				return nil, "", false
			}
			b, ok := rtr.Backend(name)
			return b, owner, ok
		},
		Resources: px,
	}
	if c.Cache.Enabled() { // response cache (docs/caching.md)
		ct, cv, err := cache.OpenTables(ctx, st, c.Store.TablePrefix)
		if err != nil {
			return nil, err
		}
		deps.Cache = cache.New(c.Cache, ct, cv, log, nil)
		pricing.WithCacheFraction(c.Cache.CostFraction)
		deps.HitCost = pricing.HitCostOf
		a.closers = append(a.closers, deps.Cache.Close)
	}
	if exact {
		deps.Tokens = tc // else nil: the handler estimates prompts at 4 bytes per token
	}
	auditWorker, auditCloser, err := wireSafetyAudit(ctx, c, log, &deps)
	if err != nil {
		return nil, err
	}
	a.handler = handlers.New(deps)
	a.workers = append([]func(context.Context) error{lw.Run, lim.Run, aff.Run, tel.Run}, sigWorkers...)
	if exact {
		// The BPE tables cost ~0.2 s and ~6 MiB; load them before the
		// first limited request needs them, and only then.
		a.workers = append(a.workers, func(context.Context) error { tc.Warm(); return nil })
	}
	a.closers = append(a.closers, lim.Flush, lw.Close,
		func(ctx context.Context) error { tel.Close(ctx); return nil })
	if auditWorker != nil { // the audit trail: flushed after the server stopped, before telemetry closes
		a.workers = append(a.workers, auditWorker)
		last := len(a.closers) - 1 // telemetry closes last
		a.closers = append(a.closers[:last:last], auditCloser, a.closers[last])
	}
	return a, nil
}

// jobPolicies resolves models.<alias>.jobs for the drain.
func jobPolicies(c config.Config) map[string]jobs.Policy {
	out := map[string]jobs.Policy{}
	for alias, m := range c.Models {
		p := jobs.Policy{Threshold: m.Jobs.Threshold}
		for _, t := range c.JobTargets(alias) {
			p.Targets = append(p.Targets, utilization.Key{Backend: t.Backend, Deployment: t.Deployment})
		}
		out[alias] = p
	}
	return out
}

// drainSignals builds the drain's utilization sources: this instance's
// header samples, the fleet's (DeploymentLoad table, published by a
// worker at most once per jobs.signals.publishInterval) and, when
// configured, Azure Monitor metrics (polled by a worker).
func drainSignals(c config.Config, rtr *route.Router, t store.Table, log *slog.Logger) (*utilization.Signals, []func(context.Context) error, error) {
	samples := func() map[utilization.Key]utilization.Reading {
		out := map[utilization.Key]utilization.Reading{}
		for _, b := range rtr.Status() {
			for _, d := range b.Deployments {
				if u := d.Utilization; u != nil && u.Percent >= 0 {
					out[utilization.Key{Backend: b.Name, Deployment: d.Name}] = utilization.Reading{Percent: u.Percent, Source: utilization.SourceHeaders, At: u.At, Until: u.ResetAt}
				}
			}
		}
		return out
	}
	local := func(k utilization.Key) (utilization.Reading, bool) {
		m, err := rtr.Model(firstAlias(c, k))
		if err != nil {
			return utilization.Reading{}, false
		}
		for _, t := range m.Targets {
			if t.Backend.Name == k.Backend && t.Deployment == k.Deployment {
				if u := t.Sample(); u != nil && u.Percent >= 0 {
					return utilization.Reading{Percent: u.Percent, Source: utilization.SourceHeaders, At: u.At, Until: u.ResetAt, Capacity: float64(max(u.LimitTokens, 0))}, true
				}
			}
		}
		return utilization.Reading{}, false
	}
	s := c.Jobs.Signals
	instance := os.Getenv("WEBSITE_INSTANCE_ID") // set by App Service / Functions per instance
	if instance == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		instance = "local-" + hex.EncodeToString(b[:])
	}
	fleet := utilization.NewFleet(t, samples, utilization.FleetOptions{Instance: instance, Every: s.PublishInterval.D(),
		ReadEvery: min(s.PublishInterval.D()/2, s.FleetMaxAge.D()/4), Log: log})
	workers := []func(context.Context) error{fleet.Run}
	var metrics *utilization.Metrics
	if mc := s.Metrics; mc.Endpoint != "" {
		accounts := map[string]string{}
		for _, b := range c.Backends {
			if b.ResourceID != "" {
				accounts[b.Name] = b.ResourceID
			}
		}
		if len(accounts) > 0 {
			var cred azcore.TokenCredential
			if mc.Auth == config.MetricsAuthManagedIdentity {
				var err error
				if cred, err = backendauth.Credential(os.Getenv("AZURE_CLIENT_ID")); err != nil {
					return nil, nil, fmt.Errorf("metrics credential: %w", err)
				}
			}
			client, err := utilization.NewClient(utilization.ClientOptions{Endpoint: mc.Endpoint, Credential: cred})
			if err != nil {
				return nil, nil, fmt.Errorf("metrics client: %w", err)
			}
			grain, ok := isoGrain(mc.Grain)
			if !ok {
				return nil, nil, fmt.Errorf("jobs.signals.metrics.grain %q: want PT<n>S, PT<n>M or PT<n>H", mc.Grain)
			}
			metrics = utilization.NewMetrics(client, accounts, utilization.MetricsOptions{Interval: mc.Interval.D(),
				Timeout: mc.Timeout.D(), Grain: mc.Grain, GrainDur: grain, Log: log})
			workers = append(workers, metrics.Run)
		} else {
			log.Warn("jobs.signals.metrics is set but no backend has a resourceId; metrics are not read")
		}
	}
	sig := utilization.New(local, fleet, metrics, utilization.Options{HeaderMaxAge: s.HeaderMaxAge.D(), FleetMaxAge: s.FleetMaxAge.D(), MetricsMaxAge: s.Metrics.MaxAge.D()})
	return sig, workers, nil
}

// firstAlias is an alias with a target on k (samples are per deployment,
// shared by every alias that targets it).
func firstAlias(c config.Config, k utilization.Key) string {
	for alias, m := range c.Models {
		for _, t := range m.Targets {
			if t.Backend == k.Backend && t.Deployment == k.Deployment {
				return alias
			}
		}
	}
	return ""
}

// isoGrain reads PT<n>S / PT<n>M / PT<n>H.
func isoGrain(s string) (time.Duration, bool) {
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "PT")
	if !ok || len(rest) < 2 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:len(rest)-1])
	unit := map[byte]time.Duration{'S': time.Second, 'M': time.Minute, 'H': time.Hour}[rest[len(rest)-1]]
	if err != nil || n <= 0 || unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// drainStatus is the admin backends view: the router's health plus, per
// deployment a job policy uses, the utilization the drain last used.
type drainStatus struct {
	rtr      *route.Router
	sig      *utilization.Signals
	policies map[string]jobs.Policy
}

func (d drainStatus) Status() []route.BackendStatus {
	out := d.rtr.Status()
	for i := range out {
		for j := range out[i].Deployments {
			dep := &out[i].Deployments[j]
			u, ok := d.sig.Used(utilization.Key{Backend: out[i].Name, Deployment: dep.Name})
			if !ok {
				continue
			}
			dl := &route.DrainLoad{Source: string(u.Source), Threshold: u.Threshold}
			if u.Known() {
				p, at := u.Percent, u.At.UTC()
				dl.Percent, dl.At = &p, &at
			}
			dep.Drain = dl
		}
	}
	return out
}

// observer reports backend attempts to telemetry, or is nil when telemetry
// is off so the proxy builds no attempt records at all.
func observer(tel *telemetry.Client) proxy.Observer {
	if tel == nil {
		return nil
	}
	return handlers.AttemptTelemetry{Tel: tel}
}

// tokenLimits reports whether any token limit is configured, so prompts
// will be counted offline. (Overrides set later load the tokenizer on first use.)
func tokenLimits(l config.LimitsConfig) bool {
	limited := func(x config.Limit) bool { return x.TPM > 0 || x.MonthlyTokens > 0 }
	if limited(l.Defaults.Key) || limited(l.Defaults.App) || limited(l.Defaults.Team) {
		return true
	}
	for _, t := range l.Teams {
		if limited(t) {
			return true
		}
	}
	return false
}

// telemetryClient is the HTTP client for Application Insights ingestion:
// with APPLICATIONINSIGHTS_AUTHENTICATION_STRING "…Authorization=AAD" it
// adds an Entra token of the managed identity (local auth disabled).
func telemetryClient(c config.Config) *http.Client {
	if !strings.Contains(strings.ToLower(c.AppInsightsAuth), "authorization=aad") {
		return nil
	}
	clientID := ""
	for _, part := range strings.Split(c.AppInsightsAuth, ";") {
		if k, v, ok := strings.Cut(part, "="); ok && strings.EqualFold(strings.TrimSpace(k), "ClientId") {
			clientID = strings.TrimSpace(v)
		}
	}
	cred, err := backendauth.Credential(clientID)
	if err != nil {
		return nil
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &authorizingTransport{
		next: http.DefaultTransport.(*http.Transport).Clone(), auth: backendauth.NewToken(cred, "https://monitor.azure.com/.default", nil)}}
}

// authorizingTransport adds a credential to every request.
type authorizingTransport struct {
	next http.RoundTripper
	auth backendauth.Authorizer
}

func (t *authorizingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if err := t.auth.Authorize(r.Context(), r.Header); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(r)
}

func cmdServe(ctx context.Context, e env, args []string) error {
	getenv, log := e.getenv, e.log
	fs := newFlagSet("serve")
	path := configFlag(fs)
	if err := parseSimple(fs, args, e.stdout, "serve [--config FILE]", "run the gateway (Functions custom handler or standalone)"); err != nil {
		return err
	}
	if getenv("GATEWAY_LOG_BUFFER") != "off" {
		lb := newLogBuffer(e.stderr, logFlushInterval)
		defer lb.Close()
		log = slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: logLevel(getenv("GATEWAY_LOG_LEVEL"))}))
	}
	c, err := config.LoadFile(config.Path(*path, getenv), getenv)
	if err != nil {
		return err
	}
	// A second gateway on the same address (make run twice) fails at
	// once, saying so, instead of waiting for the store lock.
	base := "http://" + c.Listen
	if gatewayUp(ctx, base) {
		return fmt.Errorf("a gateway is already running on %s (stop it first)", base)
	}
	rt := proxy.NewTransport()
	if c.Proxy.BackendHTTP2 {
		rt = proxy.NewHTTP2Transport()
	}
	a, err := build(ctx, c, log, rt)
	if err != nil {
		if errors.Is(err, embedded.ErrLocked) {
			return fmt.Errorf("another gateway is already running on the embedded store %s: %w", c.Store.Path, err)
		}
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		a.store.Close()
		a.queue.Close()
		if gatewayUp(ctx, base) {
			return fmt.Errorf("a gateway is already running on %s (stop it first)", base)
		}
		return err
	}
	defer a.store.Close()
	defer a.queue.Close()
	h := a.handler
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { a.requests.Add(1); h.ServeHTTP(w, r) })
	// net/http's own error answers (431, 501, ...) in the OpenAI shape.
	ln = httperr.Listener(ln)
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: c.MaxHeaderBytes}
	bi := readBuildInfo()
	log.Info("gateway listening", "addr", ln.Addr().String(), "version", bi.Version, "commit", bi.Commit, "go", bi.GoVersion,
		"under_functions", c.UnderFunctions,
		"store", string(c.Store.Kind), "queue", string(c.Queue.Kind), "blob", string(c.Blob.Kind), "models", len(c.Models), "backends", len(c.Backends))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	// Workers outlive the server: they stop only after Shutdown, so the
	// last requests' usage and counters are still flushed.
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, run := range a.workers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(wctx) }()
	}
	if !c.UnderFunctions {
		// Standalone: run the timer functions ourselves; under Functions the
		// host calls POST /drain and POST /rollup on its schedule.
		periods := map[string]time.Duration{"drain": c.Timers.Drain.D(), "rollup": c.Timers.Rollup.D()}
		for name, fn := range a.timers {
			go runTimer(ctx, log, name, periods[name], fn)
		}
	}
	var serveErr error
	select {
	case serveErr = <-errc:
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) && serveErr == nil {
		serveErr = err
	}
	stopWorkers()
	wg.Wait()
	for _, closeFn := range a.closers {
		if err := closeFn(sctx); err != nil {
			log.Error("flush on shutdown", "error", err)
		}
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	ops, reqs := a.storeOps.Load(), a.requests.Load()
	per1000 := 0.0
	if reqs > 0 {
		per1000 = float64(ops) * 1000 / float64(reqs)
	}
	log.Info("stats", "requests", reqs, "table_ops", ops, "table_ops_per_1000_requests", per1000)
	return serveErr
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
