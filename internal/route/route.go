package route

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"sort"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
	"github.com/foundry-gateway/gateway/internal/policy"
)

// ErrUnknownModel: no alias with that name.
var ErrUnknownModel = errors.New("route: unknown model")

// Backend is one configured backend, shared by every target on it. It holds
// the backend's health, so it must not be copied; targets point to it.
type Backend struct {
	Name        string
	URL         string
	Region      string
	Provisioned bool
	Capacity    config.Capacity
	Timeout     time.Duration
	Auth        backendauth.Authorizer
	// Health is the backend's circuit breaker and latency record.
	Health Health

	deployments []*deployment // for Status, in config order
}

// Target is one deployment on a backend.
type Target struct {
	Backend    *Backend
	Deployment string
	Priority   int
	Weight     int
	// Version labels the model version the deployment serves (canaries);
	// "" when not configured.
	Version string

	// dep is the deployment's shared cooling and utilization state; nil for
	// targets built by hand (tests), which then never cool.
	dep *deployment
	// seed is the target's identity for rendezvous hashing.
	seed uint64
}

// settings are the router-wide knobs every deployment state reads.
type settings struct {
	now            func() time.Time
	defaultCooling time.Duration
	maxCooling     time.Duration
}

func (s *settings) clock() time.Time {
	if s == nil || s.now == nil {
		return time.Now()
	}
	return s.now()
}

// Model is an alias with its targets sorted by priority.
type Model struct {
	Alias   string
	Targets []Target
	Price   *config.Price
	// Caps every caller's requests to the alias (models.<alias>.policy).
	Caps policy.Caps
	// Latency orders the targets inside a tier by recent time to first
	// byte and utilization instead of by weight alone
	// (models.<alias>.routing: latency); a tier whose targets serve
	// different versions (a canary) keeps its weights and stickiness.
	Latency bool

	set *settings // nil for models built by hand: wall clock
}

// Router holds every alias. Its configuration is read-only after New; the
// health state it carries is safe for concurrent use.
type Router struct {
	models   map[string]*Model
	backends []*Backend // config order
	set      *settings
}

// WatchBreakers makes fn hear every circuit open/close of every backend
// (state "open" or "closed"). Call it before the router is shared.
func (r *Router) WatchBreakers(fn func(backend, state string)) {
	for _, b := range r.backends {
		name := b.Name
		b.Health.notify = func(to string) { fn(name, to) }
	}
}

// New builds the router from config; auth builds each backend's
// authorizer; now is the clock for cooling and circuits (nil: time.Now).
func New(c config.Config, auth func(config.Backend) (backendauth.Authorizer, error), now func() time.Time) (*Router, error) {
	if now == nil {
		now = time.Now
	}
	rc := c.Routing
	set := &settings{now: now, defaultCooling: rc.DefaultCooling.D(), maxCooling: rc.MaxCooling.D()}
	if set.defaultCooling <= 0 {
		set.defaultCooling = 5 * time.Second
	}
	if set.maxCooling <= 0 {
		set.maxCooling = 5 * time.Minute
	}
	bo := BreakerOptions{
		Failures: rc.Breaker.Failures, FailureRate: rc.Breaker.FailureRate, MinRequests: rc.Breaker.MinRequests,
		Window: rc.Breaker.Window.D(), OpenFor: rc.Breaker.OpenFor.D(),
	}
	r := &Router{models: map[string]*Model{}, set: set}
	backends := map[string]*Backend{}
	for _, b := range c.Backends {
		a, err := auth(b)
		if err != nil {
			return nil, err
		}
		be := &Backend{Name: b.Name, URL: b.URL, Region: b.Region, Provisioned: b.Provisioned, Capacity: b.Capacity,
			Timeout: b.Timeout.D(), Auth: a}
		be.Health.init(bo, now)
		backends[b.Name] = be
		r.backends = append(r.backends, be)
	}
	deps := map[[2]string]*deployment{}
	for alias, m := range c.Models {
		mm := &Model{Alias: alias, Price: m.Price, Caps: m.Policy, Latency: m.Routing == config.RoutingLatency, set: set}
		for _, t := range m.Targets {
			b, ok := backends[t.Backend]
			if !ok {
				return nil, fmt.Errorf("model %q: unknown backend %q", alias, t.Backend)
			}
			k := [2]string{t.Backend, t.Deployment}
			d := deps[k]
			if d == nil {
				d = &deployment{name: t.Deployment, capacity: b.Capacity, set: set}
				deps[k] = d
				b.deployments = append(b.deployments, d)
			}
			mm.Targets = append(mm.Targets, Target{Backend: b, Deployment: t.Deployment, Priority: t.Priority,
				Weight: t.Weight, Version: t.Version, dep: d, seed: targetSeed(t.Backend, t.Deployment)})
		}
		sort.SliceStable(mm.Targets, func(i, j int) bool { return mm.Targets[i].Priority < mm.Targets[j].Priority })
		r.models[alias] = mm
	}
	for _, b := range r.backends {
		sort.Slice(b.deployments, func(i, j int) bool { return b.deployments[i].name < b.deployments[j].name })
	}
	return r, nil
}

func targetSeed(backend, dep string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(backend))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(dep))
	return h.Sum64()
}

// Model returns the alias, or ErrUnknownModel.
func (r *Router) Model(alias string) (*Model, error) {
	m, ok := r.models[alias]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, alias)
	}
	return m, nil
}

// Aliases lists every model alias, sorted.
func (r *Router) Aliases() []string {
	out := make([]string, 0, len(r.models))
	for a := range r.models {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// Cool marks t's deployment cooling after a 429 for the wait h asks for
// (retry-after-ms, else retry-after), the router's default cooling when h
// names none, capped by its maximum. It returns the wait applied.
func (t Target) Cool(h http.Header) time.Duration {
	if t.dep == nil {
		return 0
	}
	now := t.dep.set.clock()
	d, ok := RetryAfter(h, now)
	if !ok {
		d = t.dep.set.defaultCooling
	}
	d = min(d, t.dep.set.maxCooling)
	t.dep.cool(now.Add(d).UnixNano())
	return d
}

// CoolingUntil is when t's deployment may be tried again; zero when it is
// not cooling.
func (t Target) CoolingUntil() time.Time {
	if t.dep == nil {
		return time.Time{}
	}
	if u := t.dep.coolUntil.Load(); u > t.dep.set.clock().UnixNano() {
		return time.Unix(0, u)
	}
	return time.Time{}
}

// Observe keeps the utilization a response's headers report for t's
// deployment (shown by the admin endpoint).
func (t Target) Observe(h http.Header) {
	if t.dep != nil {
		t.dep.observe(h, t.dep.set.clock())
	}
}

// Only returns a model that plans m's target t alone (sharing its cooling,
// circuit and utilization state), for the drain: a job goes to the one
// deployment its policy allows and that has headroom, never down the
// interactive priority order to pay-as-you-go.
func (m *Model) Only(t Target) *Model {
	return &Model{Alias: m.Alias, Targets: []Target{t}, Price: m.Price, Caps: m.Caps, set: m.set}
}

// Sample is the last utilization t's deployment reported in response
// headers on this instance; nil when none.
func (t Target) Sample() *Utilization {
	if t.dep == nil {
		return nil
	}
	return t.dep.util.Load()
}

// Ready reports whether t may take a call now: not cooling after a 429 and
// its backend's circuit not open.
func (t Target) Ready() bool {
	now := time.Now()
	if t.dep != nil {
		now = t.dep.set.clock()
		if t.dep.coolUntil.Load() > now.UnixNano() {
			return false
		}
	}
	return t.Backend.Health.ready(now.UnixNano())
}

// Backend returns the configured backend with that name.
func (r *Router) Backend(name string) (*Backend, bool) {
	for _, b := range r.backends {
		if b.Name == name {
			return b, true
		}
	}
	return nil, false
}
