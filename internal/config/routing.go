package config

import (
	"fmt"
	"net/http"
	"time"
)

// RoutingConfig tunes backend health and how a call picks its backend.
type RoutingConfig struct {
	// AffinityHeader names a request header whose value, when present, is
	// what canary stickiness hashes instead of the caller's key id (one
	// key shared by many end users). Default x-gateway-affinity-key.
	AffinityHeader string `yaml:"affinityHeader" json:"affinityHeader"`
	// DefaultCooling is how long a deployment that answered 429 without
	// retry-after-ms / retry-after is skipped. Default 5s.
	DefaultCooling Duration `yaml:"defaultCooling" json:"defaultCooling"`
	// MaxCooling caps the retry-after a backend asks for. Default 5m.
	MaxCooling Duration `yaml:"maxCooling" json:"maxCooling"`
	// Breaker is the per-backend circuit breaker.
	Breaker BreakerConfig `yaml:"breaker" json:"breaker"`
	// ResponseAffinity routes Responses API calls that continue a
	// conversation (previous_response_id) to the backend that made it.
	ResponseAffinity ResponseAffinityConfig `yaml:"responseAffinity" json:"responseAffinity"`
}

// BreakerConfig tunes each backend's circuit breaker. Only timeouts, 5xx
// and connection errors count as failures.
type BreakerConfig struct {
	// Failures in a row that open the circuit. Default 5.
	Failures int `yaml:"failures" json:"failures"`
	// FailureRate (0–1] of calls in Window that opens the circuit once
	// MinRequests were seen. Default 0.5.
	FailureRate float64 `yaml:"failureRate" json:"failureRate"`
	// MinRequests in Window before FailureRate applies. Default 20.
	MinRequests int `yaml:"minRequests" json:"minRequests"`
	// Window of the failure rate (and the admin error rate). Default 30s.
	Window Duration `yaml:"window" json:"window"`
	// OpenFor is how long an open circuit refuses calls before one
	// half-open probe. Default 30s.
	OpenFor Duration `yaml:"openFor" json:"openFor"`
}

// ResponseAffinityConfig tunes the response id → backend table.
type ResponseAffinityConfig struct {
	// TTL of a recorded response id. Default 720h (30 days, the Responses
	// API's retention).
	TTL Duration `yaml:"ttl" json:"ttl"`
	// CacheSize is the number of ids each instance keeps in memory
	// (lookups of those never read the store). Default 100000.
	CacheSize int `yaml:"cacheSize" json:"cacheSize"`
	// WriteBuffer is the number of pending store writes; when full, new
	// ones are dropped (and counted in the log) rather than block a
	// request. Default 4096.
	WriteBuffer int `yaml:"writeBuffer" json:"writeBuffer"`
}

func (r *RoutingConfig) applyDefaults() {
	if r.AffinityHeader == "" {
		r.AffinityHeader = "x-gateway-affinity-key"
	}
	if r.DefaultCooling == 0 {
		r.DefaultCooling = Duration(5 * time.Second)
	}
	if r.MaxCooling == 0 {
		r.MaxCooling = Duration(5 * time.Minute)
	}
	b := &r.Breaker
	if b.Failures == 0 {
		b.Failures = 5
	}
	if b.FailureRate == 0 {
		b.FailureRate = 0.5
	}
	if b.MinRequests == 0 {
		b.MinRequests = 20
	}
	if b.Window == 0 {
		b.Window = Duration(30 * time.Second)
	}
	if b.OpenFor == 0 {
		b.OpenFor = Duration(30 * time.Second)
	}
	a := &r.ResponseAffinity
	if a.TTL == 0 {
		a.TTL = Duration(30 * 24 * time.Hour)
	}
	if a.CacheSize == 0 {
		a.CacheSize = 100000
	}
	if a.WriteBuffer == 0 {
		a.WriteBuffer = 4096
	}
}

// validate reports every problem of the routing section.
func (r *RoutingConfig) validate() []error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if http.CanonicalHeaderKey(r.AffinityHeader) == "" {
		bad("routing.affinityHeader must not be empty")
	}
	if r.DefaultCooling < 0 || r.MaxCooling < 0 || r.MaxCooling < r.DefaultCooling {
		bad("routing: defaultCooling and maxCooling must be positive, maxCooling at least defaultCooling")
	}
	b := r.Breaker
	if b.Failures < 1 || b.MinRequests < 1 {
		bad("routing.breaker: failures and minRequests must be at least 1")
	}
	if b.FailureRate <= 0 || b.FailureRate > 1 {
		bad("routing.breaker.failureRate %v: must be in (0, 1]", b.FailureRate)
	}
	if b.Window < Duration(10*time.Millisecond) || b.OpenFor <= 0 {
		bad("routing.breaker: window must be at least 10ms and openFor positive")
	}
	a := r.ResponseAffinity
	if a.TTL <= 0 || a.CacheSize < 1 || a.WriteBuffer < 1 {
		bad("routing.responseAffinity: ttl, cacheSize and writeBuffer must be positive")
	}
	return errs
}
