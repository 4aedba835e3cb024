package config

import (
	"errors"
	"fmt"
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
	// that signs callbacks (HMAC-SHA256 in X-Gateway-Signature). Empty: callbacks are unsigned.
	CallbackSecretEnv string `yaml:"callbackSecretEnv" json:"callbackSecretEnv"`

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
	if j.MaxPerRound < 0 || j.Concurrency < 0 || j.MaxAttempts < 0 {
		errs = append(errs, errors.New("jobs: maxPerRound, concurrency and maxAttempts must not be negative"))
	}
	return errs
}
