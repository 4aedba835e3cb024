package openai

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/foundry-gateway/gateway/internal/jsonkey"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// Op is an inference operation, named by its path suffix.
type Op string

// Operations the gateway proxies.
const (
	OpChat        Op = "chat/completions"
	OpCompletions Op = "completions"
	OpEmbeddings  Op = "embeddings"
	OpResponses   Op = "responses"
	// Media operations: passed through, with usage where the backend
	// reports it (gpt-image-1 and gpt-4o-transcribe do, as input_tokens /
	// output_tokens; dall-e, whisper and speech do not).
	OpImages         Op = "images/generations"
	OpSpeech         Op = "audio/speech"
	OpTranscriptions Op = "audio/transcriptions"
)

// Media reports an image or audio operation: no output-token caps, no
// async jobs, admission counts the prompt only.
func (o Op) Media() bool { return o == OpImages || o == OpSpeech || o == OpTranscriptions }

// Multipart reports an operation whose body is multipart/form-data (an
// uploaded file) rather than JSON.
func (o Op) Multipart() bool { return o == OpTranscriptions }

// Kind returns the usage family of the operation.
func (o Op) Kind() usage.Kind {
	switch o {
	case OpChat:
		return usage.KindChat
	case OpCompletions:
		return usage.KindCompletions
	case OpEmbeddings:
		return usage.KindEmbeddings
	default:
		return usage.KindResponses
	}
}

// Style is how the client addressed the model.
type Style int

const (
	// StyleV1 is /openai/v1/{op} or /v1/{op}: model in the body.
	StyleV1 Style = iota
	// StyleDeployment is /openai/deployments/{d}/{op}?api-version=: model in the path.
	StyleDeployment
	// StyleAzure is /openai/{op}?api-version=: model in the body, the path
	// the Azure SDKs use for the Responses API
	// (AzureOpenAI().responses.create).
	StyleAzure
)

// Request is what the gateway needs to know about a client's inference call.
type Request struct {
	Op    Op
	Style Style
	// Model is the alias: the body's model (v1) or the path's deployment.
	Model string
	// APIVersion is the api-version query parameter ("" if absent).
	APIVersion string
	Stream     bool
	// IncludeUsage is the client's own stream_options.include_usage.
	IncludeUsage bool
	// MaxOutput is max_completion_tokens, max_tokens or max_output_tokens (0 if absent).
	MaxOutput int64
	// N is the number of choices requested (1 if absent).
	N int64
	// PreviousResponseID of a Responses API call continuing a conversation.
	PreviousResponseID string
	// ContentType is the multipart/form-data content type (with its
	// boundary) of a Multipart operation's body; "" for JSON bodies.
	ContentType string
}

// Errors from Parse, wrapped with details.
var (
	ErrMalformed = errors.New("malformed request body")
	ErrMissing   = errors.New("missing required field")
)

// Parse reads the fields the gateway needs from body. model is the
// deployment from the path for StyleDeployment, ignored for StyleV1.
func Parse(op Op, style Style, pathModel, apiVersion string, body []byte) (Request, error) {
	if !gjson.ValidBytes(body) {
		return Request{}, fmt.Errorf("%w: the body is not valid JSON", ErrMalformed)
	}
	// JSON text is UTF-8 (RFC 8259 §8.1). gjson passes invalid bytes through
	// while a backend's decoder turns them into U+FFFD, so the gateway would
	// check one model (or response id) and the backend read another.
	if !utf8.Valid(body) {
		return Request{}, fmt.Errorf("%w: the body is not valid UTF-8", ErrMalformed)
	}
	// gjson reads the first of two equal keys, the backend the last: a
	// repeated key would let `{"max_tokens":5,"max_tokens":500}` pass the
	// caps as 5 (issue #16). Refuse it before reading any field.
	if err := jsonkey.Check(body); err != nil {
		return Request{}, fmt.Errorf("%w: %w; send each key once", ErrMalformed, err)
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return Request{}, fmt.Errorf("%w: the body must be a JSON object", ErrMalformed)
	}
	// One pass over the top-level keys (issue 17: a Get per field scanned
	// the messages once per field). Keys are unique (jsonkey.Check above).
	r := Request{Op: op, Style: style, APIVersion: apiVersion, N: 1}
	var model, messages, prompt, input gjson.Result
	var maxOut [3]gjson.Result // max_completion_tokens, max_tokens, max_output_tokens: in this order of precedence
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "messages":
			messages = v
		case "prompt":
			prompt = v
		case "input":
			input = v
		case "stream":
			r.Stream = v.Bool()
		case "stream_options":
			r.IncludeUsage = v.Get("include_usage").Bool()
		case "max_completion_tokens":
			maxOut[0] = v
		case "max_tokens":
			maxOut[1] = v
		case "max_output_tokens":
			maxOut[2] = v
		case "n":
			if v.Type == gjson.Number {
				r.N = v.Int()
			}
		case "previous_response_id":
			r.PreviousResponseID = v.Str
		}
		return true
	})
	if style == StyleDeployment {
		r.Model = pathModel
	} else {
		if model.Type != gjson.String || model.Str == "" {
			return Request{}, fmt.Errorf("%w: model", ErrMissing)
		}
		r.Model = model.Str
	}
	switch op {
	case OpChat:
		if !messages.IsArray() {
			return Request{}, fmt.Errorf("%w: messages", ErrMissing)
		}
	case OpCompletions:
		if !prompt.Exists() {
			return Request{}, fmt.Errorf("%w: prompt", ErrMissing)
		}
	case OpEmbeddings, OpResponses, OpSpeech:
		if !input.Exists() {
			return Request{}, fmt.Errorf("%w: input", ErrMissing)
		}
	case OpImages:
		if !prompt.Exists() {
			return Request{}, fmt.Errorf("%w: prompt", ErrMissing)
		}
	}
	for _, v := range maxOut {
		if v.Exists() && v.Type == gjson.Number {
			r.MaxOutput = v.Int()
			break
		}
	}
	return r, nil
}

// CanIncludeUsage reports whether stream_options.include_usage may be sent
// for this api-version: v1 (or none, as on /openai/v1), and dated versions
// from 2024-09-01-preview on. Older versions answer 400 to the field.
func CanIncludeUsage(apiVersion string) bool {
	switch {
	case apiVersion == "" || apiVersion == "v1" || apiVersion == "preview" || apiVersion == "latest":
		return true
	case len(apiVersion) >= 10 && apiVersion[4] == '-':
		return apiVersion[:10] >= "2024-09-01"
	}
	return false
}

// NeedsUsageInjection reports whether the gateway must add
// stream_options.include_usage to learn this stream's usage.
func (r Request) NeedsUsageInjection() bool {
	return r.Stream && !r.IncludeUsage && (r.Op == OpChat || r.Op == OpCompletions) && CanIncludeUsage(r.APIVersion)
}

// InjectIncludeUsage returns body with stream_options.include_usage = true.
func InjectIncludeUsage(body []byte) ([]byte, error) {
	return sjson.SetBytes(body, "stream_options.include_usage", true)
}

// SetModel returns body with "model" replaced.
func SetModel(body []byte, model string) ([]byte, error) {
	return sjson.SetBytes(body, "model", model)
}

// ParseOp maps a path suffix after /v1/ or /deployments/{d}/ to an Op.
func ParseOp(suffix string) (Op, bool) {
	switch Op(strings.Trim(suffix, "/")) {
	case OpChat:
		return OpChat, true
	case OpCompletions:
		return OpCompletions, true
	case OpEmbeddings:
		return OpEmbeddings, true
	case OpResponses:
		return OpResponses, true
	case OpImages, OpSpeech, OpTranscriptions:
		return Op(strings.Trim(suffix, "/")), true
	}
	return "", false
}
