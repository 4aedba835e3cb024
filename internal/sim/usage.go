package sim

import (
	"maps"
	"sync"
)

// Totals is the usage the simulator served to one deployment. It is the
// ground truth that gateway accounting is checked against.
type Totals struct {
	Requests         int64 `json:"requests"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// CachedTokens is part of PromptTokens, as Azure reports it.
	CachedTokens int64 `json:"cached_tokens"`
	// ReasoningTokens is part of CompletionTokens.
	ReasoningTokens int64 `json:"reasoning_tokens"`
}

func (t *Totals) add(o Totals) {
	t.Requests += o.Requests
	t.PromptTokens += o.PromptTokens
	t.CompletionTokens += o.CompletionTokens
	t.CachedTokens += o.CachedTokens
	t.ReasoningTokens += o.ReasoningTokens
}

// ledger records served usage per deployment name. Safe for concurrent use.
type ledger struct {
	mu sync.Mutex
	m  map[string]Totals
}

func (l *ledger) add(deployment string, t Totals) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]Totals)
	}
	cur := l.m[deployment]
	cur.add(t)
	l.m[deployment] = cur
}

func (l *ledger) snapshot() map[string]Totals {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]Totals, len(l.m))
	maps.Copy(out, l.m)
	return out
}

func (l *ledger) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m = nil
}
