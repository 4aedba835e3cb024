package config

import (
	"errors"
	"fmt"
	"net/netip"
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
	if j.CallbackRetryFor == 0 {
		j.CallbackRetryFor = Duration(24 * time.Hour)
	}
}

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
	return errs
}
