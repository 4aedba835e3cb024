package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/foundry-gateway/gateway/internal/openai"
	"github.com/foundry-gateway/gateway/internal/usage"
)

// errIncomplete: a stream did not end the way a complete answer ends.
var errIncomplete = errors.New("cache: stream is not a complete answer")

// sseEvents splits an SSE body into the data of its events.
func sseEvents(b []byte) [][]byte {
	var out [][]byte
	var data []byte
	flush := func() {
		if data != nil {
			out = append(out, data)
			data = nil
		}
	}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			flush()
			continue
		}
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			d = bytes.TrimPrefix(d, []byte(" "))
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
	flush()
	return out
}

// usageJSON is the usage object of a chat or completions answer.
func usageJSON(u usage.Usage) map[string]any {
	total := u.TotalTokens
	if total == 0 {
		total = u.PromptTokens + u.CompletionTokens
	}
	return map[string]any{"prompt_tokens": u.PromptTokens, "completion_tokens": u.CompletionTokens, "total_tokens": total,
		"prompt_tokens_details":     map[string]any{"cached_tokens": u.CachedTokens},
		"completion_tokens_details": map[string]any{"reasoning_tokens": u.ReasoningTokens}}
}

// assemble turns the SSE stream a client received into the whole (JSON)
// answer the same request gets without stream, so that one entry serves
// both. It refuses a stream that did not end with its terminator.
func assemble(op openai.Op, stream []byte, u usage.Usage) ([]byte, error) {
	events := sseEvents(stream)
	switch op {
	case openai.OpResponses:
		for _, e := range events {
			var ev struct {
				Type     string          `json:"type"`
				Response json.RawMessage `json:"response"`
			}
			if json.Unmarshal(e, &ev) == nil && ev.Type == "response.completed" && len(ev.Response) > 0 {
				return ev.Response, nil
			}
		}
		return nil, errIncomplete
	case openai.OpChat, openai.OpCompletions:
		return assembleChoices(op, events, u)
	}
	return nil, fmt.Errorf("cache: cannot assemble a %s stream", op)
}

type toolCall struct {
	ID, Type, Name string
	Args           strings.Builder
}

type choiceAcc struct {
	role, finish     string
	content, refusal strings.Builder
	tools            map[int]*toolCall
}

// assembleChoices rebuilds a chat.completion or text_completion from its
// chunks.
func assembleChoices(op openai.Op, events [][]byte, u usage.Usage) ([]byte, error) {
	if len(events) == 0 || string(events[len(events)-1]) != "[DONE]" {
		return nil, errIncomplete
	}
	var id, model, fingerprint string
	var created int64
	choices := map[int]*choiceAcc{}
	for _, e := range events[:len(events)-1] {
		var ch struct {
			ID                string `json:"id"`
			Created           int64  `json:"created"`
			Model             string `json:"model"`
			SystemFingerprint string `json:"system_fingerprint"`
			Choices           []struct {
				Index        int     `json:"index"`
				Text         string  `json:"text"`
				FinishReason *string `json:"finish_reason"`
				Delta        struct {
					Role      string  `json:"role"`
					Content   *string `json:"content"`
					Refusal   *string `json:"refusal"`
					ToolCalls []struct {
						Index    int    `json:"index"`
						ID       string `json:"id"`
						Type     string `json:"type"`
						Function struct {
							Name      string `json:"name"`
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(e, &ch); err != nil {
			return nil, fmt.Errorf("cache: stream chunk: %w", err)
		}
		id, model = cmp(ch.ID, id), cmp(ch.Model, model)
		fingerprint = cmp(ch.SystemFingerprint, fingerprint)
		if ch.Created != 0 {
			created = ch.Created
		}
		for _, c := range ch.Choices {
			a := choices[c.Index]
			if a == nil {
				a = &choiceAcc{tools: map[int]*toolCall{}}
				choices[c.Index] = a
			}
			a.content.WriteString(c.Text)
			if d := c.Delta; true {
				a.role = cmp(d.Role, a.role)
				if d.Content != nil {
					a.content.WriteString(*d.Content)
				}
				if d.Refusal != nil {
					a.refusal.WriteString(*d.Refusal)
				}
				for _, t := range d.ToolCalls {
					tc := a.tools[t.Index]
					if tc == nil {
						tc = &toolCall{}
						a.tools[t.Index] = tc
					}
					tc.ID, tc.Type, tc.Name = cmp(t.ID, tc.ID), cmp(t.Type, tc.Type), cmp(t.Function.Name, tc.Name)
					tc.Args.WriteString(t.Function.Arguments)
				}
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				a.finish = *c.FinishReason
			}
		}
	}
	idx := make([]int, 0, len(choices))
	for i, a := range choices {
		if a.finish == "" {
			return nil, errIncomplete // a choice without its end
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := map[string]any{"id": id, "created": created, "model": model, "usage": usageJSON(u)}
	if fingerprint != "" {
		out["system_fingerprint"] = fingerprint
	}
	list := make([]any, 0, len(idx))
	for _, i := range idx {
		a := choices[i]
		if op == openai.OpCompletions {
			list = append(list, map[string]any{"index": i, "text": a.content.String(), "logprobs": nil, "finish_reason": a.finish})
			continue
		}
		msg := map[string]any{"role": cmp(a.role, "assistant"), "content": nil, "refusal": nil}
		if a.content.Len() > 0 || len(a.tools) == 0 && a.refusal.Len() == 0 {
			msg["content"] = a.content.String()
		}
		if a.refusal.Len() > 0 {
			msg["refusal"] = a.refusal.String()
		}
		if len(a.tools) > 0 {
			ti := make([]int, 0, len(a.tools))
			for k := range a.tools {
				ti = append(ti, k)
			}
			sort.Ints(ti)
			var calls []any
			for _, k := range ti {
				t := a.tools[k]
				calls = append(calls, map[string]any{"id": t.ID, "type": cmp(t.Type, "function"),
					"function": map[string]any{"name": t.Name, "arguments": t.Args.String()}})
			}
			msg["tool_calls"] = calls
		}
		list = append(list, map[string]any{"index": i, "message": msg, "logprobs": nil, "finish_reason": a.finish})
	}
	out["choices"] = list
	if op == openai.OpCompletions {
		out["object"] = "text_completion"
	} else {
		out["object"] = "chat.completion"
	}
	return json.Marshal(out)
}

// cmp is a if set, else b.
func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// replay writes a stored whole answer as the SSE stream the same request
// gets with stream: true. includeUsage adds the usage chunk of
// stream_options.include_usage (chat and completions; the Responses API
// always carries usage in response.completed).
func replay(w io.Writer, op openai.Op, body []byte, includeUsage bool) error {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return fmt.Errorf("cache: stored body: %w", err)
	}
	ew := &eventWriter{w: w}
	switch op {
	case openai.OpResponses:
		replayResponse(ew, m)
	case openai.OpChat, openai.OpCompletions:
		replayChoices(ew, op, m, includeUsage)
	default:
		return fmt.Errorf("cache: %s cannot be streamed", op)
	}
	return ew.err
}

// eventWriter writes SSE events, keeping the first error.
type eventWriter struct {
	w   io.Writer
	err error
	seq int
}

func (e *eventWriter) event(name string, v any) {
	if e.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	var buf bytes.Buffer
	if name != "" {
		buf.WriteString("event: " + name + "\n")
	}
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	_, e.err = e.w.Write(buf.Bytes())
}

func (e *eventWriter) done() {
	if e.err == nil {
		_, e.err = io.WriteString(e.w, "data: [DONE]\n\n")
	}
}

// replayChoices streams a chat.completion as chat.completion.chunk events
// (or a text_completion as its chunks): per choice the role, the content,
// refusal and tool calls, then the finish reason; then the usage chunk
// when asked for, and [DONE].
func replayChoices(ew *eventWriter, op openai.Op, m map[string]any, includeUsage bool) {
	object := "chat.completion.chunk"
	if op == openai.OpCompletions {
		object = "text_completion"
	}
	chunk := func(choices []any) map[string]any {
		c := map[string]any{"id": m["id"], "object": object, "created": m["created"], "model": m["model"], "choices": choices}
		if fp, ok := m["system_fingerprint"]; ok {
			c["system_fingerprint"] = fp
		}
		if includeUsage {
			c["usage"] = nil
		}
		return c
	}
	choices, _ := m["choices"].([]any)
	for _, x := range choices {
		ch, _ := x.(map[string]any)
		idx := ch["index"]
		if op == openai.OpCompletions {
			ew.event("", chunk([]any{map[string]any{"index": idx, "text": ch["text"], "logprobs": nil, "finish_reason": nil}}))
			ew.event("", chunk([]any{map[string]any{"index": idx, "text": "", "logprobs": nil, "finish_reason": ch["finish_reason"]}}))
			continue
		}
		msg, _ := ch["message"].(map[string]any)
		delta := func(d map[string]any, finish any) {
			ew.event("", chunk([]any{map[string]any{"index": idx, "delta": d, "logprobs": nil, "finish_reason": finish}}))
		}
		delta(map[string]any{"role": cmpAny(msg["role"], "assistant"), "content": "", "refusal": nil}, nil)
		if s, _ := msg["content"].(string); s != "" {
			for _, part := range pieces(s) {
				delta(map[string]any{"content": part}, nil)
			}
		}
		if s, _ := msg["refusal"].(string); s != "" {
			delta(map[string]any{"refusal": s}, nil)
		}
		if calls, _ := msg["tool_calls"].([]any); len(calls) > 0 {
			var tc []any
			for i, c := range calls {
				cm, _ := c.(map[string]any)
				tc = append(tc, map[string]any{"index": i, "id": cm["id"], "type": cm["type"], "function": cm["function"]})
			}
			delta(map[string]any{"tool_calls": tc}, nil)
		}
		delta(map[string]any{}, ch["finish_reason"])
	}
	if includeUsage {
		c := chunk([]any{})
		c["usage"] = m["usage"]
		ew.event("", c)
	}
	ew.done()
}

// pieces cuts text into chunks of about 16 words, as a model streams it
// (the client sees deltas, not one block).
func pieces(s string) []string {
	var out []string
	words := 0
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			words++
			if words == 16 {
				out = append(out, s[start:i])
				start, words = i, 0
			}
		}
	}
	return append(out, s[start:])
}

func cmpAny(v any, def string) any {
	if s, _ := v.(string); s != "" {
		return s
	}
	return def
}

// replayResponse streams a Responses API response object as its events:
// response.created and response.in_progress (status in_progress, no
// output), per output item its added/done events (and for a message the
// content part and output_text delta/done events), then
// response.completed with the whole object. Every event carries its
// sequence_number.
func replayResponse(ew *eventWriter, resp map[string]any) {
	ev := func(typ string, fields map[string]any) {
		fields["type"] = typ
		fields["sequence_number"] = ew.seq
		ew.seq++
		ew.event(typ, fields)
	}
	start := make(map[string]any, len(resp))
	for k, v := range resp {
		start[k] = v
	}
	start["status"], start["output"], start["usage"] = "in_progress", []any{}, nil
	ev("response.created", map[string]any{"response": start})
	ev("response.in_progress", map[string]any{"response": start})
	output, _ := resp["output"].([]any)
	for i, x := range output {
		item, _ := x.(map[string]any)
		id := item["id"]
		added := make(map[string]any, len(item))
		for k, v := range item {
			added[k] = v
		}
		if item["type"] == "message" {
			added["status"], added["content"] = "in_progress", []any{}
		}
		ev("response.output_item.added", map[string]any{"output_index": i, "item": added})
		if item["type"] == "message" {
			parts, _ := item["content"].([]any)
			for j, p := range parts {
				part, _ := p.(map[string]any)
				base := map[string]any{"item_id": id, "output_index": i, "content_index": j}
				with := func(kv ...any) map[string]any {
					m := make(map[string]any, len(base)+2)
					for k, v := range base {
						m[k] = v
					}
					for n := 0; n+1 < len(kv); n += 2 {
						m[kv[n].(string)] = kv[n+1]
					}
					return m
				}
				if part["type"] == "output_text" {
					text, _ := part["text"].(string)
					emptyPart := map[string]any{"type": "output_text", "text": "", "annotations": []any{}}
					ev("response.content_part.added", with("part", emptyPart))
					for _, piece := range pieces(text) {
						ev("response.output_text.delta", with("delta", piece, "logprobs", []any{}))
					}
					ev("response.output_text.done", with("text", text, "logprobs", []any{}))
				} else {
					ev("response.content_part.added", with("part", part))
				}
				ev("response.content_part.done", with("part", part))
			}
		}
		ev("response.output_item.done", map[string]any{"output_index": i, "item": item})
	}
	ev("response.completed", map[string]any{"response": resp})
}
