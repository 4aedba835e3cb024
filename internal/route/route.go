package route

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/foundry-gateway/gateway/internal/backendauth"
	"github.com/foundry-gateway/gateway/internal/config"
)

// ErrUnknownModel: no alias with that name.
var ErrUnknownModel = errors.New("route: unknown model")

// Backend is one configured backend, shared by every target on it.
type Backend struct {
	Name        string
	URL         string
	Region      string
	Provisioned bool
	Timeout     time.Duration
	Auth        backendauth.Authorizer
}

// Target is one deployment on a backend.
type Target struct {
	Backend    *Backend
	Deployment string
	Priority   int
	Weight     int
}

// Model is an alias with its targets sorted by priority.
type Model struct {
	Alias   string
	Targets []Target
	Price   *config.Price
}

// Router holds every alias. Read-only after New; safe for concurrent use.
type Router struct {
	models map[string]*Model
}

// New builds the router from config; auth builds each backend's authorizer.
func New(c config.Config, auth func(config.Backend) (backendauth.Authorizer, error)) (*Router, error) {
	backends := map[string]*Backend{}
	for _, b := range c.Backends {
		a, err := auth(b)
		if err != nil {
			return nil, err
		}
		backends[b.Name] = &Backend{Name: b.Name, URL: b.URL, Region: b.Region, Provisioned: b.Provisioned, Timeout: b.Timeout.D(), Auth: a}
	}
	r := &Router{models: map[string]*Model{}}
	for alias, m := range c.Models {
		mm := &Model{Alias: alias, Price: m.Price}
		for _, t := range m.Targets {
			b, ok := backends[t.Backend]
			if !ok {
				return nil, fmt.Errorf("model %q: unknown backend %q", alias, t.Backend)
			}
			mm.Targets = append(mm.Targets, Target{Backend: b, Deployment: t.Deployment, Priority: t.Priority, Weight: t.Weight})
		}
		sort.SliceStable(mm.Targets, func(i, j int) bool { return mm.Targets[i].Priority < mm.Targets[j].Priority })
		r.models[alias] = mm
	}
	return r, nil
}

// Model returns the alias, or ErrUnknownModel.
func (r *Router) Model(alias string) (*Model, error) {
	m, ok := r.models[alias]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownModel, alias)
	}
	return m, nil
}

// Plan returns the order in which to try m's targets: tiers in priority
// order, inside a tier a weighted random order (weighted sampling without
// replacement), so load spreads by weight and failover stays in the tier
// before spilling to the next one. The slice is new; dst is reused if large enough.
func (m *Model) Plan(dst []Target, rng *rand.Rand) []Target {
	dst = append(dst[:0], m.Targets...)
	for start := 0; start < len(dst); {
		end := start + 1
		for end < len(dst) && dst[end].Priority == dst[start].Priority {
			end++
		}
		weightedShuffle(dst[start:end], rng)
		start = end
	}
	return dst
}

func weightedShuffle(ts []Target, rng *rand.Rand) {
	for i := 0; i < len(ts)-1; i++ {
		total := 0
		for _, t := range ts[i:] {
			total += t.Weight
		}
		if total <= 0 {
			return
		}
		var x int
		if rng != nil {
			x = rng.IntN(total)
		} else {
			x = rand.IntN(total)
		}
		for j := i; j < len(ts); j++ {
			x -= ts[j].Weight
			if x < 0 {
				ts[i], ts[j] = ts[j], ts[i]
				break
			}
		}
	}
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
