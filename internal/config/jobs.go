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
	if j.ClaimCheckBytes == 0 {
		j.ClaimCheckBytes = DefaultClaimCheckBytes
	}
	if j.BodyContainer == "" {
		j.BodyContainer = "job-bodies"
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
	if j.MaxPerRound < 0 || j.Concurrency < 0 || j.MaxAttempts < 0 {
		errs = append(errs, errors.New("jobs: maxPerRound, concurrency and maxAttempts must not be negative"))
	}
	if j.ClaimCheckBytes < 1 || j.ClaimCheckBytes > maxClaimCheckBytes {
		errs = append(errs, fmt.Errorf("jobs.claimCheckBytes %d: want 1 to %d (Service Bus Standard refuses messages above 256 KB)", j.ClaimCheckBytes, maxClaimCheckBytes))
	}
	return errs
}
