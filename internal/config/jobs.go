package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// JobsConfig tunes low-priority jobs and the drain function.
type JobsConfig struct {
	// DrainTarget: jobs run only while their model pool's utilization is
	// below this share of capacity. Default 0.7.
	DrainTarget float64 `yaml:"drainTarget" json:"drainTarget"`
	// RoundTimeout bounds one drain round; keep it well inside the
	// Functions timeout (host.json functionTimeout). Default 4m.
	RoundTimeout Duration `yaml:"roundTimeout" json:"roundTimeout"`
	// MaxPerRound caps the jobs one round takes. Default 500.
	MaxPerRound int `yaml:"maxPerRound" json:"maxPerRound"`
	// Concurrency is how many jobs run at once in a round. Default 4.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// MaxAttempts before a job fails on transient backend errors. Default 5.
	MaxAttempts int `yaml:"maxAttempts" json:"maxAttempts"`
	// CallbackSecretEnv names the environment variable holding the key
	// that signs callbacks (X-Gateway-Signature: t=<unix>,v1=<HMAC-SHA256 of
	// "<t>.<body>">). Empty: callbacks are unsigned.
	CallbackSecretEnv string `yaml:"callbackSecretEnv" json:"callbackSecretEnv"`
	// ClaimCheckBytes: a job request body larger than this is stored in the
	// blob store (container BodyContainer) and the queue message carries a
	// reference, because Service Bus Standard refuses messages above
	// 256 KB (Premium: up to 100 MB). Default 196608 (192 KiB), which
	// leaves room for the message's properties; at most 245760 (240 KiB).
	ClaimCheckBytes int `yaml:"claimCheckBytes" json:"claimCheckBytes"`
	// BodyContainer is the blob container of large job bodies. Each body is
	// deleted when its job is finished. Default job-bodies (the container
	// infra/main.bicep creates).
	BodyContainer string `yaml:"bodyContainer" json:"bodyContainer"`

	// ProbeBackoff: after a deployment read busy, the next probe (one job
	// run while no signal is fresh, to learn) waits this long, doubling
	// while probes keep finding it busy (up to 16x). Default 5s.
	ProbeBackoff Duration `yaml:"probeBackoff" json:"probeBackoff"`
	// Signals are where the drain learns how busy each deployment is.
	Signals SignalsConfig `yaml:"signals" json:"signals"`
	// CallbackAllow lists hosts and networks (CIDR) callbacks may reach
	// although they are not public (loopback, private, link-local, CGNAT,
	// ULA, ...). Empty: public addresses only.
	CallbackAllow []string `yaml:"callbackAllow" json:"callbackAllow"`
	// CallbackAllowHTTP permits http:// callback URLs (dev mode, with
	// callbackAllow: [127.0.0.1/32]). Default false: https only.
	CallbackAllowHTTP bool `yaml:"callbackAllowHTTP" json:"callbackAllowHTTP"`
	// CallbackRetryFor is how long a callback is retried (queue-backed,
	// exponential backoff with jitter, up to 1h apart). Default 24h.
	CallbackRetryFor Duration `yaml:"callbackRetryFor" json:"callbackRetryFor"`

	// CallbackSecret is resolved by Load.
	CallbackSecret Secret `yaml:"-" json:"-"`
}

// JobPolicy is models.<alias>.jobs: which deployments the alias's
// low-priority jobs may use and below which utilization.
type JobPolicy struct {
	// Targets lists the deployments jobs may use, as "backend/deployment"
	// (or "backend" when the alias has one target there). Default: the
	// alias's provisioned targets, plus its standard ones when SpillToPaygo.
	Targets []string `yaml:"targets" json:"targets"`
	// Threshold: a job starts on a deployment only while the deployment's
	// utilization is below this share. Default jobs.drainTarget.
	Threshold float64 `yaml:"threshold" json:"threshold"`
	// SpillToPaygo lets jobs use standard (pay-as-you-go) deployments.
	// Default false: jobs never run on them, and listing one in Targets
	// is an error.
	SpillToPaygo bool `yaml:"spillToPaygo" json:"spillToPaygo"`
}

// SignalsConfig is jobs.signals: the utilization sources of the drain.
type SignalsConfig struct {
	// Metrics reads Azure Monitor (backends[].resourceId needed). Off when
	// metrics.endpoint is empty.
	Metrics MetricsConfig `yaml:"metrics" json:"metrics"`
	// HeaderMaxAge: this instance's response-header sample is fresh for
	// this long. Default 5s.
	HeaderMaxAge Duration `yaml:"headerMaxAge" json:"headerMaxAge"`
	// FleetMaxAge: another instance's sample (DeploymentLoad table) is
	// fresh for this long; keep it above publishInterval. Default 5s.
	FleetMaxAge Duration `yaml:"fleetMaxAge" json:"fleetMaxAge"`
	// PublishInterval: how often an instance writes its newest samples to
	// the DeploymentLoad table (only when it has new ones). Default 1s,
	// the minimum.
	PublishInterval Duration `yaml:"publishInterval" json:"publishInterval"`
	// Window is how long an admitted request counts against a deployment's
	// utilization when its responses do not say (provisioned deployments
	// send no x-ratelimit-reset-*): the drain starts jobs in place of its
	// own jobs as they leave it. Too short only makes those jobs read busy;
	// where responses carry a reset the window is learned. Default 60s.
	Window Duration `yaml:"window" json:"window"`
}

// MetricsConfig is jobs.signals.metrics: the Azure Monitor metrics query.
type MetricsConfig struct {
	// Endpoint is the regional metrics endpoint of the accounts, e.g.
	// https://swedencentral.metrics.monitor.azure.com (the simulator's URL
	// in tests). Empty: metrics off.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Interval between queries. Default 30s (the metric's grain is PT1M).
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout of one query; a slower answer is dropped. Default 10s.
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// MaxAge: a data point is fresh while the end of its minute is less
	// than this old. Default 3m (the metric arrives a minute or more late).
	MaxAge Duration `yaml:"maxAge" json:"maxAge"`
	// Grain of the query (ISO 8601 duration). Default PT1M.
	Grain string `yaml:"grain" json:"grain"`
	// Auth is managedIdentity (default: the Function App's identity,
	// AZURE_CLIENT_ID picks a user-assigned one) or none (the simulator on
	// a loopback address only).
	Auth string `yaml:"auth" json:"auth"`
}

// Metrics auth kinds.
const (
	MetricsAuthManagedIdentity = "managedIdentity"
	MetricsAuthNone            = "none"
)

func (j *JobsConfig) applyDefaults() {
	if j.DrainTarget == 0 {
		j.DrainTarget = 0.7
	}
	if j.RoundTimeout == 0 {
		j.RoundTimeout = Duration(4 * time.Minute)
	}
	if j.MaxPerRound == 0 {
		j.MaxPerRound = 500
	}
	if j.Concurrency == 0 {
		j.Concurrency = 4
	}
	if j.MaxAttempts == 0 {
		j.MaxAttempts = 5
	}
	if j.ClaimCheckBytes == 0 {
		j.ClaimCheckBytes = DefaultClaimCheckBytes
	}
	if j.BodyContainer == "" {
		j.BodyContainer = "job-bodies"
	}
	if j.ProbeBackoff == 0 {
		j.ProbeBackoff = Duration(5 * time.Second)
	}
	s := &j.Signals
	if s.HeaderMaxAge == 0 {
		s.HeaderMaxAge = Duration(5 * time.Second)
	}
	if s.FleetMaxAge == 0 {
		s.FleetMaxAge = Duration(5 * time.Second)
	}
	if s.PublishInterval == 0 {
		s.PublishInterval = Duration(time.Second)
	}
	if s.Window == 0 {
		s.Window = Duration(time.Minute)
	}
	m := &s.Metrics
	if m.Interval == 0 {
		m.Interval = Duration(30 * time.Second)
	}
	if m.Timeout == 0 {
		m.Timeout = Duration(10 * time.Second)
	}
	if m.MaxAge == 0 {
		m.MaxAge = Duration(3 * time.Minute)
	}
	if m.Grain == "" {
		m.Grain = "PT1M"
	}
	if m.Auth == "" {
		m.Auth = MetricsAuthManagedIdentity
	}
	if j.CallbackRetryFor == 0 {
		j.CallbackRetryFor = Duration(24 * time.Hour)
	}
}

// DefaultClaimCheckBytes is the default jobs.claimCheckBytes (192 KiB).
const DefaultClaimCheckBytes = 192 << 10

// maxClaimCheckBytes keeps an inline body plus properties under Service Bus
// Standard's 256 KB message limit.
const maxClaimCheckBytes = 240 << 10

func (j *JobsConfig) resolve(getenv func(string) string) error {
	if j.CallbackSecretEnv == "" {
		return nil
	}
	j.CallbackSecret = Secret(getenv(j.CallbackSecretEnv))
	if j.CallbackSecret == "" {
		return fmt.Errorf("jobs: environment variable %s (callbackSecretEnv) is empty", j.CallbackSecretEnv)
	}
	return nil
}

func (j *JobsConfig) validate() []error {
	var errs []error
	if j.DrainTarget <= 0 || j.DrainTarget > 1 {
		errs = append(errs, fmt.Errorf("jobs.drainTarget %v: want a share in (0, 1]", j.DrainTarget))
	}
	for _, a := range j.CallbackAllow {
		if strings.Contains(a, "/") {
			if _, err := netip.ParsePrefix(strings.TrimSpace(a)); err != nil {
				errs = append(errs, fmt.Errorf("jobs.callbackAllow %q: %w", a, err))
			}
		}
	}
	if j.CallbackRetryFor < 0 {
		errs = append(errs, errors.New("jobs.callbackRetryFor must not be negative"))
	}
	if j.MaxPerRound < 0 || j.Concurrency < 0 || j.MaxAttempts < 0 {
		errs = append(errs, errors.New("jobs: maxPerRound, concurrency and maxAttempts must not be negative"))
	}
	if j.ClaimCheckBytes < 1 || j.ClaimCheckBytes > maxClaimCheckBytes {
		errs = append(errs, fmt.Errorf("jobs.claimCheckBytes %d: want 1 to %d (Service Bus Standard refuses messages above 256 KB)", j.ClaimCheckBytes, maxClaimCheckBytes))
	}
	s := j.Signals
	if s.HeaderMaxAge < 0 || s.FleetMaxAge < 0 || s.Window < 0 {
		errs = append(errs, errors.New("jobs.signals.headerMaxAge, fleetMaxAge and window must not be negative"))
	}
	if s.FleetMaxAge > 0 && s.FleetMaxAge <= s.PublishInterval {
		errs = append(errs, fmt.Errorf("jobs.signals.fleetMaxAge %v: must exceed publishInterval %v, or other instances' samples are always stale", s.FleetMaxAge.D(), s.PublishInterval.D()))
	}
	if s.PublishInterval < Duration(time.Second) {
		errs = append(errs, fmt.Errorf("jobs.signals.publishInterval %v: at least 1s (one table write per second per instance at most)", s.PublishInterval.D()))
	}
	m := s.Metrics
	if m.Endpoint != "" {
		u, err := url.Parse(m.Endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("jobs.signals.metrics.endpoint %q: want an absolute https URL", m.Endpoint))
		} else if u.Scheme == "http" && !loopback(u.Hostname()) {
			errs = append(errs, fmt.Errorf("jobs.signals.metrics.endpoint %q: http only on a loopback address (the simulator)", m.Endpoint))
		}
		switch m.Auth {
		case MetricsAuthManagedIdentity:
		case MetricsAuthNone:
			if err == nil && !loopback(u.Hostname()) {
				errs = append(errs, errors.New("jobs.signals.metrics.auth none: only for the simulator on a loopback address"))
			}
		default:
			errs = append(errs, fmt.Errorf("jobs.signals.metrics.auth %q: want managedIdentity or none", m.Auth))
		}
		if m.Interval <= 0 || m.Timeout <= 0 || m.MaxAge <= 0 {
			errs = append(errs, errors.New("jobs.signals.metrics: interval, timeout and maxAge must be positive"))
		}
		if !strings.HasPrefix(m.Grain, "PT") {
			errs = append(errs, fmt.Errorf("jobs.signals.metrics.grain %q: want an ISO 8601 time duration such as PT1M", m.Grain))
		}
	}
	return errs
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validResourceID checks the shape of an account's ARM id.
func validResourceID(id string) bool {
	p := strings.Split(strings.TrimPrefix(id, "/"), "/")
	return len(p) == 8 && strings.EqualFold(p[0], "subscriptions") && p[1] != "" &&
		strings.EqualFold(p[2], "resourceGroups") && p[3] != "" && strings.EqualFold(p[4], "providers") &&
		strings.EqualFold(p[5], "Microsoft.CognitiveServices") && strings.EqualFold(p[6], "accounts") && p[7] != ""
}

// JobTarget is one deployment a model's jobs may use.
type JobTarget struct{ Backend, Deployment string }

// JobTargets resolves models.<alias>.jobs.targets against the alias's
// targets (see [JobPolicy]). The config must be valid.
func (c *Config) JobTargets(alias string) []JobTarget {
	out, _ := c.jobTargets(alias, c.Models[alias])
	return out
}

func (c *Config) jobTargets(alias string, m Model) ([]JobTarget, []error) {
	var out []JobTarget
	var errs []error
	provisioned := func(backend string) bool { b, _ := c.Backend(backend); return b.Provisioned }
	if len(m.Jobs.Targets) == 0 {
		for _, t := range m.Targets {
			if provisioned(t.Backend) || m.Jobs.SpillToPaygo {
				out = append(out, JobTarget{t.Backend, t.Deployment})
			}
		}
		return out, nil
	}
	for _, name := range m.Jobs.Targets {
		backend, dep, hasDep := strings.Cut(name, "/")
		var match []JobTarget
		for _, t := range m.Targets {
			if t.Backend == backend && (!hasDep || t.Deployment == dep) {
				match = append(match, JobTarget{t.Backend, t.Deployment})
			}
		}
		switch {
		case len(match) == 0:
			errs = append(errs, fmt.Errorf("model %q jobs.targets: %q is not one of the alias's targets (backend/deployment)", alias, name))
			continue
		case len(match) > 1:
			errs = append(errs, fmt.Errorf("model %q jobs.targets: %q matches %d targets; name the deployment (backend/deployment)", alias, name, len(match)))
			continue
		}
		if !provisioned(backend) && !m.Jobs.SpillToPaygo {
			errs = append(errs, fmt.Errorf("model %q jobs.targets: %q is a standard (pay-as-you-go) deployment; set jobs.spillToPaygo: true to let jobs use it", alias, name))
			continue
		}
		out = append(out, match[0])
	}
	return out, errs
}

func (c *Config) validateJobPolicy(alias string, m Model) []error {
	_, errs := c.jobTargets(alias, m)
	if t := m.Jobs.Threshold; t <= 0 || t > 1 {
		errs = append(errs, fmt.Errorf("model %q jobs.threshold %v: want a share in (0, 1]", alias, t))
	}
	return errs
}
