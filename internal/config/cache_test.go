package config

import (
	"strings"
	"testing"
)

func TestCacheConfig(t *testing.T) {
	models := map[string]Model{"gpt": {}, "embed": {}}
	base := func() CacheConfig {
		c := CacheConfig{Models: map[string]CacheModel{"gpt": {}}}
		c.applyDefaults()
		return c
	}
	if c := base(); c.Models["gpt"].Mode != CacheExact || c.Partition != CachePartitionTeam || c.TTL.D().Hours() != 1 ||
		c.MaxEntryBytes != 256<<10 || c.Semantic.ScoreThreshold != 0.2 || c.Semantic.IndexEntries != 2000 || !c.Enabled() {
		t.Errorf("defaults: %+v", c)
	}
	if (&CacheConfig{}).Enabled() {
		t.Error("an empty cache config is enabled")
	}
	tests := []struct {
		name string
		edit func(c *CacheConfig)
		want string // "" = valid
	}{
		{"valid exact", func(c *CacheConfig) {}, ""},
		{"valid semantic", func(c *CacheConfig) {
			c.Models["gpt"] = CacheModel{Mode: CacheSemantic}
			c.Semantic.EmbeddingModel = "embed"
		}, ""},
		{"unknown alias", func(c *CacheConfig) { c.Models["nope"] = CacheModel{Mode: CacheExact} }, "cache.models.nope: not in models"},
		{"bad mode", func(c *CacheConfig) { c.Models["gpt"] = CacheModel{Mode: "fuzzy"} }, "want exact or semantic"},
		{"semantic without embedding", func(c *CacheConfig) { c.Models["gpt"] = CacheModel{Mode: CacheSemantic} }, "embeddingModel: required"},
		{"embedding not a model", func(c *CacheConfig) {
			c.Models["gpt"] = CacheModel{Mode: CacheSemantic}
			c.Semantic.EmbeddingModel = "nope"
		}, `embeddingModel "nope": not in models`},
		{"partition", func(c *CacheConfig) { c.Partition = "everyone" }, "want team, key or global"},
		{"threshold", func(c *CacheConfig) { c.Semantic.ScoreThreshold = 1.5 }, "scoreThreshold"},
		{"entry too big", func(c *CacheConfig) { c.MaxEntryBytes = 2 << 20 }, "maxEntryBytes"},
		{"cost fraction", func(c *CacheConfig) { c.CostFraction = -0.1 }, "costFraction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			errs := c.validate(models)
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			got := strings.Join(msgs, "; ")
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
