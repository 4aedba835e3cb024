package config

import (
	"fmt"
	"slices"
)

// Cache modes of a model (cache.models.<alias>.mode).
const (
	CacheExact    = "exact"
	CacheSemantic = "semantic"
)

// Cache partitions (cache.partition): who may be served an entry another
// caller's request stored.
const (
	CachePartitionTeam   = "team"   // callers of the same team (default)
	CachePartitionKey    = "key"    // the same API key (or token subject) only
	CachePartitionGlobal = "global" // every caller: teams share answers
)

// CacheConfig is the response cache (docs/caching.md). It is off unless
// Models names at least one alias.
type CacheConfig struct {
	// Models opts model aliases in: alias → how its answers are cached.
	Models map[string]CacheModel `yaml:"models" json:"models"`
	// Partition is who shares entries: team (default), key or global.
	// Entries are never shared across teams unless this is global.
	Partition string `yaml:"partition" json:"partition"`
	// TTL of an entry. Default 1h.
	TTL Duration `yaml:"ttl" json:"ttl"`
	// MaxEntryBytes caps one cached response body; larger answers are not
	// cached. Default 256 KiB, at most 960 KiB (a Table Storage entity
	// holds 1 MiB).
	MaxEntryBytes int `yaml:"maxEntryBytes" json:"maxEntryBytes"`
	// MemoryBytes caps the bodies each instance keeps in memory in front of
	// the CacheEntries table (least recently used out first). Default 64 MiB.
	MemoryBytes int64 `yaml:"memoryBytes" json:"memoryBytes"`
	// CostFraction is the share of the original cost a hit is charged in
	// the ledger (0 = free, the default; 1 = full price).
	CostFraction float64 `yaml:"costFraction" json:"costFraction"`
	// Semantic tunes the semantic cache (models with mode semantic).
	Semantic SemanticCacheConfig `yaml:"semantic" json:"semantic"`
}

// CacheModel is one alias's cache policy.
type CacheModel struct {
	// Mode is exact (identical requests) or semantic (also prompts whose
	// embedding is close enough). Default exact.
	Mode string `yaml:"mode" json:"mode"`
	// Teams limits caching to these teams; empty = every team.
	Teams []string `yaml:"teams" json:"teams"`
	// TTL overrides cache.ttl for this alias.
	TTL Duration `yaml:"ttl" json:"ttl"`
}

// SemanticCacheConfig tunes the semantic cache.
type SemanticCacheConfig struct {
	// EmbeddingModel is the alias (in models) the prompts are embedded
	// with; the call is routed, metered and recorded like any other.
	// Required when a model has mode semantic.
	EmbeddingModel string `yaml:"embeddingModel" json:"embeddingModel"`
	// ScoreThreshold has the semantics of APIM's score-threshold: a
	// score in 0..1 where lower means more similar (score = 1 − cosine
	// similarity); a stored entry is served when its score is at most the
	// threshold. Default 0.2.
	ScoreThreshold float64 `yaml:"scoreThreshold" json:"scoreThreshold"`
	// IndexEntries caps the vectors each instance keeps per partition and
	// model (newest first). Default 2000.
	IndexEntries int `yaml:"indexEntries" json:"indexEntries"`
	// AllowTools lets requests with tools or functions be served
	// semantically. Default false (exact matches only).
	AllowTools bool `yaml:"allowTools" json:"allowTools"`
	// AllowSampling lets requests with sampling parameters (temperature or
	// top_p above 0, n above 1, seed-less logprobs) be served
	// semantically. Default false.
	AllowSampling bool `yaml:"allowSampling" json:"allowSampling"`
	// IgnoreSystemMessages leaves system/developer messages out of the
	// embedded text (APIM's ignore-system-messages). They still must be
	// equal: they are part of the request's variant. Default false.
	IgnoreSystemMessages bool `yaml:"ignoreSystemMessages" json:"ignoreSystemMessages"`
}

// Enabled reports whether any alias is cached.
func (c *CacheConfig) Enabled() bool { return len(c.Models) > 0 }

func (c *CacheConfig) applyDefaults() {
	if c.Partition == "" {
		c.Partition = CachePartitionTeam
	}
	if c.TTL == 0 {
		c.TTL = Duration(3600e9)
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = 256 << 10
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = 64 << 20
	}
	if c.Semantic.ScoreThreshold == 0 {
		c.Semantic.ScoreThreshold = 0.2
	}
	if c.Semantic.IndexEntries == 0 {
		c.Semantic.IndexEntries = 2000
	}
	for a, m := range c.Models {
		if m.Mode == "" {
			m.Mode = CacheExact
			c.Models[a] = m
		}
	}
}

// validate checks the cache section against the models it names.
func (c *CacheConfig) validate(models map[string]Model) []error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if !slices.Contains([]string{CachePartitionTeam, CachePartitionKey, CachePartitionGlobal}, c.Partition) {
		bad("cache.partition %q: want team, key or global", c.Partition)
	}
	if c.TTL < 0 {
		bad("cache.ttl %v: must not be negative", c.TTL.D())
	}
	if c.MaxEntryBytes < 1 || c.MaxEntryBytes > 960<<10 {
		bad("cache.maxEntryBytes %d: must be between 1 and 983040 (960 KiB)", c.MaxEntryBytes)
	}
	if c.MemoryBytes < 0 {
		bad("cache.memoryBytes %d: must not be negative", c.MemoryBytes)
	}
	if c.CostFraction < 0 || c.CostFraction > 1 {
		bad("cache.costFraction %v: must be between 0 and 1", c.CostFraction)
	}
	s := c.Semantic
	if s.ScoreThreshold < 0 || s.ScoreThreshold > 1 {
		bad("cache.semantic.scoreThreshold %v: must be between 0 and 1", s.ScoreThreshold)
	}
	if s.IndexEntries < 1 {
		bad("cache.semantic.indexEntries %d: must be at least 1", s.IndexEntries)
	}
	semantic := false
	for a, m := range c.Models {
		if _, ok := models[a]; !ok {
			bad("cache.models.%s: not in models", a)
		}
		switch m.Mode {
		case CacheExact:
		case CacheSemantic:
			semantic = true
		default:
			bad("cache.models.%s.mode %q: want exact or semantic", a, m.Mode)
		}
		if m.TTL < 0 {
			bad("cache.models.%s.ttl %v: must not be negative", a, m.TTL.D())
		}
	}
	if semantic {
		if s.EmbeddingModel == "" {
			bad("cache.semantic.embeddingModel: required when a model has mode semantic")
		} else if _, ok := models[s.EmbeddingModel]; !ok {
			bad("cache.semantic.embeddingModel %q: not in models", s.EmbeddingModel)
		}
	}
	return errs
}
