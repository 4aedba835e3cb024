package usage

// Usage is the token count of one call. Reported is false when the backend
// said nothing about usage (for example a stream cut before its usage chunk),
// which is different from a call that used zero tokens.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// CachedTokens is part of PromptTokens (Azure counts cached prompt tokens
	// inside prompt_tokens), not on top of it.
	CachedTokens int64 `json:"cached_tokens"`
	// ReasoningTokens is part of CompletionTokens.
	ReasoningTokens int64 `json:"reasoning_tokens"`
	TotalTokens     int64 `json:"total_tokens"`
	Reported        bool  `json:"reported"`
}

// Kind is the API family of a call; it decides where usage is found.
type Kind string

const (
	KindChat        Kind = "chat"        // /chat/completions
	KindCompletions Kind = "completions" // legacy /completions
	KindEmbeddings  Kind = "embeddings"  // /embeddings
	KindResponses   Kind = "responses"   // /responses
)
