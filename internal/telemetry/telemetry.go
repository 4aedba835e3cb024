package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/microsoft/ApplicationInsights-Go/appinsights"
	"github.com/microsoft/ApplicationInsights-Go/appinsights/contracts"
)

// Options configure a Client. Zero values take the defaults noted.
type Options struct {
	// ConnectionString is APPLICATIONINSIGHTS_CONNECTION_STRING. Empty
	// gives a disabled client whose methods do nothing.
	ConnectionString string
	// RoleName is the cloud role shown in Application Map. Default "foundry-gateway".
	RoleName string
	// Buffer is how many items wait for the pump before the oldest is
	// dropped. Default 10000.
	Buffer int
	// BatchInterval is how often the SDK sends a batch. Default 5s.
	BatchInterval time.Duration
	// HTTPClient sends the batches (set a transport that adds an Entra
	// token when local auth is off). Default: a client with a 10s timeout.
	HTTPClient *http.Client
}

// Client records telemetry without ever blocking its caller. A nil or
// disabled Client is valid and records nothing.
type Client struct {
	ai      appinsights.TelemetryClient
	buf     chan appinsights.Telemetry
	dropped atomic.Int64
	log     *slog.Logger

	mu     sync.Mutex // guards track against Close
	closed bool
	// stop ends Run; running is closed when Run has returned. The SDK's
	// channel must not be closed while Run may still call Track on it
	// (the SDK races otherwise).
	stop    chan struct{}
	running chan struct{}
	started atomic.Bool
}

// New returns a Client; it starts nothing (call Run).
func New(o Options, log *slog.Logger) (*Client, error) {
	if o.ConnectionString == "" {
		return nil, nil
	}
	ikey, url, err := ParseConnectionString(o.ConnectionString)
	if err != nil {
		return nil, err
	}
	if o.RoleName == "" {
		o.RoleName = "foundry-gateway"
	}
	if o.Buffer <= 0 {
		o.Buffer = 10000
	}
	if o.BatchInterval <= 0 {
		o.BatchInterval = 5 * time.Second
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	cfg := appinsights.NewTelemetryConfiguration(ikey)
	cfg.EndpointUrl = url
	cfg.MaxBatchInterval = o.BatchInterval
	cfg.MaxBatchSize = 500
	cfg.Client = o.HTTPClient
	ai := appinsights.NewTelemetryClientFromConfig(cfg)
	ai.Context().Tags.Cloud().SetRole(o.RoleName)
	return &Client{ai: ai, buf: make(chan appinsights.Telemetry, o.Buffer), log: log,
		stop: make(chan struct{}), running: make(chan struct{})}, nil
}

// Dropped is how many items were dropped because the buffer was full.
func (c *Client) Dropped() int64 {
	if c == nil {
		return 0
	}
	return c.dropped.Load()
}

// track queues an item; when the buffer is full the oldest item makes room.
func (c *Client) track(t appinsights.Telemetry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for {
		select {
		case c.buf <- t:
			return
		default:
		}
		select {
		case <-c.buf:
			c.dropped.Add(1)
		default:
		}
	}
}

// Run feeds queued items to the SDK until ctx ends. The SDK's own channel
// may block while it transmits; only this goroutine waits on it.
func (c *Client) Run(ctx context.Context) error {
	if c == nil {
		<-ctx.Done()
		return nil
	}
	// Register under the lock Close takes: either Close sees the pump and
	// waits for it, or the pump sees Close and never touches the SDK.
	c.mu.Lock()
	if c.closed || c.started.Load() {
		c.mu.Unlock()
		return nil // closed already, or one pump only
	}
	c.started.Store(true)
	c.mu.Unlock()
	defer close(c.running)
	var lastDropped int64
	report := time.NewTicker(time.Minute)
	defer report.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.stop:
			return nil
		case t := <-c.buf:
			c.ai.Track(t)
		case <-report.C:
			if d := c.dropped.Load(); d != lastDropped {
				c.log.Warn("telemetry items dropped: ingestion too slow", "dropped_total", d)
				lastDropped = d
			}
		}
	}
}

// Close sends what is queued and waits for the SDK to flush, up to ctx's deadline.
func (c *Client) Close(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	started := c.started.Load()
	c.mu.Unlock()
	close(c.stop)
	if started {
		select {
		case <-c.running:
		case <-ctx.Done():
			return
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case t := <-c.buf:
				c.ai.Track(t)
			default:
				wait := 10 * time.Second
				if dl, ok := ctx.Deadline(); ok {
					wait = time.Until(dl)
				}
				select {
				case <-c.ai.Channel().Close(wait):
				case <-ctx.Done():
				}
				return
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Request describes one client call.
type Request struct {
	Trace      Trace
	Name       string // operation name by route, e.g. "POST /openai/v1/chat/completions"
	URL        string
	Start      time.Time
	Duration   time.Duration
	Status     int
	Properties map[string]string
	// Measurements: prompt_tokens, completion_tokens, cached_tokens, cost, ttft_ms …
	Measurements map[string]float64
}

// TrackRequest records a request item whose id is the gateway's span and
// whose operation is the trace.
func (c *Client) TrackRequest(r Request) {
	if c == nil {
		return
	}
	t := appinsights.NewRequestTelemetry("", r.URL, r.Duration, strconv.Itoa(r.Status))
	t.Name = r.Name
	t.Id = r.Trace.SpanID
	t.Timestamp = r.Start
	t.Success = r.Status < 400 || r.Status == http.StatusUnauthorized
	setOperation(t.Tags, r.Trace, r.Name)
	copyProps(t.Properties, r.Properties)
	for k, v := range r.Measurements {
		t.Measurements[k] = v
	}
	c.track(t)
}

// Dependency describes one backend attempt.
type Dependency struct {
	Trace      Trace // the attempt's span: Child() of the request's
	Name       string
	Target     string // backend host
	Data       string // URL path without query
	Start      time.Time
	Duration   time.Duration
	Status     int // 0 when no response arrived
	Err        string
	Properties map[string]string
}

// TrackDependency records a dependency item per backend attempt.
func (c *Client) TrackDependency(d Dependency) {
	if c == nil {
		return
	}
	t := appinsights.NewRemoteDependencyTelemetry(d.Name, "HTTP", d.Target, d.Status > 0 && d.Status < 400)
	t.Id = d.Trace.SpanID
	t.Data = d.Data
	t.Timestamp = d.Start
	t.Duration = d.Duration
	if d.Status > 0 {
		t.ResultCode = strconv.Itoa(d.Status)
	} else {
		t.ResultCode = "error"
	}
	setOperation(t.Tags, d.Trace, "")
	copyProps(t.Properties, d.Properties)
	if d.Err != "" {
		t.Properties["error"] = d.Err
	}
	c.track(t)
}

// TrackMetric records one metric value with dimensions.
func (c *Client) TrackMetric(name string, value float64, trace Trace, props map[string]string) {
	if c == nil {
		return
	}
	t := appinsights.NewMetricTelemetry(name, value)
	setOperation(t.Tags, trace, "")
	copyProps(t.Properties, props)
	c.track(t)
}

// TrackTrace records a warning or error message.
func (c *Client) TrackTrace(msg string, warn bool, trace Trace, props map[string]string) {
	if c == nil {
		return
	}
	lvl := contracts.Error
	if warn {
		lvl = contracts.Warning
	}
	t := appinsights.NewTraceTelemetry(msg, lvl)
	setOperation(t.Tags, trace, "")
	copyProps(t.Properties, props)
	c.track(t)
}

func setOperation(tags contracts.ContextTags, tr Trace, name string) {
	if tr.TraceID == "" {
		return
	}
	op := tags.Operation()
	op.SetId(tr.TraceID)
	if tr.ParentID != "" {
		op.SetParentId(tr.ParentID)
	}
	if name != "" {
		op.SetName(name)
	}
}

func copyProps(dst, src map[string]string) {
	for k, v := range src {
		if v != "" {
			dst[k] = v
		}
	}
}
