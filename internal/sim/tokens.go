package sim

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The token model. It is an approximation, not a tokenizer: what matters is
// that it is deterministic (the same request always reports the same usage,
// so tests can assert exact totals through the gateway) and plausible in
// size (so quota and rate-limit maths behave like production).
const (
	bytesPerToken      = 4    // ~4 bytes of English per BPE token
	tokensPerMessage   = 3    // role and separators of each chat message
	replyPrimingTokens = 3    // <|start|>assistant<|message|> of the reply
	imageTokens        = 85   // a low-detail image part
	defaultOutputCap   = 1000 // admission estimate when a request sets no output cap
	minCompletion      = 16   // generated visible tokens range over minCompletion..maxCompletion
	maxCompletion      = 200
	reasoningBlock     = 64   // reasoning models think 1..4 blocks of this many tokens
	cacheMinPrompt     = 1024 // Azure caches prompts from 1024 tokens on ...
	cacheBlock         = 128  // ... in blocks of 128
	tokensPerChunk     = 3    // tokens per streamed content piece
)

// textTokens is the token count of n bytes of text.
func textTokens(n int) int64 { return int64((n + bytesPerToken - 1) / bytesPerToken) }

// isReasoningModel reports whether model spends reasoning tokens and
// rejects max_tokens, as the o-series and gpt-5 models do on Azure.
func isReasoningModel(model string) bool {
	for _, p := range []string{"o1", "o3", "o4", "gpt-5"} {
		if strings.HasPrefix(model, p) {
			return true
		}
	}
	return false
}

// isEmbeddingModel reports whether model serves /embeddings only.
func isEmbeddingModel(model string) bool { return strings.Contains(model, "embedding") }

// prompt accumulates the token count and the hash seed of a request's
// input. The seed drives every generated value, so equal prompts give equal
// answers.
type prompt struct {
	tokens int64
	h      hasher
}

func newPrompt(model string) prompt {
	p := prompt{h: newHasher()}
	p.h.add(model)
	return p
}

// message adds one chat message with its overhead; extra is the tokens
// of its non-text parts.
func (p *prompt) message(role, text string, extra int64) {
	p.h.add(role)
	p.h.add(text)
	p.tokens += textTokens(len(text)) + extra + tokensPerMessage
}

// content adds a message whose content is raw JSON: a string or an array
// of parts.
func (p *prompt) content(role string, raw json.RawMessage) error {
	text, extra, err := contentText(raw)
	if err != nil {
		return err
	}
	p.message(role, text, extra)
	return nil
}

// primeReply adds the tokens that open the assistant's reply in a chat
// transcript; legacy completions have none.
func (p *prompt) primeReply() { p.tokens += replyPrimingTokens }

// text adds plain text with no message overhead (legacy prompts).
func (p *prompt) text(s string) {
	p.h.add(s)
	p.tokens += textTokens(len(s))
}

// raw adds a JSON value that is counted by size only (tools, function
// call items).
func (p *prompt) raw(b json.RawMessage) {
	if len(b) == 0 || string(b) == "null" {
		return
	}
	p.h.add(string(b))
	p.tokens += textTokens(len(b))
}

// contentText returns the text of a message content, which is a string or
// an array of parts, and the tokens of its non-text parts.
func contentText(raw json.RawMessage) (string, int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", 0, nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, 0, err
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", 0, fmt.Errorf("content must be a string or an array of parts")
	}
	var b strings.Builder
	var extra int64
	for _, part := range parts {
		var p struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(part, &p); err != nil {
			return "", 0, fmt.Errorf("content part must be an object")
		}
		switch {
		case p.Text != nil:
			b.WriteString(*p.Text)
		case p.Type == "image_url" || p.Type == "input_image":
			extra += imageTokens
		default:
			extra += textTokens(len(part))
		}
	}
	return b.String(), extra, nil
}

// choicePlan is what one generated choice will contain.
type choicePlan struct {
	seed      uint64
	visible   int64  // output tokens the client sees as text
	reasoning int64  // hidden reasoning tokens (part of completion tokens)
	finish    string // "stop" or "length"
}

// plan is the whole, precomputed answer to a generation request. Computing
// it before admission lets the rate limiter and the response agree.
type plan struct {
	prompt  int64
	cached  int64
	choices []choicePlan
}

// makePlan derives the answer from the prompt seed. limit is the output
// cap per choice (0 = none); when the cap is hit the reasoning is spent
// first, as on Azure, so a small cap can leave no visible text.
func makePlan(p prompt, reasoning bool, limit int64, n int) plan {
	pl := plan{prompt: max(p.tokens, 1), choices: make([]choicePlan, n)}
	if pl.prompt >= cacheMinPrompt {
		// Azure counts cached tokens inside prompt_tokens, in 128-token
		// blocks of the prefix; report the longest prefix below the prompt.
		pl.cached = (pl.prompt - 1) / cacheBlock * cacheBlock
	}
	seed := p.h.sum()
	for i := range pl.choices {
		s := mix(seed + uint64(i)*0x9e3779b97f4a7c15)
		c := choicePlan{seed: s, visible: minCompletion + int64(s%(maxCompletion-minCompletion+1)), finish: "stop"}
		if reasoning {
			c.reasoning = reasoningBlock * int64(1+(s>>32)%4)
		}
		if limit > 0 && c.visible+c.reasoning > limit {
			c.finish = "length"
			c.reasoning = min(c.reasoning, limit)
			c.visible = limit - c.reasoning
		}
		pl.choices[i] = c
	}
	return pl
}

func (pl plan) completion() int64 {
	var n int64
	for _, c := range pl.choices {
		n += c.visible + c.reasoning
	}
	return n
}

func (pl plan) reasoning() int64 {
	var n int64
	for _, c := range pl.choices {
		n += c.reasoning
	}
	return n
}

func (pl plan) totals() Totals {
	return Totals{
		Requests:         1,
		PromptTokens:     pl.prompt,
		CompletionTokens: pl.completion(),
		CachedTokens:     pl.cached,
		ReasoningTokens:  pl.reasoning(),
	}
}

// vocabulary is the word list generated text is drawn from; each word is
// one token.
var vocabulary = [...]string{
	"the", "gateway", "model", "answer", "token", "stream", "azure", "deployment",
	"quota", "request", "latency", "region", "capacity", "simulated", "response", "window",
	"of", "and", "to", "in", "is", "for", "with", "on",
	"a", "that", "this", "it", "as", "be", "are", "by",
	"data", "cloud", "limit", "usage", "client", "server", "event", "chunk",
	"retry", "backend", "route", "policy", "budget", "minute", "second", "header",
	"value", "result", "signal", "system", "prompt", "reply", "output", "input",
	"fast", "steady", "simple", "clear", "small", "large", "early", "late",
}

// appendWords appends tokens [from, to) of the text generated from seed.
// Token i depends only on (seed, i), so any split of the range into stream
// chunks concatenates to exactly the non-streamed text.
func appendWords(dst []byte, seed uint64, from, to int64) []byte {
	for i := from; i < to; i++ {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, vocabulary[mix(seed^uint64(i+1)*0xbf58476d1ce4e5b9)%uint64(len(vocabulary))]...)
	}
	return dst
}

// choiceText is the full visible text of a choice.
func choiceText(c choicePlan) string {
	return string(appendWords(make([]byte, 0, c.visible*8), c.seed, 0, c.visible))
}

// hasher is FNV-1a 64, fed field by field with a separator so that
// ("ab","c") and ("a","bc") differ.
type hasher uint64

func newHasher() hasher { return 14695981039346656037 }

func (h *hasher) add(s string) {
	x := uint64(*h)
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= 1099511628211
	}
	x ^= 0xff
	x *= 1099511628211
	*h = hasher(x)
}

func (h hasher) sum() uint64 { return mix(uint64(h)) }

// mix is the splitmix64 finalizer: a cheap, well-spread bijection.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
