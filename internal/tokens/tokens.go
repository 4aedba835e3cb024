package tokens

import (
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/foundry-gateway/gateway/internal/openai"
)

// Encoding names.
const (
	CL100K = "cl100k_base"
	O200K  = "o200k_base"
)

// Overheads of the chat format (OpenAI cookbook, "How to count tokens with
// tiktoken"): every message is wrapped in about 3 tokens, a name costs 1
// more, and the reply is primed with 3.
const (
	perMessage = 3
	perName    = 1
	perReply   = 3
	// perImage is charged for an image part: the low-detail price; a
	// high-detail image costs more, and settlement corrects it.
	perImage = 85
)

// MaxExactBytes bounds the text tokenized exactly per request. The rest is
// counted with the tokens-per-byte ratio of what was tokenized, and
// settlement corrects the estimate anyway.
const MaxExactBytes = 2 << 10

// Counter counts tokens. The zero value is not usable; use New. It is safe
// for concurrent use; each encoding is loaded on first use (see Warm).
type Counter struct {
	mu   sync.Mutex
	encs map[string]*encoding
}

type encoding struct {
	once sync.Once
	tk   *table // nil when loading failed: bytes/4 is used
}

// New returns a Counter with nothing loaded yet.
func New() *Counter {
	return &Counter{encs: map[string]*encoding{}}
}

// EncodingFor returns the encoding of a model family: o200k_base for gpt-4o*,
// o1*/o3*/o4*, gpt-4.1* and gpt-5*; cl100k_base for anything else (gpt-4,
// gpt-35-turbo, text-embedding-*). Azure deployment names are aliases, so
// this is a best guess on the name; the estimate is corrected at settlement.
func EncodingFor(model string) string {
	m := strings.ToLower(model)
	for _, p := range []string{"gpt-4o", "chatgpt-4o", "o1", "o3", "o4", "gpt-4.1", "gpt-5", "gpt-oss"} {
		if strings.HasPrefix(m, p) {
			return O200K
		}
	}
	return CL100K
}

// Warm loads the encodings now rather than on the first request (about
// 0.1 s each).
func (c *Counter) Warm() {
	c.enc(CL100K)
	c.enc(O200K)
}

func (c *Counter) enc(name string) *table {
	c.mu.Lock()
	e := c.encs[name]
	if e == nil {
		e = &encoding{}
		c.encs[name] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		defer func() { _ = recover() }() // never fail: a broken table means bytes/4
		tk, err := loadTable(name)
		if err == nil {
			e.tk = tk
		}
	})
	return e.tk
}

// Text counts the tokens of s with the encoding of model (exactly up to
// MaxExactBytes, extrapolated beyond).
func (c *Counter) Text(model, s string) int64 {
	b := budget{tk: c.enc(EncodingFor(model)), left: MaxExactBytes}
	return b.text(s)
}

// budget tokenizes exactly until left bytes were spent, then extrapolates
// with the tokens-per-byte ratio seen so far, so this bounds the CPU per
// request.
type budget struct {
	tk          *table
	left        int
	toks, bytes int64 // counted exactly so far
}

func (b *budget) text(s string) (n int64) {
	if s == "" {
		return 0
	}
	if b.tk == nil {
		return bytesQuarter(len(s))
	}
	defer func() {
		if recover() != nil {
			n = bytesQuarter(len(s))
		}
	}()
	cut := min(len(s), b.left)
	for cut > 0 && cut < len(s) && !isRuneStart(s[cut]) {
		cut--
	}
	if cut > 0 {
		k := int64(b.tk.countText(validUTF8(s[:cut])))
		b.left -= cut
		b.toks += k
		b.bytes += int64(cut)
		n = k
	}
	if rest := int64(len(s) - cut); rest > 0 {
		if b.bytes == 0 {
			n += bytesQuarter(int(rest))
		} else {
			n += (rest*b.toks + b.bytes - 1) / b.bytes
		}
	}
	return n
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func bytesQuarter(n int) int64 { return int64((n + 3) / 4) }

// Prompt estimates the input tokens of a request body for op and model.
// Chat: message contents (text parts, names, tool-call arguments) plus the
// chat overheads, plus tool definitions. Completions: the prompt(s).
// Embeddings: the input(s) only (token-array inputs count their length).
// Responses: instructions plus input items. A body it cannot read counts as
// len(body)/4. It never returns a negative number and never panics.
func (c *Counter) Prompt(op openai.Op, model string, body []byte) (n int64) {
	defer func() {
		if recover() != nil || n < 0 {
			n = bytesQuarter(len(body))
		}
	}()
	if op.Multipart() {
		return 0 // an uploaded file: its tokens are known only from the backend's usage
	}
	if !gjson.ValidBytes(body) {
		return bytesQuarter(len(body))
	}
	b := &budget{tk: c.enc(EncodingFor(model)), left: MaxExactBytes}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return bytesQuarter(len(body))
	}
	switch op {
	case openai.OpChat:
		msgs := root.Get("messages")
		if !msgs.IsArray() {
			return bytesQuarter(len(body))
		}
		n = perReply
		msgs.ForEach(func(_, m gjson.Result) bool {
			n += perMessage + b.text(m.Get("role").Str) + b.content(m.Get("content"))
			if name := m.Get("name"); name.Type == gjson.String {
				n += perName + b.text(name.Str)
			}
			m.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
				n += b.text(tc.Get("function.name").Str) + b.text(tc.Get("function.arguments").Str)
				return true
			})
			return true
		})
		if tools := root.Get("tools"); tools.Exists() {
			n += b.text(tools.Raw)
		}
		return n
	case openai.OpCompletions:
		return b.inputs(root.Get("prompt"), body)
	case openai.OpEmbeddings:
		return b.inputs(root.Get("input"), body)
	case openai.OpResponses:
		n = b.text(root.Get("instructions").Str)
		in := root.Get("input")
		if in.Type == gjson.String {
			return n + b.text(in.Str)
		}
		if !in.IsArray() {
			return n + bytesQuarter(len(in.Raw))
		}
		in.ForEach(func(_, item gjson.Result) bool {
			n += perMessage
			if ct := item.Get("content"); ct.Exists() {
				n += b.content(ct)
			} else {
				// function_call_output and similar items: count their text.
				n += b.text(item.Get("output").Str) + b.text(item.Get("arguments").Str)
			}
			return true
		})
		return n
	}
	return bytesQuarter(len(body))
}

// content counts a message content: a string, or an array of parts.
func (b *budget) content(v gjson.Result) int64 {
	switch {
	case v.Type == gjson.String:
		return b.text(v.Str)
	case v.IsArray():
		var n int64
		v.ForEach(func(_, p gjson.Result) bool {
			switch t := p.Get("type").Str; {
			case strings.Contains(t, "image"):
				n += perImage
			case p.Get("text").Type == gjson.String:
				n += b.text(p.Get("text").Str)
			default:
				n += bytesQuarter(len(p.Raw))
			}
			return true
		})
		return n
	case !v.Exists() || v.Type == gjson.Null:
		return 0
	}
	return bytesQuarter(len(v.Raw))
}

// inputs counts a prompt / embeddings input: a string, an array of strings,
// an array of token ids, or an array of token-id arrays.
func (b *budget) inputs(v gjson.Result, body []byte) int64 {
	switch {
	case v.Type == gjson.String:
		return b.text(v.Str)
	case v.IsArray():
		var n int64
		v.ForEach(func(_, e gjson.Result) bool {
			switch {
			case e.Type == gjson.String:
				n += b.text(e.Str)
			case e.Type == gjson.Number:
				n++ // one token id
			case e.IsArray():
				n += int64(len(e.Array()))
			default:
				n += bytesQuarter(len(e.Raw))
			}
			return true
		})
		return n
	}
	return bytesQuarter(len(body))
}
