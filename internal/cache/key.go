package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"github.com/foundry-gateway/gateway/internal/openai"
)

// nonSemantic are the body fields that do not change the answer: how it is
// delivered (stream, stream_options), who asked (user, safety_identifier,
// metadata) and provider-side hints (prompt_cache_key, service_tier); the
// alias is in the key apart. They are left out of the key, so a streamed
// and a whole request share an entry. store stays in: a Responses answer
// made with store: false has an id the backend does not keep.
var nonSemantic = []string{"stream", "stream_options", "user", "safety_identifier", "metadata",
	"prompt_cache_key", "service_tier", "model"}

// prompt fields hold the prompt itself: a semantic lookup compares them by
// embedding, so they are left out of the variant (what must be equal).
var promptFields = map[openai.Op][]string{
	openai.OpChat:        {"messages"},
	openai.OpCompletions: {"prompt"},
	openai.OpResponses:   {"input"},
}

// ErrNotJSON: the body is not a JSON object.
var ErrNotJSON = errors.New("cache: body is not a JSON object")

// canonical parses a JSON object body and returns it with the
// non-semantic fields removed.
func canonical(body []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber() // keep numbers exactly as sent
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, ErrNotJSON
	}
	for _, k := range nonSemantic {
		delete(m, k)
	}
	return m, nil
}

// hashOf hashes parts, each length-prefixed so that no two different
// lists hash alike. encoding/json writes map keys sorted, which is what
// makes the canonical body canonical.
func hashOf(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		var b []byte
		switch v := p.(type) {
		case string:
			b = []byte(v)
		default:
			b, _ = json.Marshal(v)
		}
		var n [8]byte
		for i, l := 0, len(b); i < 8; i, l = i+1, l>>8 {
			n[i] = byte(l)
		}
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// request is what the cache reads from a call body.
type request struct {
	key     string // exact key: partition, model, op, api-version, canonical body
	variant string // semantic variant: the same without the prompt
	text    string // the prompt text to embed ("" when there is none)
	// semantic is false when the request may only be served exactly (see
	// Semantic config: tools, sampling).
	semantic bool
	why      string // why not semantic
}

// parse reads a call body for the cache.
func parse(partition string, req openai.Request, body []byte, s semanticRules) (request, error) {
	m, err := canonical(body)
	if err != nil {
		return request{}, err
	}
	var r request
	r.key = hashOf("exact", partition, req.Model, string(req.Op), req.APIVersion, m)
	fields := promptFields[req.Op]
	if fields == nil {
		return r, nil
	}
	rest := make(map[string]any, len(m))
	for k, v := range m {
		rest[k] = v
	}
	var sys []string
	for _, f := range fields {
		r.text, sys = promptText(req.Op, m[f], s.ignoreSystem)
		delete(rest, f)
	}
	if req.Op == openai.OpResponses && s.ignoreSystem {
		delete(rest, "instructions") // kept in the variant below
		sys = append(sys, str(m["instructions"]))
	} else if req.Op == openai.OpResponses {
		if in := str(m["instructions"]); in != "" {
			r.text = in + "\n" + r.text
		}
	}
	r.variant = hashOf("semantic", partition, req.Model, string(req.Op), req.APIVersion, rest, sys)
	r.semantic, r.why = r.text != "", "no prompt text"
	if !r.semantic {
		return r, nil
	}
	if !s.allowTools {
		for _, k := range []string{"tools", "functions", "tool_choice", "function_call"} {
			if _, ok := m[k]; ok {
				r.semantic, r.why = false, "tools"
				return r, nil
			}
		}
	}
	if !s.allowSampling && sampling(m) {
		r.semantic, r.why = false, "sampling"
	}
	return r, nil
}

// sampling reports parameters that ask for varied answers: temperature or
// top_p above 0 (absent means the caller did not ask), n or best_of above
// 1, logprobs.
func sampling(m map[string]any) bool {
	pos := func(k string) bool {
		n, ok := m[k].(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f > 0
	}
	above1 := func(k string) bool {
		n, ok := m[k].(json.Number)
		if !ok {
			return false
		}
		f, err := n.Float64()
		return err == nil && f > 1
	}
	lp, _ := m["logprobs"].(bool)
	_, tlp := m["top_logprobs"]
	return pos("temperature") || pos("top_p") || above1("n") || above1("best_of") || lp || tlp
}

func str(v any) string { s, _ := v.(string); return s }

// promptText is the text of a prompt (messages, prompt or input): every
// text part, one per line, prefixed with its role. System and developer
// messages go to sys instead when ignoreSystem is set.
func promptText(op openai.Op, v any, ignoreSystem bool) (text string, sys []string) {
	var b strings.Builder
	add := func(role string, content any) {
		t := contentText(content)
		if t == "" {
			return
		}
		if ignoreSystem && (role == "system" || role == "developer") {
			sys = append(sys, t)
			return
		}
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		if role != "" && role != "user" {
			b.WriteString(role + ": ")
		}
		b.WriteString(t)
	}
	switch x := v.(type) {
	case string:
		add("", x)
	case []any:
		for _, it := range x {
			switch y := it.(type) {
			case string: // a completions prompt list
				add("", y)
			case map[string]any:
				add(str(y["role"]), y["content"])
			}
		}
	}
	return b.String(), sys
}

// contentText is the text of a message content: a string, or the text of
// its text parts (input_text, output_text, text).
func contentText(c any) string {
	switch x := c.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, it := range x {
			if p, ok := it.(map[string]any); ok {
				if t := str(p["text"]); t != "" {
					parts = append(parts, t)
				}
			}
		}
		return strings.Join(parts, " ")
	}
	return ""
}
