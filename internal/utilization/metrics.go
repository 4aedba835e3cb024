package utilization

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azmetrics"
)

// The metric the drain reads. Facts checked against Microsoft Learn,
// "Azure OpenAI monitoring data reference" and "Supported metrics for
// Microsoft.CognitiveServices/accounts"
// (https://learn.microsoft.com/azure/ai-foundry/openai/monitor-openai-reference,
// https://learn.microsoft.com/azure/azure-monitor/reference/supported-metrics/microsoft-cognitiveservices-accounts-metrics):
// "Provisioned-managed Utilization V2", REST name
// AzureOpenAIProvisionedManagedUtilizationV2, unit percent, aggregation
// Average, dimensions ModelDeploymentName, ModelName, ModelVersion,
// Region, StreamType, time grain PT1M; (PTUs consumed / PTUs deployed) x 100.
const (
	MetricName      = "AzureOpenAIProvisionedManagedUtilizationV2"
	MetricNamespace = "Microsoft.CognitiveServices/accounts"
	// DeploymentDimension splits the metric per deployment.
	DeploymentDimension = "ModelDeploymentName"
)

// querier is the one call Metrics makes (azmetrics.Client.QueryResources:
// POST {endpoint}/subscriptions/{id}/metrics:getBatch, api-version 2024-02-01).
type querier interface {
	QueryResources(ctx context.Context, subscriptionID, metricNamespace string, metricNames []string,
		resourceIDs azmetrics.ResourceIDList, options *azmetrics.QueryResourcesOptions) (azmetrics.QueryResourcesResponse, error)
}

// MetricsOptions tune Metrics.
type MetricsOptions struct {
	// Interval between queries. Default 30s.
	Interval time.Duration
	// Timeout of one query. Default 10s.
	Timeout time.Duration
	// Grain of the query, as an ISO 8601 duration and as a Duration.
	// Default PT1M / 1m.
	Grain    string
	GrainDur time.Duration
	Log      *slog.Logger
	Now      func() time.Time
}

// Metrics keeps the newest point of the utilization metric of every
// configured account, per deployment. Safe for concurrent use.
type Metrics struct {
	q        querier
	accounts map[string]string // lower-cased resource id -> backend name
	bySub    map[string][]string
	opt      MetricsOptions

	mu     sync.Mutex
	points map[Key]Reading
	lastOK time.Time
	err    error
}

// NewMetrics reads the metric of accounts (backend name -> account
// resource id) through q.
func NewMetrics(q querier, accounts map[string]string, opt MetricsOptions) *Metrics {
	if opt.Interval <= 0 {
		opt.Interval = 30 * time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.Grain == "" {
		opt.Grain, opt.GrainDur = "PT1M", time.Minute
	}
	if opt.GrainDur <= 0 {
		opt.GrainDur = time.Minute
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	m := &Metrics{q: q, accounts: map[string]string{}, bySub: map[string][]string{}, opt: opt, points: map[Key]Reading{}}
	for backend, id := range accounts {
		m.accounts[strings.ToLower(id)] = backend
		sub := subscriptionOf(id)
		m.bySub[sub] = append(m.bySub[sub], id)
	}
	return m
}

// subscriptionOf returns the subscription id of an ARM resource id.
func subscriptionOf(id string) string {
	p := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if len(p) > 1 && strings.EqualFold(p[0], "subscriptions") {
		return p[1]
	}
	return ""
}

// Poll queries the last few grains of every account and keeps, per
// deployment, the newest point that has a value. A failed or slow query
// keeps the previous points, which age out in [Signals].
func (m *Metrics) Poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opt.Timeout)
	defer cancel()
	now := m.opt.Now().UTC()
	start := now.Add(-5 * m.opt.GrainDur).Format(time.RFC3339)
	end := now.Format(time.RFC3339)
	agg := "average,maximum"
	filter := DeploymentDimension + " eq '*'"
	var errs []error
	got := map[Key]Reading{}
	for sub, ids := range m.bySub {
		resp, err := m.q.QueryResources(ctx, sub, MetricNamespace, []string{MetricName}, azmetrics.ResourceIDList{ResourceIDs: ids},
			&azmetrics.QueryResourcesOptions{StartTime: &start, EndTime: &end, Interval: &m.opt.Grain, Aggregation: &agg, Filter: &filter})
		if err != nil {
			errs = append(errs, fmt.Errorf("subscription %s: %w", sub, err))
			continue
		}
		for _, data := range resp.Values {
			if data.ResourceID == nil {
				continue
			}
			backend, ok := m.accounts[strings.ToLower(*data.ResourceID)]
			if !ok {
				continue
			}
			for _, metric := range data.Values {
				if metric.Name == nil || metric.Name.Value == nil || !strings.EqualFold(*metric.Name.Value, MetricName) {
					continue
				}
				for _, ts := range metric.TimeSeries {
					dep := dimension(ts.MetadataValues, DeploymentDimension)
					if dep == "" {
						continue
					}
					for _, p := range ts.Data {
						v, ok := pointValue(p)
						if !ok || p.TimeStamp == nil {
							continue
						}
						r := Reading{Percent: v, Source: SourceMetrics, At: p.TimeStamp.Add(m.opt.GrainDur)}
						k := Key{backend, dep}
						if old, ok := got[k]; !ok || r.At.After(old.At) {
							got[k] = r
						}
					}
				}
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range got {
		if old, ok := m.points[k]; !ok || r.At.After(old.At) || r.At.Equal(old.At) {
			m.points[k] = r
		}
	}
	m.err = errors.Join(errs...)
	if m.err == nil {
		m.lastOK = now
	}
	return m.err
}

// pointValue is the point's average (the metric's documented
// aggregation), else its maximum; false when the point has neither (no
// data in that grain). The average, not the peak: the point describes a
// minute that is already over, and a peak that has left the rate-limit
// window would hold jobs back from capacity that is free again.
func pointValue(p azmetrics.MetricValue) (float64, bool) {
	switch {
	case p.Average != nil:
		return *p.Average, true
	case p.Maximum != nil:
		return *p.Maximum, true
	}
	return 0, false
}

func dimension(md []azmetrics.MetadataValue, name string) string {
	for _, v := range md {
		if v.Name != nil && v.Name.Value != nil && strings.EqualFold(*v.Name.Value, name) && v.Value != nil {
			return *v.Value
		}
	}
	return ""
}

// Get returns the newest point for k.
func (m *Metrics) Get(k Key) (Reading, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.points[k]
	return r, ok
}

// Err is the last query's error, nil after a success.
func (m *Metrics) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Run polls every Interval until ctx ends.
func (m *Metrics) Run(ctx context.Context) error {
	t := time.NewTicker(m.opt.Interval)
	defer t.Stop()
	for {
		if err := m.Poll(ctx); err != nil && ctx.Err() == nil {
			m.opt.Log.Warn("utilization: metrics query failed; the drain falls back to header samples", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ClientOptions build the azmetrics client.
type ClientOptions struct {
	// Endpoint is the regional metrics endpoint (https), or the
	// simulator's http URL on a loopback address.
	Endpoint string
	// Credential signs requests (managed identity). Nil: the simulator,
	// which takes any bearer token; only on loopback http.
	Credential azcore.TokenCredential
}

// NewClient returns the SDK's metrics query client for o. For the
// simulator (nil Credential, loopback http) the client is given the
// https form of the URL, a fixed token and a transport that sends its
// requests over plain http, since the SDK refuses bearer tokens over http.
func NewClient(o ClientOptions) (*azmetrics.Client, error) {
	u, err := url.Parse(o.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := &azmetrics.ClientOptions{}
	opts.Retry = policy.RetryOptions{MaxRetries: 1, TryTimeout: 10 * time.Second}
	cred := o.Credential
	if cred == nil {
		if u.Scheme != "http" || !isLoopback(u.Hostname()) {
			return nil, errors.New("utilization: a metrics endpoint without a credential must be the simulator on loopback http")
		}
		cred = fixedToken{}
		opts.Transport = &http.Client{Transport: plainHTTP{next: http.DefaultTransport}, Timeout: 30 * time.Second}
		u.Scheme = "https"
	}
	return azmetrics.NewClient(u.String(), cred, opts)
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// fixedToken is the credential sent to the simulator.
type fixedToken struct{}

func (fixedToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "simulator", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// plainHTTP sends the simulator's requests over http (see NewClient).
type plainHTTP struct{ next http.RoundTripper }

func (p plainHTTP) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme = "http"
	return p.next.RoundTrip(r)
}
