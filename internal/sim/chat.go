package sim

import (
	"encoding/json"
	"fmt"
)

// Azure's content-filter annotations for a harmless prompt and completion.
const (
	promptFilterJSON = `[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}}]`
	outputFilterJSON = `{"hate":{"filtered":false,"severity":"safe"},"protected_material_code":{"filtered":false,"detected":false},"protected_material_text":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}`
	maxChoices       = 128
)

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	Messages            []chatMessage   `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
	Tools               json.RawMessage `json:"tools"`
	Functions           json.RawMessage `json:"functions"`
}

type chatMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls json.RawMessage `json:"tool_calls"`
}

type completionRequest struct {
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int64          `json:"max_tokens"`
	N             *int            `json:"n"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
}

// completion is both a chat.completion / text_completion body and one
// chunk of their streams; the fields that differ are omitted when unset.
type completion struct {
	Choices             []completionChoice `json:"choices"`
	Created             int64              `json:"created"`
	ID                  string             `json:"id"`
	Model               string             `json:"model"`
	Object              string             `json:"object"`
	PromptFilterResults json.RawMessage    `json:"prompt_filter_results,omitempty"`
	SystemFingerprint   string             `json:"system_fingerprint,omitempty"`
	Usage               json.RawMessage    `json:"usage,omitempty"`
}

type completionChoice struct {
	ContentFilterResults json.RawMessage `json:"content_filter_results"`
	Delta                *chatDelta      `json:"delta,omitempty"`   // chat chunks
	Message              *chatReply      `json:"message,omitempty"` // chat bodies
	Text                 *string         `json:"text,omitempty"`    // legacy completions
	FinishReason         *string         `json:"finish_reason"`
	Index                int             `json:"index"`
	Logprobs             json.RawMessage `json:"logprobs"` // always null
}

type chatDelta struct {
	Content *string         `json:"content,omitempty"`
	Refusal json.RawMessage `json:"refusal,omitempty"`
	Role    string          `json:"role,omitempty"`
}

type chatReply struct {
	Annotations []any           `json:"annotations"`
	Content     string          `json:"content"`
	Refusal     json.RawMessage `json:"refusal"`
	Role        string          `json:"role"`
}

type chatUsage struct {
	CompletionTokens        int64 `json:"completion_tokens"`
	CompletionTokensDetails struct {
		AcceptedPredictionTokens int64 `json:"accepted_prediction_tokens"`
		AudioTokens              int64 `json:"audio_tokens"`
		ReasoningTokens          int64 `json:"reasoning_tokens"`
		RejectedPredictionTokens int64 `json:"rejected_prediction_tokens"`
	} `json:"completion_tokens_details"`
	PromptTokens        int64 `json:"prompt_tokens"`
	PromptTokensDetails struct {
		AudioTokens  int64 `json:"audio_tokens"`
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	TotalTokens int64 `json:"total_tokens"`
}

func (pl plan) chatUsage() json.RawMessage {
	var u chatUsage
	u.PromptTokens = pl.prompt
	u.PromptTokensDetails.CachedTokens = pl.cached
	u.CompletionTokens = pl.completion()
	u.CompletionTokensDetails.ReasoningTokens = pl.reasoning()
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	b, _ := json.Marshal(u) // cannot fail: plain integers
	return b
}

// chat serves /chat/completions.
func (c *call) chat() error {
	var req chatRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Messages == nil {
		return errMissing("messages")
	}
	if len(req.Messages) == 0 {
		return errInvalid("messages", "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	if c.d.reasoning && req.MaxTokens != nil {
		return errUnsupported("max_tokens", "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.")
	}
	limit, err := outputCap("max_completion_tokens", req.MaxCompletionTokens)
	if err != nil {
		return err
	}
	if limit == 0 {
		if limit, err = outputCap("max_tokens", req.MaxTokens); err != nil {
			return err
		}
	}
	n, err := choiceCount(req.N)
	if err != nil {
		return err
	}
	if err := c.checkStreamOptions(req.Stream, req.StreamOptions); err != nil {
		return err
	}
	p := newPrompt(c.d.Model)
	for i, m := range req.Messages {
		if m.Role == "" {
			return errMissing(fmt.Sprintf("messages.[%d].role", i))
		}
		if err := p.content(m.Role, m.Content); err != nil {
			return errInvalid(fmt.Sprintf("messages.[%d].content", i), err.Error())
		}
		p.raw(m.ToolCalls)
	}
	p.raw(req.Tools)
	p.raw(req.Functions)
	p.primeReply()
	pl := makePlan(p, c.d.reasoning, limit, n)
	if err := c.admit(c.estimate(pl, limit, n)); err != nil {
		return err
	}
	if req.Stream {
		return c.streamCompletion(pl, false, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
	}
	return c.completeOnce(pl, false)
}

// completions serves the legacy /completions: prompt is a string, an
// array of strings, an array of tokens or an array of token arrays; every
// prompt gets n choices.
func (c *call) completions() error {
	var req completionRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Prompt) == 0 || string(req.Prompt) == "null" {
		return errMissing("prompt")
	}
	limit, err := outputCap("max_tokens", req.MaxTokens)
	if err != nil {
		return err
	}
	n, err := choiceCount(req.N)
	if err != nil {
		return err
	}
	if err := c.checkStreamOptions(req.Stream, req.StreamOptions); err != nil {
		return err
	}
	p := newPrompt(c.d.Model)
	prompts, err := parseTextInput(req.Prompt, p.text, func(tokens []int64) {
		p.h.add(fmt.Sprint(tokens))
		p.tokens += int64(len(tokens))
	})
	if err != nil {
		return errInvalid("prompt", err.Error())
	}
	if n*prompts > maxChoices {
		return errInvalid("n", fmt.Sprintf("n times the number of prompts must be at most %d.", maxChoices))
	}
	pl := makePlan(p, false, limit, n*prompts)
	if err := c.admit(c.estimate(pl, limit, n*prompts)); err != nil {
		return err
	}
	if req.Stream {
		return c.streamCompletion(pl, true, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
	}
	return c.completeOnce(pl, true)
}

// estimate is what admission charges: Azure estimates prompt + the output
// cap (a default when none is set) for every choice; provisioned
// deployments do not charge cached prompt tokens.
func (c *call) estimate(pl plan, limit int64, n int) int64 {
	if limit == 0 {
		limit = defaultOutputCap
	}
	est := pl.prompt + limit*int64(n)
	if c.d.Provisioned {
		est -= pl.cached
	}
	return est
}

func outputCap(param string, v *int64) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 {
		return 0, errInvalid(param, fmt.Sprintf("Invalid '%s': integer below minimum value. Expected a value >= 1, but got %d instead.", param, *v))
	}
	return *v, nil
}

func choiceCount(v *int) (int, error) {
	if v == nil {
		return 1, nil
	}
	if *v < 1 || *v > maxChoices {
		return 0, errInvalid("n", fmt.Sprintf("Invalid 'n': expected a value within 1..%d, but got %d instead.", maxChoices, *v))
	}
	return *v, nil
}

// checkStreamOptions rejects stream_options on api-versions older than
// 2024-09-01-preview, as Azure does, so a gateway that injects
// include_usage into old-version calls fails its tests.
func (c *call) checkStreamOptions(stream bool, so *streamOptions) error {
	if so == nil {
		return nil
	}
	v := c.apiVersion
	if len(v) >= 10 && v[0] >= '0' && v[0] <= '9' && v[:10] < "2024-09-01" {
		return errUnsupported("stream_options", "Unrecognized request argument supplied: stream_options")
	}
	if !stream {
		return errInvalid("stream_options", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}
	return nil
}

func (c *call) completionHead(legacy bool) completion {
	out := completion{Created: c.now.Unix(), Model: c.d.Model, SystemFingerprint: c.d.fingerprint}
	if legacy {
		out.ID, out.Object = c.idWith("cmpl-"), "text_completion"
	} else {
		out.ID, out.Object = c.idWith("chatcmpl-"), "chat.completion"
	}
	return out
}

// completeOnce answers a non-streamed chat or legacy completion after the
// whole generation time.
func (c *call) completeOnce(pl plan, legacy bool) error {
	if err := sleep(c.ctx, c.pace.ttft+c.pace.tokens(pl.completion())); err != nil {
		return err
	}
	body := c.completionHead(legacy)
	body.PromptFilterResults = json.RawMessage(promptFilterJSON)
	body.Usage = pl.chatUsage()
	body.Choices = make([]completionChoice, len(pl.choices))
	for i, ch := range pl.choices {
		text := choiceText(ch)
		choice := completionChoice{ContentFilterResults: json.RawMessage(outputFilterJSON), FinishReason: &pl.choices[i].finish, Index: i}
		if legacy {
			choice.Text = &text
		} else {
			choice.Message = &chatReply{Annotations: []any{}, Content: text, Role: "assistant"}
		}
		body.Choices[i] = choice
	}
	return c.writeBody(body, pl.totals())
}

// streamCompletion streams a chat or legacy completion the way Azure does:
// a first event with prompt_filter_results and empty id/model, then (chat)
// a role chunk per choice, content chunks of a few tokens paced at the
// token rate, a finish chunk per choice, the usage chunk when asked for,
// and [DONE].
func (c *call) streamCompletion(pl plan, legacy, includeUsage bool) error {
	if err := sleep(c.ctx, c.pace.ttft+c.pace.tokens(pl.reasoning())); err != nil {
		return err
	}
	var usageNull json.RawMessage
	if includeUsage {
		usageNull = json.RawMessage("null")
	}
	sse := newSSEWriter(c.ctx, c.w, c.steer)
	sse.start()
	if err := sse.json("", completion{Choices: []completionChoice{}, PromptFilterResults: json.RawMessage(promptFilterJSON), Usage: usageNull}); err != nil {
		return err
	}
	head := c.completionHead(legacy)
	if !legacy {
		head.Object = "chat.completion.chunk"
	}
	head.Usage = usageNull
	chunk := func(ch completionChoice) completion {
		out := head
		out.Choices = []completionChoice{ch}
		return out
	}
	emptyFilter := json.RawMessage("{}")

	var total int // content chunks of all choices
	for _, ch := range pl.choices {
		total += int((ch.visible + tokensPerChunk - 1) / tokensPerChunk)
	}
	cutAt := total / 2
	sent := 0
	var buf []byte
	for i, ch := range pl.choices {
		if !legacy {
			empty := ""
			role := completionChoice{ContentFilterResults: emptyFilter, Index: i,
				Delta: &chatDelta{Content: &empty, Refusal: json.RawMessage("null"), Role: "assistant"}}
			if err := sse.json("", chunk(role)); err != nil {
				return err
			}
		}
		for from := int64(0); from < ch.visible; from += tokensPerChunk {
			if c.fault == faultCut && sent == cutAt {
				abort()
			}
			to := min(from+tokensPerChunk, ch.visible)
			if sent > 0 { // the first piece came with the time to first token
				if err := sleep(c.ctx, c.pace.tokens(to-from)); err != nil {
					return err
				}
			}
			buf = appendWords(buf[:0], ch.seed, from, to) // carries its leading space
			text := string(buf)
			piece := completionChoice{ContentFilterResults: json.RawMessage(outputFilterJSON), Index: i}
			if legacy {
				piece.Text = &text
			} else {
				piece.Delta = &chatDelta{Content: &text}
			}
			if err := sse.json("", chunk(piece)); err != nil {
				return err
			}
			sent++
		}
	}
	if c.fault == faultCut { // no content at all: cut before the finish
		abort()
	}
	for i := range pl.choices {
		fin := completionChoice{ContentFilterResults: emptyFilter, FinishReason: &pl.choices[i].finish, Index: i}
		if legacy {
			empty := ""
			fin.Text = &empty
		} else {
			fin.Delta = &chatDelta{}
		}
		if err := sse.json("", chunk(fin)); err != nil {
			return err
		}
	}
	if c.fault == faultCutBeforeUsage {
		abort()
	}
	c.record(pl.totals())
	if includeUsage {
		last := head
		last.Choices = []completionChoice{}
		last.Usage = pl.chatUsage()
		if err := sse.json("", last); err != nil {
			return err
		}
	}
	return sse.send("", []byte("[DONE]"))
}
