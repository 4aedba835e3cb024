package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults applied by [Config.Validate] and [New] to fields left at zero.
const (
	DefaultRegion             = "swedencentral"
	DefaultWindow             = 60 * time.Second
	DefaultEmbeddingDims      = 256
	DefaultMaxStoredResponses = 10000
)

// maxEmbeddingDims is the largest `dimensions` any OpenAI embedding model
// offers (text-embedding-3-large); larger requests are rejected.
const maxEmbeddingDims = 3072

// Config is the whole simulator configuration. It reads from YAML or JSON
// (see [ParseConfig]); zero values mean "use the default" as documented on
// each field.
type Config struct {
	// APIKey, when non-empty, must arrive as `api-key: <key>` or
	// `Authorization: Bearer <key>` on every /openai/ request, otherwise the
	// answer is Azure's 401. Empty (the default) accepts any request.
	APIKey Secret `yaml:"apiKey" json:"apiKey"`
	// Region is reported in x-ms-region. Default "swedencentral".
	Region string `yaml:"region" json:"region"`
	// Window is the length of the sliding rate-limit window. Default 60s.
	// TPM, RPM and PTUCapacityTPM are the budgets of one window, not scaled,
	// so a test that sets 2s gets 2-second windows with the same budgets.
	Window Duration `yaml:"window" json:"window"`
	// MaxStoredResponses bounds the Responses API store (oldest evicted
	// first). Default 10000.
	MaxStoredResponses int `yaml:"maxStoredResponses" json:"maxStoredResponses"`
	// Metrics shapes the emulated Azure Monitor metrics API (see metrics.go).
	Metrics MetricsConfig `yaml:"metrics" json:"metrics"`
	// Deployments lists the Azure deployments this simulated resource has.
	// At least one is required; names must be unique.
	Deployments []Deployment `yaml:"deployments" json:"deployments"`
}

// Deployment is one simulated Azure OpenAI deployment.
//
// A deployment whose Model contains "embedding" serves only /embeddings;
// any other serves chat completions, legacy completions and responses, as
// Azure answers OperationNotSupported when the model cannot do the call.
// A Model starting with "o1", "o3", "o4" or "gpt-5" is a reasoning model:
// it spends reasoning tokens and rejects max_tokens.
type Deployment struct {
	// Name is the Azure deployment name used in paths and as the v1 `model`.
	// Required.
	Name string `yaml:"name" json:"name"`
	// Model is the model name reported in responses. Default: Name.
	Model string `yaml:"model" json:"model"`
	// Provisioned makes this a PTU deployment: no TPM/RPM, an
	// azure-openai-deployment-utilization header instead of the
	// x-ratelimit-* headers, and 429 once the window would exceed
	// PTUCapacityTPM. Default false (standard, pay-as-you-go).
	Provisioned bool `yaml:"provisioned" json:"provisioned"`
	// TPM is the token budget per window of a standard deployment, charged
	// at admission with prompt tokens + the requested output cap (1000 when
	// the request sets none) as Azure estimates it. 0 = unlimited. Must be 0
	// when Provisioned.
	TPM int64 `yaml:"tpm" json:"tpm"`
	// RPM is the request budget per window of a standard deployment.
	// 0 = unlimited. Must be 0 when Provisioned.
	RPM int64 `yaml:"rpm" json:"rpm"`
	// PTUCapacityTPM is the number of tokens per window that is 100 %
	// utilization of a provisioned deployment, charged with prompt tokens -
	// cached tokens + the output cap. Required (> 0) when Provisioned, must be
	// 0 otherwise.
	PTUCapacityTPM int64 `yaml:"ptuCapacityTPM" json:"ptuCapacityTPM"`
	// EmbeddingDims is the native vector length of an embeddings deployment;
	// requests may ask for fewer or more with `dimensions` (up to 3072).
	// Default 256 (small, to keep test payloads light).
	EmbeddingDims int `yaml:"embeddingDims" json:"embeddingDims"`
	// BackgroundLoad is the share (0..1) of the deployment's token budget
	// taken in every window by clients that bypass the gateway: it counts
	// in admission (429s), in the utilization headers and in the metrics
	// API, as other apps calling the account directly would. Default 0.
	BackgroundLoad float64 `yaml:"backgroundLoad" json:"backgroundLoad"`
	// Latency shapes how long answers take. Zero = as fast as possible.
	Latency Latency `yaml:"latency" json:"latency"`
	// Faults injects random failures at the given rates. Zero = none.
	Faults Faults `yaml:"faults" json:"faults"`
}

// Latency is the timing model of a deployment. Per request it can be
// overridden with the x-sim-latency-ttft-ms and x-sim-tokens-per-second
// headers.
type Latency struct {
	// TTFT is the time to the first token: the wait before the response
	// headers and first event. Reasoning tokens are added on top at
	// TokensPerSecond, as reasoning models think before they speak.
	// 0 = no wait.
	TTFT Duration `yaml:"ttft" json:"ttft"`
	// TokensPerSecond paces generated tokens: streams send each chunk after
	// its tokens' share of time, non-streamed answers wait for all tokens.
	// 0 = no pacing.
	TokensPerSecond float64 `yaml:"tokensPerSecond" json:"tokensPerSecond"`
	// EmbeddingLatency is the wait before an embeddings answer. 0 = none.
	EmbeddingLatency Duration `yaml:"embeddingLatency" json:"embeddingLatency"`
}

// Faults are random failures injected at configured rates. One uniform
// draw per request (derived from Seed and a per-deployment request counter,
// so a run replays exactly) picks at most one fault; the rates must sum to
// at most 1. The x-sim-fault header overrides the draw.
type Faults struct {
	// ErrorRate is the share of requests answered 500. Default 0.
	ErrorRate float64 `yaml:"errorRate" json:"errorRate"`
	// TimeoutRate is the share of requests that are accepted and never
	// answered until the client goes away. Default 0.
	TimeoutRate float64 `yaml:"timeoutRate" json:"timeoutRate"`
	// CutStreamRate is the share of streaming requests whose connection is
	// aborted halfway through the content. Default 0.
	CutStreamRate float64 `yaml:"cutStreamRate" json:"cutStreamRate"`
	// Seed makes the draws differ between deployments or runs. Default 0.
	Seed uint64 `yaml:"seed" json:"seed"`
}

// DefaultConfig is the simulated resource for local runs (`make run`): a
// standard and a provisioned gpt-4o-mini, a reasoning model and an
// embeddings model, with modest realistic latency.
func DefaultConfig() Config {
	chatLatency := Latency{
		TTFT:            Duration(150 * time.Millisecond),
		TokensPerSecond: 200,
	}
	return Config{
		Region: DefaultRegion,
		Window: Duration(DefaultWindow),
		Deployments: []Deployment{
			{Name: "gpt-4o-mini", Model: "gpt-4o-mini", TPM: 450000, RPM: 2700, Latency: chatLatency},
			{Name: "gpt-4o-mini-ptu", Model: "gpt-4o-mini", Provisioned: true, PTUCapacityTPM: 300000, Latency: chatLatency},
			{Name: "o4-mini", Model: "o4-mini", TPM: 200000, RPM: 200, Latency: Latency{
				TTFT:            Duration(300 * time.Millisecond),
				TokensPerSecond: 150,
			}},
			{Name: "text-embedding-3-small", Model: "text-embedding-3-small", TPM: 350000, RPM: 2100,
				EmbeddingDims: DefaultEmbeddingDims,
				Latency:       Latency{EmbeddingLatency: Duration(40 * time.Millisecond)}},
		},
	}
}

// ParseConfig reads a YAML or JSON document (JSON is valid YAML) into a
// Config, rejecting unknown fields, then applies defaults and validates it.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("sim config: %w", err)
	}
	return cfg.normalize()
}

// Validate reports whether the config, after defaults, can run.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

// normalize returns a copy with defaults applied, or the first problems
// found. It is the one place defaults live.
func (c Config) normalize() (Config, error) {
	out := c
	if out.Region == "" {
		out.Region = DefaultRegion
	}
	if out.Window == 0 {
		out.Window = Duration(DefaultWindow)
	}
	if out.MaxStoredResponses == 0 {
		out.MaxStoredResponses = DefaultMaxStoredResponses
	}
	if out.Metrics.Grain == 0 {
		out.Metrics.Grain = Duration(time.Minute)
	}
	if out.Metrics.Delay == 0 {
		out.Metrics.Delay = Duration(time.Minute)
	}
	if out.Metrics.Retention == 0 {
		out.Metrics.Retention = Duration(10 * time.Minute)
	}
	var errs []error
	if out.Metrics.Grain < 0 || out.Metrics.Delay < 0 || out.Metrics.Retention < out.Metrics.Grain {
		errs = append(errs, errors.New("metrics: grain and delay must be positive, retention at least one grain"))
	}
	if out.Window < 0 {
		errs = append(errs, errors.New("window must not be negative"))
	}
	if out.MaxStoredResponses < 0 {
		errs = append(errs, errors.New("maxStoredResponses must not be negative"))
	}
	if len(out.Deployments) == 0 {
		errs = append(errs, errors.New("at least one deployment is required"))
	}
	out.Deployments = make([]Deployment, len(c.Deployments))
	seen := make(map[string]bool, len(c.Deployments))
	for i, d := range c.Deployments {
		if d.Model == "" {
			d.Model = d.Name
		}
		if d.EmbeddingDims == 0 {
			d.EmbeddingDims = DefaultEmbeddingDims
		}
		out.Deployments[i] = d
		if seen[d.Name] {
			errs = append(errs, fmt.Errorf("deployment %q: duplicate name", d.Name))
		}
		seen[d.Name] = true
		if err := d.validate(); err != nil {
			errs = append(errs, fmt.Errorf("deployment %d (%q): %w", i, d.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("sim config: %w", err)
	}
	return out, nil
}

func (d Deployment) validate() error {
	var errs []error
	switch {
	case d.Name == "":
		errs = append(errs, errors.New("name is required"))
	case strings.ContainsAny(d.Name, "/?#% "):
		errs = append(errs, errors.New("name must be usable as a path segment"))
	}
	if d.TPM < 0 || d.RPM < 0 || d.PTUCapacityTPM < 0 {
		errs = append(errs, errors.New("tpm, rpm and ptuCapacityTPM must not be negative"))
	}
	if d.Provisioned {
		if d.PTUCapacityTPM == 0 {
			errs = append(errs, errors.New("a provisioned deployment needs ptuCapacityTPM > 0"))
		}
		if d.TPM != 0 || d.RPM != 0 {
			errs = append(errs, errors.New("a provisioned deployment has no tpm/rpm; set ptuCapacityTPM"))
		}
	} else if d.PTUCapacityTPM != 0 {
		errs = append(errs, errors.New("ptuCapacityTPM applies only to provisioned deployments"))
	}
	if d.BackgroundLoad < 0 || d.BackgroundLoad > 1 {
		errs = append(errs, errors.New("backgroundLoad must be within 0..1"))
	}
	if d.EmbeddingDims < 0 || d.EmbeddingDims > maxEmbeddingDims {
		errs = append(errs, fmt.Errorf("embeddingDims must be within 1..%d", maxEmbeddingDims))
	}
	if d.Latency.TTFT < 0 || d.Latency.EmbeddingLatency < 0 || d.Latency.TokensPerSecond < 0 {
		errs = append(errs, errors.New("latency values must not be negative"))
	}
	f := d.Faults
	for _, r := range []float64{f.ErrorRate, f.TimeoutRate, f.CutStreamRate} {
		if r < 0 || r > 1 {
			errs = append(errs, errors.New("fault rates must be within 0..1"))
			break
		}
	}
	if f.ErrorRate+f.TimeoutRate+f.CutStreamRate > 1 {
		errs = append(errs, errors.New("fault rates must sum to at most 1"))
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration written as a Go duration string ("150ms",
// "2s") in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String implements fmt.Stringer.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalJSON implements json.Unmarshaler. Only strings are accepted: a
// bare number would be ambiguous (seconds? nanoseconds?).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"150ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Secret is a string that never appears in logs or formatted output.
type Secret string

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// String implements fmt.Stringer so %v and %s print the redacted form.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// GoString keeps %#v redacted too.
func (s Secret) GoString() string { return s.String() }
