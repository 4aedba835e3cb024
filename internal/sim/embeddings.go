package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// maxEmbeddingInputs is OpenAI's limit on inputs per embeddings call.
const maxEmbeddingInputs = 2048

type embeddingsRequest struct {
	Input          json.RawMessage `json:"input"`
	Dimensions     *int            `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
}

type embeddingList struct {
	Object string          `json:"object"`
	Data   []embeddingItem `json:"data"`
	Model  string          `json:"model"`
	Usage  struct {
		PromptTokens int64 `json:"prompt_tokens"`
		TotalTokens  int64 `json:"total_tokens"`
	} `json:"usage"`
}

type embeddingItem struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string
}

// embeddings serves /embeddings. Vectors are unit length and derived from
// hashes of the model and the input (its content words for text, see
// semantic.go), so equal inputs embed equally, paraphrases closely, and a
// shorter `dimensions` is a renormalised prefix of a longer one.
func (c *call) embeddings() error {
	var req embeddingsRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if len(req.Input) == 0 || string(req.Input) == "null" {
		return errMissing("input")
	}
	dims := c.d.EmbeddingDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxEmbeddingDims {
			return errInvalid("dimensions", fmt.Sprintf("Invalid 'dimensions': expected a value within 1..%d, but got %d instead.", maxEmbeddingDims, *req.Dimensions))
		}
		dims = *req.Dimensions
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return errInvalid("encoding_format", fmt.Sprintf("Invalid 'encoding_format': expected 'float' or 'base64', got %q.", req.EncodingFormat))
	}
	var (
		vecs   []func() []float32
		tokens int64
		empty  bool
	)
	onText := func(s string) {
		// Text embeds as a bag of words (semantic.go): paraphrases close,
		// unrelated texts far.
		empty = empty || s == ""
		vecs = append(vecs, func() []float32 { return textVector(c.d.Model, s, dims) })
		tokens += textTokens(len(s))
	}
	onTokens := func(t []int64) {
		empty = empty || len(t) == 0
		h := newHasher()
		h.add(c.d.Model)
		h.add(fmt.Sprint(t))
		seed := h.sum()
		vecs = append(vecs, func() []float32 { return vector(seed, dims) })
		tokens += int64(len(t))
	}
	n, err := parseTextInput(req.Input, onText, onTokens)
	switch {
	case err != nil:
		return errInvalid("input", err.Error())
	case empty:
		return errInvalid("input", "'$.input' is invalid: inputs must not be empty.")
	case n > maxEmbeddingInputs:
		return errInvalid("input", fmt.Sprintf("Too many inputs: at most %d inputs are allowed per request.", maxEmbeddingInputs))
	}
	if err := c.admit(tokens); err != nil {
		return err
	}
	if err := sleep(c.ctx, c.d.Latency.EmbeddingLatency.D()); err != nil {
		return err
	}
	out := embeddingList{Object: "list", Model: c.d.Model, Data: make([]embeddingItem, len(vecs))}
	out.Usage.PromptTokens, out.Usage.TotalTokens = tokens, tokens
	for i, mk := range vecs {
		v := mk()
		item := embeddingItem{Object: "embedding", Index: i, Embedding: v}
		if req.EncodingFormat == "base64" {
			item.Embedding = encodeVector(v)
		}
		out.Data[i] = item
	}
	return c.writeBody(out, Totals{Requests: 1, PromptTokens: tokens})
}

// vector is a deterministic unit vector of dims float32 values.
func vector(seed uint64, dims int) []float32 {
	v := make([]float32, dims)
	var norm float64
	x := seed
	for i := range v {
		x += 0x9e3779b97f4a7c15
		f := float64(mix(x)>>11)/(1<<53)*2 - 1
		v[i] = float32(f)
		norm += f * f
	}
	scale := float32(1 / math.Sqrt(norm))
	for i := range v {
		v[i] *= scale
	}
	return v
}

// encodeVector is OpenAI's base64 encoding: little-endian float32s.
func encodeVector(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// parseTextInput walks an OpenAI text input: a string, an array of
// strings, an array of token ids, or an array of token-id arrays. It calls
// onText or onTokens once per input and returns how many there were.
func parseTextInput(raw json.RawMessage, onText func(string), onTokens func([]int64)) (int, error) {
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		onText(s)
		return 1, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return 0, errors.New("expected a string, an array of strings, or an array of token arrays")
	}
	if len(items) == 0 {
		return 0, errors.New("expected a non-empty array")
	}
	switch items[0][0] {
	case '"':
		for i, it := range items {
			var s string
			if err := json.Unmarshal(it, &s); err != nil {
				return 0, fmt.Errorf("item %d: expected a string", i)
			}
			onText(s)
		}
		return len(items), nil
	case '[':
		for i, it := range items {
			var t []int64
			if err := json.Unmarshal(it, &t); err != nil {
				return 0, fmt.Errorf("item %d: expected an array of token ids", i)
			}
			onTokens(t)
		}
		return len(items), nil
	default:
		t := make([]int64, len(items))
		for i, it := range items {
			v, err := strconv.ParseInt(string(it), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("item %d: expected a token id", i)
			}
			t[i] = v
		}
		onTokens(t)
		return 1, nil
	}
}
